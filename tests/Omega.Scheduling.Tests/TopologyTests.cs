using Omega.Cells;
using Omega.Scheduling.Pipeline;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>
/// Topology (issue 13): data residency and avoided regions are hard gates (typed filter reasons, also for preemption);
/// region preference and spread are soft; the region gate cannot be switched off by policy.
/// </summary>
public sealed class TopologyTests
{
    private static NodeSpec RegionNode(string name, string region, string zone = "", double cores = 4)
    {
        Assert.Null(Topology.Merge(region, zone, null, out var labels));
        return new NodeSpec(name, R(cores, 16), $"{region}-rack", labels);
    }

    private static JobSpec Constrained(long id, TopologyConstraints topology, int tasks = 1, double cores = 1, int priority = 0)
        => new(new JobId(id), default, priority, tasks, R(cores)) { Topology = topology };

    [Fact]
    public void Residency_is_a_hard_gate_with_a_typed_reason_and_avoided_regions_are_never_used()
    {
        using var cell = new Cell();
        for (int i = 0; i < 4; i++) cell.AddNode(RegionNode($"us{i}", "us-east"));
        var eu = cell.AddNode(RegionNode("eu0", "eu-central"));
        cell.AddNode(new NodeSpec("plain", R(4, 16))); // no region: never satisfies a residency requirement

        var pipeline = FullScanPipeline();
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        // Five tasks that must stay in eu-central: one node of 4 cores there, so 4 placed and 1 unplaceable.
        var job = Constrained(1, new TopologyConstraints(["eu-central"], null, null, TopologySpread.None), tasks: 5);
        pipeline.Plan(job, [0, 1, 2, 3, 4], cell.Snapshot(), default, [], new Random(3), planned, stats, view: cell);
        Assert.Equal(4, planned.Count);
        Assert.All(planned, p => Assert.Equal(eu, p.Node.Id));
        Assert.Equal(1, stats.Unplaceable);
        Assert.Equal(5, stats.FilteredByReason[(int)FilterStatus.ResidencyViolation]); // 4 us-east nodes + the one without a region

        planned.Clear();
        var avoid = Constrained(2, new TopologyConstraints(null, ["us-east"], null, TopologySpread.None), tasks: 3);
        pipeline.Plan(avoid, [0, 1, 2], cell.Snapshot(), default, [], new Random(3), planned, stats, view: cell);
        Assert.Equal(3, planned.Count);
        Assert.All(planned, p => Assert.NotEqual("us-east", p.Node.Spec.Region));
        Assert.Equal(4, stats.FilteredByReason[(int)FilterStatus.RegionAvoided]);

        // A policy may not switch the gate off.
        var settings = new SchedulerPolicySettings { Filters = { ["topology"] = false } };
        Assert.Contains("cannot be switched off", settings.Validate(), StringComparison.Ordinal);
        Assert.Contains("both required and avoided", new TopologyConstraints(["a"], ["a"], null, TopologySpread.None).Validate(), StringComparison.Ordinal);
    }

    [Fact]
    public void Preferred_regions_win_with_default_sampling_and_the_next_preference_takes_over_when_the_first_is_gone()
    {
        using var cell = new Cell();
        string[] regions = ["r-a", "r-b", "r-c"];
        var nodesOf = new Dictionary<string, List<NodeId>>();
        foreach (var r in regions)
        {
            nodesOf[r] = new();
            for (int i = 0; i < 40; i++) nodesOf[r].Add(cell.AddNode(RegionNode($"{r}-{i}", r, $"{r}-z{i % 3}", cores: 16)));
        }
        var pipeline = PlacementPipeline.CreateDefault(); // the engine's sampling (8 candidates), not a full scan
        var prefs = new TopologyConstraints(null, null, ["r-a", "r-b"], TopologySpread.None);
        for (int seed = 0; seed < 50; seed++)
        {
            var planned = new List<PlannedClaim>();
            var st = new PlanStats();
            pipeline.Plan(Constrained(10 + seed, prefs, tasks: 6), [0, 1, 2, 3, 4, 5], cell.Snapshot(), default, [], new Random(seed), planned, st, view: cell);
            Assert.True(planned.All(p => p.Node.Spec.Region == "r-a"), string.Join("; ", st.TopScores.Select(x => $"{x.Node} {x.Score}")) + " | " + string.Join(",", CompiledPolicy.Default.ScorerWeights) + " considered " + st.NodesConsidered + " feasible " + st.Feasible);
            Assert.Equal(6, planned.Count);
            Assert.All(planned, p => Assert.Equal("r-a", p.Node.Spec.Region));
        }
        // r-a lost (fenced): the next preference, never the unpreferred region.
        foreach (var n in nodesOf["r-a"]) Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(n, NodeStatus.Fenced));
        for (int seed = 0; seed < 50; seed++)
        {
            var planned = new List<PlannedClaim>();
            pipeline.Plan(Constrained(100 + seed, prefs, tasks: 6), [0, 1, 2, 3, 4, 5], cell.Snapshot(), default, [], new Random(seed), planned, new PlanStats(), view: cell);
            Assert.All(planned, p => Assert.Equal("r-b", p.Node.Spec.Region));
        }
    }

    [Fact]
    public void Preemption_respects_residency_and_prefers_the_preferred_region()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 50, Pipeline = () => FullScanPipeline() }));
        var us = t.Add(RegionNode("us0", "us-east"));
        var eu = t.Add(RegionNode("eu0", "eu-central"));
        var ap = t.Add(RegionNode("ap0", "ap-south"));
        // Every node full of priority-1 work.
        var filler = t.Submit(Job(1, tasks: 12, cores: 1, priority: 1));
        t.Settle();
        Assert.Equal(JobPhase.Placed, t.Status(filler).Phase);

        // Must stay in ap-south: the victim is there, whatever node would be cheaper elsewhere.
        var resident = t.Submit(Constrained(2, new TopologyConstraints(["ap-south"], null, null, TopologySpread.None), cores: 2, priority: 9));
        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());
        Assert.True(t.Cell.TryGetAllocation(new TaskId(2, 0), out var placed));
        Assert.Equal(ap, placed.Node);

        // Prefers eu-central: the preemption lands there.
        var preferring = t.Submit(Constrained(3, new TopologyConstraints(null, null, ["eu-central"], TopologySpread.None), cores: 2, priority: 9));
        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());
        Assert.True(t.Cell.TryGetAllocation(new TaskId(3, 0), out var placed2));
        Assert.Equal(eu, placed2.Node);
        Assert.Equal(4, t.Cell.GetAllocationsOnNode(us).Count);
        Assert.Empty(t.Cell.Audit());
        GC.KeepAlive(resident);
        GC.KeepAlive(preferring);
    }

    [Fact]
    public void A_preferred_region_full_of_lower_priority_work_is_preempted_rather_than_spilling_into_an_unpreferred_one()
    {
        // The region-loss drill's shape: the first preference (r-a) is fenced, the second (r-b) is full of best-effort
        // work, an unpreferred region (r-c) has room. A critical service must recover in r-b, preempting the filler, so
        // its serving replicas stay together; spilling into r-c (where they fit without preemption) split them across
        // two regions and missed the objective of four serving in one.
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 50, Pipeline = () => FullScanPipeline() }));
        var lost = new List<NodeId>();
        for (int i = 0; i < 4; i++) lost.Add(t.Add(RegionNode($"a{i}", "r-a")));
        var b = new List<NodeId>();
        for (int i = 0; i < 4; i++) b.Add(t.Add(RegionNode($"b{i}", "r-b")));
        for (int i = 0; i < 4; i++) t.Add(RegionNode($"c{i}", "r-c"));
        foreach (var n in lost) Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(n, NodeStatus.Fenced));
        var filler = t.Submit(Constrained(1, new TopologyConstraints(["r-b"], null, null, TopologySpread.None), tasks: 16, priority: 0));
        t.Settle();
        Assert.Equal(16, b.Sum(n => t.Cell.GetAllocationsOnNode(n).Count)); // r-b is full

        var critical = t.Submit(Constrained(2, new TopologyConstraints(null, null, ["r-a", "r-b"], TopologySpread.None), tasks: 4, priority: 1000));
        t.Settle();
        var placed = Enumerable.Range(0, 4).Select(i => t.Cell.TryGetAllocation(new TaskId(2, i), out var a) ? a : throw new InvalidOperationException($"task {i} unbound")).ToList();
        Assert.All(placed, a => Assert.Contains(a.Node, b));
        Assert.Equal(12, b.Sum(n => t.Cell.GetAllocationsOnNode(n).Count(x => x.Task.Job == filler.Id)));
        Assert.Equal(4, t.Status(filler).Pending); // the preempted filler waits: it may only run in r-b
        Assert.Empty(t.Cell.Audit());
    }
    [Fact]
    public void With_no_feasible_node_anywhere_preemption_for_a_preference_takes_the_preferred_region_however_many_other_nodes_the_planner_meets_first()
    {
        // The partition-mode drill's shape (the 3 + 3 split): r-a is lost, and every other node is full of best-effort work
        // (the filler requeued from the first nodes to expire took the spare room before the critical replicas came back),
        // so no node is feasible and the placement goes straight to preemption. The planner examines at most 16 candidates;
        // with 60 nodes of the unpreferred r-c met before the 4 of r-b, it used to preempt in r-c most of the time.
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 50, Pipeline = () => FullScanPipeline() }));
        var lost = new List<NodeId>();
        for (int i = 0; i < 4; i++) lost.Add(t.Add(RegionNode($"a{i}", "r-a")));
        for (int i = 0; i < 60; i++) t.Add(RegionNode($"c{i}", "r-c"));
        var b = new List<NodeId>();
        for (int i = 0; i < 4; i++) b.Add(t.Add(RegionNode($"b{i}", "r-b")));
        foreach (var n in lost) Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(n, NodeStatus.Fenced));
        var filler = t.Submit(Job(1, tasks: 256, cores: 1, priority: 0));
        t.Settle();
        Assert.Equal(JobPhase.Placed, t.Status(filler).Phase); // every live node full

        var critical = t.Submit(Constrained(2, new TopologyConstraints(null, null, ["r-a", "r-b"], TopologySpread.None), tasks: 6, priority: 1000));
        t.Settle();
        for (int i = 0; i < 6; i++)
        {
            Assert.True(t.Cell.TryGetAllocation(new TaskId(2, i), out var a), $"task {i} unbound");
            Assert.Contains(a.Node, b);
        }
        Assert.Empty(t.Cell.Audit());
        GC.KeepAlive(critical);
    }
}
