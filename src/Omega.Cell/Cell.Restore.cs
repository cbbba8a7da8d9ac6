namespace Omega.Cells;

// Recovery support: CellRestorer stages the bindings (RestoreBind) and hands the rest over here, where derived state is rebuilt.
public sealed partial class Cell
{
    // Restore staging (single-threaded, before the cell is published): bindings go straight into the task index and the
    // per-node lists, the cell's only copy, so recovery never holds a second table of 10M allocations beside them.

    /// <summary>Restore: the number of bindings staged so far.</summary>
    internal int RestoredBindingCount => _taskNode.Count;

    /// <summary>Restore: sizes the task index for about <paramref name="count"/> bindings.</summary>
    internal void ExpectRestoredBindings(int count) => _taskNode.EnsureCapacity(count);

    /// <summary>Restore: upserts a binding (a later record for the same task replaces the earlier one).</summary>
    internal void RestoreBind(in Allocation a) => RestoreNodeBind(a, RestoreTaskBind(a.Task, a.Node));

    /// <summary>Restore: removes a task's binding if one was staged.</summary>
    internal void RestoreUnbind(TaskId task) => RestoreNodeUnbind(task, RestoreTaskUnbind(task));

    // A restore's binding upsert is two independent halves (issue 15, recovery in seconds): the task index (TaskTable) and
    // the per-node lists. Each half touches only its own structure, so a large load runs them on two threads as a
    // pipeline (CellRestorer.BindingLoader): the task half, in file order, says which node a record displaces; the node
    // half applies the same records in the same order with that answer. Each is one dependent cache miss per binding
    // at 10M (a 268 MB task table; 10,000 lists and their indexes), so the split halves the load's critical path.

    /// <summary>Restore, task half: records task → node; returns the node it replaced, or -1 when the task was unbound.</summary>
    internal int RestoreTaskBind(TaskId task, NodeId node)
    {
        if (node.Value < 0) throw new InvalidDataException($"binding of {task} names negative node {node}");
        // One probe run for the lookup and the store (TaskTable.Exchange).
        return _taskNode.Exchange(task, node) - 1;
    }

    /// <summary>Restore, task half: removes the task; returns the node it was bound to, or -1.</summary>
    internal int RestoreTaskUnbind(TaskId task) => _taskNode.Remove(task, out var node) ? node.Value : -1;

    /// <summary>Restore, node half: moves the binding off <paramref name="previousNode"/> (if not -1) and onto its node.</summary>
    internal void RestoreNodeBind(in Allocation a, int previousNode)
    {
        int idx = a.Node.Value;
        if (idx >= _bindingsOnNode.Length)
        {
            var grown = _bindingsOnNode;
            Array.Resize(ref grown, Math.Max(idx + 1, grown.Length * 2));
            _bindingsOnNode = grown;
        }
        if (previousNode >= 0) _bindingsOnNode[previousNode]!.Remove(a.Task);
        // Unpublished: nothing reads the lists before the restore completes, so the seqlock's fences are skipped.
        (_bindingsOnNode[idx] ??= new NodeBindings(a.Node)).AddUnpublished(a);
    }

    /// <summary>Restore, node half: removes the task from <paramref name="previousNode"/>'s list (nothing when -1).</summary>
    internal void RestoreNodeUnbind(TaskId task, int previousNode)
    {
        if (previousNode >= 0) _bindingsOnNode[previousNode]!.Remove(task);
    }

    /// <summary>
    /// Restore, before any binding: creates each node's list at the size a checkpoint expects for it
    /// (<paramref name="capacity"/>[node]), so staging never grows a list by doubling (which leaves the outgrown arrays,
    /// about as large as the final lists together, as garbage at the peak) and the final trim finds nothing to copy.
    /// A wrong size costs a growth or a trim, never correctness.
    /// </summary>
    internal void ExpectRestoredNodeBindings(ReadOnlySpan<int> capacity)
    {
        if (capacity.Length > _bindingsOnNode.Length)
        {
            var grown = _bindingsOnNode;
            Array.Resize(ref grown, capacity.Length);
            _bindingsOnNode = grown;
        }
        for (int i = 0; i < capacity.Length; i++)
            if (capacity[i] > 0 && _bindingsOnNode[i] is null) _bindingsOnNode[i] = new NodeBindings(new NodeId(i), capacity[i]);
    }

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
        using (Serial())
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
            // The bindings were staged into the per-node lists as they were read (RestoreBind). Lists grew by doubling;
            // each is trimmed to its count here so no node keeps up to half its list empty (TrimExcess below).
            for (int idx = 0; idx < _bindingsOnNode.Length; idx++)
            {
                if (_bindingsOnNode[idx] is not { Count: > 0 } set) continue;
                if (idx >= nodes.Length) throw new InvalidDataException($"binding of {set[0].Task} names unknown node n{idx}");
                set.TrimExcess();
                ref NodeLive live = ref _live[idx];
                for (int i = 0; i < set.Count; i++)
                {
                    var a = set[i];
                    if ((uint)a.Tenant.Value >= (uint)_tenantCount) throw new InvalidDataException($"binding of {a.Task} names unknown tenant {a.Tenant}");
                    live.Allocated += a.Resources;
                    live.TaskCount++;
                    _tenantUsage[a.Tenant.Value] += a.Resources;
                }
            }
            if (_bindingsOnNode.Length < _slots.Length)
            {
                // Staging may have left the array shorter than the node table (Grow keeps them equal from here on).
                var all = _bindingsOnNode;
                Array.Resize(ref all, _slots.Length);
                _bindingsOnNode = all;
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
            Volatile.Write(ref _vw.Published, version);
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
        foreach (var set in _bindingsOnNode)
            if (set is not null)
                for (int i = 0; i < set.Count; i++) max = Math.Max(max, set[i].Tenant.Value);
        foreach (var t in tenants.Keys) if (t <= 0) throw new InvalidDataException($"stored state creates tenant {t}; ids start at 1");
        foreach (var t in quotas.Keys) if (t < 0) throw new InvalidDataException($"stored state holds a quota of negative tenant {t}");
        foreach (var set in _bindingsOnNode)
            if (set is not null)
                for (int i = 0; i < set.Count; i++)
                    if (set[i].Tenant.Value < 0) throw new InvalidDataException($"binding of {set[i].Task} names negative tenant {set[i].Tenant}");
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
