using Omega.Cells;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>The engine's job budgets and lazily allocated per-task state (issue 10, defect 3), through the library API.</summary>
public sealed class JobBudgetTests
{
    [Fact]
    public void A_job_over_the_tasks_per_job_budget_is_refused_and_nothing_is_created()
    {
        using var t = new TestEngine(o => { o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }); o.MaxTasksPerJob = 1_000; });
        var r = t.Engine.Submit(Job(1, tasks: 1_001));
        Assert.Equal(EnqueueStatus.JobTooLarge, r.Status);
        Assert.Contains("1000", r.Reason, StringComparison.Ordinal);
        Assert.False(t.Engine.TryGetJob(new JobId(1), out _));
        Assert.Equal(0, t.Engine.QueueDepth("batch"));
        Assert.Equal(0, t.Engine.QueuedTasks);
        t.Submit(Job(1, tasks: 1_000)); // the id is free, and the budget itself is allowed
        Assert.Equal(1_000, t.Engine.QueuedTasks);
    }

    [Fact]
    public void Queued_tasks_leave_the_count_when_bound_and_return_when_a_binding_is_lost()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }));
        var n = t.Add(Node("n0", cores: 4));
        var job = t.Submit(Job(1, tasks: 6, cores: 1)); // 4 fit, 2 stay queued (parked)
        t.Settle();
        Assert.Equal(4, t.Status(job).Bound);
        Assert.Equal(2, t.Engine.QueuedTasks);
        Assert.Equal(2, t.Engine.QueuedTasksOf(default));
        // The node is lost: its bindings are released and handed back to the engine.
        var released = t.Cell.GetAllocationsOnNode(n).Select(a => a.Task).ToArray();
        foreach (var task in released) Assert.Equal(ReleaseStatus.Released, t.Cell.Release(task));
        t.Engine.RequeueReleased(released);
        Assert.Equal(6, t.Engine.QueuedTasks);
    }

    [Fact]
    public void Unplaceable_jobs_at_the_budget_allocate_memory_independent_of_their_task_count()
    {
        // No node fits: every job goes through all its attempts and parks, writing a decision record per attempt.
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 10 }));
        t.Add(Node("tiny", cores: 0.5));
        // Warm up the worker's scratch lists with one job, then measure five more.
        t.Submit(Job(1, tasks: 100_000, cores: 1));
        t.Settle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 2; i <= 6; i++) t.Submit(Job(i, tasks: 100_000, cores: 1));
        t.Settle();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.All(Enumerable.Range(2, 5), i => Assert.True(t.Engine.TryGetJob(new JobId(i), out var s) && s.Phase == JobPhase.Parked && s.Pending == 100_000));
        // Eager state was 14 bytes per task per job (7 MB here) and a decision entry per task per attempt (~240 MB).
        Assert.True(allocated < 1 << 20, $"allocated {allocated:N0} bytes for five parked jobs of 100,000 tasks");
        var rec = t.Engine.Explain(new TaskId(4, 99_999));
        Assert.NotNull(rec);
        Assert.Null(rec.ForTask(99_999)!.Value.Node);
    }

    [Fact]
    public void The_decision_log_keeps_its_task_entries_within_budget_and_drops_the_oldest_records()
    {
        var log = new DecisionLog(capacity: 1_000, sampleEvery: 1, maxTaskEntries: 100);
        static DecisionRecord Rec(long job, int entries) => new(new JobId(job), 0, 1, "batch", 0, default, default, 0, 0, 0, 0,
            new Dictionary<Pipeline.FilterStatus, int>(), [], Enumerable.Range(0, entries).Select(i => new TaskDecision(i, new NodeId(0), "n", 1, ClaimStatus.Applied, null)).ToList(),
            TransactionStatus.Committed, 1, default, default, default, "placed");
        for (int j = 1; j <= 10; j++) log.Add(Rec(j, 29)); // 30 entries each with the record itself
        Assert.True(log.TaskEntries <= 100, $"{log.TaskEntries} entries");
        Assert.NotNull(log.ForJob(new JobId(10)));
        Assert.Null(log.ForJob(new JobId(1)));
        Assert.Null(log.ForTask(new TaskId(1, 0)));
        Assert.NotNull(log.ForTask(new TaskId(10, 28)));
    }
}
