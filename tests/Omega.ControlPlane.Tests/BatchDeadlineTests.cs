using Microsoft.Extensions.Time.Testing;
using Omega.Cells;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Issue 13: batch jobs with deadlines (the drill's fraud jobs). The workload controller reports
/// <c>DeadlineExceeded</c> from <c>spec.deadlineSeconds</c> and the creation time, on virtual time: True once the
/// deadline passes with replicas unfinished (and still True after a late finish), False <c>CompletedInTime</c> when every
/// replica finished first. A deadline on a service is a typed validation error.
/// </summary>
public sealed class BatchDeadlineTests
{
    private static Workload Batch(string name, int replicas, double deadline)
    {
        var w = Objects.Workload(name, replicas, type: WorkloadType.Batch);
        w.Spec.DeadlineSeconds = deadline;
        return w;
    }

    private static string? Deadline(Plane plane, string name) => Conditions.Find(plane.Get(name).Status.Conditions, "DeadlineExceeded") is { } c ? $"{c.Status}/{c.Reason}" : null;

    [Fact]
    public async Task A_batch_job_unfinished_at_its_deadline_is_reported_as_a_miss_that_a_late_finish_does_not_undo_and_one_finished_in_time_is_not()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        Assert.True((await plane.Store.CreateAsync(Batch("late", 4, 20))).IsOk);
        Assert.True((await plane.Store.CreateAsync(Batch("quick", 2, 20))).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Bindings(plane.Get("late")).Count == 4 && plane.Bindings(plane.Get("quick")).Count == 2));
        Assert.True(await plane.RunUntil(() => Deadline(plane, "late") == "False/Running"));

        // "quick" finishes well before its deadline; "late" finishes half of its replicas.
        foreach (var a in plane.Bindings(plane.Get("quick"))) Assert.Equal(ReleaseStatus.Released, plane.Engine.CompleteTask(a.Task));
        foreach (var a in plane.Bindings(plane.Get("late")).Take(2)) Assert.Equal(ReleaseStatus.Released, plane.Engine.CompleteTask(a.Task));
        Assert.True(await plane.RunUntil(() => Deadline(plane, "quick") == "False/CompletedInTime"), Deadline(plane, "quick"));
        var quickDone = time.GetUtcNow();
        Assert.True(quickDone < plane.Get("late").Metadata.CreationTimestamp!.Value.AddSeconds(20));
        Assert.Equal("False/Running", Deadline(plane, "late"));

        // The deadline passes: "late" is a miss (the controller looks again at that instant: nothing else changes here).
        Assert.True(await plane.RunUntil(() => Deadline(plane, "late") == "True/PastDeadline"), Deadline(plane, "late"));
        Assert.True(time.GetUtcNow() >= plane.Get("late").Metadata.CreationTimestamp!.Value.AddSeconds(20));
        Assert.Equal(2, plane.Get("late").Status.Succeeded);

        // A late finish completes the job but does not undo the miss; the job finished in time stays a hit.
        foreach (var a in plane.Bindings(plane.Get("late"))) Assert.Equal(ReleaseStatus.Released, plane.Engine.CompleteTask(a.Task));
        Assert.True(await plane.RunUntil(() => plane.Get("late").Status.Succeeded == 4));
        Assert.True(await plane.RunUntil(() => Conditions.IsTrue(plane.Get("late").Status.Conditions, "Available")));
        Assert.Equal("True/PastDeadline", Deadline(plane, "late"));
        Assert.Equal("False/CompletedInTime", Deadline(plane, "quick"));
        Assert.Empty(cell.Audit());
    }

    [Fact]
    public async Task A_deadline_on_a_service_or_out_of_range_is_rejected_as_invalid()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        var service = Objects.Workload("svc", 2);
        service.Spec.DeadlineSeconds = 30;
        Assert.Equal(ObjectStatus.Invalid, (await plane.Store.CreateAsync(service)).Status);
        Assert.Equal(ObjectStatus.Invalid, (await plane.Store.CreateAsync(Batch("zero", 2, 0))).Status);
        Assert.Equal(ObjectStatus.Invalid, (await plane.Store.CreateAsync(Batch("huge", 2, 86_401))).Status);
        Assert.True((await plane.Store.CreateAsync(Batch("ok", 2, 86_400))).IsOk);
    }
}
