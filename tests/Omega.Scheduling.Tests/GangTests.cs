using Omega.Cells;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Gang jobs: all tasks in one transaction, or none.</summary>
public sealed class GangTests
{
    private static IReadOnlyList<Allocation> Sorted(Cell cell) => cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).ToList();

    [Fact]
    public void A_gang_that_cannot_be_fully_placed_binds_nothing()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 3 }));
        for (int i = 0; i < 3; i++) t.Add(Node($"n{i}", domain: $"rack-{i}"));
        var small = t.Submit(Job(1, cores: 1));
        t.Settle();
        var before = Sorted(t.Cell);
        long committedBefore = t.Cell.Counters.Transactions(TransactionStatus.Committed);

        // Three 4-core tasks on three 4-core nodes, one of which holds a 1-core task: two of three fit, so none may bind.
        var gang = t.Submit(Job(2, tasks: 3, cores: 4, gang: true));
        t.Settle();

        var s = t.Status(gang);
        Assert.Equal(JobPhase.Parked, s.Phase);
        Assert.Equal(0, s.Bound);
        Assert.Equal(3, s.Pending);
        Assert.Contains("no feasible node for 1 task(s)", s.ParkedReason, StringComparison.Ordinal);
        Assert.Equal(before, Sorted(t.Cell));
        Assert.Equal(committedBefore, t.Cell.Counters.Transactions(TransactionStatus.Committed));
        // Its decision records planned two tasks but committed nothing.
        var rec = t.Engine.Explain(new TaskId(2, 0))!;
        Assert.Null(rec.CommitStatus);
        // Two planned tasks have entries; the third is covered as an index range (no claim), not as an entry.
        Assert.Equal(2, rec.Tasks.Count);
        Assert.All(Enumerable.Range(0, 3), i => Assert.NotNull(rec.ForTask(i)));
        AssertEngineMatchesCell(t.Engine, t.Cell, [small, gang]);
    }

    [Fact]
    public void A_gang_that_fits_is_bound_whole_in_one_transaction()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }));
        for (int i = 0; i < 3; i++) t.Add(Node($"n{i}", domain: $"rack-{i}"));
        long committedBefore = t.Cell.Counters.Transactions(TransactionStatus.Committed);
        var gang = t.Submit(Job(2, tasks: 3, cores: 3, gang: true));

        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());

        var allocations = Sorted(t.Cell);
        Assert.Equal(3, allocations.Count);
        Assert.Single(allocations.Select(a => a.Generation).Distinct());
        Assert.Equal(3, allocations.Select(a => a.Node).Distinct().Count());
        Assert.Equal(committedBefore + 1, t.Cell.Counters.Transactions(TransactionStatus.Committed));
        var rec = t.Engine.Explain(new TaskId(2, 1))!;
        Assert.Equal(allocations[0].Generation, rec.CommitVersion);
        Assert.All(rec.Tasks, td => Assert.Equal(ClaimStatus.Applied, td.Claim));
        AssertEngineMatchesCell(t.Engine, t.Cell, [gang]);
    }

    [Fact]
    public void A_gang_whose_commit_conflicts_on_one_node_rolls_back_entirely()
    {
        var hook = new HookFilter();
        using var t = new TestEngine(o =>
        {
            o.Kinds.Add(new SchedulerKindOptions { Name = "gang", MaxAttempts = 2, Pipeline = () => DecisionRecordTests.PipelineWith(hook) });
            o.Kinds.Add(new SchedulerKindOptions { Name = "other" });
        });
        for (int i = 0; i < 3; i++) t.Add(Node($"n{i}", domain: $"rack-{i}"));
        var gang = t.Submit(Job(2, tasks: 3, cores: 4, gang: true), "gang");
        var intruder = t.Submit(Job(3, cores: 1), "other");
        hook.OnFirstCall = () => Assert.Equal(StepOutcome.Placed, t.Worker("other").Step());

        Assert.Equal(StepOutcome.Requeued, t.Worker("gang").Step());

        var rec = t.Engine.Explain(new TaskId(2, 0))!;
        Assert.Equal(TransactionStatus.Rejected, rec.CommitStatus);
        var claims = rec.Tasks.Select(td => td.Claim).ToList();
        Assert.Single(claims, c => c == ClaimStatus.InsufficientResources);
        Assert.All(claims, c => Assert.True(c is ClaimStatus.InsufficientResources or ClaimStatus.Aborted or ClaimStatus.NotEvaluated, $"{c}"));
        Assert.Equal(1, t.Cell.AllocationCount); // only the intruder
        Assert.Equal(0, t.Status(gang).Bound);
        t.Settle();
        Assert.Equal(JobPhase.Parked, t.Status(gang).Phase);
        Assert.Equal(1, t.Cell.AllocationCount);
        AssertEngineMatchesCell(t.Engine, t.Cell, [gang, intruder]);
    }
}
