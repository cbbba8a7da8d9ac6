using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Server;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 13, item 5 at scale, on the library API with simulated time: a region whose agents go silent without any
/// connection closing (a partition: the TCP connections stay open, the bytes vanish) must be fenced by the regional
/// signal from lease expiry alone, not at the eviction rate limit (10/s: a 1,000-node region would take 100 s after its
/// leases); while a silence of the whole cell still brakes, even when one region's agents happen to heartbeat early so
/// that its leases all expire before the others'. Shipped defaults (lease 10 s, heartbeat a third of it with ±20%
/// jitter, 10 evictions/s, brake at half the cell, regional fraction 0.8); 3 regions × 1,000 nodes; ticks every second.
/// </summary>
public sealed class RegionPartitionTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(100);
    private const int PerRegion = 1000;
    private static readonly string[] Regions = ["r-a", "r-b", "r-c"];
    private readonly ITestOutputHelper _out;

    public RegionPartitionTests(ITestOutputHelper output) => _out = output;

    /// <summary>Simulated agents: each renews its node's lease every heartbeat interval (with jitter) unless silenced.</summary>
    private sealed class Fleet : IDisposable
    {
        public readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        public readonly Cell Cell;
        public readonly NodeLifecycleController Lc;
        private readonly TimeSpan[] _next;
        public readonly bool[] Silent;
        private readonly Random _rng;
        private readonly TimeSpan _heartbeat = Lease / 3;
        private TimeSpan _elapsed, _lastTick;

        public Fleet(int seed, double regionLossFraction = 0.8)
        {
            _rng = new Random(seed);
            Cell = new Cell(new CellOptions { Time = Time });
            int n = Regions.Length * PerRegion;
            for (int i = 0; i < n; i++)
            {
                string region = Regions[i / PerRegion];
                Assert.Null(Topology.Merge(region, region + "-z", null, out var labels));
                Cell.AddNode(new NodeSpec($"{region}-{i % PerRegion}", new ResourceVector(4000, 16L << 30), region + "-z", labels));
            }
            // The shipped defaults, except the timer: ticks are explicit (every simulated second, as the default period).
            Lc = new NodeLifecycleController(Cell, null, new ServerOptions { Time = Time, LifecyclePeriod = null, NodeLease = Lease, RegionLossFraction = regionLossFraction });
            _next = new TimeSpan[n];
            Silent = new bool[n];
            // Every agent registers at the start (ending the restart grace), then heartbeats at its own phase.
            for (int i = 0; i < n; i++)
            {
                Lc.Renew(new NodeId(i));
                _next[i] = _heartbeat * _rng.NextDouble();
            }
        }

        public int Count => _next.Length;

        /// <summary>Agent <paramref name="i"/> heartbeats at exactly <paramref name="at"/> from now on, every interval with no jitter.</summary>
        public void Pin(int i, TimeSpan at) => _next[i] = -at - TimeSpan.FromTicks(1);

        /// <summary>Advances simulated time by <paramref name="span"/> in 100 ms steps, heartbeating and ticking once a second.</summary>
        public void Run(TimeSpan span, Func<bool>? stopWhen = null)
        {
            var end = _elapsed + span;
            while (_elapsed < end)
            {
                Time.Advance(Step);
                _elapsed += Step;
                for (int i = 0; i < _next.Length; i++)
                {
                    if (Silent[i]) continue;
                    if (_next[i] < TimeSpan.Zero)
                    {
                        // Pinned: a fixed schedule (the negative value encodes the first beat), no jitter.
                        var first = -_next[i] - TimeSpan.FromTicks(1);
                        if (_elapsed < first) continue;
                        Lc.Renew(new NodeId(i));
                        _next[i] = -(first + _heartbeat) - TimeSpan.FromTicks(1);
                        continue;
                    }
                    if (_next[i] > _elapsed) continue;
                    Lc.Renew(new NodeId(i));
                    _next[i] = _elapsed + _heartbeat * (1 + 0.2 * (2 * _rng.NextDouble() - 1));
                }
                if (_elapsed - _lastTick >= TimeSpan.FromSeconds(1))
                {
                    _lastTick = _elapsed;
                    Lc.Tick();
                    if (stopWhen?.Invoke() == true) return;
                }
            }
        }

        public NodeStatus StatusOf(int i) => Cell.Snapshot().TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed;

        public int CountIn(int region, NodeStatus status)
        {
            int c = 0;
            for (int i = region * PerRegion; i < (region + 1) * PerRegion; i++) if (StatusOf(i) == status) c++;
            return c;
        }

        public void Dispose()
        {
            Lc.Dispose();
            Cell.Dispose();
        }
    }

    [Fact]
    public void A_partitioned_region_whose_connections_never_close_is_fenced_within_a_lease_and_a_heartbeat_not_at_the_rate_limit()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _out.WriteLine($"seed {seed} (OMEGA_SEED={seed} repeats it)");
        using var f = new Fleet(seed);
        f.Run(TimeSpan.FromSeconds(12)); // steady state: every phase of the heartbeat interval is in use
        Assert.Equal(0, f.Lc.EvictedCount);

        // r-a is partitioned: its agents keep running but nothing of theirs reaches the server, and no connection closes.
        for (int i = 0; i < PerRegion; i++) f.Silent[i] = true;
        var partitionAt = f.Time.GetUtcNow();
        // Every r-a agent's last beat reached the server before the partition, so every lease has expired a lease (10 s)
        // after it, and the next tick (≤ 1 s) must fence what is left. At the rate limit the region would take 100 s after
        // its first leases expired; stop early once it is done (or after 30 s, to report how far it got).
        f.Run(TimeSpan.FromSeconds(30), () => f.CountIn(0, NodeStatus.Fenced) == PerRegion);
        var took = f.Time.GetUtcNow() - partitionAt;
        _out.WriteLine($"r-a fenced {f.CountIn(0, NodeStatus.Fenced)}/{PerRegion} after {took.TotalSeconds:F1} s; region_lost={f.Lc.EvictedFor(EvictionReason.RegionLost)} lease_expired={f.Lc.EvictedFor(EvictionReason.LeaseExpired)} brake_ticks={f.Lc.MassSilenceCount}");
        Assert.Equal(PerRegion, f.CountIn(0, NodeStatus.Fenced));
        Assert.True(took <= Lease + TimeSpan.FromSeconds(1.2), $"the partitioned region took {took.TotalSeconds:F1} s to fence");
        // Most by the regional signal (the first few expired leases may go through the rate limit before 80% of the
        // region is away); the healthy regions untouched; the brake never engaged.
        Assert.True(f.Lc.EvictedFor(EvictionReason.RegionLost) >= PerRegion * 8 / 10, $"region_lost={f.Lc.EvictedFor(EvictionReason.RegionLost)}");
        Assert.Equal(PerRegion, f.Lc.EvictedCount);
        Assert.Equal(PerRegion, f.CountIn(1, NodeStatus.Schedulable));
        Assert.Equal(PerRegion, f.CountIn(2, NodeStatus.Schedulable));
        Assert.Equal(0, f.Lc.MassSilenceCount);
    }

    [Fact]
    public void When_the_signal_fires_before_every_lease_of_the_region_ended_the_regions_quiet_nodes_are_marked_down_at_once()
    {
        // With the shipped 0.8 the signal and the region's last leases fall on about the same tick; with a lower fraction
        // (0.5 here) it fires a second or two earlier, while the agents that beat last before the cut still hold leases.
        // Those must take no placement meanwhile (the region's released replicas would land there and be evicted again):
        // not heard from for half a lease, they are marked down with the region.
        int seed = Environment.GetEnvironmentVariable("OMEGA_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _out.WriteLine($"seed {seed} (OMEGA_SEED={seed} repeats it)");
        using var f = new Fleet(seed, regionLossFraction: 0.5);
        f.Run(TimeSpan.FromSeconds(12));
        for (int i = 0; i < PerRegion; i++) f.Silent[i] = true;
        int schedulableAtSignal = -1, fencedAtSignal = -1;
        f.Run(TimeSpan.FromSeconds(30), () =>
        {
            if (schedulableAtSignal < 0 && f.Lc.EvictedFor(EvictionReason.RegionLost) > 0)
            {
                schedulableAtSignal = f.CountIn(0, NodeStatus.Schedulable);
                fencedAtSignal = f.CountIn(0, NodeStatus.Fenced);
            }
            return f.CountIn(0, NodeStatus.Fenced) == PerRegion;
        });
        _out.WriteLine($"at the signal: {fencedAtSignal} fenced, {schedulableAtSignal} schedulable; at the end {f.CountIn(0, NodeStatus.Fenced)} fenced");
        Assert.True(fencedAtSignal is > 0 and < PerRegion, $"the signal should fire while some leases still run ({fencedAtSignal} fenced at the signal)");
        Assert.Equal(0, schedulableAtSignal);
        Assert.Equal(PerRegion, f.CountIn(0, NodeStatus.Fenced));
        Assert.Equal(PerRegion, f.CountIn(1, NodeStatus.Schedulable));
        Assert.Equal(PerRegion, f.CountIn(2, NodeStatus.Schedulable));
    }

    [Fact]
    public void A_silence_of_the_whole_cell_brakes_even_when_one_region_heartbeated_early_and_its_leases_all_expired_first()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _out.WriteLine($"seed {seed} (OMEGA_SEED={seed} repeats it)");
        using var f = new Fleet(seed);
        // r-a's agents all heartbeat in step (at 0.95 s, 4.28 s, 7.62 s, 10.95 s, 14.28 s, ...); the others at random phases.
        for (int i = 0; i < PerRegion; i++) f.Pin(i, TimeSpan.FromSeconds(0.95));
        f.Run(TimeSpan.FromSeconds(12));
        Assert.Equal(0, f.Lc.EvictedCount);
        // At 14.2 s, just before r-a's next beat, the server's own network fails: every agent goes silent. r-a's leases
        // all expire at the tick of 21 s, when most of the others' still run (their last beats spread over the 3.3 s
        // before the silence) and well under half the cell is expired: without the freshness test the regional signal
        // would take r-a for a lost region and evict it whole.
        f.Run(TimeSpan.FromSeconds(2.2));
        for (int i = 0; i < f.Count; i++) f.Silent[i] = true;
        f.Run(Lease + TimeSpan.FromSeconds(6));
        _out.WriteLine($"evicted={f.Lc.EvictedCount} region_lost={f.Lc.EvictedFor(EvictionReason.RegionLost)} brake_ticks={f.Lc.MassSilenceCount} held_back={f.Lc.HeldBack}");
        Assert.Equal(0, f.Lc.EvictedFor(EvictionReason.RegionLost));
        Assert.True(f.Lc.BrakeEngaged, "the brake holds every silent node once most of the cell is expired");
        Assert.Equal(f.Count - (int)f.Lc.EvictedCount, f.Lc.HeldBack);
        // Before the brake engaged, r-a's expired leases went only through the rate limit (10/s, burst 10): a few dozen
        // at most, not the region.
        Assert.True(f.Lc.EvictedCount <= 80, $"evicted {f.Lc.EvictedCount}");
    }
}
