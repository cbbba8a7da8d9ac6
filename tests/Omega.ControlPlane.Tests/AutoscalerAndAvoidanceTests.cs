using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>Zone avoidance seen through real placements, and the node-pool autoscaler (issue 13, items 4 and 7).</summary>
public sealed class AutoscalerAndAvoidanceTests
{
    private static Dictionary<string, string> Zone(string zone) => new() { [Override.ZoneLabel] = zone, [Override.RegionLabel] = "r1" };

    [Fact]
    public async Task A_zone_avoided_by_an_override_gets_no_new_replica_and_takes_replicas_again_once_the_override_expired()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var nodes = new List<NodeId>();
        for (int i = 0; i < 4; i++) nodes.Add(cell.AddNode(new NodeSpec($"a{i}", ResourceVector.FromCoresAndGiB(4, 16), "za", Zone("za"))));
        for (int i = 0; i < 4; i++) nodes.Add(cell.AddNode(new NodeSpec($"b{i}", ResourceVector.FromCoresAndGiB(4, 16), "zb", Zone("zb"))));
        using var plane = new Plane(cell, time, addNodes: false);
        using var overrides = new OverrideController(plane.Store, cell, new ManualControllerScheduler(time));
        Assert.True((await plane.Store.CreateAsync(OverrideTests.Make("avoid-za", OverrideType.ZoneAvoid, "za", 300))).IsOk);
        await overrides.SweepAsync(default);

        // 12 one-core replicas spread over failure domains: without the override half would go to za.
        var w = Objects.Workload("web", replicas: 12);
        w.Spec.Spread = SpreadScope.FailureDomain;
        Assert.True((await plane.Store.CreateAsync(w)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Get("web").Status.Bound == 12), "12 replicas bound in zb");
        string ZoneOf(Allocation a) => a.Node.Value < 4 ? "za" : "zb";
        Assert.All(plane.Bindings(plane.Get("web")), a => Assert.Equal("zb", ZoneOf(a)));

        // The override expires: the sweep removes the taint, and a scale-up beyond zb's room lands in za.
        time.Advance(TimeSpan.FromSeconds(301));
        await overrides.SweepAsync(default);
        var scaled = plane.Get("web");
        scaled.Spec.Replicas = 20;
        Assert.True((await plane.Store.UpdateAsync(scaled)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Get("web").Status.Bound == 20), "20 replicas bound");
        Assert.Contains(plane.Bindings(plane.Get("web")), a => ZoneOf(a) == "za");
        Assert.Empty(cell.Audit());
    }

    private sealed class Rig : IDisposable
    {
        public readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        public readonly Cell Cell;
        public readonly ObjectStore Store;
        public readonly NodePoolAutoscaler Autoscaler;

        public Rig()
        {
            Cell = new Cell(new CellOptions { Time = Time });
            Store = new ObjectStore(Cell, new ObjectStoreOptions { Time = Time });
            Autoscaler = new NodePoolAutoscaler(Store, Cell, new ManualControllerScheduler(Time));
        }

        public async Task Pool(string name, int max = 10, int perStep = 2)
        {
            var p = new NodePool();
            p.Metadata.Name = name;
            p.Spec.NodeCapacity = new ResourceRequest { CpuMillis = 4000, MemoryBytes = 16L << 30 };
            p.Spec.MaxNodes = max;
            p.Spec.MaxScaleUpPerStep = perStep;
            Assert.True((await Store.CreateAsync(p)).IsOk);
        }

        // A workload whose status says what the workload controller would: replicas bound, ready, and why the rest wait.
        public async Task Workload(string name, int replicas, int bound, int ready, string? reason)
        {
            var w = Objects.Workload(name, replicas);
            var r = await Store.CreateAsync(w);
            Assert.True(r.IsOk, r.Message);
            var o = (Workload)r.Object!;
            o.Status.Bound = bound;
            o.Status.Ready = ready;
            o.Status.PendingReason = reason;
            Assert.True((await Store.UpdateStatusAsync(o)).IsOk);
        }

        public NodePool Get(string pool) => Store.Get<NodePool>("", pool)!;

        public int PoolNodes(string pool) => Cell.Snapshot() is var s ? Enumerable.Range(0, s.NodeCount)
            .Count(i => s.TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok && v.Spec.Labels.TryGetValue(NodePool.PoolLabel, out var p) && p == pool) : 0;

        public void Dispose()
        {
            Autoscaler.Dispose();
            Store.Dispose();
            Cell.Dispose();
        }
    }

    private const string Capacity = "5 task(s) unplaced after 3 attempts; no feasible node for 5 task(s) on the last attempt: 8 of 8 nodes considered rejected for InsufficientResources";
    private const string Quota = "5 task(s) unplaced after 3 attempts; no feasible node for 5 task(s) on the last attempt: 8 of 8 nodes considered rejected for QuotaExceeded";

    [Fact]
    public async Task The_autoscaler_adds_nodes_only_for_pending_reasons_capacity_can_fix_and_within_its_step_limit()
    {
        using var rig = new Rig();
        await rig.Pool("general", max: 10, perStep: 2);
        await rig.Workload("quota-bound", replicas: 10, bound: 0, ready: 0, reason: Quota);
        Assert.Equal(0, await rig.Autoscaler.StepAsync(default));   // quota: nodes would not help
        Assert.Equal(10, rig.Autoscaler.Pending(PendingClass.Quota));

        await rig.Workload("needs-room", replicas: 12, bound: 2, ready: 2, reason: Capacity);   // 10 pending × 1 core = 3 nodes of 4 cores
        Assert.Equal(2, await rig.Autoscaler.StepAsync(default));   // the step limit, not the 3 needed
        Assert.Equal(2, rig.PoolNodes("general"));
        Assert.Equal(10, rig.Get("general").Status.PendingFixable);
        // The new nodes are still empty: the next step waits for the scheduler to use them instead of adding more.
        Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
        Assert.Equal("CapacityNotAbsorbed", Conditions.Find(rig.Get("general").Status.Conditions, "ScaleUpHeld")!.Reason);
    }

    [Fact]
    public async Task Low_readiness_does_not_amplify_into_nodes_over_many_steps()
    {
        using var rig = new Rig();
        await rig.Pool("general", max: 100, perStep: 5);
        // Seed 001's failure scenario: 40 replicas bound but only 5 ready (slow startup), and the desired count keeps
        // rising with pending replicas that report a capacity reason.
        await rig.Workload("slow", replicas: 60, bound: 40, ready: 5, reason: Capacity);
        for (int step = 0; step < 20; step++)
        {
            Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
            rig.Time.Advance(TimeSpan.FromSeconds(10));
        }
        Assert.Equal(0, rig.PoolNodes("general"));
        Assert.Equal(20, rig.Autoscaler.Held);
        Assert.Equal("LowReadiness", Conditions.Find(rig.Get("general").Status.Conditions, "ScaleUpHeld")!.Reason);

        // Readiness recovers: now capacity is the bottleneck, and the pool grows by its step limit.
        var w = rig.Store.Get<Workload>("t1", "slow")!;
        w.Status.Ready = 38;
        Assert.True((await rig.Store.UpdateStatusAsync(w)).IsOk);
        Assert.Equal(5, await rig.Autoscaler.StepAsync(default));
    }

    [Fact]
    public async Task An_autoscaler_pause_override_stops_scale_up_for_its_TTL_and_is_shown_on_the_pool()
    {
        using var rig = new Rig();
        using var overrides = new OverrideController(rig.Store, rig.Cell, new ManualControllerScheduler(rig.Time));
        await rig.Pool("general");
        await rig.Workload("needs-room", replicas: 10, bound: 0, ready: 0, reason: Capacity);
        Assert.True((await rig.Store.CreateAsync(OverrideTests.Make("pause-general", OverrideType.AutoscalerPause, "general", 60, author: "carol"))).IsOk);
        await overrides.SweepAsync(default);
        Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
        var paused = Conditions.Find(rig.Get("general").Status.Conditions, "Paused")!;
        Assert.Equal(ConditionStatus.True, paused.Status);
        Assert.Contains("override/pause-general by carol", paused.Message);
        Assert.Equal(0, rig.PoolNodes("general"));

        rig.Time.Advance(TimeSpan.FromSeconds(61));
        await overrides.SweepAsync(default);
        Assert.Equal(2, await rig.Autoscaler.StepAsync(default));
        Assert.Equal(ConditionStatus.False, Conditions.Find(rig.Get("general").Status.Conditions, "Paused")!.Status);
    }

    [Theory]
    [InlineData(Capacity, PendingClass.Capacity)]
    [InlineData("1 task(s) unplaced after 3 attempts; no feasible node for 1 task(s) on the last attempt: 0 of 0 nodes considered rejected for Feasible", PendingClass.Capacity)]
    [InlineData(Quota, PendingClass.Quota)]
    [InlineData("1 task(s) unplaced after 3 attempts; no feasible node for 1 task(s) on the last attempt: 8 of 8 nodes considered rejected for LabelMismatch", PendingClass.Constraint)]
    [InlineData("1 task(s) unplaced after 3 attempts; commit conflicts, last: NodeVersionChanged", PendingClass.Contention)]
    [InlineData("UnknownTenant", PendingClass.Other)]
    public void Pending_reasons_are_classified_by_what_capacity_can_fix(string reason, PendingClass expected)
        => Assert.Equal(expected, PendingReasons.Classify(reason));
}
