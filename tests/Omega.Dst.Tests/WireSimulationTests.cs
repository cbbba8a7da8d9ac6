using System.Diagnostics;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Dst.Tests;

/// <summary>
/// The wire simulation (docs/testing.md, "The real protocol handling in the simulation"): simulated agents and external
/// schedulers speak real frames to the server's real ProtocolHandler and Dispatcher through a faulty simulated network,
/// with crashes of the server process, on one thread from one seed.
/// </summary>
public sealed class WireSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Wire_seeds_drive_the_real_protocol_handler_through_frame_faults_and_crashes_and_keep_every_invariant()
    {
        var sw = Stopwatch.StartNew();
        var faults = new long[Enum.GetValues<DstFault>().Length];
        long frames = 0, acked = 0, bindings = 0;
        const int Seeds = 150;
        for (long seed = 1; seed <= Seeds; seed++)
        {
            var r = WireSimulation.RunSeed(seed);
            Assert.True(r.Ok, r.ToString());
            for (int i = 0; i < faults.Length; i++) faults[i] += r.FaultCounts[i];
            frames += r.FramesHandled;
            acked += r.CommitsAcknowledged;
            bindings += r.BindingsReceived;
        }
        output.WriteLine($"{Seeds} wire seeds in {sw.Elapsed.TotalSeconds:0.0} s; {frames} frames handled, {acked} commits acknowledged, {bindings} bindings pushed to agents; faults: {string.Join(", ", Enum.GetValues<DstFault>().Where(f => faults[(int)f] > 0).Select(f => $"{f} {faults[(int)f]}"))}");
        // The handler really ran the protocol: commits were applied and acknowledged, and the dispatcher pushed bindings.
        Assert.True(frames > Seeds * 50, $"only {frames} frames handled");
        Assert.True(acked > Seeds * 5, $"only {acked} commits acknowledged");
        Assert.True(bindings > Seeds * 2, $"only {bindings} bindings pushed");
        foreach (var f in new[] { DstFault.Drop, DstFault.Duplicate, DstFault.Reorder, DstFault.Partition, DstFault.Crash, DstFault.TornTail, DstFault.CommitTimeout, DstFault.ReconnectStorm })
            Assert.True(faults[(int)f] > 0, $"no {f} was injected in {Seeds} seeds");
    }

    [Fact]
    public void The_same_wire_seed_gives_the_same_trace_hash_and_another_seed_another()
    {
        var a = WireSimulation.RunSeed(7);
        var b = WireSimulation.RunSeed(7);
        var c = WireSimulation.RunSeed(8);
        Assert.True(a.Ok, a.ToString());
        Assert.Equal(a.TraceHash, b.TraceHash);
        Assert.Equal(a.Trace, b.Trace);
        Assert.NotEqual(a.TraceHash, c.TraceHash);
    }

    // ReplyBeforeDurable breaks the server's protocol handler itself (a Commit reply sent before its version is durable):
    // only a simulation that runs the real handler can catch it.
    [Theory]
    [InlineData(Buggify.ReplyBeforeDurable, "acked-commit-lost")]
    [InlineData(Buggify.SkipTokenCheck, "stale-token")]
    [InlineData(Buggify.SkipIdempotencyReplay, "retry-binds-once")]
    [InlineData(Buggify.SkipCapacityCheck, "node-capacity")]
    public void Each_broken_variant_is_caught_through_the_wire(Buggify broken, string checker)
    {
        var o = new WireOptions { Buggify = broken };
        for (long seed = 1; seed <= 200; seed++)
        {
            var r = WireSimulation.RunSeed(seed, o);
            if (r.Ok) continue;
            output.WriteLine(r.ToString());
            Assert.StartsWith(checker + ":", r.Violation, StringComparison.Ordinal);
            var again = WireSimulation.RunSeed(seed, o);
            Assert.Equal(r.Violation, again.Violation);
            Assert.Equal(r.TraceHash, again.TraceHash);
            return;
        }
        Assert.Fail($"{broken} was not caught in 200 wire seeds");
    }
}
