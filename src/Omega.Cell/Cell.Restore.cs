namespace Omega.Cells;

// Recovery support: CellRestorer fills the raw bindings and hands the rest over here, where derived state is rebuilt.
public sealed partial class Cell
{
    internal Dictionary<TaskId, Allocation> RawAllocations => _allocations;

    internal void CompleteRestore(
        (NodeSpec Spec, NodeStatus Status, long Version)[] nodes,
        (string Name, FencingToken Token, DateTimeOffset ExpiresAt, bool Released)[] leases,
        Dictionary<int, string> tenants,
        Dictionary<int, ResourceVector?> quotas,
        List<KeyValuePair<IdempotencyIndex.ScopedKey, CellRestorer.RestoredOutcome>> outcomes,
        long version,
        long sequence,
        IEnumerable<CellReservation> reservations,
        Dictionary<int, ResourceVector?> guarantees)
    {
        lock (_lock)
        {
            while (_slots.Length < nodes.Length) Grow();
            for (int i = 0; i < nodes.Length; i++)
            {
                var (spec, status, nodeVersion) = nodes[i];
                _live[i] = new NodeLive { Spec = spec, Status = status, Version = nodeVersion };
                if (status != NodeStatus.Removed && !_nodeByName.TryAdd(spec.Name, new NodeId(i)))
                    throw new InvalidDataException($"stored state holds two live nodes named '{spec.Name}'");
            }
            RestoreTenants(tenants, quotas);
            // Size each node's binding list exactly before filling it: growing ~1,000 bindings per node by doubling
            // from 4 left ~1,000 dead elements per node behind (about 0.7 GB of garbage at 10M bindings).
            var perNode = new int[nodes.Length];
            foreach (var a in _allocations.Values)
                if ((uint)a.Node.Value < (uint)perNode.Length) perNode[a.Node.Value]++;
            for (int i = 0; i < perNode.Length; i++)
                if (perNode[i] > 0 && _bindingsOnNode[i] is null) _bindingsOnNode[i] = new NodeBindings(perNode[i]);
            foreach (var a in _allocations.Values)
            {
                int idx = a.Node.Value;
                if ((uint)idx >= (uint)nodes.Length) throw new InvalidDataException($"binding of {a.Task} names unknown node {a.Node}");
                if ((uint)a.Tenant.Value >= (uint)_tenantCount) throw new InvalidDataException($"binding of {a.Task} names unknown tenant {a.Tenant}");
                ref NodeLive live = ref _live[idx];
                live.Allocated += a.Resources;
                live.TaskCount++;
                (_bindingsOnNode[idx] ??= new NodeBindings()).Add(a);
                _tenantUsage[a.Tenant.Value] += a.Resources;
            }
            RestoreReservations(reservations);
            foreach (var (t, g) in guarantees)
            {
                if ((uint)t >= (uint)_tenantCount) throw new InvalidDataException($"stored state holds a guarantee of unknown tenant {t}");
                _tenantGuarantee[t] = g;
            }
            long now = Now();
            var utcNow = _time.GetUtcNow();
            _leases = new LeaseState[Math.Max(8, leases.Length)];
            for (int i = 0; i < leases.Length; i++)
            {
                var (name, token, expiresAt, released) = leases[i];
                if (!_schedulerByName.TryAdd(name, new SchedulerId(i))) throw new InvalidDataException($"stored state holds two schedulers named '{name}'");
                long remaining = TicksFor(expiresAt - utcNow);
                _leases[i] = new LeaseState { Name = name, Token = token, ExpiresAtTimestamp = now + remaining, Released = released };
                _lastToken = Math.Max(_lastToken, token.Value);
            }
            _schedulerCount = leases.Length;
            foreach (var (key, o) in outcomes) _idempotency.Add(key.Scheduler, key.Key, o.Hash, o.Status, o.Version, o.Applied, o.Claims);
            for (int i = 0; i < nodes.Length; i++)
                if (nodes[i].Status != NodeStatus.Removed) NoteCapacity(nodes[i].Spec.Capacity);
            for (int i = 0; i < nodes.Length; i++) _slots[i].Publish(Math.Max(1, version), _live[i]);
            for (int t = 0; t < _tenantCount; t++) PublishTenant(t);
            Volatile.Write(ref _nodeCount, nodes.Length);
            RebuildProtectedState();
            Volatile.Write(ref _version, version);
            Volatile.Write(ref _journalSeq, sequence);
        }
    }

    /// <summary>
    /// Rebuilds the tenant registry from TenantCreated records. Ids must be dense and below <see cref="CellOptions.MaxTenants"/>:
    /// a store naming tenant 2,000,000,000 is refused as corrupt, never allocated. A quota or binding naming a tenant
    /// with no creation record comes from a store written before the registry existed (tenants were implicit then); such
    /// a tenant is registered as "tenant-N" so the store still opens, as long as N is within the bound.
    /// </summary>
    private void RestoreTenants(Dictionary<int, string> tenants, Dictionary<int, ResourceVector?> quotas)
    {
        int max = 0;
        foreach (var t in tenants.Keys) max = Math.Max(max, t);
        foreach (var t in quotas.Keys) max = Math.Max(max, t);
        foreach (var a in _allocations.Values) max = Math.Max(max, a.Tenant.Value);
        foreach (var t in tenants.Keys) if (t <= 0) throw new InvalidDataException($"stored state creates tenant {t}; ids start at 1");
        foreach (var t in quotas.Keys) if (t < 0) throw new InvalidDataException($"stored state holds a quota of negative tenant {t}");
        foreach (var a in _allocations.Values) if (a.Tenant.Value < 0) throw new InvalidDataException($"binding of {a.Task} names negative tenant {a.Tenant}");
        if (max >= _options.MaxTenants)
            throw new InvalidDataException($"stored state names tenant {max}, beyond the limit of {_options.MaxTenants} tenants (CellOptions.MaxTenants)");
        for (int t = 1; t <= max; t++)
        {
            EnsureTenant(t);
            string name = tenants.TryGetValue(t, out var n) ? n : $"tenant-{t}";
            if (!_tenantByName.TryAdd(name, new TenantId(t))) throw new InvalidDataException($"stored state holds two tenants named '{name}'");
            _tenantNames[t] = name;
        }
        _tenantCount = max + 1;
        foreach (var (t, q) in quotas) _tenantQuota[t] = q;
    }
}
