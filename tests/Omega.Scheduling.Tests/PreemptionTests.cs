using Omega.Cells;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Preemption: who is evicted, who never is, and what happens to the victims afterwards.</summary>
public sealed class PreemptionTests
{
    private static TestEngine NewEngine(int maxAttempts = 3, Action<SchedulingOptions>? more = null) => new(o =>
    {
        o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = maxAttempts, Pipeline = () => FullScanPipeline() });
        more?.Invoke(o);
    });

    private static IReadOnlyList<Allocation> Sorted(Cell cell) => cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).ToList();

    [Fact]
    public void High_priority_task_evicts_the_lowest_priority_fewest_victims_and_they_are_placed_again_when_room_appears()
    {
        using var t = NewEngine(maxAttempts: 50);
        var n0 = t.Add(Node("n0", labels: Labels(("pool", "a"))));
        var n1 = t.Add(Node("n1", labels: Labels(("pool", "b"))));
        var n2 = t.Add(Node("n2", labels: Labels(("pool", "c"))));
        var smallLow = t.Submit(Job(10, tasks: 4, cores: 1, priority: 1, labels: Labels(("pool", "a"))));  // n0: four prio-1 tasks
        var bigLow = t.Submit(Job(11, tasks: 1, cores: 4, priority: 1, labels: Labels(("pool", "b"))));    // n1: one prio-1 task
        var mid = t.Submit(Job(12, tasks: 2, cores: 2, priority: 3, labels: Labels(("pool", "c"))));       // n2: two prio-3 tasks
        t.Settle();
        Assert.All(new[] { smallLow, bigLow, mid }, j => Assert.Equal(JobPhase.Placed, t.Status(j).Phase));
        Assert.True(t.Cell.TryGetAllocation(new TaskId(11, 0), out var original));

        // 3 cores at priority 9: n0 needs 3 prio-1 victims, n2 two prio-3 victims, n1 one prio-1 victim.
        var high = t.Submit(Job(20, cores: 3, priority: 9));
        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());

        Assert.True(t.Cell.TryGetAllocation(new TaskId(20, 0), out var placed));
        Assert.Equal(n1, placed.Node);
        Assert.False(t.Cell.TryGetAllocation(new TaskId(11, 0), out _));
        Assert.Equal(4, t.Cell.GetAllocationsOnNode(n0).Count);
        Assert.Equal(2, t.Cell.GetAllocationsOnNode(n2).Count);
        var rec = t.Engine.Explain(new TaskId(20, 0))!;
        Assert.Equal(new[] { new TaskId(11, 0) }, rec.ForTask(0)!.Value.Victims);
        Assert.Contains("preempting j11/0", rec.Explain(0), StringComparison.Ordinal);
        Assert.Equal(ClaimStatus.Applied, rec.ForTask(0)!.Value.Claim);

        // The victim's job is back in its queue with a higher generation.
        var victim = t.Status(bigLow);
        Assert.Equal(JobPhase.Queued, victim.Phase);
        Assert.Equal(1, victim.Generation);
        Assert.Equal(1, victim.Pending);
        Assert.Equal(1, t.Engine.QueueDepth("batch"));

        // No room yet: it tries, finds nothing (it may not preempt the priority-9 task), and backs off.
        t.Engine.RunUntilIdle();
        Assert.Equal(JobPhase.Queued, t.Status(bigLow).Phase);
        Assert.False(t.Cell.TryGetAllocation(new TaskId(11, 0), out _));

        // Room appears: the high-priority task completes; the victim is placed again, with a newer binding generation.
        Assert.Equal(ReleaseStatus.Released, t.Engine.CompleteTask(new TaskId(20, 0)));
        Assert.Equal(JobPhase.Completed, t.Status(high).Phase);
        t.Settle();
        var again = t.Status(bigLow);
        Assert.Equal(JobPhase.Placed, again.Phase);
        Assert.Equal(1, again.Generation);
        Assert.True(t.Cell.TryGetAllocation(new TaskId(11, 0), out var replaced));
        Assert.Equal(n1, replaced.Node);
        Assert.True(replaced.Generation > original.Generation);
        Assert.Equal(1, t.Engine.Explain(new TaskId(11, 0))!.JobGeneration);
        AssertEngineMatchesCell(t.Engine, t.Cell, [smallLow, bigLow, mid, high]);
    }

    [Fact]
    public void Victims_of_equal_or_higher_priority_are_never_chosen()
    {
        using var t = NewEngine();
        var n0 = t.Add(Node("n0"));
        var n1 = t.Add(Node("n1"));
        var five = t.Submit(Job(10, tasks: 4, cores: 1, priority: 5));
        var seven = t.Submit(Job(11, tasks: 4, cores: 1, priority: 7));
        t.Settle();
        Assert.Equal(8, t.Cell.AllocationCount);
        var before = Sorted(t.Cell);

        var equal = t.Submit(Job(20, cores: 1, priority: 5));
        var lower = t.Submit(Job(21, cores: 1, priority: 4));
        t.Settle();

        Assert.Equal(before, Sorted(t.Cell));
        foreach (var j in new[] { equal, lower })
        {
            var s = t.Status(j);
            Assert.Equal(JobPhase.Parked, s.Phase);
            Assert.Contains("InsufficientResources", s.ParkedReason, StringComparison.Ordinal);
        }
        Assert.Equal(0, t.Cell.Counters.Claims(ClaimStatus.VictimPriorityTooHigh));

        // A priority-6 task may take a priority-5 slot, but never a priority-7 one.
        var six = t.Submit(Job(22, cores: 1, priority: 6));
        t.Settle();
        Assert.Equal(JobPhase.Placed, t.Status(six).Phase);
        Assert.Equal(4, t.Cell.GetAllocations().Count(a => a.Priority == 7));
        Assert.Equal(3, t.Cell.GetAllocations().Count(a => a.Priority == 5));
        Assert.Empty(t.Cell.Audit());
        _ = (n0, n1, five, seven);
    }

    [Fact]
    public void Preemption_never_takes_a_protected_tenant_below_its_guarantee()
    {
        var protectedTenant = new TenantId(7);
        using var t = NewEngine(more: o => o.Guarantees[protectedTenant] = R(4, 0));
        var n0 = t.Add(Node("n0", cores: 6, memGiB: 64, labels: Labels(("pool", "a"))));
        var n1 = t.Add(Node("n1", cores: 4, memGiB: 64, labels: Labels(("pool", "b"))));
        // Tenant 7 holds six 1-core priority-1 tasks (2 cores above its guarantee); tenant 0 four priority-2 tasks.
        var guarded = t.Submit(Job(10, tasks: 6, cores: 1, priority: 1, tenant: 7, labels: Labels(("pool", "a"))));
        var plain = t.Submit(Job(11, tasks: 4, cores: 1, priority: 2, labels: Labels(("pool", "b"))));
        t.Settle();
        Assert.Equal(R(6, 6), t.Cell.GetTenantUsage(protectedTenant).Usage);

        // First: the lowest-priority victims are tenant 7's, and two of them can go without crossing the guarantee.
        var h1 = t.Submit(Job(20, cores: 2, priority: 9));
        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());
        Assert.True(t.Cell.TryGetAllocation(new TaskId(20, 0), out var a1));
        Assert.Equal(n0, a1.Node);
        Assert.Equal(4000, t.Cell.GetTenantUsage(protectedTenant).Usage.CpuMillis);

        // Then tenant 7 is at its guarantee: the next high-priority tasks take tenant 0's priority-2 tasks instead.
        var h2 = t.Submit(Job(21, cores: 2, priority: 9));
        var h3 = t.Submit(Job(22, cores: 2, priority: 9));
        // And once those are gone nothing may be taken: this one is parked rather than cross the guarantee.
        var h4 = t.Submit(Job(23, cores: 2, priority: 9));
        t.Settle();

        Assert.True(t.Cell.TryGetAllocation(new TaskId(21, 0), out var a2));
        Assert.True(t.Cell.TryGetAllocation(new TaskId(22, 0), out var a3));
        Assert.Equal(n1, a2.Node);
        Assert.Equal(n1, a3.Node);
        Assert.Equal(JobPhase.Parked, t.Status(h4).Phase);
        Assert.Equal(4000, t.Cell.GetTenantUsage(protectedTenant).Usage.CpuMillis);
        Assert.Equal(4, t.Status(guarded).Bound);
        Assert.Equal(0, t.Status(plain).Bound);
        Assert.Equal(JobPhase.Parked, t.Status(plain).Phase); // its victims found no room again within the attempt limit
        Assert.True(t.Status(plain).Generation >= 1);
        AssertEngineMatchesCell(t.Engine, t.Cell, [guarded, plain, h1, h2, h3, h4]);
    }

    [Fact]
    public void No_preemption_when_the_kind_disables_it()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 2, Preemption = false }));
        t.Add(Node("n0"));
        var low = t.Submit(Job(10, tasks: 4, cores: 1, priority: 0));
        t.Settle();
        var high = t.Submit(Job(20, cores: 1, priority: 10));
        t.Settle();
        Assert.Equal(JobPhase.Parked, t.Status(high).Phase);
        Assert.Equal(4, t.Status(low).Bound);
    }
}

/// <summary>CompleteTask releases only bindings this engine made.</summary>
public sealed class CompletionTests
{
    [Fact]
    public void CompleteTask_releases_only_the_binding_the_engine_made()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 1 }));
        var n0 = t.Add(Node("n0", cores: 4));
        var job = t.Submit(Job(5, tasks: 2, cores: 3));
        t.Settle();
        Assert.Equal(JobPhase.Parked, t.Status(job).Phase);  // one task placed, the other found no room
        Assert.Equal(1, t.Status(job).Bound);
        var bound = t.Cell.GetAllocations().Single().Task;
        var pending = new TaskId(5, 1 - bound.Index);

        // Another scheduler binds the pending task's id on its own; completing it through the engine must not free that.
        var other = t.Cell.AcquireLease("other", TimeSpan.FromHours(1)).Lease;
        var n1 = t.Add(Node("n1", cores: 4));
        Assert.True(CommitDirect(t.Cell, other, pending, n1, R(1, 1)).IsCommitted);
        Assert.Equal(ReleaseStatus.NotBound, t.Engine.CompleteTask(pending));
        Assert.True(t.Cell.TryGetAllocation(pending, out _));

        Assert.Equal(ReleaseStatus.Released, t.Engine.CompleteTask(bound));
        Assert.Equal(ReleaseStatus.NotBound, t.Engine.CompleteTask(bound)); // twice is harmless
        Assert.Equal(1, t.Status(job).Completed);
        Assert.Empty(t.Cell.Audit());
        _ = n0;
    }
}

public sealed class PreemptionQueueFullTests
{
    [Fact]
    public void A_victim_whose_queue_is_full_is_parked_with_a_reason_not_lost()
    {
        var hook = new HookFilter();
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions
        {
            Name = "batch", QueueCapacity = 2, Pipeline = () => DecisionRecordTests.PipelineWith(hook),
        }));
        t.Add(Node("n0", cores: 4));
        var low = t.Submit(Job(1, cores: 4, priority: 1));
        t.Settle();
        var high = t.Submit(Job(2, cores: 4, priority: 9));
        var filler = t.Submit(Job(3, cores: 1, priority: 0));
        // While the high job is being decided, the queue fills up to its bound.
        hook.OnFirstCall = () => t.Submit(Job(4, cores: 1, priority: 0));

        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());

        Assert.True(t.Cell.TryGetAllocation(new TaskId(2, 0), out _));
        var s = t.Status(low);
        Assert.Equal(JobPhase.Parked, s.Phase);
        Assert.Contains("queue", s.ParkedReason, StringComparison.Ordinal);
        Assert.Equal(1, s.Pending);
        Assert.Equal(1, s.Generation);
        _ = (high, filler);
    }
}

public sealed class CompletedRetentionTests
{
    [Fact]
    public void Completed_jobs_beyond_the_retention_are_forgotten_and_live_ones_never_are()
    {
        using var t = new TestEngine(o =>
        {
            o.Kinds.Add(new SchedulerKindOptions { Name = "batch" });
            o.CompletedJobRetention = 2;
        });
        t.Add(Node("n0", cores: 8));
        var jobs = Enumerable.Range(1, 4).Select(i => t.Submit(Job(i, cores: 1))).ToList();
        var live = t.Submit(Job(99, cores: 1));
        t.Settle();
        foreach (var j in jobs) Assert.Equal(ReleaseStatus.Released, t.Engine.CompleteTask(j.Task(0)));

        // The two oldest completions are forgotten; the two newest and the placed job stay queryable.
        Assert.False(t.Engine.TryGetJob(jobs[0].Id, out _));
        Assert.False(t.Engine.TryGetJob(jobs[1].Id, out _));
        Assert.True(t.Engine.TryGetJob(jobs[2].Id, out var s2));
        Assert.Equal(JobPhase.Completed, s2.Phase);
        Assert.True(t.Engine.TryGetJob(jobs[3].Id, out _));
        Assert.True(t.Engine.TryGetJob(live.Id, out var sl));
        Assert.Equal(JobPhase.Placed, sl.Phase);
        // A forgotten id may be submitted again.
        Assert.Equal(EnqueueStatus.Accepted, t.Engine.Submit(Job(1, cores: 1)).Status);
    }
}
