namespace Omega.Cells;

// Protected capacity (issue 12): a tenant's guarantee G_t is a share of the cell that other tenants' work may not take.
// The model (docs/commit-protocol.md, "Protected capacity"):
//
//   unmet_t = max(0, G_t − usage_t)              per dimension; usage = bindings + reservations
//   S       = Σ_t unmet_t                         kept incrementally (O(1) per usage change)
//   F       = Σ_{schedulable nodes} (capacity − allocated)   kept incrementally
//
// A claim by tenant T whose net effect grows T's usage by g (request − same-tenant victims − the reservation it
// consumes) is refused with ProtectedCapacity when, in some dimension where g > 0, F − g < S − unmet_T: it would leave
// less free schedulable capacity than the other tenants still need to reach their guarantees. So while F ≥ S holds,
// a tenant within its own guarantee is never refused by this check (its growth lowers F and unmet_T alike), and work
// above a guarantee only ever takes capacity that is not promised to anyone. Victims of other tenants are not counted
// as freeing anything for this check (conservative: evicting someone's guaranteed work must not pay for a claim).
// The check is aggregate, not per node: it keeps the guarantee satisfiable in total capacity, not against
// fragmentation (a guarantee larger than any free hole still needs preemption to land). Per-claim cost: one vector
// subtraction and four compares, and nothing at all while no tenant has a guarantee.
public sealed partial class Cell
{
    private ResourceVector?[] _tenantGuarantee = new ResourceVector?[16];
    private ResourceVector[] _tenantUnmet = new ResourceVector[16];
    private ResourceVector _unmetTotal;
    private int _guaranteedTenants;
    private ResourceVector _schedCapacity;
    private ResourceVector _schedAllocated;

    /// <summary>
    /// Sets (or, with null, clears) tenant <paramref name="tenant"/>'s guaranteed capacity (protected share), enforced at
    /// commit. Journaled; on a durable cell acknowledge it once <see cref="JournalSequence"/> read after this is durable.
    /// Setting a guarantee never evicts anything: if the cell cannot honour it now, only new growth is held back.
    /// </summary>
    public TenantOpStatus SetTenantGuarantee(TenantId tenant, ResourceVector? guaranteed)
    {
        if (guaranteed is { } g && !g.IsValidRequest) return TenantOpStatus.InvalidQuota;
        using (Serial())
        {
            if ((uint)tenant.Value >= (uint)_tenantCount) return TenantOpStatus.UnknownTenant;
            ApplyGuarantee(tenant.Value, guaranteed is { IsZero: true } ? null : guaranteed);
            Volatile.Write(ref _vw.Published, _vw.Published + 1);
            JournalGuarantee(tenant.Value);
            return TenantOpStatus.Ok;
        }
    }

    /// <summary>A tenant's guarantee (null: none) and its unmet part (guarantee minus usage, floored at zero).</summary>
    public (ResourceVector? Guaranteed, ResourceVector Unmet) GetTenantGuarantee(TenantId tenant)
    {
        using (Serial())
        {
            if ((uint)tenant.Value >= (uint)_tenantCount) return (null, default);
            return (_tenantGuarantee[tenant.Value], _tenantUnmet[tenant.Value]);
        }
    }

    /// <summary>
    /// The cell-wide protected-capacity state: free schedulable capacity and the sum of every tenant's unmet guarantee.
    /// While <c>Free ≥ UnmetTotal</c> in every dimension, every guarantee is satisfiable in aggregate.
    /// </summary>
    public (ResourceVector Free, ResourceVector UnmetTotal) GetProtectedCapacityState()
    {
        using (Serial()) return (_schedCapacity - _schedAllocated, _unmetTotal);
    }

    // Caller holds _lock.
    private void ApplyGuarantee(int t, ResourceVector? g)
    {
        bool had = _tenantGuarantee[t].HasValue;
        _tenantGuarantee[t] = g;
        if (had != g.HasValue) _guaranteedTenants += g.HasValue ? 1 : -1;
        UsageChanged(t, force: true);
    }

    // Caller holds _lock. Keeps unmet_t and S current after tenant t's usage (or guarantee) changed.
    private void UsageChanged(int t, bool force = false)
    {
        if (!force && !_tenantGuarantee[t].HasValue) return;
        var unmet = _tenantGuarantee[t] is { } g ? ResourceVector.Max(default, g - _tenantUsage[t]) : default;
        _unmetTotal += unmet - _tenantUnmet[t];
        _tenantUnmet[t] = unmet;
    }

    // Caller holds _lock. True when tenant t may grow its usage by (request − released) without eating into the other
    // tenants' unmet guarantees (see the model above).
    private bool ProtectedCapacityHolds(int t, ResourceVector request, ResourceVector released)
    {
        if (_guaranteedTenants == 0) return true;
        if (_guaranteedTenants == 1 && _tenantGuarantee[t].HasValue) return true; // only T itself is protected
        var others = _unmetTotal - _tenantUnmet[t];
        var free = _schedCapacity - _schedAllocated;
        for (int d = 0; d < ResourceVector.Dimensions; d++)
        {
            long grow = request[d] - released[d];
            if (grow <= 0) continue;
            if (free[d] - grow < others[d]) return false;
        }
        return true;
    }

    // Caller holds _lock: a node enters or leaves the schedulable set (status change, add, update, remove).
    private void SchedulableChanged(in NodeLive live, bool joining)
    {
        if (joining)
        {
            _schedCapacity += live.Spec!.Capacity;
            _schedAllocated += live.Allocated;
        }
        else
        {
            _schedCapacity -= live.Spec!.Capacity;
            _schedAllocated -= live.Allocated;
        }
    }

    // Caller holds _lock. Recomputes the aggregates from scratch (restore).
    private void RebuildProtectedState()
    {
        _schedCapacity = default;
        _schedAllocated = default;
        for (int i = 0; i < _nodeCount; i++)
            if (_live[i].Status == NodeStatus.Schedulable) SchedulableChanged(in _live[i], joining: true);
        _unmetTotal = default;
        _guaranteedTenants = 0;
        for (int t = 0; t < _tenantCount; t++)
        {
            _tenantUnmet[t] = default;
            if (_tenantGuarantee[t].HasValue) _guaranteedTenants++;
            UsageChanged(t, force: true);
        }
    }

    private void JournalGuarantee(int tenant)
    {
        if (_journal is null) return;
        var w = BeginRecord(CellRecordKind.TenantGuarantee, _vw.Published);
        w.I32(tenant);
        var g = _tenantGuarantee[tenant];
        w.U8(g.HasValue ? (byte)1 : (byte)0);
        w.Resources(g ?? default);
        EndRecord(_vw.Published);
    }

    /// <summary>Audit part: the incremental aggregates equal a recomputation.</summary>
    private void AuditProtected(List<string> problems)
    {
        ResourceVector cap = default, alloc = default, unmet = default;
        for (int i = 0; i < _nodeCount; i++)
        {
            if (_live[i].Status != NodeStatus.Schedulable) continue;
            cap += _live[i].Spec!.Capacity;
            alloc += _live[i].Allocated;
        }
        for (int t = 0; t < _tenantCount; t++)
        {
            var u = _tenantGuarantee[t] is { } g ? ResourceVector.Max(default, g - _tenantUsage[t]) : default;
            if (u != _tenantUnmet[t]) problems.Add($"tenant t{t} unmet guarantee {_tenantUnmet[t]} but recomputes to {u}");
            unmet += u;
        }
        if (cap != _schedCapacity) problems.Add($"schedulable capacity {_schedCapacity} but nodes sum to {cap}");
        if (alloc != _schedAllocated) problems.Add($"schedulable allocation {_schedAllocated} but nodes sum to {alloc}");
        if (unmet != _unmetTotal) problems.Add($"unmet guarantees total {_unmetTotal} but tenants sum to {unmet}");
    }
}
