using Omega.Storage.Baseline;

namespace Omega.Benchmarks.Throughput;

/// <summary>
/// The same-run FASTER RMW baseline (design.md §7), adapted to the runners' <see cref="RunResult"/>. The store itself is
/// <see cref="FasterRmwBaseline"/> in Omega.Storage, the one project that may reference FASTER; load reports use the same
/// one, so every report's baseline is the same measurement.
/// </summary>
internal sealed class FasterBaseline : IDisposable
{
    private readonly FasterRmwBaseline _store = new();

    public static string Describe => FasterRmwBaseline.Describe;

    public RunResult Run(int threads, TimeSpan duration, int seed)
    {
        double rate = _store.Run(threads, duration, seed);
        return new RunResult(rate, rate, 0, (long)(rate * duration.TotalSeconds));
    }

    public void Dispose() => _store.Dispose();
}
