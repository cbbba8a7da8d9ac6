using Omega.Cells;
using static Omega.Simulation.Tests.TestWorlds;

namespace Omega.Simulation.Tests;

/// <summary>Each rule of the paper's scheduler model, on tiny hand-built cells whose outcome is worked out by hand.</summary>
public class ModelRuleTests
{
    [Fact]
    public void Decision_time_is_t_job_plus_t_task_times_unplaced_tasks()
    {
        // One 4-core machine, a job of 10 one-core tasks that never end: the first attempt places 4, then nothing fits.
        var config = Cell(1, 4, 40, new SchedulerSpec("s", JobTime: 2, TaskTime: 0.5)) with { Jobs = [Job(0, 10, 1, "s")] };
        var a = AttemptsOf(Simulator.Run(config), "s");

        Assert.Equal(0, a[0].Start);
        Assert.Equal(10, a[0].UnplacedAtStart);
        Assert.Equal(2 + 0.5 * 10, a[0].DecisionTime);
        Assert.Equal(4, a[0].Applied);
        Assert.Equal(6, a[1].UnplacedAtStart);
        Assert.Equal(2 + 0.5 * 6, a[1].DecisionTime);
    }

    [Fact]
    public void Busyness_is_decision_time_over_simulated_time()
    {
        var config = Cell(1, 4, 100, new SchedulerSpec("s", JobTime: 2, TaskTime: 0.5)) with { Jobs = [Job(0, 2, 1, "s"), Job(50, 1, 1, "s")] };
        var m = Simulator.Run(config)["s"];
        Assert.Equal((3.0 + 2.5) / 100, m.Busyness, 12);
        Assert.Equal(2, m.Attempts);
    }

    [Fact]
    public void A_job_with_unplaced_tasks_rejoins_the_back_of_the_queue_after_one_second()
    {
        // Job 0 cannot be fully placed (5 one-core tasks, one 4-core machine); job 1 arrives while job 0 is decided.
        var config = Cell(1, 4, 30, new SchedulerSpec("s", JobTime: 1, TaskTime: 0)) with
        {
            Jobs = [Job(0, 5, 1, "s", duration: 100), Job(0.5, 1, 0, "s")],
        };
        var a = AttemptsOf(Simulator.Run(config), "s");
        // t=0..1 job 0 (places 4); job 1 was queued first, so it goes at t=1..2; job 0 rejoins at 1 + 1 s and goes at t=2.
        Assert.Equal((0L, 0.0), (a[0].Job, a[0].Start));
        Assert.Equal((1L, 1.0), (a[1].Job, a[1].Start));
        Assert.Equal((0L, 2.0), (a[2].Job, a[2].Start));
        Assert.Equal(a[2].Start + a[2].DecisionTime + 1.0, a[3].Start); // alone in the queue: exactly 1 s after its commit
    }

    [Fact]
    public void Retry_delay_is_configurable_and_applies_between_commit_and_the_next_attempt()
    {
        var config = Cell(1, 1, 30, new SchedulerSpec("s", JobTime: 0.25, TaskTime: 0)) with { Jobs = [Job(0, 2, 1, "s")], RetryDelay = 3 };
        var a = AttemptsOf(Simulator.Run(config), "s");
        Assert.Equal(0.25 + 3, a[1].Start);
        Assert.Equal(2 * (0.25 + 3), a[2].Start);
    }

    [Theory]
    [InlineData(ConflictDetection.Coarse, 1)]
    [InlineData(ConflictDetection.Fine, 0)]
    public void Coarse_conflicts_on_any_placement_since_the_sync_fine_only_without_room(ConflictDetection detection, int expectedConflicts)
    {
        // One 4-core machine with room for both tasks. "slow" syncs at t=0 and commits at t=10; "fast" places on the same
        // machine at t=1. Coarse: slow's claim is stale (the node's version moved). Fine: it still fits, no conflict.
        var config = Cell(1, 4, 60,
            new SchedulerSpec("slow", 10, 0, CommitMode.Incremental, detection),
            new SchedulerSpec("fast", 1, 0, CommitMode.Incremental, detection)) with
        {
            Jobs = [Job(0, 1, 1, "slow"), Job(0, 1, 1, "fast")],
        };
        var r = Simulator.Run(config);
        var slow = AttemptsOf(r, "slow");
        Assert.Equal(expectedConflicts, r["slow"].ConflictedTransactions);
        Assert.Equal(0, r["fast"].ConflictedTransactions);
        if (detection == ConflictDetection.Coarse)
        {
            Assert.Equal(ClaimStatus.NodeVersionChanged, slow[0].FirstRejection);
            Assert.Equal(11, slow[1].Start); // retried 1 s after the conflicting commit, then placed
            Assert.Equal(TransactionStatus.Committed, slow[1].Status);
        }
        else
        {
            Assert.Single(slow);
            Assert.Equal(TransactionStatus.Committed, slow[0].Status);
        }
        Assert.Equal(1, r["slow"].JobsFullyPlaced);
    }

    [Fact]
    public void Coarse_does_not_count_task_completions_as_conflicts()
    {
        // "fast" places a 2 s task at t=1. "slow" syncs at t=2 (after that placement), the task completes at t=3 (a
        // release on the node), and slow commits at t=12: no placement since its sync, so no coarse conflict.
        var config = Cell(1, 4, 60,
            new SchedulerSpec("slow", 10, 0, CommitMode.Incremental, ConflictDetection.Coarse),
            new SchedulerSpec("fast", 1, 0, CommitMode.Incremental, ConflictDetection.Coarse)) with
        {
            Jobs = [Job(0, 1, 1, "fast", duration: 2), Job(2, 1, 1, "slow")],
        };
        var r = Simulator.Run(config);
        Assert.Equal(0, r["slow"].ConflictedTransactions);
        Assert.Equal(1, r["slow"].CleanTransactions);
        Assert.Equal(0.25, r.FinalCpuUtilization, 12); // fast's task was released, slow's is running
    }

    [Fact]
    public void Fine_conflicts_when_the_node_no_longer_has_room()
    {
        var config = Cell(1, 2, 60,
            new SchedulerSpec("slow", 10, 0),
            new SchedulerSpec("fast", 1, 0)) with
        {
            Jobs = [Job(0, 1, 2, "slow"), Job(0, 1, 1, "fast", duration: 20)],
        };
        var r = Simulator.Run(config);
        var slow = AttemptsOf(r, "slow");
        Assert.Equal(ClaimStatus.InsufficientResources, slow[0].FirstRejection);
        Assert.Equal(1, r["slow"].ConflictedTransactions);
        // Until fast's task ends at t=21 the private copy shows no room: attempts with nothing to commit are not transactions.
        Assert.All(slow.Skip(1).Where(a => a.Start + a.DecisionTime < 21), a => Assert.Equal(0, a.Claims));
        Assert.Equal(slow.Count(a => a.Claims > 0), r["slow"].Transactions);
        Assert.Equal(1, r["slow"].JobsFullyPlaced);
    }

    [Theory]
    [InlineData(CommitMode.AllOrNothing)]
    [InlineData(CommitMode.Incremental)]
    public void Gang_commit_rolls_back_everything_on_the_first_conflict_incremental_keeps_what_validates(CommitMode mode)
    {
        // Two 1-core machines. "gang" syncs at t=0 and places its 2 tasks on both; "fast" takes one machine at t=1 for 20 s.
        var config = Cell(2, 1, 100,
            new SchedulerSpec("gang", 10, 0, mode),
            new SchedulerSpec("fast", 1, 0)) with
        {
            Jobs = [Job(0, 2, 1, "gang"), Job(0, 1, 1, "fast", duration: 20)],
        };
        var r = Simulator.Run(config);
        var g = AttemptsOf(r, "gang");
        Assert.Equal(2, g[0].Claims);
        Assert.Empty(r.AuditProblems);
        var job = r.Jobs.Single(j => j.Scheduler == "gang");
        if (mode == CommitMode.AllOrNothing)
        {
            Assert.Equal(TransactionStatus.Rejected, g[0].Status);
            Assert.Equal(0, g[0].Applied);
            // While only one machine is free the gang does not fit the private copy, so it is not even submitted.
            Assert.All(g.Skip(1).Where(a => a.Start < 21), a => Assert.Equal(0, a.Claims));
            Assert.Equal(2, r["gang"].ClaimsApplied);
        }
        else
        {
            Assert.Equal(TransactionStatus.PartiallyCommitted, g[0].Status);
            Assert.Equal(1, g[0].Applied);
            Assert.Equal(1, g[1].UnplacedAtStart);
        }
        Assert.Equal(JobOutcome.FullyPlaced, job.Outcome);
        Assert.True(job.FullyPlaced > 21, "the second task only fits once fast's task has ended");
        Assert.Equal(1, r["gang"].ConflictedTransactions);
    }

    [Fact]
    public void A_job_is_abandoned_after_more_than_100_attempts_with_nothing_placed()
    {
        // The only core is taken forever at t=0; the victim job never places anything.
        var config = Cell(1, 1, 1000,
            new SchedulerSpec("blocker", 0, 0),
            new SchedulerSpec("s", 0.1, 0)) with
        {
            Jobs = [Job(0, 1, 1, "blocker"), Job(0.5, 1, 1, "s")],
        };
        var r = Simulator.Run(config);
        var job = r.Jobs.Single(j => j.Scheduler == "s");
        Assert.Equal(JobOutcome.AbandonedNothingPlaced, job.Outcome);
        Assert.Equal(101, job.Attempts);
        Assert.Equal(101, AttemptsOf(r, "s").Length);
        Assert.Equal(1, r["s"].JobsAbandoned);
        Assert.Equal(0, r["s"].JobsUnfinished);
    }

    [Fact]
    public void A_job_that_placed_something_is_abandoned_only_after_more_than_1000_attempts()
    {
        // One 1-core machine and a job of two 1-core endless tasks: it places one, then never the other.
        var config = Cell(1, 1, 3000, new SchedulerSpec("s", 0.1, 0.005)) with { Jobs = [Job(0, 2, 1, "s")] };
        var r = Simulator.Run(config);
        var job = r.Jobs.Single();
        Assert.Equal(JobOutcome.AbandonedTooManyAttempts, job.Outcome);
        Assert.Equal(1001, job.Attempts);
        Assert.Equal(1, job.Placed);
        Assert.Equal(1, r["s"].JobsAbandoned);
    }

    [Fact]
    public void Conflict_fraction_is_conflicted_over_clean_transactions_and_can_exceed_one()
    {
        // Coarse, one machine. "slow" (t_job 10) conflicts at t=10 (fast placed at t=1) and at t=21 (fast placed at
        // t=12.5), then commits cleanly at t=32: 2 conflicted / 1 clean = 2.
        var config = Cell(1, 8, 100,
            new SchedulerSpec("slow", 10, 0, CommitMode.Incremental, ConflictDetection.Coarse),
            new SchedulerSpec("fast", 1, 0, CommitMode.Incremental, ConflictDetection.Coarse)) with
        {
            Jobs = [Job(0, 1, 1, "slow"), Job(0, 1, 1, "fast"), Job(11.5, 1, 1, "fast")],
        };
        var r = Simulator.Run(config);
        var slow = r["slow"];
        Assert.Equal(2, slow.ConflictedTransactions);
        Assert.Equal(1, slow.CleanTransactions);
        Assert.Equal(2.0, slow.ConflictFraction);
        Assert.Equal(0.0, r["fast"].ConflictFraction);
        Assert.Equal([0.0, 11.0, 22.0], AttemptsOf(r, "slow").Select(a => a.Start));
        Assert.Equal(2, slow.RejectionsByReason[ClaimStatus.NodeVersionChanged]);
    }

    [Fact]
    public void Wait_times_measure_submission_to_first_attempt_and_to_fully_placed()
    {
        // One scheduler, t_job 4: job 0 at t=0 decides 0..4; job 1 arrives at t=1, first attempt at t=4, placed at t=8.
        var config = Cell(1, 4, 60, new SchedulerSpec("s", 4, 0)) with { Jobs = [Job(0, 1, 1, "s"), Job(1, 1, 1, "s")] };
        var m = Simulator.Run(config)["s"];
        Assert.Equal((0 + 3) / 2.0, m.WaitFirstAttemptMean);
        Assert.Equal(3, m.WaitFirstAttemptP90);
        Assert.Equal((4 + 7) / 2.0, m.WaitFullyPlacedMean);
        Assert.Equal(7, m.WaitFullyPlacedP90);
    }

    [Fact]
    public void Prefill_reaches_the_target_utilization_with_never_ending_tasks()
    {
        var config = Cell(100, 4, 10, new SchedulerSpec("s", 0.1, 0)) with { Prefill = new PrefillSpec(0.6, ResourceVector.FromCoresAndGiB(1, 4)) };
        var r = Simulator.Run(config);
        Assert.Equal(240, r.PrefilledTasks);
        Assert.Equal(0.6, r.PrefillCpuUtilization, 12);
        Assert.Equal(0.6, r.FinalCpuUtilization, 12);
        Assert.Empty(r.AuditProblems);
    }

    [Fact]
    public void Invalid_config_is_reported_as_one_line()
    {
        var bad = Cell(1, 4, 10, new SchedulerSpec("s", -1, 0));
        Assert.Contains("t_job", bad.Validate());
        Assert.Throws<ArgumentException>(() => new Simulator(bad));
        Assert.Contains("unknown scheduler", (Cell(1, 4, 10, new SchedulerSpec("s", 1, 0)) with { Jobs = [Job(0, 1, 1, "nope")] }).Validate());
    }
}
