using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>Settings of the <see cref="QuotaController"/>.</summary>
public sealed class QuotaControllerOptions
{
    /// <summary>How often an applied quota is looked at again to refresh <c>status.used</c> (usage has no watch of its own).</summary>
    public TimeSpan UsageRefresh { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// The quota controller (docs/control-plane.md, "The quota controller"): applies each <see cref="Quota"/> object to the
/// cell's hard limit and guarantee of the tenant in <c>metadata.tenant</c>, and reports usage in its status.
/// Level-triggered: every reconcile compares the cell's current values with the spec and writes only a difference.
/// Deletion clears them (finalizer <see cref="Finalizer"/>). One Quota object per tenant: when a tenant has several,
/// the oldest (lowest uid) is applied and the others report <c>Applied=False reason=Duplicate</c>.
/// </summary>
public sealed class QuotaController : IReconciler
{
    /// <summary>The finalizer that makes deletion wait until the cell's limits were cleared.</summary>
    public const string Finalizer = "omega.io/quota-limits";

    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly TimeProvider _time;
    private readonly QuotaControllerOptions _options;

    /// <summary>Creates the controller over a store and the cell whose limits it sets.</summary>
    public QuotaController(ObjectStore store, Cell cell, TimeProvider? time = null, QuotaControllerOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _time = time ?? TimeProvider.System;
        _options = options ?? new QuotaControllerOptions();
    }

    /// <summary>Which objects the controller watches.</summary>
    public static ObjectFilter Filter => new(Quota.KindName);

    /// <summary>Creates a runner for this controller.</summary>
    public ControllerRunner CreateRunner(IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
        => new(_store, this, Filter, scheduler, options);

    /// <inheritdoc />
    public async ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken)
    {
        if (_store.Get(key).Object is not Quota q) return ReconcileResult.Done;
        var now = _time.GetUtcNow();
        long gen = q.Metadata.Generation;
        bool known = _cell.TryGetTenant(q.Metadata.Tenant, out var tenant);
        bool owner = known && IsOwner(q);

        if (q.Metadata.DeletionTimestamp is not null)
        {
            if (!q.Metadata.Finalizers.Contains(Finalizer)) return ReconcileResult.Done;
            // Only the applied (owning) object clears the cell's values; a duplicate never set them.
            if (owner)
            {
                _cell.SetTenantQuota(tenant, null);
                _cell.SetTenantGuarantee(tenant, null);
            }
            q.Metadata.Finalizers.Remove(Finalizer);
            var d = await _store.UpdateAsync(q, cancellationToken).ConfigureAwait(false);
            return d.IsOk ? ReconcileResult.Done : ReconcileResult.Retry;
        }
        if (!q.Metadata.Finalizers.Contains(Finalizer))
        {
            q.Metadata.Finalizers.Add(Finalizer);
            var f = await _store.UpdateAsync(q, cancellationToken).ConfigureAwait(false);
            return f.IsOk ? ReconcileResult.After(TimeSpan.FromTicks(1)) : ReconcileResult.Retry;
        }

        var status = q.Status;
        bool changed;
        if (!known)
        {
            changed = Conditions.Set(status.Conditions, "Applied", ConditionStatus.False, "UnknownTenant", $"tenant '{q.Metadata.Tenant}' does not exist in the cell", gen, now);
        }
        else if (!owner)
        {
            changed = Conditions.Set(status.Conditions, "Applied", ConditionStatus.False, "Duplicate", $"tenant '{q.Metadata.Tenant}' has an older Quota object; only that one is applied", gen, now);
        }
        else
        {
            var limit = q.Spec.Limit.ToVector();
            var guaranteed = q.Spec.Protected.ToVector();
            // Live emergency quotas (Override objects, issue 13) add to the limit for their TTL; the override sweep sets the
            // same value, so neither controller undoes the other.
            ResourceVector? wantLimit = limit.IsZero ? null : OverrideController.EffectiveLimit(_store, q.Metadata.Tenant, limit, now);
            ResourceVector? wantGuarantee = guaranteed.IsZero ? null : guaranteed;
            // Level-triggered: set only what differs from the cell's current values (the cell journals each set).
            if (_cell.GetTenantUsage(tenant).Quota != wantLimit) _cell.SetTenantQuota(tenant, wantLimit);
            if (_cell.GetTenantGuarantee(tenant).Guaranteed != wantGuarantee) _cell.SetTenantGuarantee(tenant, wantGuarantee);
            changed = Conditions.Set(status.Conditions, "Applied", ConditionStatus.True, "Applied", "the cell enforces this limit and guarantee at commit", gen, now);
            changed |= status.ObservedGeneration != gen;
            status.ObservedGeneration = gen;
        }
        if (known)
        {
            var used = _cell.GetTenantUsage(tenant).Usage;
            var unmet = _cell.GetTenantGuarantee(tenant).Unmet;
            changed |= Set(status.Used, used) | Set(status.Unmet, unmet);
        }
        if (changed)
        {
            // The status write is journaled after the limit records above, so once it is acknowledged (durable) they are too.
            var r = await _store.UpdateStatusAsync(q, cancellationToken).ConfigureAwait(false);
            if (!r.IsOk) return ReconcileResult.Retry;
        }
        return ReconcileResult.After(_options.UsageRefresh);
    }

    // The oldest Quota object of the tenant owns its limits (ties cannot happen: uids are unique).
    private bool IsOwner(Quota q)
    {
        foreach (var o in _store.List(new ObjectFilter(Quota.KindName, q.Metadata.Tenant), 1000).Items)
            if (o.Metadata.DeletionTimestamp is null && o.Metadata.Uid < q.Metadata.Uid) return false;
        return true;
    }

    private static bool Set(ResourceRequest target, ResourceVector v)
    {
        if (target.ToVector() == v) return false;
        target.CpuMillis = v.CpuMillis;
        target.MemoryBytes = v.MemoryBytes;
        target.Gpus = v.Gpus;
        target.DiskBytes = v.DiskBytes;
        return true;
    }
}
