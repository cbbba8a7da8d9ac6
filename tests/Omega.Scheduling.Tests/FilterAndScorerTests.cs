using Omega.Cells;
using Omega.Scheduling.Pipeline;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Each filter and scorer on its own, with node views read from a real cell snapshot.</summary>
public sealed class FilterAndScorerTests : IDisposable
{
    private readonly Cell _cell = new();
    private readonly SchedulerLease _lease;

    public FilterAndScorerTests() => _lease = _cell.AcquireLease("other-scheduler", TimeSpan.FromHours(1)).Lease;

    public void Dispose() => _cell.Dispose();

    [Fact]
    public void NodeHealth_accepts_only_schedulable_nodes()
    {
        var ids = new[] { NodeStatus.Schedulable, NodeStatus.Draining, NodeStatus.Fenced, NodeStatus.Down }
            .Select((s, i) => { Assert.Equal(NodeOpStatus.Ok, _cell.AddNode(Node($"n{i}"), out var id, s)); return (s, id); }).ToArray();
        var ctx = Context(FullScanPipeline(), Job(1), _cell.Snapshot());
        var filter = new NodeHealthFilter();
        foreach (var (status, id) in ids)
            Assert.Equal(status == NodeStatus.Schedulable ? FilterStatus.Feasible : FilterStatus.NodeUnschedulable, filter.Filter(ctx, View(_cell, id)));
    }

    [Fact]
    public void ResourceFit_checks_every_dimension_against_allocated_plus_tentative()
    {
        var n = _cell.AddNode(Node("n0", cores: 4, memGiB: 16));
        Assert.True(CommitDirect(_cell, _lease, new TaskId(99, 0), n, R(1, 1)).IsCommitted);
        var filter = new ResourceFitFilter();
        var job = Job(1, tasks: 3, cores: 1, memGiB: 1);

        // No tentative placements: 1 allocated + 1 requested of 4.
        Assert.Equal(FilterStatus.Feasible, filter.Filter(Context(FullScanPipeline(), job, _cell.Snapshot()), View(_cell, n)));
        // Two tasks of this decision tentatively on the node: 1 + 2 + 1 = 4 cores, still fits exactly.
        var ctx = Context(FullScanPipeline(), job, _cell.Snapshot(), tentativeTasks: 2);
        Assert.Equal(R(2, 2), ctx.TentativeOn(n));
        Assert.Equal(FilterStatus.Feasible, filter.Filter(ctx, View(_cell, n)));
        // Three tentative: 1 + 3 + 1 = 5 cores > 4.
        ctx = Context(FullScanPipeline(), job, _cell.Snapshot(), tentativeTasks: 3);
        Assert.Equal(R(3, 3), ctx.TentativeOn(n));
        Assert.Equal(FilterStatus.InsufficientResources, filter.Filter(ctx, View(_cell, n)));
        // Memory alone can reject: 15 GiB free, 16 requested.
        Assert.Equal(FilterStatus.InsufficientResources, filter.Filter(Context(FullScanPipeline(), Job(2, cores: 0.1, memGiB: 16), _cell.Snapshot()), View(_cell, n)));
        // GPUs: the node has none.
        var gpuJob = new JobSpec(new JobId(3), default, 0, 1, new ResourceVector(100, GiB, gpus: 1));
        Assert.Equal(FilterStatus.InsufficientResources, filter.Filter(Context(FullScanPipeline(), gpuJob, _cell.Snapshot()), View(_cell, n)));
    }

    [Fact]
    public void RequiredLabels_need_every_label_with_the_same_value()
    {
        var n = _cell.AddNode(Node("n0", labels: Labels(("zone", "a"), ("disk", "ssd"))));
        var bare = _cell.AddNode(Node("n1"));
        var filter = new RequiredLabelsFilter();
        FilterStatus Check(NodeId id, params (string, string)[] required)
            => filter.Filter(Context(FullScanPipeline(), Job(1, labels: Labels(required)), _cell.Snapshot()), View(_cell, id));

        Assert.Equal(FilterStatus.Feasible, Check(n));
        Assert.Equal(FilterStatus.Feasible, Check(n, ("zone", "a")));
        Assert.Equal(FilterStatus.Feasible, Check(n, ("zone", "a"), ("disk", "ssd")));
        Assert.Equal(FilterStatus.LabelMismatch, Check(n, ("zone", "b")));
        Assert.Equal(FilterStatus.LabelMismatch, Check(n, ("zone", "a"), ("gpu", "yes")));
        Assert.Equal(FilterStatus.LabelMismatch, Check(n, ("zone", "A")));
        Assert.Equal(FilterStatus.Feasible, Check(bare));
        Assert.Equal(FilterStatus.LabelMismatch, Check(bare, ("zone", "a")));
    }

    [Fact]
    public void Taints_must_all_be_tolerated()
    {
        var tainted = _cell.AddNode(Node("n0", taints: ["gpu", "dedicated"]));
        var clean = _cell.AddNode(Node("n1"));
        var filter = new TaintFilter();
        FilterStatus Check(NodeId id, params string[] tolerations)
            => filter.Filter(Context(FullScanPipeline(), Job(1, tolerations: tolerations), _cell.Snapshot()), View(_cell, id));

        Assert.Equal(FilterStatus.TaintNotTolerated, Check(tainted));
        Assert.Equal(FilterStatus.TaintNotTolerated, Check(tainted, "gpu"));
        Assert.Equal(FilterStatus.TaintNotTolerated, Check(tainted, "GPU", "dedicated"));
        Assert.Equal(FilterStatus.Feasible, Check(tainted, "dedicated", "gpu"));
        Assert.Equal(FilterStatus.Feasible, Check(tainted, "gpu", "dedicated", "spot"));
        Assert.Equal(FilterStatus.Feasible, Check(clean));
        Assert.Equal(FilterStatus.Feasible, Check(clean, "gpu"));
    }

    [Fact]
    public void TenantQuota_counts_usage_at_decision_start_plus_tentative_placements()
    {
        var n = _cell.AddNode(Node("n0", cores: 16, memGiB: 64));
        var filter = new TenantQuotaFilter();
        var job = Job(1, tasks: 4, cores: 1, memGiB: 1, tenant: 3);
        var quota = R(4, 100);
        var usage = R(2, 2);

        Assert.Equal(FilterStatus.Feasible, filter.Filter(Context(FullScanPipeline(), job, _cell.Snapshot(), tenant: (usage, null), tentativeTasks: 4), View(_cell, n)));
        Assert.Equal(FilterStatus.Feasible, filter.Filter(Context(FullScanPipeline(), job, _cell.Snapshot(), tenant: (usage, quota)), View(_cell, n)));
        // 2 used + 1 tentative + 1 requested = 4: exactly at the quota.
        var ctx = Context(FullScanPipeline(), job, _cell.Snapshot(), tenant: (usage, quota), tentativeTasks: 1);
        Assert.Equal(R(1, 1), ctx.TentativeTenantUse);
        Assert.Equal(FilterStatus.Feasible, filter.Filter(ctx, View(_cell, n)));
        // 2 used + 2 tentative + 1 requested = 5 > 4.
        var planned = new List<PlannedClaim>();
        ctx = Context(FullScanPipeline(), job, _cell.Snapshot(), tenant: (usage, quota), tentativeTasks: 4, planned: planned);
        Assert.Equal(2, planned.Count); // the pipeline itself stops at the quota
        Assert.Equal(FilterStatus.QuotaExceeded, filter.Filter(ctx, View(_cell, n)));
        // Memory quota alone can reject.
        Assert.Equal(FilterStatus.QuotaExceeded, filter.Filter(Context(FullScanPipeline(), job, _cell.Snapshot(), tenant: (R(0, 99.5), quota)), View(_cell, n)));
    }

    [Fact]
    public void BinPacking_prefers_the_node_fullest_after_placement_by_dominant_share()
    {
        var busy = _cell.AddNode(Node("busy", cores: 4, memGiB: 16));
        var empty = _cell.AddNode(Node("empty", cores: 4, memGiB: 16));
        var big = _cell.AddNode(Node("big", cores: 8, memGiB: 16));
        Assert.True(CommitDirect(_cell, _lease, new TaskId(99, 0), busy, R(3, 2)).IsCommitted);
        var scorer = new BinPackingScorer();
        var ctx = Context(FullScanPipeline(), Job(1, cores: 1, memGiB: 1), _cell.Snapshot());

        Assert.Equal(100, scorer.Score(ctx, View(_cell, busy)), 6);    // 4/4 cores
        Assert.Equal(25, scorer.Score(ctx, View(_cell, empty)), 6);    // 1/4 cores > 1/16 memory
        Assert.Equal(12.5, scorer.Score(ctx, View(_cell, big)), 6);    // 1/8 cores
        // Memory dominant: 8 of 16 GiB.
        Assert.Equal(50, scorer.Score(Context(FullScanPipeline(), Job(2, cores: 0.5, memGiB: 8), _cell.Snapshot()), View(_cell, empty)), 6);
        // Tentative placements of this decision count: on a one-node cell, two 1-core tasks already planned on an 8-core node.
        using var single = new Cell();
        var only = single.AddNode(Node("only", cores: 8, memGiB: 64));
        var tctx = Context(FullScanPipeline(), Job(3, tasks: 2, cores: 1, memGiB: 1), single.Snapshot(), tentativeTasks: 2);
        Assert.Equal(37.5, scorer.Score(tctx, View(single, only)), 6); // (2 + 1) / 8
    }

    [Fact]
    public void DomainSpread_prefers_domains_with_fewer_of_the_jobs_tasks()
    {
        var a0 = _cell.AddNode(Node("a0", domain: "rack-a"));
        var a1 = _cell.AddNode(Node("a1", domain: "rack-a"));
        var b0 = _cell.AddNode(Node("b0", domain: "rack-b"));
        var scorer = new FailureDomainSpreadScorer();
        var ctx = Context(FullScanPipeline(), Job(1), _cell.Snapshot(), boundElsewhere: [a0, a0]);

        Assert.Equal(2, ctx.JobTasksIn("rack-a"));
        Assert.Equal(100.0 / 3, scorer.Score(ctx, View(_cell, a0)), 6);
        Assert.Equal(100.0 / 3, scorer.Score(ctx, View(_cell, a1)), 6); // same domain, other node
        Assert.Equal(100, scorer.Score(ctx, View(_cell, b0)), 6);
        Assert.True(scorer.Score(ctx, View(_cell, b0)) > scorer.Score(ctx, View(_cell, a1)));
    }

    [Fact]
    public void AntiAffinity_prefers_nodes_without_the_jobs_tasks()
    {
        var n0 = _cell.AddNode(Node("n0"));
        var n1 = _cell.AddNode(Node("n1"));
        var n2 = _cell.AddNode(Node("n2"));
        var scorer = new JobAntiAffinityScorer();
        var ctx = Context(FullScanPipeline(), Job(1), _cell.Snapshot(), boundElsewhere: [n0, n1, n1]);

        Assert.Equal(100, scorer.Score(ctx, View(_cell, n2)), 6);
        Assert.Equal(100.0 / 3, scorer.Score(ctx, View(_cell, n0)), 6);
        Assert.Equal(25, scorer.Score(ctx, View(_cell, n1)), 6);
    }

    [Fact]
    public void Pipeline_spreads_a_jobs_tasks_across_domains_and_records_filtered_counts()
    {
        // Four racks of two nodes; an 8-task job: spread + anti-affinity put no two tasks on one node.
        for (int i = 0; i < 8; i++) _cell.AddNode(Node($"n{i}", cores: 8, domain: $"rack-{i % 4}"));
        var tainted = _cell.AddNode(Node("tainted", taints: ["t"]));
        var pipeline = FullScanPipeline();
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        pipeline.Plan(Job(1, tasks: 8), Enumerable.Range(0, 8).ToArray(), _cell.Snapshot(), default, [], new Random(3), planned, stats);

        Assert.Equal(8, planned.Count);
        Assert.Equal(8, planned.Select(p => p.Node.Id).Distinct().Count());
        Assert.DoesNotContain(planned, p => p.Node.Id == tainted);
        Assert.Equal(1, stats.FilteredByReason[(int)FilterStatus.TaintNotTolerated]);
        Assert.Equal(9, stats.NodesConsidered);
        Assert.Equal(8, stats.Feasible);
        Assert.Equal(0, stats.Unplaceable);
    }

    [Fact]
    public void Sampling_cost_does_not_grow_with_the_cell()
    {
        using var big = new Cell(new CellOptions { InitialNodeCapacity = 20_000 });
        for (int i = 0; i < 20_000; i++) big.AddNode(Node($"n{i}", domain: $"rack-{i % 50}"));
        var sampling = new SamplingOptions();
        var pipeline = PlacementPipeline.CreateDefault(sampling);
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        pipeline.Plan(Job(1, tasks: 10), Enumerable.Range(0, 10).ToArray(), big.Snapshot(), default, [], new Random(5), planned, stats);

        Assert.Equal(10, planned.Count);
        int wanted = sampling.FeasibleFloor + 10 / 4;
        Assert.Equal(wanted, stats.Feasible);           // an empty cell: every probe is feasible, so exactly the floor
        Assert.Equal(wanted, stats.NodesConsidered);    // ... and nothing more was read
        Assert.Equal(planned[0].Score, stats.TopScores[0].Score);
    }
}
