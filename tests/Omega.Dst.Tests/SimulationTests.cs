using System.Diagnostics;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Dst.Tests;

/// <summary>
/// The deterministic simulation of the whole control plane (docs/testing.md): a few hundred seeds with every fault,
/// replay by seed, and each deliberately broken product variant (BUGGIFY) caught by its checker.
/// </summary>
public sealed class SimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Two_hundred_seeds_with_every_fault_keep_every_invariant_and_converge_once_the_faults_stop()
    {
        var sw = Stopwatch.StartNew();
        var faults = new long[Enum.GetValues<DstFault>().Length];
        long replayed = 0;
        for (long seed = 1; seed <= 200; seed++)
        {
            var r = DstSimulation.RunSeed(seed);
            // A failure prints the seed, the replay command and the events that led to it.
            Assert.True(r.Ok, r.ToString());
            Assert.True(r.Converged, r.ToString());
            for (int i = 0; i < faults.Length; i++) faults[i] += r.FaultCounts[i];
            replayed += r.DecisionsReplayed;
        }
        output.WriteLine($"200 seeds in {sw.Elapsed.TotalSeconds:0.0} s; {replayed} decisions replayed from their records; faults: {string.Join(", ", Enum.GetValues<DstFault>().Select(f => $"{f} {faults[(int)f]}"))}");
        // The decision-replay checker ran: every scheduler decision of every seed was replayed to the same choice.
        Assert.True(replayed > 2_000, $"only {replayed} decisions replayed");
        // The faults the run claims to inject were injected.
        // (WatchResume, WatchExpired, Drain and Revocation are the unified harness's faults: UnifiedSimulationTests asserts them.)
        foreach (var f in Enum.GetValues<DstFault>())
            if (f < DstFault.WatchResume) Assert.True(faults[(int)f] > 0, $"no {f} was injected in 200 seeds");
    }

    /// <summary>
    /// Seeds from the 10,000-seed run where an expired emergency quota kept raising tenant t2's limit: a sweep that waited
    /// seconds for durable writes delayed every revert and then re-applied a raise with the clock read before it waited
    /// (perf-reports/2026-12-06-dst-seeds, run 2). Each failed the quota checker before the override controller's fix.
    /// </summary>
    [Theory]
    [InlineData(5062)]
    [InlineData(9101)]
    [InlineData(298)]
    [InlineData(2043)]
    public void Seeds_that_once_admitted_usage_under_an_expired_quota_override_now_keep_the_quota(long seed)
    {
        var r = DstSimulation.RunSeed(seed);
        output.WriteLine(r.ToString());
        Assert.True(r.Ok, r.ToString());
        Assert.True(r.FaultCounts[(int)DstFault.QuotaOverride] > 0, $"seed {seed} injected no quota override: the test no longer exercises the race");
    }

    [Fact]
    public void The_same_seed_gives_the_same_trace_hash_and_another_seed_another()
    {
        var a = DstSimulation.RunSeed(42);
        var b = DstSimulation.RunSeed(42);
        var c = DstSimulation.RunSeed(43);
        Assert.Equal(a.TraceHash, b.TraceHash);
        Assert.Equal(a.Trace, b.Trace);
        Assert.Equal(a.FaultCounts, b.FaultCounts);
        Assert.NotEqual(a.TraceHash, c.TraceHash);
        // The full trace is the same run, only kept whole.
        var full = DstSimulation.RunSeed(42, new DstOptions { FullTrace = true });
        Assert.Equal(a.TraceHash, full.TraceHash);
        Assert.True(full.Trace.Count > a.Trace.Count);
    }

    [Theory]
    [InlineData(Buggify.SkipTokenCheck, "stale-token", 2.0)]
    [InlineData(Buggify.AckBeforeDurable, "acked-write-lost", 2.0)]
    [InlineData(Buggify.SkipIdempotencyReplay, "retry-binds-once", 2.0)]
    [InlineData(Buggify.SkipReservationExpiry, "leaked-reservation", 0.3)] // few crashes: holds must outlive their TTL
    [InlineData(Buggify.SkipCapacityCheck, "node-capacity", 0.3)]
    [InlineData(Buggify.SkipOverrideExpiry, "quota", 2.0)] // an expired emergency quota keeps raising the limit
    public void Each_broken_variant_is_caught_by_its_checker(Buggify broken, string checker, double faultRate)
    {
        var o = new DstOptions { Buggify = broken, FaultRate = faultRate };
        for (long seed = 1; seed <= 150; seed++)
        {
            var r = DstSimulation.RunSeed(seed, o);
            if (r.Ok) continue;
            output.WriteLine(r.ToString());
            Assert.StartsWith(checker + ":", r.Violation, StringComparison.Ordinal);
            // Replaying the seed reproduces the violation exactly.
            var again = DstSimulation.RunSeed(seed, o);
            Assert.Equal(r.Violation, again.Violation);
            Assert.Equal(r.TraceHash, again.TraceHash);
            return;
        }
        Assert.Fail($"{broken} was not caught in 150 seeds");
    }
}
