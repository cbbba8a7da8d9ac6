using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// An override's cell effect ends at its TTL even when the override sweep is stuck behind a slow disk (the durable
/// status writes of a sweep wait for the journal). Found by the deterministic simulation (main harness, seed 5062): a
/// sweep that waited seconds for durability first delayed every revert, then re-applied a quota raise with the clock it
/// had read before waiting, and new usage was admitted under an expired override.
/// </summary>
public sealed class OverrideExpiryTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly Cell _cell;
    private readonly ObjectStore _store;
    private readonly ManualControllerScheduler _scheduler;
    private readonly OverrideController _overrides;
    // While set, every object write's durability wait parks on it: the slow disk.
    private volatile TaskCompletionSource? _hold;

    public OverrideExpiryTests()
    {
        _cell = new Cell(new CellOptions { Time = _time });
        var disk = DurabilityWaiter.From((_, _) => _hold is { } h ? new ValueTask(h.Task) : ValueTask.CompletedTask);
        _store = new ObjectStore(_cell, new ObjectStoreOptions { Time = _time }, disk);
        _scheduler = new ManualControllerScheduler(_time);
        _overrides = new OverrideController(_store, _cell, _scheduler, new OverrideControllerOptions { Interval = TimeSpan.FromSeconds(1) });
    }

    public void Dispose()
    {
        _hold?.TrySetResult();
        _overrides.Dispose();
        _store.Dispose();
        _cell.Dispose();
    }

    private async Task Create(Override o)
    {
        var r = await _store.CreateAsync(o);
        Assert.True(r.IsOk, r.Message);
    }

    private Override Get(string name) => _store.Get<Override>("", name)!;

    private void HoldDisk() => _hold = new TaskCompletionSource();

    private void ReleaseDisk()
    {
        var h = _hold;
        _hold = null;
        h?.TrySetResult();
    }

    // Moves the clock in steps of 100 ms, running the controller's due work at each (its timer is the manual scheduler).
    private void Advance(TimeSpan by)
    {
        for (var left = by; left > TimeSpan.Zero; left -= TimeSpan.FromMilliseconds(100))
        {
            _time.Advance(left < TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100));
            _scheduler.RunUntilIdle();
        }
    }

    private async Task Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            _scheduler.RunUntilIdle();
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task An_expired_emergency_quota_is_reverted_at_its_TTL_while_the_sweep_waits_on_a_slow_disk()
    {
        var t1 = _cell.CreateTenant("t1", new ResourceVector(4000, 0));
        await Create(OverrideTests.Make("raise", OverrideType.EmergencyQuota, "t1", 5, extra: new ResourceRequest { CpuMillis = 2000 }));
        _overrides.Start();
        _scheduler.RunUntilIdle();
        await Until(() => Get("raise").Status.Phase == Override.PhaseActive, "the raise to be applied");
        Assert.Equal(new ResourceVector(6000, 0), _cell.GetTenantUsage(t1).Quota);

        // A second override arrives; the next sweep's first write for it (its finalizer) waits on the stuck disk.
        await Create(OverrideTests.Make("avoid", OverrideType.ZoneAvoid, "z9", 60));
        HoldDisk();
        Advance(TimeSpan.FromSeconds(1.5));
        // The sweep is parked on that write: visible in memory, not durable, so the status write after it has not happened.
        Assert.Contains(Override.Finalizer, Get("avoid").Metadata.Finalizers);
        Assert.NotEqual(Override.PhaseActive, Get("avoid").Status.Phase);

        // Past the raise's TTL, with the sweep still parked: the limit is back at once, not at the sweep after the disk.
        Advance(TimeSpan.FromSeconds(4));
        Assert.NotEqual(Override.PhaseActive, Get("avoid").Status.Phase);
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);

        // Once the disk catches up, the expiry is recorded durably (and the limit is not touched again).
        ReleaseDisk();
        Advance(TimeSpan.FromSeconds(1));
        await Until(() => Get("raise").Status.Phase == Override.PhaseExpired, "the expiry to be recorded");
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.Contains("4000", Get("raise").Status.Message);
        Assert.Contains(_overrides.History, r => r.Override == "raise" && r.Action == "Expired");
        Assert.Equal(1, _overrides.Expired);
    }

    [Fact]
    public async Task A_sweep_that_resumes_after_the_TTL_does_not_re_apply_the_raise_with_its_stale_clock()
    {
        // The simulation's shape: tenant t2 managed by a Quota object (a level-triggered limit) and an emergency quota.
        var t2 = _cell.CreateTenant("t2");
        var quotas = new QuotaController(_store, _cell, _time);
        var q = new Quota();
        q.Metadata.Name = "q";
        q.Metadata.Tenant = "t2";
        q.Spec.Limit = new ResourceRequest { CpuMillis = 3000 };
        var created = await _store.CreateAsync(q);
        Assert.True(created.IsOk, created.Message);
        for (int i = 0; i < 3; i++) await quotas.ReconcileAsync(created.Object!.Key, default);
        Assert.Equal(new ResourceVector(3000, 0), _cell.GetTenantUsage(t2).Quota);

        await Create(OverrideTests.Make("raise", OverrideType.EmergencyQuota, "t2", 3, extra: new ResourceRequest { CpuMillis = 2000 }));
        HoldDisk();
        _overrides.Start();
        _scheduler.RunUntilIdle();   // the first sweep parks on the raise's finalizer write (in memory, not durable)
        Assert.Contains(Override.Finalizer, Get("raise").Metadata.Finalizers);
        Assert.NotEqual(Override.PhaseActive, Get("raise").Status.Phase);

        Advance(TimeSpan.FromSeconds(4));   // the TTL passes while the sweep waits
        Assert.NotEqual(Override.PhaseActive, Get("raise").Status.Phase);
        Assert.Equal(new ResourceVector(3000, 0), _cell.GetTenantUsage(t2).Quota);

        // The sweep resumes: it writes the override's status but must not raise the limit of an override now expired.
        ReleaseDisk();
        await Until(() => Get("raise").Status.Phase is Override.PhaseActive or Override.PhaseExpired, "the parked sweep to finish its writes");
        Assert.Equal(new ResourceVector(3000, 0), _cell.GetTenantUsage(t2).Quota);
        Advance(TimeSpan.FromSeconds(2));
        await Until(() => Get("raise").Status.Phase == Override.PhaseExpired, "the expiry to be recorded");
        Assert.Equal(new ResourceVector(3000, 0), _cell.GetTenantUsage(t2).Quota);
        for (int i = 0; i < 3; i++) await quotas.ReconcileAsync(created.Object!.Key, default);
        Assert.Equal(new ResourceVector(3000, 0), _cell.GetTenantUsage(t2).Quota);
    }

    [Fact]
    public async Task Two_emergency_quotas_on_a_tenant_without_a_Quota_object_expiring_out_of_order_leave_its_limit_where_it_was()
    {
        var t1 = _cell.CreateTenant("t1", new ResourceVector(4000, 0));
        await Create(OverrideTests.Make("first", OverrideType.EmergencyQuota, "t1", 5, extra: new ResourceRequest { CpuMillis = 1000 }));
        await Create(OverrideTests.Make("second", OverrideType.EmergencyQuota, "t1", 10, extra: new ResourceRequest { CpuMillis = 2000 }));
        _overrides.Start();
        _scheduler.RunUntilIdle();
        await Until(() => Get("first").Status.Phase == Override.PhaseActive, "the first raise");
        Assert.Equal(new ResourceVector(5000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.NotEqual(Override.PhaseActive, Get("second").Status.Phase);   // one raise at a time on a tenant without a Quota object
        Assert.Contains(Get("second").Status.Conditions, c => c.Type == "Applied" && c.Reason == "Stacked");

        // The first (shorter) one expires; the second then applies on top of the restored limit.
        for (int s = 0; s < 8; s++) Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(Override.PhaseExpired, Get("first").Status.Phase);
        Assert.Equal(Override.PhaseActive, Get("second").Status.Phase);
        Assert.Equal(new ResourceVector(6000, 0), _cell.GetTenantUsage(t1).Quota);

        for (int s = 0; s < 4; s++) Advance(TimeSpan.FromSeconds(1));
        await Until(() => Get("second").Status.Phase == Override.PhaseExpired, "the second expiry");
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);
    }
}
