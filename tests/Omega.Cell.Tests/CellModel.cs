namespace Omega.Cells.Tests;

/// <summary>The comparable part of a commit result (claim statuses as text so that record equality compares them).</summary>
internal readonly record struct Outcome(TransactionStatus Status, long CellVersion, int Applied, bool Replayed, string Claims)
{
    public static Outcome Of(CommitResult r)
        => new(r.Status, r.CellVersion, r.AppliedCount, r.Replayed, string.Join(",", r.ClaimStatuses.ToArray()));

    public static Outcome Of(TransactionStatus status, long version, int applied, bool replayed, IEnumerable<ClaimStatus> claims)
        => new(status, version, applied, replayed, string.Join(",", claims));

    public override string ToString() => $"{Status} v{CellVersion} applied={Applied}{(Replayed ? " replayed" : "")} [{Claims}]";
}

/// <summary>
/// A deliberately naive, sequential model of a cell: lists, dictionaries and loops, written from the commit protocol
/// (design.md §3, docs/commit-protocol.md) rather than from the implementation. A gang transaction is rolled back by
/// restoring copies taken before it. Used by the model-based and linearizability tests.
/// </summary>
internal sealed class CellModel
{
    internal sealed class Node
    {
        public required NodeSpec Spec { get; set; }
        public NodeStatus Status { get; set; }
        public long Version { get; set; }
        public ResourceVector Allocated { get; set; }
        public int TaskCount { get; set; }

        public Node Clone() => (Node)MemberwiseClone();
    }

    private sealed class Lease
    {
        public required string Name { get; init; }
        public long Token { get; set; }
        public long ExpiresAt { get; set; }
        public bool Released { get; set; }
    }

    private readonly List<Lease> _leases = new();
    // Keys are scoped to the scheduler identity that used them.
    private readonly Dictionary<(int, IdempotencyKey), (string Signature, Outcome Result)> _keys = new();
    private readonly Queue<(int, IdempotencyKey)> _keyOrder = new();
    private readonly int _retention;
    private readonly int _maxClaims;
    private long _lastToken;
    private long _now;

    public CellModel(int idempotencyRetention = 1_000_000, int maxClaims = 100_000)
    {
        _retention = idempotencyRetention;
        _maxClaims = maxClaims;
    }

    public List<Node> Nodes { get; private set; } = new();
    public Dictionary<TaskId, Allocation> Allocations { get; private set; } = new();
    public Dictionary<int, ResourceVector> TenantUsage { get; private set; } = new();
    public Dictionary<int, ResourceVector> TenantQuota { get; } = new();
    public long Version { get; private set; }

    /// <summary>Tenants that exist: ids 0 (default) to this minus one.</summary>
    public int TenantCount { get; private set; } = 1;

    /// <summary>Creates the next tenant (a state change with its own cell version, as in the cell).</summary>
    public int CreateTenant()
    {
        Version++;
        return TenantCount++;
    }

    // ------------------------------------------------------------------ nodes

    public bool IsLive(NodeId id) => id.Value >= 0 && id.Value < Nodes.Count && Nodes[id.Value].Status != NodeStatus.Removed;

    public (NodeOpStatus Status, NodeId Id) AddNode(NodeSpec spec, NodeStatus status = NodeStatus.Schedulable)
    {
        if (!spec.Capacity.IsValidRequest || status == NodeStatus.Removed) return (NodeOpStatus.Invalid, default);
        foreach (var n in Nodes)
            if (n.Status != NodeStatus.Removed && n.Spec.Name == spec.Name) return (NodeOpStatus.DuplicateName, default);
        Nodes.Add(new Node { Spec = spec, Status = status, Version = 1 });
        Version++;
        return (NodeOpStatus.Ok, new NodeId(Nodes.Count - 1));
    }

    public NodeOpStatus UpdateNode(NodeId id, NodeSpec spec)
    {
        if (!spec.Capacity.IsValidRequest) return NodeOpStatus.Invalid;
        if (!IsLive(id)) return NodeOpStatus.UnknownNode;
        var n = Nodes[id.Value];
        if (n.Spec.Name != spec.Name) return NodeOpStatus.Invalid;
        if (!n.Allocated.FitsWithin(spec.Capacity)) return NodeOpStatus.CapacityBelowAllocated;
        n.Spec = spec;
        n.Version++;
        Version++;
        return NodeOpStatus.Ok;
    }

    public NodeOpStatus SetNodeStatus(NodeId id, NodeStatus status)
    {
        if (status == NodeStatus.Removed) return NodeOpStatus.Invalid;
        if (!IsLive(id)) return NodeOpStatus.UnknownNode;
        var n = Nodes[id.Value];
        if (n.Status == status) return NodeOpStatus.Ok;
        n.Status = status;
        n.Version++;
        Version++;
        return NodeOpStatus.Ok;
    }

    public NodeOpStatus RemoveNode(NodeId id, out List<Allocation> released)
    {
        released = new List<Allocation>();
        if (!IsLive(id)) return NodeOpStatus.UnknownNode;
        foreach (var a in Allocations.Values)
            if (a.Node == id) released.Add(a);
        foreach (var a in released) Unbind(a);
        var n = Nodes[id.Value];
        n.Status = NodeStatus.Removed;
        n.Version++;
        Version++;
        return NodeOpStatus.Ok;
    }

    // ------------------------------------------------------------------ tasks, quotas

    public ReleaseStatus Release(TaskId task, long expectedGeneration)
    {
        if (!Allocations.TryGetValue(task, out var a)) return ReleaseStatus.NotBound;
        if (expectedGeneration != 0 && a.Generation != expectedGeneration) return ReleaseStatus.GenerationMismatch;
        Unbind(a);
        Version++;
        return ReleaseStatus.Released;
    }

    public void SetTenantQuota(int tenant, ResourceVector? limit)
    {
        if (tenant < 0 || tenant >= TenantCount) return;
        if (limit is { } l) TenantQuota[tenant] = l;
        else TenantQuota.Remove(tenant);
    }

    public ResourceVector Usage(int tenant) => TenantUsage.GetValueOrDefault(tenant);

    private void Bind(Allocation a)
    {
        Allocations.Add(a.Task, a);
        var n = Nodes[a.Node.Value];
        n.Allocated += a.Resources;
        n.TaskCount++;
        TenantUsage[a.Tenant.Value] = Usage(a.Tenant.Value) + a.Resources;
    }

    private void Unbind(Allocation a)
    {
        Allocations.Remove(a.Task);
        var n = Nodes[a.Node.Value];
        n.Allocated -= a.Resources;
        n.TaskCount--;
        TenantUsage[a.Tenant.Value] = Usage(a.Tenant.Value) - a.Resources;
    }

    // ------------------------------------------------------------------ leases and time

    public void Advance(TimeSpan by) => _now += by.Ticks;

    public (LeaseStatus Status, SchedulerId Id, FencingToken Token) AcquireLease(string name, TimeSpan duration)
    {
        if (string.IsNullOrWhiteSpace(name) || duration <= TimeSpan.Zero) return (LeaseStatus.Invalid, default, default);
        int id = _leases.FindIndex(l => l.Name == name);
        if (id < 0)
        {
            _leases.Add(new Lease { Name = name });
            id = _leases.Count - 1;
        }
        var s = _leases[id];
        if (s.Token != 0 && !s.Released && s.ExpiresAt > _now) return (LeaseStatus.HeldByAnother, default, default);
        s.Token = ++_lastToken;
        s.ExpiresAt = _now + duration.Ticks;
        s.Released = false;
        Version++;
        return (LeaseStatus.Granted, new SchedulerId(id), new FencingToken(s.Token));
    }

    public LeaseStatus RenewLease(SchedulerId id, FencingToken token, TimeSpan duration)
    {
        if (duration <= TimeSpan.Zero) return LeaseStatus.Invalid;
        if (id.Value < 0 || id.Value >= _leases.Count) return LeaseStatus.Invalid;
        var s = _leases[id.Value];
        if (s.Token != token.Value) return LeaseStatus.Superseded;
        if (s.Released || s.ExpiresAt <= _now) return LeaseStatus.Expired;
        s.ExpiresAt = _now + duration.Ticks;
        return LeaseStatus.Renewed;
    }

    public LeaseStatus ReleaseLease(SchedulerId id, FencingToken token)
    {
        if (id.Value < 0 || id.Value >= _leases.Count) return LeaseStatus.Invalid;
        var s = _leases[id.Value];
        if (s.Token != token.Value) return LeaseStatus.Superseded;
        s.Released = true;
        return LeaseStatus.Renewed;
    }

    // ------------------------------------------------------------------ commit

    /// <summary>Everything that identifies "the same transaction" for idempotency: mode, detection and every claim field.</summary>
    public static string Signature(CommitMode mode, ConflictDetection detection, IReadOnlyList<Claim> claims)
    {
        var parts = new List<string> { mode.ToString(), detection.ToString() };
        foreach (var c in claims)
        {
            var victims = c.Victims is null ? "" : string.Join("+", c.Victims);
            parts.Add($"{c.Task}@{c.Node}:{c.Resources.CpuMillis},{c.Resources.MemoryBytes},{c.Resources.Gpus},{c.Resources.DiskBytes}"
                + $":v{c.ExpectedNodeVersion}:t{c.Tenant.Value}:p{c.Priority}:[{victims}]");
        }
        return string.Join("|", parts);
    }

    public Outcome Commit(SchedulerId scheduler, FencingToken token, CommitMode mode, ConflictDetection detection, IdempotencyKey key, IReadOnlyList<Claim> claims)
    {
        int n = claims.Count;
        Outcome Whole(TransactionStatus s) => Outcome.Of(s, Version, 0, false, Enumerable.Repeat(ClaimStatus.NotEvaluated, n));

        // (1) fencing, before anything else.
        if (scheduler.Value < 0 || scheduler.Value >= _leases.Count) return Whole(TransactionStatus.UnknownScheduler);
        var lease = _leases[scheduler.Value];
        if (lease.Token != token.Value) return Whole(TransactionStatus.StaleFencingToken);
        if (lease.Released || lease.ExpiresAt <= _now) return Whole(TransactionStatus.LeaseExpired);
        // Shape.
        if (n == 0 || n > _maxClaims) return Whole(TransactionStatus.InvalidTransaction);
        // Idempotency.
        string signature = Signature(mode, detection, claims);
        if (!key.IsNone && _keys.TryGetValue((scheduler.Value, key), out var known))
        {
            if (known.Signature != signature) return Whole(TransactionStatus.IdempotencyKeyReused);
            return known.Result with { Replayed = true };
        }

        bool gang = mode == CommitMode.AllOrNothing;
        var savedNodes = gang ? Nodes.ConvertAll(x => x.Clone()) : null;
        var savedAllocations = gang ? new Dictionary<TaskId, Allocation>(Allocations) : null;
        var savedUsage = gang ? new Dictionary<int, ResourceVector>(TenantUsage) : null;

        long newVersion = Version + 1;
        var before = new Dictionary<int, long>(); // node -> its version before this transaction
        var statuses = new ClaimStatus[n];
        int applied = 0;
        for (int i = 0; i < n; i++)
        {
            statuses[i] = Evaluate(claims[i], detection, newVersion, before);
            if (statuses[i] == ClaimStatus.Applied) applied++;
            else if (gang)
            {
                Nodes = savedNodes!;
                Allocations = savedAllocations!;
                TenantUsage = savedUsage!;
                for (int j = 0; j < i; j++) statuses[j] = ClaimStatus.Aborted;
                for (int j = i + 1; j < n; j++) statuses[j] = ClaimStatus.NotEvaluated;
                applied = 0;
                break;
            }
        }
        var status = applied == n ? TransactionStatus.Committed : applied == 0 ? TransactionStatus.Rejected : TransactionStatus.PartiallyCommitted;
        if (applied > 0) Version = newVersion;
        var outcome = Outcome.Of(status, Version, applied, false, statuses);
        if (!key.IsNone)
        {
            _keys[(scheduler.Value, key)] = (signature, outcome);
            _keyOrder.Enqueue((scheduler.Value, key));
            while (_keyOrder.Count > _retention) _keys.Remove(_keyOrder.Dequeue());
        }
        return outcome;
    }

    private ClaimStatus Evaluate(Claim c, ConflictDetection detection, long newVersion, Dictionary<int, long> before)
    {
        // (0) malformed claims.
        if (!c.Resources.IsValidRequest) return ClaimStatus.InvalidClaim;
        if (c.Tenant.Value < 0 || c.Tenant.Value >= TenantCount) return ClaimStatus.UnknownTenant;
        var victims = c.Victims ?? Array.Empty<TaskId>();
        for (int v = 0; v < victims.Length; v++)
        {
            if (victims[v] == c.Task) return ClaimStatus.InvalidClaim;
            for (int w = 0; w < v; w++)
                if (victims[w] == victims[v]) return ClaimStatus.InvalidClaim;
        }
        // (2) the node exists and is schedulable.
        if (c.Node.Value < 0 || c.Node.Value >= Nodes.Count) return ClaimStatus.NodeUnknown;
        var node = Nodes[c.Node.Value];
        switch (node.Status)
        {
            case NodeStatus.Fenced: return ClaimStatus.NodeFenced;
            case NodeStatus.Draining: return ClaimStatus.NodeDraining;
            case NodeStatus.Down: return ClaimStatus.NodeDown;
            case NodeStatus.Removed: return ClaimStatus.NodeUnknown;
        }
        // (3) the task is not bound.
        if (Allocations.ContainsKey(c.Task)) return ClaimStatus.TaskAlreadyBound;
        // Victims: bound on this node, of strictly lower priority.
        var freed = ResourceVector.Zero;
        var freedSameTenant = ResourceVector.Zero;
        foreach (var vt in victims)
        {
            if (!Allocations.TryGetValue(vt, out var va) || va.Node != c.Node) return ClaimStatus.VictimNotFound;
            if (va.Priority >= c.Priority) return ClaimStatus.VictimPriorityTooHigh;
            freed += va.Resources;
            if (va.Tenant == c.Tenant) freedSameTenant += va.Resources;
        }
        // (4) version (coarse) and fit (both).
        if (detection == ConflictDetection.Coarse)
        {
            long seen = before.TryGetValue(c.Node.Value, out var b) ? b : node.Version;
            if (seen != c.ExpectedNodeVersion) return ClaimStatus.NodeVersionChanged;
        }
        if (!(node.Allocated - freed + c.Resources).FitsWithin(node.Spec.Capacity)) return ClaimStatus.InsufficientResources;
        // (5) quota.
        if (TenantQuota.TryGetValue(c.Tenant.Value, out var quota) && !(Usage(c.Tenant.Value) - freedSameTenant + c.Resources).FitsWithin(quota))
            return ClaimStatus.QuotaExceeded;
        // Apply.
        if (!before.ContainsKey(c.Node.Value))
        {
            before[c.Node.Value] = node.Version;
            node.Version++;
        }
        foreach (var vt in victims) Unbind(Allocations[vt]);
        Bind(new Allocation(c.Task, c.Node, c.Resources, c.Tenant, c.Priority, newVersion));
        return ClaimStatus.Applied;
    }
}
