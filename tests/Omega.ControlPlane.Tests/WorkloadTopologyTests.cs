using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Workload topology (issue 13): spec.topology reaches the engine (residency is a hard gate), status counts serving per
/// region, replicas on unreachable nodes are reported in a condition, and a converged workload notices a binding
/// removed from outside (node or region lost) without waiting for the resync.
/// </summary>
public sealed class WorkloadTopologyTests
{
    [Fact]
    public async Task Residency_holds_serving_is_counted_per_region_and_unreachable_replicas_are_reported_in_a_condition()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        foreach (var region in new[] { "us-east", "eu-central" })
            for (int i = 0; i < 4; i++)
            {
                Assert.Null(Topology.Merge(region, $"{region}-a", null, out var labels));
                cell.AddNode(new NodeSpec($"{region}-{i}", ResourceVector.FromCoresAndGiB(4, 16), $"{region}-rack", labels));
            }
        using var plane = new Plane(cell, time, addNodes: false);
        var w = Objects.Workload("ledger", replicas: 6);
        w.Spec.Topology.RequiredRegions = ["eu-central"];
        Assert.True((await plane.Store.CreateAsync(w)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("ledger", 6)));
        var bindings = plane.Bindings(plane.Get("ledger"));
        Assert.All(bindings, a => Assert.StartsWith("eu-central-", NodeName(cell, a.Node), StringComparison.Ordinal));
        Assert.Equal(6, plane.Get("ledger").Status.ServingByRegion["eu-central"]);
        Assert.False(Conditions.IsTrue(plane.Get("ledger").Status.Conditions, "ReplicasUnreachable"));

        // One node of the region goes silent (suspect): its replicas are unreachable, not serving, and said so.
        var node = bindings[0].Node;
        int onIt = bindings.Count(a => a.Node == node);
        Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(node, NodeStatus.Down));
        plane.Runner.Queue.Add(new ObjectKey(Workload.KindName, "t1", "ledger").ToString()); // node status has no watch: the next resync would
        Assert.True(await plane.RunUntil(() => plane.Get("ledger").Status.Unreachable == onIt));
        var st = plane.Get("ledger").Status;
        Assert.Equal(6 - onIt, st.ServingByRegion["eu-central"]);
        var cond = Conditions.Find(st.Conditions, "ReplicasUnreachable")!;
        Assert.Equal((ConditionStatus.True, "NodeUnreachable"), (cond.Status, cond.Reason));
        Assert.Contains("eu-central", cond.Message, StringComparison.Ordinal);

        // The node is evicted (its bindings released from outside): the controller is nudged at once and re-places the
        // replicas inside the region (residency), never in us-east, and the condition clears.
        foreach (var a in cell.GetAllocationsOnNode(node)) cell.Release(a.Task, a.Generation);
        Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(node, NodeStatus.Fenced));
        Assert.True(await plane.RunUntil(() => plane.Converged("ledger", 6) && plane.Get("ledger").Status.Unreachable == 0));
        Assert.All(plane.Bindings(plane.Get("ledger")), a => Assert.StartsWith("eu-central-", NodeName(cell, a.Node), StringComparison.Ordinal));
        Assert.False(Conditions.IsTrue(plane.Get("ledger").Status.Conditions, "ReplicasUnreachable"));
        Assert.Empty(cell.Audit());
    }

    [Fact]
    public async Task A_converged_workload_whose_binding_is_released_from_outside_reconciles_before_the_resync()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        Assert.True((await plane.Store.CreateAsync(Objects.Workload("web", replicas: 3))).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 3)));
        long before = plane.Runner.Reconciles;
        var victim = plane.Bindings(plane.Get("web"))[0];
        Assert.Equal(ReleaseStatus.Released, cell.Release(victim.Task));
        // No time passes (the resync is 2 s away): only the nudge can make the controller look.
        plane.Scheduler.RunUntilIdle();
        Assert.True(plane.Runner.Reconciles > before, "the release did not wake the controller");
    }

    private static string NodeName(Cell cell, NodeId id) => cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok ? v.Spec.Name : "";
}
