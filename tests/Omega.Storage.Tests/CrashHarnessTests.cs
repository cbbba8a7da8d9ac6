using Omega.CrashHost;
using Xunit.Abstractions;

namespace Omega.Storage.Tests;

/// <summary>
/// The crash harness in the suite: the host runs as a real child process under concurrent durable commits and is killed
/// with SIGKILL (Process.Kill) at random moments, including while a checkpoint runs; after each kill the store is
/// reopened and checked against everything the host recorded as acknowledged. The seed is printed; hundreds of cycles
/// run from bench/ (Omega.CrashHost drive).
/// </summary>
public sealed class CrashHarnessTests
{
    private readonly ITestOutputHelper _output;

    public CrashHarnessTests(ITestOutputHelper output) => _output = output;

    private static string HostPath()
    {
        // The host is built next to this project (ProjectReference without output assembly): same configuration and TFM.
        string here = AppContext.BaseDirectory;
        string host = here.Replace(Path.Combine("tests", "Omega.Storage.Tests"), Path.Combine("bench", "Omega.CrashHost"), StringComparison.Ordinal);
        string dll = Path.Combine(host, "Omega.CrashHost.dll");
        Assert.True(File.Exists(dll), $"crash host not built at {dll}");
        return dll;
    }

    [Fact]
    public async Task Acknowledged_results_survive_SIGKILL()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_CRASH_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"crash harness seed {seed} (OMEGA_CRASH_SEED={seed} to replay the kill schedule)");
        using var tmp = new TempStore();
        var driver = new CrashDriver(HostPath(), tmp.Directory, _output.WriteLine);
        var summary = await driver.RunAsync(cycles: 4, seed, TimeSpan.FromSeconds(60));
        _output.WriteLine(summary.ToString());
        Assert.True(summary.Ok, summary.ToString());
        Assert.Equal(4, summary.Cycles);
        Assert.True(summary.AckedBindingsChecked > 0);
        Assert.True(summary.IdempotentRetries > 0);
    }

    [Fact]
    public async Task Acknowledged_results_survive_SIGKILL_when_recovered_from_the_compact_checkpoint()
    {
        // Issue 15: every verification recovers the killed host's directory twice, by the full scan of FasterKV's log and
        // from the compact checkpoint, requires the same cell from both, and checks every acknowledged binding and
        // idempotency key against the compact recovery; it then checkpoints, so each later cycle has a compact file.
        int seed = Environment.GetEnvironmentVariable("OMEGA_CRASH_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"crash harness (compact checkpoint) seed {seed} (OMEGA_CRASH_SEED={seed} to replay the kill schedule)");
        using var tmp = new TempStore();
        var driver = new CrashDriver(HostPath(), tmp.Directory, _output.WriteLine, compactCheck: true);
        var summary = await driver.RunAsync(cycles: 2, seed, TimeSpan.FromSeconds(60));
        _output.WriteLine(summary.ToString());
        Assert.True(summary.Ok, summary.ToString());
        Assert.Equal(2, summary.Cycles);
        Assert.True(summary.AckedBindingsChecked > 0);
        Assert.Equal(0, summary.CompactScanMismatches);
        // Cycle 2 starts from the verifier's checkpoint at least, so its recovery has a compact file to use.
        Assert.True(summary.CompactRecoveries >= 1, summary.ToString());
    }

    [Fact]
    public async Task The_harness_catches_acknowledgements_made_before_durability()
    {
        // The same harness against a host that acknowledges the in-memory result early: it must report lost bindings.
        int seed = Random.Shared.Next();
        _output.WriteLine($"seed {seed}");
        using var tmp = new TempStore();
        var driver = new CrashDriver(HostPath(), tmp.Directory, _output.WriteLine, ackEarly: true);
        var summary = await driver.RunAsync(cycles: 3, seed, TimeSpan.FromSeconds(60));
        _output.WriteLine(summary.ToString());
        Assert.False(summary.Ok, "early acknowledgements were not detected: " + summary);
        Assert.True(summary.LostAcknowledgedBindings + summary.IdempotencyMismatches > 0, summary.ToString());
    }
}
