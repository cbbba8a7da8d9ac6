using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>Override objects: applied by the override sweep, reverted and recorded at TTL expiry or deletion (issue 13, item 4).</summary>
public sealed class OverrideTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly Cell _cell;
    private readonly ObjectStore _store;
    private readonly OverrideController _overrides;

    public OverrideTests()
    {
        _cell = new Cell(new CellOptions { Time = _time });
        _store = new ObjectStore(_cell, new ObjectStoreOptions { Time = _time });
        _overrides = new OverrideController(_store, _cell, new ManualControllerScheduler(_time));
    }

    public void Dispose()
    {
        _overrides.Dispose();
        _store.Dispose();
        _cell.Dispose();
    }

    internal static Override Make(string name, OverrideType type, string target, int ttlSeconds, string author = "alice", ResourceRequest? extra = null)
    {
        var o = new Override();
        o.Metadata.Name = name;
        o.Spec.Type = type;
        o.Spec.Target = target;
        o.Spec.TtlSeconds = ttlSeconds;
        o.Spec.Reason = "incident 42";
        o.Spec.Author = author;
        if (extra is not null) o.Spec.Extra = extra;
        return o;
    }

    private async Task<Override> Create(Override o)
    {
        var r = await _store.CreateAsync(o);
        Assert.True(r.IsOk, r.Message);
        return (Override)r.Object!;
    }

    private Override Get(string name) => _store.Get<Override>("", name)!;

    [Fact]
    public async Task An_override_without_a_TTL_reason_or_target_is_refused()
    {
        var noTtl = Make("a", OverrideType.ZoneAvoid, "z1", 0);
        Assert.Equal(ObjectStatus.Invalid, (await _store.CreateAsync(noTtl)).Status);
        var longTtl = Make("b", OverrideType.ZoneAvoid, "z1", OverrideSpec.MaxTtlSeconds + 1);
        Assert.Equal(ObjectStatus.Invalid, (await _store.CreateAsync(longTtl)).Status);
        var noReason = Make("c", OverrideType.ZoneAvoid, "z1", 60);
        noReason.Spec.Reason = " ";
        Assert.Equal(ObjectStatus.Invalid, (await _store.CreateAsync(noReason)).Status);
        var noExtra = Make("d", OverrideType.EmergencyQuota, "t1", 60);
        Assert.Equal(ObjectStatus.Invalid, (await _store.CreateAsync(noExtra)).Status);
        var tenanted = Make("e", OverrideType.ZoneAvoid, "z1", 60);
        tenanted.Metadata.Tenant = "t1";
        Assert.Equal(ObjectStatus.Invalid, (await _store.CreateAsync(tenanted)).Status);   // cluster-scoped: no submitter can write one
    }

    [Fact]
    public async Task An_emergency_quota_raises_the_tenant_limit_for_its_TTL_and_the_sweep_after_expiry_reverts_and_records_it()
    {
        var t1 = _cell.CreateTenant("t1", new ResourceVector(4000, 8L << 30));
        await Create(Make("raise-t1", OverrideType.EmergencyQuota, "t1", 60, extra: new ResourceRequest { CpuMillis = 2000 }));

        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(6000, 8L << 30), _cell.GetTenantUsage(t1).Quota);
        var o = Get("raise-t1");
        Assert.Equal(Override.PhaseActive, o.Status.Phase);
        Assert.Contains(Override.Finalizer, o.Metadata.Finalizers);
        Assert.Equal(4000, o.Status.PreviousLimit!.CpuMillis);
        Assert.Equal(_time.GetUtcNow().AddSeconds(60), o.Status.ExpiresAt);

        // A sweep before the TTL changes nothing (level-triggered: no second raise).
        _time.Advance(TimeSpan.FromSeconds(59));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(6000, 8L << 30), _cell.GetTenantUsage(t1).Quota);
        Assert.True(_overrides.IsActive(OverrideType.EmergencyQuota, "t1"));

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.False(_overrides.IsActive(OverrideType.EmergencyQuota, "t1"));   // past its TTL it no longer counts, even before the sweep
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(4000, 8L << 30), _cell.GetTenantUsage(t1).Quota);
        o = Get("raise-t1");
        Assert.Equal(Override.PhaseExpired, o.Status.Phase);
        Assert.Equal(_time.GetUtcNow(), o.Status.RevertedAt);
        Assert.DoesNotContain(Override.Finalizer, o.Metadata.Finalizers);
        Assert.Contains("restored", o.Status.Message);
        Assert.Equal(1, _overrides.Expired);
        Assert.Contains(_overrides.History, r => r.Override == "raise-t1" && r.Action == "Expired");
        Assert.Contains(_overrides.History, r => r.Override == "raise-t1" && r.Action == "Applied");

        // Later sweeps leave the expired override (and the limit) alone.
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await _overrides.SweepAsync(default));
        Assert.Equal(1, _overrides.Expired);
    }

    [Fact]
    public async Task A_limit_changed_by_an_operator_during_the_override_is_not_clobbered_by_the_revert()
    {
        var t1 = _cell.CreateTenant("t1", new ResourceVector(4000, 0));
        await Create(Make("raise", OverrideType.EmergencyQuota, "t1", 10, extra: new ResourceRequest { CpuMillis = 1000 }));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(5000, 0), _cell.GetTenantUsage(t1).Quota);
        _cell.SetTenantQuota(t1, new ResourceVector(9000, 0));
        _time.Advance(TimeSpan.FromSeconds(11));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(9000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.Contains("left as it is", Get("raise").Status.Message);
    }

    [Fact]
    public async Task Deleting_a_live_override_reverts_its_effect_before_the_object_goes()
    {
        var t1 = _cell.CreateTenant("t1", new ResourceVector(4000, 0));
        var o = await Create(Make("raise", OverrideType.EmergencyQuota, "t1", 600, extra: new ResourceRequest { CpuMillis = 1000 }));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(5000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.True((await _store.DeleteAsync(o.Key)).IsOk);
        Assert.NotNull(Get("raise"));   // held by the finalizer
        await _overrides.SweepAsync(default);
        Assert.Null(Get("raise"));
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.Contains(_overrides.History, r => r.Override == "raise" && r.Action == "Deleted");
    }

    [Fact]
    public async Task A_confirm_lost_override_confirms_the_domain_through_the_cell_and_withdraws_it_at_expiry()
    {
        _cell.AddNode(new NodeSpec("n0", new ResourceVector(1000, 1 << 30), "rack-9"));
        await Create(Make("rack9-lost", OverrideType.ConfirmLost, "rack-9", 30, author: "bob"));
        await _overrides.SweepAsync(default);
        var d = _cell.GetDomainLoss("rack-9");
        Assert.NotNull(d);
        Assert.Contains("bob", d!.Author);
        Assert.Equal("incident 42", d.Reason);
        _time.Advance(TimeSpan.FromSeconds(31));
        await _overrides.SweepAsync(default);
        Assert.Null(_cell.GetDomainLoss("rack-9"));
        Assert.Equal(Override.PhaseExpired, Get("rack9-lost").Status.Phase);
    }

    [Fact]
    public async Task Zone_avoidance_taints_exactly_the_zone_nodes_keeps_them_tainted_after_a_re_registration_and_untaints_them_at_expiry()
    {
        var labels = (string zone) => new Dictionary<string, string> { [Override.ZoneLabel] = zone, [Override.RegionLabel] = "r1" };
        var a0 = _cell.AddNode(new NodeSpec("a0", new ResourceVector(1000, 1 << 30), "za", labels("za")));
        var a1 = _cell.AddNode(new NodeSpec("a1", new ResourceVector(1000, 1 << 30), "za", labels("za")));
        var b0 = _cell.AddNode(new NodeSpec("b0", new ResourceVector(1000, 1 << 30), "zb", labels("zb")));
        await Create(Make("avoid-za", OverrideType.ZoneAvoid, "za", 120));
        await _overrides.SweepAsync(default);
        bool Tainted(NodeId id) => _cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok && v.Spec.Taints.Contains(Override.AvoidTaint);
        Assert.True(Tainted(a0));
        Assert.True(Tainted(a1));
        Assert.False(Tainted(b0));
        Assert.Equal(2, Get("avoid-za").Status.Nodes);

        // An agent re-registering replaces its node's spec (no taint): the next sweep puts it back.
        _cell.UpdateNode(a0, new NodeSpec("a0", new ResourceVector(1000, 1 << 30), "za", labels("za")));
        Assert.False(Tainted(a0));
        await _overrides.SweepAsync(default);
        Assert.True(Tainted(a0));

        _time.Advance(TimeSpan.FromSeconds(121));
        await _overrides.SweepAsync(default);
        Assert.False(Tainted(a0));
        Assert.False(Tainted(a1));
        Assert.Equal(Override.PhaseExpired, Get("avoid-za").Status.Phase);
    }

    [Fact]
    public async Task An_emergency_quota_of_a_tenant_managed_by_a_Quota_object_is_kept_by_the_quota_controller_and_reverted_at_expiry()
    {
        var t1 = _cell.CreateTenant("t1");
        var quotas = new QuotaController(_store, _cell, _time);
        var q = new Quota();
        q.Metadata.Name = "q";
        q.Metadata.Tenant = "t1";
        q.Spec.Limit = new ResourceRequest { CpuMillis = 4000 };
        var created = await _store.CreateAsync(q);
        Assert.True(created.IsOk, created.Message);
        async Task ReconcileQuota()
        {
            for (int i = 0; i < 3; i++) await quotas.ReconcileAsync(created.Object!.Key, default);
        }
        await ReconcileQuota();
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);

        await Create(Make("raise", OverrideType.EmergencyQuota, "t1", 60, extra: new ResourceRequest { CpuMillis = 2000 }));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(6000, 0), _cell.GetTenantUsage(t1).Quota);
        await ReconcileQuota();   // the quota controller does not put the object's 4000 back while the override is live
        Assert.Equal(new ResourceVector(6000, 0), _cell.GetTenantUsage(t1).Quota);

        _time.Advance(TimeSpan.FromSeconds(61));
        await _overrides.SweepAsync(default);
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);
        Assert.Equal(Override.PhaseExpired, Get("raise").Status.Phase);
        await ReconcileQuota();
        Assert.Equal(new ResourceVector(4000, 0), _cell.GetTenantUsage(t1).Quota);
    }
}
