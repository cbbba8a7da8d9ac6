using System.Diagnostics;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Scheduling.Pipeline;

namespace Omega.Dst.Tests;

/// <summary>
/// The root cause of the 13 harness failures in the first 1,000-seed unified run (perf-reports/2026-12-06-dst-unified-seeds):
/// two overlapping policy commands, where the second waited on <c>PolicyRevisions</c>' gate. A <c>SemaphoreSlim</c>
/// resumed that waiter on the thread pool, so its object write and durability wait ran off the simulation's thread. The
/// gate now hands itself to the next waiter on the releasing thread: the second command's write happens inside the
/// simulated disk's flush that made the first one durable, on the same thread.
/// </summary>
public sealed class PolicyGateDeterminismTests
{
    [Fact]
    public async Task A_policy_command_waiting_on_another_resumes_on_the_thread_that_finished_the_first()
    {
        var prior = SynchronizationContext.Current;
        // As the simulation runs: no context, so a completion's continuation may run inline (a test runner's context
        // would be posted to instead, which is not what the simulation exercises).
        SynchronizationContext.SetSynchronizationContext(null);
        try
        {
            var time = new SimTime(new DateTimeOffset(2027, 1, 1, 0, 0, 0, TimeSpan.Zero));
            var disk = new SimDisk();
            using var cell = new Cell(new CellOptions { Name = "gate", Time = time }, disk.Journal());
            disk.Flush();
            var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time }, disk);
            using var policies = new PolicyRevisions(store, new PolicySource(), time);
            Assert.True(PolicyRevisions.TryParse("{\"weights\":{\"bin-packing\":3}}", out var a, out var e1), e1);
            Assert.True(PolicyRevisions.TryParse("{\"weights\":{\"bin-packing\":7}}", out var b, out var e2), e2);
            await Stage(policies, a, disk, 1);
            await Stage(policies, b, disk, 2);

            disk.Thread = Environment.CurrentManagedThreadId;
            var first = policies.PromoteAsync(1).AsTask();  // holds the gate, waits for its pointer write to be durable
            var second = policies.PromoteAsync(2).AsTask(); // waits on the gate
            Assert.False(first.IsCompleted);
            Assert.False(second.IsCompleted);
            int appended = disk.Count;

            // The flush completes the first command; its release must run the second one's write right here.
            disk.Flush();
            Assert.True(first.IsCompleted);
            Assert.Equal(PolicyStatus.Ok, (await first).Status); // completed: the await does not yield
            // Without the fix the second command resumes on a pool thread some time later: wait (bounded, never a
            // sleep) for its write to appear, then the thread check below fails.
            var sw = Stopwatch.StartNew();
            while (disk.Count == appended && sw.Elapsed < TimeSpan.FromSeconds(30)) Thread.SpinWait(1000);
            Assert.True(disk.Count > appended, "the second policy command never wrote its pointer");
            Assert.Equal(0, disk.OffThread);
            disk.Flush();
            Assert.True(second.IsCompleted, "the second command did not complete when its write became durable");
            Assert.Equal(PolicyStatus.Ok, (await second).Status);
            Assert.Equal(2, policies.ActiveRevision);
            Assert.Equal(0, disk.OffThread);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(prior);
        }
    }

    private static async Task Stage(PolicyRevisions policies, SchedulerPolicySettings settings, SimDisk disk, int expected)
    {
        var staged = policies.StageAsync(settings).AsTask();
        disk.Flush();
        Assert.True(staged.IsCompleted, "a stage did not complete when its write became durable");
        Assert.Equal(expected, (await staged).Revision);
    }
}
