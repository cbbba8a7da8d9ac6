using System.Globalization;
using Omega.CrashHost;
using Xunit.Abstractions;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 12's crash test, a few cycles of it (bench/Omega.CrashHost drive-controllers runs 50 and more): a real Omega
/// host (FASTER store, engine, TCP server, object store, workload controller) under a seeded stream of workload creates,
/// scales and deletes is killed with SIGKILL at random points; after every restart, with the same agents reconnecting,
/// every workload reaches its desired replicas (bound and ready), observedGeneration catches up, no replica is bound
/// twice, no binding is left for a retired serial or a deleted workload, the cell's audit (capacity, double binding) is
/// clean, and every acknowledged write is there.
/// </summary>
public sealed class ControllerCrashTests(ITestOutputHelper output)
{
    private static string HostDll => Path.Combine(
        AppContext.BaseDirectory.Replace(Path.Combine("tests", "Omega.Cli.Tests"), Path.Combine("bench", "Omega.CrashHost"), StringComparison.Ordinal),
        "Omega.CrashHost.dll");

    [Fact]
    public async Task Workload_controllers_killed_at_random_points_under_creates_scales_and_deletes_always_converge_with_no_duplicate_or_leaked_binding()
    {
        Assert.True(File.Exists(HostDll), $"the crash host is built next to the tests: {HostDll}");
        int seed = Environment.GetEnvironmentVariable("OMEGA_CRASH_SEED") is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (replay: OMEGA_CRASH_SEED={seed}, or Omega.CrashHost drive-controllers --seed {seed})");
        string dir = Path.Combine(Path.GetTempPath(), "omega-controller-crash-" + Guid.NewGuid().ToString("N"));
        try
        {
            var summary = await new ControllerCrashDriver(HostDll, dir, output.WriteLine).RunAsync(cycles: 4, seed);
            output.WriteLine(summary.ToString());
            Assert.True(summary.Ok, summary.ToString());
            Assert.Equal(4, summary.Cycles);
            Assert.Equal(5, summary.ConvergeMs.Count); // every restart verified, the last one without a kill after it
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
