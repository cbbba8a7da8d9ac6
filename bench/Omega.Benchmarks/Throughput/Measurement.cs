using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Omega.Benchmarks.Throughput;

/// <summary>A stop signal the timed loops poll; a class so every worker reads the same field.</summary>
internal sealed class StopFlag
{
    private volatile bool _set;

    public bool IsSet => _set;

    public void Set() => _set = true;
}

/// <summary>
/// xorshift64*: a per-thread generator with no shared state and no allocation, so the random choice costs a few
/// nanoseconds and never becomes the thing measured. Seeded, so a run can be repeated.
/// </summary>
internal struct XorShift
{
    private ulong _s;

    public XorShift(long seed) => _s = (ulong)seed * 0x9E3779B97F4A7C15UL | 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Next()
    {
        _s ^= _s >> 12;
        _s ^= _s << 25;
        _s ^= _s >> 27;
        return _s * 0x2545F4914F6CDD1DUL;
    }

    /// <summary>A value in [0, bound): the high 32 bits scaled by multiply-shift, which avoids a division.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int NextBelow(int bound) => (int)(((Next() >> 32) * (ulong)bound) >> 32);
}

/// <summary>The outcome of one timed run: operations and units (claims, or RMWs) per second, summed over threads.</summary>
internal readonly record struct RunResult(double OpsPerSecond, double UnitsPerSecond, double RejectedFraction, long Ops)
{
    public static RunResult From(long[] counts, long[] elapsedTicks, int unitsPerOp, long rejected, long[]? units = null)
    {
        double ops = 0, unitsPerSecond = 0;
        long totalOps = 0, totalUnits = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            // Per-thread rates are summed: the threads run over the same window, each timing its own loop.
            double seconds = elapsedTicks[i] / (double)Stopwatch.Frequency;
            ops += counts[i] / seconds;
            long u = units?[i] ?? counts[i] * unitsPerOp;
            unitsPerSecond += u / seconds;
            totalOps += counts[i];
            totalUnits += u;
        }
        double attempted = totalUnits + rejected;
        return new RunResult(ops, unitsPerSecond, attempted == 0 ? 0 : rejected / attempted, totalOps);
    }
}
