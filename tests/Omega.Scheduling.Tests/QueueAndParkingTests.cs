using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Queues (bounds, fairness, back-off) and the attempt limit.</summary>
public sealed class QueueAndParkingTests
{
    [Fact]
    public void A_job_that_never_fits_backs_off_exponentially_and_is_parked_at_the_attempt_limit_with_its_reason()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions
        {
            Name = "batch", MaxAttempts = 3, Backoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromSeconds(1),
        }));
        // Submitted before the nodes exist (once they do, admission refuses a job larger than every node outright).
        var job = t.Submit(Job(1, cores: 8));
        t.Add(Node("n0", cores: 4));
        t.Add(Node("n1", cores: 4));
        var w = t.Worker("batch");

        Assert.Equal(StepOutcome.Requeued, w.Step());
        Assert.Equal((JobPhase.Queued, 1), (t.Status(job).Phase, t.Status(job).Attempts));
        Assert.Equal(StepOutcome.Idle, w.Step());                    // backing off: 100 ms
        t.Time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(StepOutcome.Idle, w.Step());
        t.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(StepOutcome.Requeued, w.Step());                // attempt 2, then 200 ms
        t.Time.Advance(TimeSpan.FromMilliseconds(150));
        Assert.Equal(StepOutcome.Idle, w.Step());
        t.Time.Advance(TimeSpan.FromMilliseconds(50));
        Assert.Equal(StepOutcome.Parked, w.Step());                  // attempt 3 = MaxAttempts

        var s = t.Status(job);
        Assert.Equal(JobPhase.Parked, s.Phase);
        Assert.Equal(3, s.Attempts);
        Assert.Equal("1 task(s) unplaced after 3 attempts; no feasible node for 1 task(s) on the last attempt: 2 of 2 nodes considered rejected for InsufficientResources", s.ParkedReason);
        Assert.Equal(0, t.Engine.QueueDepth("batch"));
        t.Time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(StepOutcome.Idle, w.Step());                    // parked means parked: never retried, never spinning
        Assert.StartsWith("parked: ", t.Engine.Explain(new TaskId(1, 0))!.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void A_full_queue_rejects_with_a_reason_and_accepts_again_when_drained()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch", QueueCapacity = 2 }));
        t.Add(Node("n0", cores: 64, memGiB: 256));
        t.Submit(Job(1));
        t.Submit(Job(2));

        var r = t.Engine.Submit(Job(3));
        Assert.Equal(EnqueueStatus.QueueFull, r.Status);
        Assert.False(r.Accepted);
        Assert.Contains("full", r.Reason, StringComparison.Ordinal);
        Assert.False(t.Engine.TryGetJob(new JobId(3), out _));       // not half-registered
        Assert.Equal(2, t.Engine.QueueDepth("batch"));

        Assert.Equal(StepOutcome.Placed, t.Worker("batch").Step());
        Assert.True(t.Engine.Submit(Job(3)).Accepted);                // the same id is accepted once there is room
    }

    [Fact]
    public void Invalid_duplicate_and_misrouted_jobs_are_rejected_with_reasons()
    {
        using var t = new TestEngine(o => o.Kinds.Add(new SchedulerKindOptions { Name = "batch" }));
        t.Add(Node("n0"));
        var bad = new[]
        {
            new JobSpec(new JobId(1), default, 0, 0, R(1)),
            new JobSpec(new JobId(2), default, 0, 1_000_001, R(1)),
            new JobSpec(new JobId(3), default, 0, 1, new ResourceVector(-1, 0)),
            new JobSpec(new JobId(4), default, 0, 1, ResourceVector.Zero),
            new JobSpec(new JobId(5), new TenantId(-1), 0, 1, R(1)),
            new JobSpec(new JobId(6), default, 0, 1, new ResourceVector(1, long.MaxValue)),
            new JobSpec(new JobId(7), new TenantId(2_000_000_000), 0, 1, R(1)),
            new JobSpec(new JobId(8), default, 0, 1, R(1000)),
        };
        var expected = new[]
        {
            EnqueueStatus.InvalidJob, EnqueueStatus.InvalidJob, EnqueueStatus.InvalidResources, EnqueueStatus.InvalidResources,
            EnqueueStatus.InvalidJob, EnqueueStatus.InvalidResources, EnqueueStatus.UnknownTenant, EnqueueStatus.RequestExceedsLargestNode,
        };
        for (int i = 0; i < bad.Length; i++)
        {
            var j = bad[i];
            var r = t.Engine.Submit(j);
            Assert.Equal(expected[i], r.Status);
            Assert.False(string.IsNullOrWhiteSpace(r.Reason));
            Assert.False(t.Engine.TryGetJob(j.Id, out _));
        }
        Assert.Equal(0, t.Engine.QueueDepth("batch"));

        t.Submit(Job(10));
        Assert.Equal(EnqueueStatus.DuplicateJob, t.Engine.Submit(Job(10, cores: 2)).Status);
        Assert.Equal(EnqueueStatus.UnknownScheduler, t.Engine.Submit(Job(11), "nope").Status);
        Assert.Equal(1, t.Engine.QueueDepth("batch"));
    }

    [Fact]
    public void Dequeue_is_fair_across_tenants_within_a_band_and_serves_higher_bands_first()
    {
        var time = new FakeTimeProvider();
        var q = new JobQueue(100, time);
        JobState S(long id, int tenant, int priority = 0) => new(Job(id, tenant: tenant, priority: priority), "batch", time.GetTimestamp());
        for (int i = 0; i < 5; i++) Assert.Equal(EnqueueStatus.Accepted, q.Enqueue(S(100 + i, tenant: 1)));   // a flood from tenant 1
        for (int i = 0; i < 2; i++) q.Enqueue(S(200 + i, tenant: 2));
        q.Enqueue(S(300, tenant: 3));
        q.Enqueue(S(900, tenant: 1, priority: 10));                                                        // production band, submitted last
        q.Enqueue(S(500, tenant: 2, priority: 5));                                                         // middle band
        var delayed = S(400, tenant: 4, priority: 10);
        q.Enqueue(delayed, time.GetTimestamp() + time.TimestampFrequency);                                // due in 1 s
        Assert.Equal(11, q.Count);

        var order = new List<long>();
        time.Advance(TimeSpan.FromMilliseconds(10));
        while (q.TryDequeue(out var job, out var waited))
        {
            order.Add(job.Spec.Id.Value);
            Assert.Equal(TimeSpan.FromMilliseconds(10), waited);
        }
        Assert.Equal(new long[] { 900, 500, 100, 200, 300, 101, 201, 102, 103, 104 }, order);
        Assert.Equal(1, q.Count);                                    // the delayed job is still waiting
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(q.TryDequeue(out var late, out var lateWait));
        Assert.Same(delayed, late);
        Assert.Equal(TimeSpan.Zero, lateWait);                       // queue age restarts when the back-off ends
        Assert.Equal(0, q.Count);
    }

    [Fact]
    public void Queue_bound_counts_delayed_jobs()
    {
        var time = new FakeTimeProvider();
        var q = new JobQueue(2, time);
        JobState S(long id) => new(Job(id), "batch", time.GetTimestamp());
        Assert.Equal(EnqueueStatus.Accepted, q.Enqueue(S(1), time.GetTimestamp() + time.TimestampFrequency));
        Assert.Equal(EnqueueStatus.Accepted, q.Enqueue(S(2)));
        Assert.Equal(EnqueueStatus.QueueFull, q.Enqueue(S(3)));
        Assert.True(q.TryDequeue(out var j, out _));
        Assert.Equal(2, j.Spec.Id.Value);
        Assert.False(q.TryDequeue(out _, out _));
        Assert.Equal(EnqueueStatus.Accepted, q.Enqueue(S(3)));
    }
}
