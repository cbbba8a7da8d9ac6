using Omega.ControlPlane.Budgets;

namespace Omega.ControlPlane.Controllers;

/// <summary>Settings of the <see cref="RegionalBudgetController"/>.</summary>
public sealed class RegionalBudgetControllerOptions
{
    /// <summary>How often an applied budget's status is recomputed (spends have no watch of their own). Default 2 s.</summary>
    public TimeSpan Refresh { get; set; } = TimeSpan.FromSeconds(2);
}

/// <summary>
/// The regional budget controller (issue 13, item 3; docs/control-plane.md, "Global budgets and regional schedulers"):
/// applies each tenant's <see cref="RegionalBudget"/> object to the <see cref="RegionalBudgetRouter"/> (the global
/// budget's limit and the per-region caps) and writes its status from the router's accounts (limit, in use, leases, per
/// region: cap, spent, lease, admitted, refused by cap; conditions <c>Applied</c> and <c>Exhausted</c>). One object per
/// tenant is in effect: the oldest (lowest uid); the others report <c>Applied=False reason=Duplicate</c>. Deleting the
/// object in effect puts the next one (or the host's <c>Omega:RegionalBudgets:TenantCpuMillis</c>) back in effect. The
/// router's state is in memory and re-derived from the durable objects at start (the first reconcile of each), so
/// budgets survive a restart. With the router off (null) every object reports <c>Applied=False reason=Disabled</c>.
/// </summary>
public sealed class RegionalBudgetController : IReconciler
{
    private readonly ObjectStore _store;
    private readonly RegionalBudgetRouter? _router;
    private readonly TimeProvider _time;
    private readonly RegionalBudgetControllerOptions _options;

    /// <summary>Creates the controller over a store and the router it configures (null: regional budgets are off).</summary>
    public RegionalBudgetController(ObjectStore store, RegionalBudgetRouter? router, TimeProvider? time = null, RegionalBudgetControllerOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _router = router;
        _time = time ?? TimeProvider.System;
        _options = options ?? new RegionalBudgetControllerOptions();
    }

    /// <summary>Which objects the controller watches.</summary>
    public static ObjectFilter Filter => new(RegionalBudget.KindName);

    /// <summary>Creates a runner for this controller.</summary>
    public ControllerRunner CreateRunner(IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
        => new(_store, this, Filter, scheduler, options);

    /// <inheritdoc />
    public async ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken)
    {
        string tenant = key.Tenant;
        var owner = OwnerOf(tenant);
        // Level-triggered: whatever happened to this key, the tenant's budget in the router is the owner's (or none).
        if (_router is not null)
        {
            if (owner is null) _router.ClearTenantBudget(tenant);
            else _router.SetTenantBudget(tenant, owner.Spec.CpuMillis, owner.Spec.Regions);
        }
        if (_store.Get(key).Object is not RegionalBudget b || b.Metadata.DeletionTimestamp is not null) return ReconcileResult.Done;

        var now = _time.GetUtcNow();
        long gen = b.Metadata.Generation;
        var status = b.Status;
        var before = System.Text.Json.JsonSerializer.Serialize(status, ObjectCodec.Options);
        if (_router is null)
        {
            Conditions.Set(status.Conditions, "Applied", ConditionStatus.False, "Disabled",
                "regional budgets are off on this server (Omega:RegionalBudgets:Enabled): no replica is routed through regional schedulers", gen, now);
        }
        else if (owner is null || owner.Metadata.Uid != b.Metadata.Uid)
        {
            Conditions.Set(status.Conditions, "Applied", ConditionStatus.False, "Duplicate",
                $"tenant '{tenant}' has an older RegionalBudget object; only that one is in effect", gen, now);
        }
        else
        {
            Conditions.Set(status.Conditions, "Applied", ConditionStatus.True, "Applied",
                "the regional schedulers lease this tenant's budget and keep to the region caps", gen, now);
            status.ObservedGeneration = gen;
            var (limit, _, _, leases) = _router.Global.Get(RegionalBudgetRouter.BudgetOf(tenant));
            status.LimitMillis = limit;
            status.InUseMillis = _router.Global.InUse(RegionalBudgetRouter.BudgetOf(tenant));
            status.Leases = leases;
            status.Regions = _router.RegionsOf(tenant);
            string? exhausted = null;
            foreach (var r in status.Regions)
                if (r.Exhausted) exhausted = exhausted is null ? r.Region : exhausted + ", " + r.Region;
            if (exhausted is null)
                Conditions.Set(status.Conditions, "Exhausted", ConditionStatus.False, "WithinCaps", "no region has reached its cap", gen, now);
            else
                Conditions.Set(status.Conditions, "Exhausted", ConditionStatus.True, "RegionCapReached",
                    $"{exhausted}: new replicas that require only these regions stay pending (RegionalBudgetRegionCap)", gen, now);
        }
        if (System.Text.Json.JsonSerializer.Serialize(status, ObjectCodec.Options) != before)
        {
            var w = await _store.UpdateStatusAsync(b, cancellationToken).ConfigureAwait(false);
            if (!w.IsOk) return ReconcileResult.Retry;
        }
        return ReconcileResult.After(_options.Refresh);
    }

    /// <summary>
    /// Applies every tenant's budget in effect (its oldest live <see cref="RegionalBudget"/>) to <paramref name="router"/>
    /// at once. The host calls it when it creates the router, before the workload controller resubmits the restored
    /// replicas: otherwise those would be admitted under the default budget and no caps until this controller's first
    /// reconcile. Returns the number of tenants applied.
    /// </summary>
    public static int ApplyAll(ObjectStore store, RegionalBudgetRouter router)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(router);
        var owners = new Dictionary<string, RegionalBudget>(StringComparer.Ordinal);
        string? after = null;
        do
        {
            var page = store.List(new ObjectFilter(RegionalBudget.KindName), 1000, after);
            foreach (var o in page.Items)
                if (o is RegionalBudget b && b.Metadata.DeletionTimestamp is null
                    && (!owners.TryGetValue(b.Metadata.Tenant, out var cur) || b.Metadata.Uid < cur.Metadata.Uid))
                    owners[b.Metadata.Tenant] = b;
            after = page.Continue;
        }
        while (after is not null);
        foreach (var (tenant, b) in owners) router.SetTenantBudget(tenant, b.Spec.CpuMillis, b.Spec.Regions);
        return owners.Count;
    }

    // The oldest live RegionalBudget of the tenant is in effect (uids are unique, so there are no ties).
    private RegionalBudget? OwnerOf(string tenant)
    {
        RegionalBudget? owner = null;
        foreach (var o in _store.List(new ObjectFilter(RegionalBudget.KindName, tenant), 1000).Items)
            if (o is RegionalBudget b && b.Metadata.DeletionTimestamp is null && (owner is null || b.Metadata.Uid < owner.Metadata.Uid)) owner = b;
        return owner;
    }
}
