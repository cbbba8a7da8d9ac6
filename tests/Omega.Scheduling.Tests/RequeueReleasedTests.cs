using Omega.Cells;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>
/// <see cref="SchedulingEngine.RequeueReleased"/> re-queues only bindings that are really gone from the cell. A caller
/// (the workload controller) decides from an earlier read of the cell; when a worker bound and recorded the task in
/// between, a blind re-queue sent a live binding back to pending and every retry met TaskAlreadyBound until the job
/// parked (a region drill showed 10 such refusals, one job's MaxAttempts).
/// </summary>
public sealed class RequeueReleasedTests
{
    [Fact]
    public void A_requeue_of_a_task_the_cell_still_holds_leaves_it_bound_and_wastes_no_commit()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }));
        t.Add(Node("n0", cores: 4));
        var job = t.Submit(Job(1, tasks: 2, cores: 1));
        t.Settle();
        Assert.Equal(2, t.Status(job).Bound);
        var task = new TaskId(1, 0);
        Assert.True(t.Cell.TryGetAllocation(task, out var live));
        long committed = t.Cell.Counters.Transactions(TransactionStatus.Committed);

        // The stale caller: it read "not bound" before the worker's commit and calls only now.
        t.Engine.RequeueReleased([task]);
        t.Settle();

        Assert.Equal(2, t.Status(job).Bound);
        Assert.True(t.Engine.TryGetJob(new JobId(1), out var s));
        Assert.Equal(JobPhase.Placed, s.Phase);
        Assert.Equal(0, t.Engine.QueuedTasks);
        Assert.Equal(0, t.Cell.Counters.Claims(ClaimStatus.TaskAlreadyBound));
        Assert.Equal(committed, t.Cell.Counters.Transactions(TransactionStatus.Committed));
        Assert.True(t.Cell.TryGetAllocation(task, out var still));
        Assert.Equal(live.Generation, still.Generation);
    }

    [Fact]
    public void A_binding_released_from_outside_is_requeued_and_bound_again_at_a_higher_generation()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }));
        t.Add(Node("n0", cores: 4));
        var job = t.Submit(Job(1, tasks: 2, cores: 1));
        t.Settle();
        var task = new TaskId(1, 1);
        Assert.True(t.Cell.TryGetAllocation(task, out var before));
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(task));

        t.Engine.RequeueReleased([task, new TaskId(99, 0)]); // an unknown task is ignored

        t.Settle();
        Assert.Equal(2, t.Status(job).Bound);
        Assert.True(t.Cell.TryGetAllocation(task, out var after));
        Assert.True(after.Generation > before.Generation, $"generation {after.Generation} after {before.Generation}");
        Assert.Equal(0, t.Cell.Counters.Claims(ClaimStatus.TaskAlreadyBound));
    }
}
