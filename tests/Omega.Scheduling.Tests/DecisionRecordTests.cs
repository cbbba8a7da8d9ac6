using Omega.Cells;
using Omega.Scheduling.Pipeline;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>One decision reconstructed from its record: why this node, what was filtered, what conflicted.</summary>
public sealed class DecisionRecordTests
{
    internal static PlacementPipeline PipelineWith(IFilter first, int floor = 100) => new(
        [first, new NodeHealthFilter(), new ResourceFitFilter(), new RequiredLabelsFilter(), new TaintFilter(), new TenantQuotaFilter()],
        [(new BinPackingScorer(), 1.0), (new FailureDomainSpreadScorer(), 0.5), (new JobAntiAffinityScorer(), 0.5)],
        new SamplingOptions { FeasibleFloor = floor, MinProbes = floor });

    [Fact]
    public void Explain_shows_why_this_node_and_what_was_filtered()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", Pipeline = () => FullScanPipeline() }));
        var cell = t.Cell;
        var other = cell.AcquireLease("other", TimeSpan.FromHours(1)).Lease;
        for (int i = 0; i < 3; i++) t.Add(Node($"tainted-{i}", domain: $"d{i}", taints: ["dedicated"]));
        for (int i = 0; i < 2; i++) Assert.Equal(NodeOpStatus.Ok, cell.AddNode(Node($"draining-{i}", domain: $"d{i}"), out _, NodeStatus.Draining));
        var full = t.Add(Node("full", domain: "d0"));
        var fuller = t.Add(Node("half", domain: "d1"));
        for (int i = 0; i < 3; i++) t.Add(Node($"empty-{i}", domain: $"d{i + 2}"));
        Assert.True(CommitDirect(cell, other, new TaskId(900, 0), full, R(4, 1)).IsCommitted);
        Assert.True(CommitDirect(cell, other, new TaskId(901, 0), fuller, R(2, 1)).IsCommitted);

        var job = t.Submit(Job(1, cores: 1));
        t.Time.Advance(TimeSpan.FromSeconds(3));
        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());

        var task = new TaskId(1, 0);
        var rec = t.Engine.Explain(task);
        Assert.NotNull(rec);
        Assert.True(cell.TryGetAllocation(task, out var alloc));

        // Who, when, on what.
        Assert.Equal(job.Id, rec.Job);
        Assert.Equal(0, rec.JobGeneration);
        Assert.Equal(1, rec.Attempt);
        Assert.Equal("batch", rec.Scheduler);
        Assert.Equal(t.Worker("batch").Lease.Token, rec.Token);
        Assert.Equal(TimeSpan.FromSeconds(3), rec.QueueTime);
        Assert.Equal(0, rec.PolicyRevision); // the built-in policy (no SchedulerPolicy revision promoted)
        Assert.True(rec.SnapshotVersion < rec.CommitVersion);

        // What was filtered: counts by reason match the cell, node by node.
        var snap = cell.Snapshot();
        var expected = new Dictionary<FilterStatus, int>();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(new NodeId(i), out var v));
            var reason = !v.IsSchedulable ? FilterStatus.NodeUnschedulable
                : !v.Fits(job.PerTask) && v.Id != alloc.Node ? FilterStatus.InsufficientResources
                : v.Spec.Taints.Count > 0 ? FilterStatus.TaintNotTolerated : FilterStatus.Feasible;
            if (reason != FilterStatus.Feasible) expected[reason] = expected.GetValueOrDefault(reason) + 1;
        }
        Assert.Equal(new Dictionary<FilterStatus, int> { [FilterStatus.NodeUnschedulable] = 2, [FilterStatus.InsufficientResources] = 1, [FilterStatus.TaintNotTolerated] = 3 }, expected);
        Assert.Equal(expected, rec.FilteredByReason.ToDictionary());
        Assert.Equal(10, rec.NodesConsidered);
        Assert.Equal(4, rec.Feasible);

        // Why this node: it tops the scores (bin-packing: the half-full node), and the task's score is that top score.
        var td = rec.ForTask(0);
        Assert.NotNull(td);
        Assert.Equal(fuller, td.Value.Node);
        Assert.Equal("half", td.Value.NodeName);
        Assert.Equal(alloc.Node, td.Value.Node);
        Assert.Equal(3, rec.TopScores.Count);
        Assert.Equal((fuller, td.Value.Score), rec.TopScores[0]);
        Assert.True(rec.TopScores[0].Score > rec.TopScores[1].Score);
        Assert.True(rec.TopScores[1].Score >= rec.TopScores[2].Score);

        // The commit and the claim.
        Assert.Equal(TransactionStatus.Committed, rec.CommitStatus);
        Assert.Equal(ClaimStatus.Applied, td.Value.Claim);
        Assert.Equal(alloc.Generation, rec.CommitVersion);
        Assert.Equal("placed", rec.Outcome);
        var text = rec.Explain(0);
        Assert.Contains("filtered 3 x TaintNotTolerated", text, StringComparison.Ordinal);
        Assert.Contains($"chose {fuller} (half)", text, StringComparison.Ordinal);
        Assert.Contains("-> Applied", text, StringComparison.Ordinal);
    }

    /// <summary>
    /// Two workers of different kinds race for the last slot. The batch worker's pipeline has a hook filter that, on its
    /// first call (after the batch worker took its snapshot), runs the service worker's whole Step: the service job commits
    /// first, and the batch commit, decided on the older snapshot, conflicts. Deterministic, single-threaded.
    /// </summary>
    [Theory]
    [InlineData(ConflictDetection.Fine, 1, ClaimStatus.InsufficientResources)]
    [InlineData(ConflictDetection.Coarse, 2, ClaimStatus.NodeVersionChanged)]
    [InlineData(ConflictDetection.Fine, 2, ClaimStatus.Applied)]
    public void Explain_shows_what_conflicted_when_two_kinds_race_for_the_last_slot(ConflictDetection detection, double freeCores, ClaimStatus expectedClaim)
    {
        var hook = new HookFilter();
        using var t = new TestEngine(o =>
        {
            o.Kinds.Add(new SchedulerKindOptions { Name = "batch", Detection = detection, Pipeline = () => PipelineWith(hook) });
            o.Kinds.Add(new SchedulerKindOptions { Name = "service", Detection = ConflictDetection.Fine });
        });
        var cell = t.Cell;
        var other = cell.AcquireLease("other", TimeSpan.FromHours(1)).Lease;
        var n0 = t.Add(Node("n0"));
        var n1 = t.Add(Node("n1"));
        Assert.True(CommitDirect(cell, other, new TaskId(900, 0), n0, R(4, 1)).IsCommitted);
        Assert.True(CommitDirect(cell, other, new TaskId(901, 0), n1, R(4 - freeCores, 1)).IsCommitted);
        t.Submit(Job(1, cores: 1), "batch");
        t.Submit(Job(2, cores: 1), "service");
        long before = cell.Version;
        StepOutcome serviceOutcome = default;
        hook.OnFirstCall = () => serviceOutcome = t.Worker("service").Step();

        var batchOutcome = t.Worker("batch").Step();

        Assert.Equal(StepOutcome.Placed, serviceOutcome);
        Assert.True(cell.TryGetAllocation(new TaskId(2, 0), out var serviceAlloc));
        Assert.Equal(n1, serviceAlloc.Node);
        var rec = t.Engine.Explain(new TaskId(1, 0))!;
        var serviceRec = t.Engine.Explain(new TaskId(2, 0))!;
        Assert.Equal(TransactionStatus.Committed, serviceRec.CommitStatus);
        Assert.Equal(serviceAlloc.Generation, serviceRec.CommitVersion);

        // The batch decision was made on a snapshot from before the service commit, and chose the same node.
        Assert.True(rec.SnapshotVersion < serviceAlloc.Generation, $"snapshot v{rec.SnapshotVersion} vs service commit v{serviceAlloc.Generation}");
        Assert.True(rec.SnapshotVersion >= before);
        var td = rec.ForTask(0)!.Value;
        Assert.Equal(n1, td.Node);
        Assert.Equal(expectedClaim, td.Claim);
        if (expectedClaim == ClaimStatus.Applied)
        {
            Assert.Equal(StepOutcome.Placed, batchOutcome);
            Assert.Equal(TransactionStatus.Committed, rec.CommitStatus);
            Assert.Equal(0, t.Engine.Busyness("batch").Wasted);
            return;
        }
        Assert.Equal(StepOutcome.Requeued, batchOutcome);
        Assert.Equal(TransactionStatus.Rejected, rec.CommitStatus);
        Assert.Equal($"requeued after conflict {expectedClaim}", rec.Outcome);
        Assert.False(cell.TryGetAllocation(new TaskId(1, 0), out _));
        Assert.Equal(1, cell.Counters.Claims(expectedClaim));
        Assert.True(t.Engine.Busyness("batch").Wasted > 0);
        Assert.Contains($"-> {expectedClaim}", rec.Explain(0), StringComparison.Ordinal);

        // The conflict is retried at once on a fresh snapshot: placed if room is left (coarse case), else found infeasible.
        var retry = t.Worker("batch").Step();
        var rec2 = t.Engine.Explain(new TaskId(1, 0))!;
        Assert.Equal(2, rec2.Attempt);
        Assert.True(rec2.SnapshotVersion >= serviceAlloc.Generation);
        if (freeCores >= 2)
        {
            Assert.Equal(StepOutcome.Placed, retry);
            Assert.Equal(TransactionStatus.Committed, rec2.CommitStatus);
        }
        else
        {
            Assert.Equal(StepOutcome.Requeued, retry);
            Assert.Null(rec2.CommitStatus);
            Assert.Equal(2, rec2.FilteredByReason[FilterStatus.InsufficientResources]);
            Assert.Null(rec2.ForTask(0)!.Value.Node);
        }
        Assert.Empty(cell.Audit());
    }
}
