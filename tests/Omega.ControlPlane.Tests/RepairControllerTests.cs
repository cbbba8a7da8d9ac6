using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>The repair controller: one test per repair kind, plus its rate limit, metric counts and audit log.</summary>
public sealed class RepairControllerTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly Cell _cell;
    private readonly ObjectStore _store;
    private readonly ManualControllerScheduler _scheduler;
    private readonly NodeId _n0;
    private readonly TenantId _t1;
    private readonly SchedulerLease _lease;

    public RepairControllerTests()
    {
        _cell = new Cell(new CellOptions { Time = _time });
        _n0 = _cell.AddNode(new NodeSpec("n0", new ResourceVector(16000, 64L << 30)));
        _t1 = _cell.CreateTenant("t1");
        _store = new ObjectStore(_cell, new ObjectStoreOptions { Time = _time });
        _scheduler = new ManualControllerScheduler(_time);
        _lease = _cell.AcquireLease("s", TimeSpan.FromDays(1)).Lease;
    }

    public void Dispose()
    {
        _store.Dispose();
        _cell.Dispose();
    }

    private async Task<Workload> CreateWorkload(string name, bool finalizer = false)
    {
        var w = Objects.Workload(name);
        if (finalizer) w.Metadata.Finalizers.Add(Workload.BindingsFinalizer);
        var r = await _store.CreateAsync(w);
        Assert.True(r.IsOk, r.Message);
        return (Workload)r.Object!;
    }

    private void Commit(TaskId task, ClaimKind kind = ClaimKind.Bind)
    {
        var tx = new Transaction(_lease);
        tx.Add(new Claim(task, _n0, new ResourceVector(1000, 1 << 20), 0, _t1, Kind: kind, Ttl: kind == ClaimKind.Reserve ? TimeSpan.FromMinutes(30) : default));
        Assert.Equal(TransactionStatus.Committed, _cell.Commit(tx).Status);
    }

    [Fact]
    public async Task Leaked_reservations_and_orphan_bindings_of_a_deleted_workload_are_released_after_a_confirming_sweep_and_recorded()
    {
        var gone = await CreateWorkload("gone");
        var live = await CreateWorkload("live");
        Commit(WorkloadController.TaskFor(gone.Metadata.Uid, 0));
        Commit(WorkloadController.TaskFor(gone.Metadata.Uid, 1), ClaimKind.Reserve);
        Commit(WorkloadController.TaskFor(live.Metadata.Uid, 0));
        Commit(WorkloadController.TaskFor(live.Metadata.Uid, 1), ClaimKind.Reserve);
        Commit(new TaskId(5, 0)); // not a control-plane task: no known owner, never touched
        live.Status.Replicas = [new ReplicaAssignment(0, 0)]; // the live workload's status tracks its binding's serial
        Assert.True((await _store.UpdateStatusAsync(live)).IsOk);
        Assert.True((await _store.DeleteAsync(gone.Key)).IsOk);

        using var repair = new RepairController(_store, _cell, _scheduler);
        Assert.Equal(0, await repair.SweepAsync(default)); // first sight: suspects only
        Assert.Equal((3, 2), (_cell.AllocationCount, _cell.ReservationCount));
        Assert.Equal(2, await repair.SweepAsync(default));
        Assert.False(_cell.TryGetAllocation(WorkloadController.TaskFor(gone.Metadata.Uid, 0), out _));
        Assert.False(_cell.TryGetReservation(WorkloadController.TaskFor(gone.Metadata.Uid, 1), out _));
        Assert.True(_cell.TryGetAllocation(WorkloadController.TaskFor(live.Metadata.Uid, 0), out _));
        Assert.True(_cell.TryGetReservation(WorkloadController.TaskFor(live.Metadata.Uid, 1), out _));
        Assert.True(_cell.TryGetAllocation(new TaskId(5, 0), out _));
        Assert.Equal(1, repair.Actions(RepairKind.OrphanBinding));
        Assert.Equal(1, repair.Actions(RepairKind.LeakedReservation));
        Assert.Equal(1, _cell.ReservationsReleased(ReservationReleaseReason.Repaired));
        Assert.Equal([RepairKind.LeakedReservation, RepairKind.OrphanBinding], repair.History.Select(h => h.Kind));
        Assert.All(repair.History, h => Assert.Contains($"uid {gone.Metadata.Uid}", h.Detail, StringComparison.Ordinal));
        Assert.Equal(0, await repair.SweepAsync(default)); // level-triggered: nothing left to do
        Assert.Empty(_cell.Audit());
    }

    [Fact]
    public async Task A_live_workloads_binding_whose_serial_its_status_neither_runs_nor_retires_is_released_after_a_confirming_sweep()
    {
        // What a deposed scheduler leaves behind: it bound serial 2 after the controller had retired and forgotten it.
        var w = await CreateWorkload("web");
        w.Status.Replicas = [new ReplicaAssignment(0, 0)];
        w.Status.Retired = [1];
        Assert.True((await _store.UpdateStatusAsync(w)).IsOk);
        Commit(WorkloadController.TaskFor(w.Metadata.Uid, 0)); // running serial: kept
        Commit(WorkloadController.TaskFor(w.Metadata.Uid, 1)); // retiring serial: the workload controller's to release
        Commit(WorkloadController.TaskFor(w.Metadata.Uid, 2)); // untracked
        using var repair = new RepairController(_store, _cell, _scheduler);
        Assert.Equal(0, await repair.SweepAsync(default)); // first sight: a suspect only
        Assert.Equal(1, await repair.SweepAsync(default));
        Assert.True(_cell.TryGetAllocation(WorkloadController.TaskFor(w.Metadata.Uid, 0), out _));
        Assert.True(_cell.TryGetAllocation(WorkloadController.TaskFor(w.Metadata.Uid, 1), out _));
        Assert.False(_cell.TryGetAllocation(WorkloadController.TaskFor(w.Metadata.Uid, 2), out _));
        Assert.Equal(1, repair.Actions(RepairKind.UntrackedBinding));
        Assert.Contains("neither runs nor retires", repair.History.Single().Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Repairs_are_rate_limited_and_the_rest_waits_for_later_sweeps()
    {
        var gone = await CreateWorkload("gone");
        for (int s = 0; s < 5; s++) Commit(WorkloadController.TaskFor(gone.Metadata.Uid, s));
        Assert.True((await _store.DeleteAsync(gone.Key)).IsOk);
        using var repair = new RepairController(_store, _cell, _scheduler, new RepairControllerOptions { Rate = 1, Burst = 2, Interval = TimeSpan.FromSeconds(1) });
        repair.Start();
        _scheduler.RunUntilIdle();                              // sweep 1: suspects
        _time.Advance(TimeSpan.FromSeconds(1));
        _scheduler.RunUntilIdle();                              // sweep 2: the bucket holds 2
        await WaitFor(() => repair.Actions(RepairKind.OrphanBinding) == 2);
        Assert.Equal(3, _cell.AllocationCount);
        Assert.Equal(3, repair.Deferred);
        for (int i = 0; i < 3; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));              // one token a second
            _scheduler.RunUntilIdle();
            int expected = 3 + i;
            await WaitFor(() => repair.Actions(RepairKind.OrphanBinding) == expected);
        }
        Assert.Equal(0, _cell.AllocationCount);
    }

    [Fact]
    public async Task An_object_terminating_past_the_deadline_has_its_cleanup_finished_and_its_finalizer_removed()
    {
        var w = await CreateWorkload("stuck", finalizer: true);
        Commit(WorkloadController.TaskFor(w.Metadata.Uid, 0));
        Commit(WorkloadController.TaskFor(w.Metadata.Uid, 1), ClaimKind.Reserve);
        var del = await _store.DeleteAsync(w.Key);
        Assert.False(del.Removed); // the finalizer holds it; no workload controller runs to clear it
        using var repair = new RepairController(_store, _cell, _scheduler, new RepairControllerOptions { FinalizerDeadline = TimeSpan.FromMinutes(5) });
        Assert.Equal(0, await repair.SweepAsync(default));
        _time.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal(0, await repair.SweepAsync(default));      // not yet past the deadline
        Assert.NotNull(_store.Get<Workload>("t1", "stuck"));
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await repair.SweepAsync(default));
        Assert.Null(_store.Get<Workload>("t1", "stuck"));
        Assert.Equal(0, _cell.AllocationCount);
        Assert.Equal(0, _cell.ReservationCount);
        var rec = Assert.Single(repair.History);
        Assert.Equal(RepairKind.StaleFinalizer, rec.Kind);
        Assert.Contains("released 2", rec.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_whose_owner_is_gone_is_deleted_and_one_unplaced_past_the_deadline_is_marked_stuck()
    {
        var live = await CreateWorkload("live");
        var orphan = new SchedulingRequest { Spec = new SchedulingRequestSpec { Workload = "gone", Slots = [0] } };
        orphan.Metadata.Name = "gone-0";
        orphan.Metadata.Tenant = "t1";
        orphan.Metadata.OwnerReferences.Add(new OwnerReference(Workload.KindName, "gone", 999_999));
        Assert.True((await _store.CreateAsync(orphan)).IsOk);
        var pending = new SchedulingRequest { Spec = new SchedulingRequestSpec { Workload = "live", Slots = [0, 1] } };
        pending.Metadata.Name = "live-0";
        pending.Metadata.Tenant = "t1";
        pending.Metadata.OwnerReferences.Add(new OwnerReference(Workload.KindName, "live", live.Metadata.Uid));
        var created = await _store.CreateAsync(pending);
        Assert.True(created.IsOk);
        pending = (SchedulingRequest)created.Object!;
        pending.Status.PendingReason = "no node has label zone=z";   // what its scheduler reported (status is written apart)
        Assert.True((await _store.UpdateStatusAsync(pending)).IsOk);

        using var repair = new RepairController(_store, _cell, _scheduler, new RepairControllerOptions { StuckDeadline = TimeSpan.FromMinutes(10) });
        Assert.Equal(0, await repair.SweepAsync(default));
        Assert.Equal(1, await repair.SweepAsync(default));
        Assert.Null(_store.Get<SchedulingRequest>("t1", "gone-0"));
        Assert.False(Conditions.IsTrue(_store.Get<SchedulingRequest>("t1", "live-0")!.Status.Conditions, "Stuck"));
        _time.Advance(TimeSpan.FromMinutes(11));
        Assert.Equal(1, await repair.SweepAsync(default));
        var stuck = Conditions.Find(_store.Get<SchedulingRequest>("t1", "live-0")!.Status.Conditions, "Stuck")!;
        Assert.Equal(ConditionStatus.True, stuck.Status);
        Assert.Contains("no node has label zone=z", stuck.Message, StringComparison.Ordinal);
        Assert.Equal(0, await repair.SweepAsync(default)); // marked once
        Assert.Equal(1, repair.Actions(RepairKind.OrphanRequest));
        Assert.Equal(1, repair.Actions(RepairKind.StuckRequest));
    }

    private static async Task WaitFor(Func<bool> done)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!done() && DateTime.UtcNow < until) await Task.Delay(5);
        Assert.True(done());
    }
}
