namespace Omega.Cells;

// Recovery support: CellRestorer fills the raw bindings and hands the rest over here, where derived state is rebuilt.
public sealed partial class Cell
{
    internal Dictionary<TaskId, Allocation> RawAllocations => _allocations;

    internal void CompleteRestore(
        (NodeSpec Spec, NodeStatus Status, long Version)[] nodes,
        (string Name, FencingToken Token, DateTimeOffset ExpiresAt, bool Released)[] leases,
        Dictionary<int, ResourceVector?> quotas,
        List<KeyValuePair<IdempotencyKey, CellRestorer.RestoredOutcome>> outcomes,
        long version,
        long sequence)
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
            foreach (var a in _allocations.Values)
            {
                int idx = a.Node.Value;
                if ((uint)idx >= (uint)nodes.Length) throw new InvalidDataException($"binding of {a.Task} names unknown node {a.Node}");
                if (a.Tenant.Value < 0) throw new InvalidDataException($"binding of {a.Task} names negative tenant {a.Tenant}");
                ref NodeLive live = ref _live[idx];
                live.Allocated += a.Resources;
                live.TaskCount++;
                (_tasksOnNode[idx] ??= new HashSet<TaskId>()).Add(a.Task);
                EnsureTenant(a.Tenant.Value);
                _tenantUsage[a.Tenant.Value] += a.Resources;
            }
            foreach (var (t, q) in quotas)
            {
                EnsureTenant(t);
                _tenantQuota[t] = q;
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
            foreach (var (key, o) in outcomes) _idempotency.Add(key, o.Hash, o.Status, o.Version, o.Applied, o.Claims);
            for (int i = 0; i < nodes.Length; i++) _slots[i].Publish(Math.Max(1, version), _live[i]);
            Volatile.Write(ref _nodeCount, nodes.Length);
            Volatile.Write(ref _version, version);
            Volatile.Write(ref _journalSeq, sequence);
        }
    }
}
