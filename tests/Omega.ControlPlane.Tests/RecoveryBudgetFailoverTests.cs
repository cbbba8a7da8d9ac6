using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Recovery budgets through the real engine and workload controller (issue 13, item 2): the controller records each
/// workload's home region; a region's own critical workload cannot grow into the budget; when the home region is lost,
/// the critical workload fails over into the budgeted region by preempting reclaimable work, and consumes the budget.
/// </summary>
public sealed class RecoveryBudgetFailoverTests
{
    [Fact]
    public async Task Failover_preempts_reclaimable_work_and_consumes_the_budget_which_the_regions_own_critical_work_could_not_take()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var nodes = new Dictionary<string, List<NodeId>>();
        foreach (var region in new[] { "r-a", "r-b" })
        {
            nodes[region] = new List<NodeId>();
            for (int i = 0; i < 2; i++)
            {
                Assert.Null(Topology.Merge(region, $"{region}-z", null, out var labels));
                nodes[region].Add(cell.AddNode(new NodeSpec($"{region}-{i}", ResourceVector.FromCoresAndGiB(4, 16), $"{region}-rack{i}", labels)));
            }
        }
        using var plane = new Plane(cell, time, addNodes: false);
        // r-b promises 4 cores to failover from elsewhere.
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-b", ResourceVector.FromCoresAndGiB(4, 0), 1000, out _));

        Workload W(string name, int replicas, int priority, long cpu, string[] preferred, string[] required)
        {
            var w = Objects.Workload(name, replicas);
            w.Spec.Priority = priority;
            w.Spec.Resources = new ResourceRequest { CpuMillis = cpu, MemoryBytes = 1L << 30 };
            w.Spec.Topology.PreferredRegions = [.. preferred];
            w.Spec.Topology.RequiredRegions = [.. required];
            return w;
        }
        // risk: critical, lives in r-a. filler: best effort, fills r-b. local: r-b's own critical service.
        Assert.True((await plane.Store.CreateAsync(W("risk", 2, 1000, 2000, ["r-a", "r-b"], []))).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("risk", 2)));
        var risk = plane.Get("risk");
        Assert.Equal("r-a", cell.GetFailoverHome(WorkloadController.JobFor(risk.Metadata.Uid, 0)));
        Assert.True((await plane.Store.CreateAsync(W("filler", 4, 0, 2000, [], ["r-b"]))).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("filler", 4)));
        // local wants 6 cores of r-b's 8; preempting filler it could, but only 8 − 4 = 4 may become non-reclaimable.
        Assert.True((await plane.Store.CreateAsync(W("local", 6, 1000, 1000, ["r-b"], ["r-b"]))).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Get("local").Status.Bound == 4 && plane.Bindings(plane.Get("local")).Count == 4, rounds: 200));
        await plane.RunUntil(() => false, rounds: 40); // let the engine and the controller retry (parked replicas are retried): still 4
        Assert.Equal(4, plane.Bindings(plane.Get("local")).Count);
        var u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
        Assert.Equal((0L, true), (u.Consumed.CpuMillis, u.Backed));

        // r-a is lost: its nodes are fenced and their bindings released (what the lifecycle controller does).
        foreach (var n in nodes["r-a"])
        {
            foreach (var a in cell.GetAllocationsOnNode(n)) cell.Release(a.Task, a.Generation);
            Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(n, NodeStatus.Fenced));
        }
        // risk fails over into r-b by preempting filler (never local: equal priority), consuming the whole budget.
        Assert.True(await plane.RunUntil(() => plane.Bindings(plane.Get("risk")).Count == 2));
        Assert.All(plane.Bindings(plane.Get("risk")), a => Assert.Contains(a.Node, nodes["r-b"]));
        u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
        Assert.Equal((4000L, 2, true), (u.Consumed.CpuMillis, u.Consumers, u.Exhausted));
        Assert.Equal(4, plane.Bindings(plane.Get("local")).Count);
        Assert.Empty(plane.Bindings(plane.Get("filler"))); // 2 preempted by local, the last 2 by failover
        Assert.Empty(cell.Audit());
    }
}
