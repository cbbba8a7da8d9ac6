using System.Diagnostics;

namespace Omega.Cells;

/// <summary>
/// The authoritative state of one cell: nodes, live bindings, tenant quotas and scheduler leases. Many scheduler workers
/// read it through lock-free <see cref="CellSnapshot"/>s and change it only through optimistic <see cref="Commit"/>s.
/// </summary>
/// <remarks>
/// <para>Concurrency: every change runs under one short commit lock (single writer), which assigns cell versions in order
/// and publishes node versions to the multi-version node table before publishing the new cell version. Snapshot readers
/// never take that lock. Concurrent commits and releases are flat-combined (Cell.Combiner.cs): one thread answers every
/// queued request in one critical section and one journal append, so the cell's working set stays on one core instead
/// of migrating with every lock hand-off (docs/commit-protocol.md, "The commit combiner"). With
/// <see cref="CommitPath.Striped"/> the commit lock stays the sequencer of every check, version and journal record, and the
/// publication to readers (binding lists, ring entries, the cell version, the feed) happens after it under per-node stripe
/// locks, in version order (Cell.Striped.cs). With <see cref="CommitPath.Concurrent"/> a plain commit or release takes no
/// commit lock at all: it checks and applies under its nodes' stripe locks and its tasks' partitions of the task index,
/// and the cell version is a watermark over finished versions (Cell.Concurrent.cs); everything else runs under the commit
/// lock and every stripe.</para>
/// <para>The cell owns no threads and no timers. It is thread-safe.</para>
/// </remarks>
public sealed partial class Cell : ICellView, ICellCommitter, IDisposable
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly CellOptions _options;

    // Published state (readers): the node table, the node count and the cell version. Written in that order.
    private NodeSlot[] _slots;
    private int _nodeCount;
    // The cell version (Published), and on the concurrent path the last version handed out (Next): written by every change,
    // so kept on lines of their own, away from the read-mostly fields every commit reads (Cell.Concurrent.cs).
    private readonly VersionWords _vw = new();

    // Writer-private state, guarded by _lock.
    private NodeLive[] _live;
    private readonly Dictionary<string, NodeId> _nodeByName = new(StringComparer.Ordinal);
    // Task -> node of its live binding. The binding itself lives only in that node's NodeBindings (issue 15: keeping the
    // whole Allocation here as well cost ~100 bytes per binding, about 1 GB at 10M bindings). An open-addressed table, not
    // a Dictionary (issue 14): one cache line per lookup inside the commit lock instead of a bucket and an entry (TaskTable.cs).
    private readonly TaskIndex _taskNode;
    private NodeBindings?[] _bindingsOnNode;             // the array is replaced on growth (Volatile); readers copy lock-free
    private ResourceVector[] _tenantUsage = new ResourceVector[16];
    private ResourceVector?[] _tenantQuota = new ResourceVector?[16];
    // Published for lock-free readers (ICellView.GetTenantUsage): written by the committer once per touched tenant per
    // transaction, so a reader never sees a claim of an all-or-nothing transaction that was rolled back.
    private TenantPublished[] _tenantPublished = new TenantPublished[16];
    private bool[] _tenantTouched = new bool[16];
    private int[] _touchedTenants = new int[16];
    private int _touchedTenantCount;
    private bool _deferTenantPublish;
    private readonly IdempotencyIndex _idempotency;
    private readonly CellCounters _counters;
    private readonly bool _prefetch;  // warm a commit's lines before taking the lock (Cell.Commit.cs, WarmClaims)
    private readonly bool _preEncode; // encode a commit's journal claims before taking the lock (Cell.Journal.cs, PreEncodeClaims)
    private readonly int _spinRounds; // the commit lock's bounded spin before blocking (Cell.Combiner.cs, EnterCommitLock)

    /// <summary>Opens an empty in-memory cell.</summary>
    public Cell(CellOptions? options = null)
    {
        _options = options ?? new CellOptions();
        _time = _options.Time;
        int cap = Math.Max(16, _options.InitialNodeCapacity);
        _slots = new NodeSlot[cap];
        _live = new NodeLive[cap];
        _bindingsOnNode = new NodeBindings?[cap];
        _idempotency = new IdempotencyIndex(Math.Max(1, _options.IdempotencyRetention));
        _counters = new CellCounters(_options.Name, _options.MeterFactory);
        _spinRounds = SpinRoundsFor(_options);
        _prefetch = _options.PrefetchOutsideLock;
        _preEncode = _options.EncodeJournalOutsideLock;
        _stripes = CreateStripes(_options);
        _taskNode = new TaskIndex(partitioned: _options.CommitPath == CommitPath.Concurrent);
        InitConcurrent();
        InitTenants();
    }

    /// <summary>The cell's name.</summary>
    public string Name => _options.Name;

    /// <summary>The current cell version: it grows by one with every change that is applied.</summary>
    public long Version => Volatile.Read(ref _vw.Published);

    /// <summary>The number of node ids handed out (removed nodes included).</summary>
    public int NodeCount => Volatile.Read(ref _nodeCount);

    /// <summary>Counters of outcomes by code, also exported through the "Omega.Cell" meter.</summary>
    public CellCounters Counters => _counters;

    /// <summary>
    /// Takes a consistent snapshot of the nodes. O(1), lock-free, never blocks or is blocked by committers.
    /// </summary>
    public CellSnapshot Snapshot()
    {
        // Order matters: the version first, then the table and count. The writer publishes the table and count before a
        // version that needs them, so whatever we read here covers the version we read.
        long v = Volatile.Read(ref _vw.Published);
        var slots = Volatile.Read(ref _slots);
        int n = Volatile.Read(ref _nodeCount);
        return new CellSnapshot(slots, n, v);
    }

    // ---------------------------------------------------------------- nodes

    /// <summary>Adds a schedulable node. Returns <see cref="NodeOpStatus.DuplicateName"/> if the name is taken.</summary>
    public NodeOpStatus AddNode(NodeSpec spec, out NodeId id, NodeStatus status = NodeStatus.Schedulable)
    {
        ArgumentNullException.ThrowIfNull(spec);
        id = default;
        if (!spec.Capacity.IsValidRequest || status == NodeStatus.Removed) return NodeOpStatus.Invalid;
        using (Serial())
        {
            if (_nodeByName.ContainsKey(spec.Name)) return NodeOpStatus.DuplicateName;
            NoteCapacity(spec.Capacity);
            int index = _nodeCount;
            if (index == _slots.Length) Grow();
            id = new NodeId(index);
            _nodeByName.Add(spec.Name, id);
            ref NodeLive live = ref _live[index];
            live = new NodeLive { Spec = spec, Status = status, Version = 1 };
            if (status == NodeStatus.Schedulable) SchedulableChanged(in live, joining: true);
            long v = _vw.Published + 1;
            _slots[index].Publish(v, live);
            Volatile.Write(ref _nodeCount, index + 1);
            Volatile.Write(ref _vw.Published, v);
            JournalNode(CellRecordKind.NodeAdded, index, null);
            return NodeOpStatus.Ok;
        }
    }

    /// <summary>Adds a node; throws if the spec is invalid or the name is taken. Convenient for setup code.</summary>
    public NodeId AddNode(NodeSpec spec)
    {
        var s = AddNode(spec, out var id);
        return s == NodeOpStatus.Ok ? id : throw new InvalidOperationException($"AddNode({spec?.Name}) failed: {s}");
    }

    /// <summary>Looks a node up by its external name.</summary>
    public bool TryGetNodeId(string name, out NodeId id)
    {
        using (Serial()) return _nodeByName.TryGetValue(name, out id);
    }

    /// <summary>
    /// Replaces a node's spec (capacity, labels, taints, failure domain). The name must not change. A capacity below what
    /// is allocated is refused, so the no-overcommit invariant holds; drain the node first.
    /// </summary>
    public NodeOpStatus UpdateNode(NodeId id, NodeSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!spec.Capacity.IsValidRequest) return NodeOpStatus.Invalid;
        using (Serial())
        {
            if (!IsLive(id)) return NodeOpStatus.UnknownNode;
            ref NodeLive live = ref _live[id.Value];
            if (!string.Equals(live.Spec!.Name, spec.Name, StringComparison.Ordinal)) return NodeOpStatus.Invalid;
            if (!live.Allocated.FitsWithin(spec.Capacity)) return NodeOpStatus.CapacityBelowAllocated;
            NoteCapacity(spec.Capacity);
            bool sched = live.Status == NodeStatus.Schedulable;
            if (sched) SchedulableChanged(in live, joining: false);
            live.Spec = spec;
            if (sched) SchedulableChanged(in live, joining: true);
            live.Version++;
            PublishSingle(id.Value);
            JournalNode(CellRecordKind.NodeUpdated, id.Value, null);
            return NodeOpStatus.Ok;
        }
    }

    /// <summary>Sets a node's status (schedulable, draining, fenced, down). Bindings on the node are kept.</summary>
    public NodeOpStatus SetNodeStatus(NodeId id, NodeStatus status)
    {
        if (status == NodeStatus.Removed) return NodeOpStatus.Invalid;
        using (Serial())
        {
            if (!IsLive(id)) return NodeOpStatus.UnknownNode;
            ref NodeLive live = ref _live[id.Value];
            if (live.Status == status) return NodeOpStatus.Ok;
            if (live.Status == NodeStatus.Schedulable) SchedulableChanged(in live, joining: false);
            live.Status = status;
            if (status == NodeStatus.Schedulable) SchedulableChanged(in live, joining: true);
            live.Version++;
            PublishSingle(id.Value);
            JournalNode(CellRecordKind.NodeStatusChanged, id.Value, null);
            return NodeOpStatus.Ok;
        }
    }

    /// <summary>
    /// Removes a node. Its live bindings are released and returned, so the caller can requeue those tasks.
    /// The id is never reused.
    /// </summary>
    public NodeOpStatus RemoveNode(NodeId id, out IReadOnlyList<Allocation> released)
    {
        released = Array.Empty<Allocation>();
        using (Serial())
        {
            if (!IsLive(id)) return NodeOpStatus.UnknownNode;
            // Reservations on the node go first, each with its own record (a hold on a node that no longer exists
            // would count against nothing and could never be consumed). O(reservations): removal is rare.
            if (_reservations.Count > 0)
            {
                List<ReservationLive>? holds = null;
                foreach (var r in _reservations.Values)
                    if (r.Hold.Node == id) (holds ??= new()).Add(r);
                if (holds is not null)
                    foreach (var r in holds)
                    {
                        RemoveReservation(in r);
                        PublishSingle(id.Value);
                        JournalReservationReleased(r.Hold.Task, ReservationReleaseReason.Released);
                        _reservationsReleased[(int)ReservationReleaseReason.Released]++;
                    }
            }
            var set = _bindingsOnNode[id.Value];
            if (set is { Count: > 0 })
            {
                var list = new List<Allocation>(set.Count);
                for (int i = 0; i < set.Count; i++) list.Add(set[i]);
                foreach (var a in list) { RemoveBinding(a); FeedBinding(BindingChange.Unbound, a); }
                released = list;
            }
            ref NodeLive live = ref _live[id.Value];
            if (live.Status == NodeStatus.Schedulable) SchedulableChanged(in live, joining: false);
            live.Status = NodeStatus.Removed;
            live.Version++;
            _nodeByName.Remove(live.Spec!.Name);
            PublishSingle(id.Value);
            FlushFeed(_vw.Published, published: true);
            JournalNode(CellRecordKind.NodeRemoved, id.Value, released);
            return NodeOpStatus.Ok;
        }
    }

    // ---------------------------------------------------------------- tasks and allocations

    /// <summary>
    /// Releases a task's binding (completion, failure, eviction) and frees its resources. With a non-zero
    /// <paramref name="expectedGeneration"/> the release only happens if the live binding has that generation, so a late
    /// report about an older binding cannot free a newer one.
    /// </summary>
    public ReleaseStatus Release(TaskId task, long expectedGeneration = 0)
    {
        if (_prefetch) WarmRelease(task);
        if (PlainLock)
        {
            EnterCommitLock();
            try { return ReleaseLocked(task, expectedGeneration); }
            finally { _lock.Exit(); }
        }
        if (_stripes is not null) return ReleaseStriped(task, expectedGeneration);
        if (_cstripes is not null) return ReleaseConcurrent(task, expectedGeneration);
        return ReleaseCombined(task, expectedGeneration);
    }

    // Caller holds _lock (a lone call, or the commit combiner answering a queued release).
    private ReleaseStatus ReleaseLocked(TaskId task, long expectedGeneration)
    {
        if (!TryGetBindingLocked(task, out var a)) return _counters.Count(ReleaseStatus.NotBound);
        if (expectedGeneration != 0 && a.Generation != expectedGeneration) return _counters.Count(ReleaseStatus.GenerationMismatch);
        RemoveBinding(a);
        FeedBinding(BindingChange.Unbound, a);
        PublishSingle(a.Node.Value);
        FlushFeed(_vw.Published, published: true); // striped path: delivered by the caller's publication instead
        JournalRelease(task);
        return _counters.Count(ReleaseStatus.Released);
    }

    /// <summary>Reads a task's live binding.</summary>
    public bool TryGetAllocation(TaskId task, out Allocation allocation)
    {
        using (Serial()) return TryGetBindingLocked(task, out allocation);
    }

    /// <summary>
    /// Reads the live binding of <paramref name="task"/> if it is on node <paramref name="node"/>. Lock-free: it never
    /// waits for or delays a commit (the node's seqlock gives the binding as the committer last left it), so an agent's
    /// acknowledgement, which names its own node, is validated without the commit lock (issue 15). A binding on another
    /// node reads as absent, exactly as <see cref="TryGetAllocation"/> followed by a node comparison would.
    /// </summary>
    public bool TryGetAllocationOnNode(NodeId node, TaskId task, out Allocation allocation)
    {
        var all = Volatile.Read(ref _bindingsOnNode);
        if ((uint)node.Value < (uint)all.Length && Volatile.Read(ref all[node.Value]) is { } set) return set.TryRead(task, out allocation);
        allocation = default;
        return false;
    }

    /// <summary>
    /// The number of live bindings. On <see cref="CommitPath.Concurrent"/> it is read without the commit lock (the sum of
    /// the task partitions' counts, each exact; while commits are in flight the sum may count part of one), so a poller
    /// does not stop every committer; exact whenever no commit or release is in flight.
    /// </summary>
    public int AllocationCount
    {
        get
        {
            if (_cstripes is not null) return _taskNode.Count;
            using (Serial()) return _taskNode.Count;
        }
    }

    // Caller holds _lock (or restores single-threaded).
    private bool TryGetBindingLocked(TaskId task, out Allocation allocation)
    {
        if (_taskNode.TryGetValue(task, out var node) && _bindingsOnNode[node.Value] is { } set) return set.TryGet(task, out allocation);
        allocation = default;
        return false;
    }

    /// <summary>Copies the live bindings on a node. Lock-free (see <see cref="CopyAllocationsOnNode"/>).</summary>
    public IReadOnlyList<Allocation> GetAllocationsOnNode(NodeId id)
    {
        var list = new List<Allocation>();
        CopyAllocationsOnNode(id, list);
        return list.Count == 0 ? Array.Empty<Allocation>() : list;
    }

    /// <summary>
    /// Appends the live bindings on node <paramref name="id"/> to <paramref name="into"/> and returns how many. Lock-free:
    /// a per-node seqlock gives a consistent copy of the node's bindings as the committer last left them, without waiting
    /// for or blocking commits (the scheduler's preemption planner calls this per candidate node).
    /// </summary>
    public int CopyAllocationsOnNode(NodeId id, List<Allocation> into)
    {
        ArgumentNullException.ThrowIfNull(into);
        var all = Volatile.Read(ref _bindingsOnNode);
        if ((uint)id.Value >= (uint)Volatile.Read(ref _nodeCount) || (uint)id.Value >= (uint)all.Length) return 0;
        return Volatile.Read(ref all[id.Value]) is { } set ? set.CopyTo(into) : 0;
    }

    /// <summary>Copies all live bindings (an O(n) control-plane read, for inspection and audits).</summary>
    public IReadOnlyList<Allocation> GetAllocations()
    {
        using (Serial())
        {
            var list = new List<Allocation>(_taskNode.Count);
            foreach (var set in _bindingsOnNode)
                if (set is not null)
                    for (int i = 0; i < set.Count; i++) list.Add(set[i]);
            return list;
        }
    }

    // ---------------------------------------------------------------- quotas

    /// <summary>
    /// Sets (or, with null, clears) a tenant's hard quota, enforced at commit. The tenant must exist
    /// (<see cref="CreateTenant(string, ResourceVector?, out TenantId)"/>); an unknown one is refused, never allocated.
    /// </summary>
    public TenantOpStatus SetTenantQuota(TenantId tenant, ResourceVector? limit)
    {
        if (limit is { } q && !q.IsValidRequest) return TenantOpStatus.InvalidQuota;
        using (Serial())
        {
            if ((uint)tenant.Value >= (uint)_tenantCount) return TenantOpStatus.UnknownTenant;
            _tenantQuota[tenant.Value] = limit;
            PublishTenant(tenant.Value);
            JournalQuota(tenant.Value);
            return TenantOpStatus.Ok;
        }
    }

    /// <summary>
    /// Reads a tenant's current usage and quota; (zero, null) for an unknown tenant. Lock-free: the committer publishes
    /// each touched tenant once per transaction (after the transaction's nodes), so the value never includes part of a
    /// transaction, but it is the latest value, not the one at some snapshot's version. Quota is enforced at commit.
    /// </summary>
    public (ResourceVector Usage, ResourceVector? Quota) GetTenantUsage(TenantId tenant)
    {
        // Count before array: the count is written after the array that holds the tenant (CreateTenant, EnsureTenant).
        if ((uint)tenant.Value >= (uint)Volatile.Read(ref _tenantCount)) return (default, null);
        if (_cstripes is not null) return ReadTenantConcurrent(tenant.Value); // plus the per-stripe shards (Cell.Concurrent.cs)
        return Volatile.Read(ref _tenantPublished)[tenant.Value].Read();
    }

    // ---------------------------------------------------------------- audit

    /// <summary>
    /// Recomputes every node's allocated resources and every tenant's usage from the bindings and checks the invariants:
    /// no node over capacity, no task bound twice, per-node and per-tenant sums consistent. Returns the violations found
    /// (empty when healthy). O(cell); for tests, audits and repair, not for the hot path.
    /// </summary>
    public IReadOnlyList<string> Audit()
    {
        var problems = new List<string>();
        using (Serial())
        {
            var sums = new ResourceVector[_nodeCount];
            var counts = new int[_nodeCount];
            var tenants = new ResourceVector[_tenantUsage.Length];
            foreach (var (task, node) in _taskNode)
            {
                if ((uint)node.Value >= (uint)_nodeCount) { problems.Add($"{task} bound to unknown node {node}"); continue; }
                counts[node.Value]++;
                if (_bindingsOnNode[node.Value]?.Contains(task) != true) problems.Add($"{task} missing from node index of {node}");
            }
            for (int n = 0; n < _bindingsOnNode.Length; n++)
            {
                if (_bindingsOnNode[n] is not { } set) continue;
                for (int i = 0; i < set.Count; i++)
                {
                    var a = set[i];
                    if (!_taskNode.TryGetValue(a.Task, out var owner) || owner.Value != n) problems.Add($"{a.Task} listed on n{n} but the task index says {(_taskNode.ContainsKey(a.Task) ? owner.ToString() : "unbound")}");
                    if (n >= _nodeCount) { problems.Add($"{a.Task} bound to unknown node n{n}"); continue; }
                    sums[n] += a.Resources;
                    if ((uint)a.Tenant.Value >= (uint)_tenantCount) { problems.Add($"{a.Task} charged to unknown tenant {a.Tenant}"); continue; }
                    tenants[a.Tenant.Value] += a.Resources;
                }
            }
            foreach (var (task, r) in _reservations)
            {
                var h = r.Hold;
                if (h.Task != task) problems.Add($"reservation key {task} holds {h.Task}");
                if (_taskNode.ContainsKey(task)) problems.Add($"{task} is both bound and reserved");
                if ((uint)h.Node.Value >= (uint)_nodeCount || _live[h.Node.Value].Status == NodeStatus.Removed) { problems.Add($"{task} reserved on unknown or removed node {h.Node}"); continue; }
                sums[h.Node.Value] += h.Resources;
                if ((uint)h.Tenant.Value >= (uint)_tenantCount) { problems.Add($"reservation of {task} charged to unknown tenant {h.Tenant}"); continue; }
                tenants[h.Tenant.Value] += h.Resources;
            }
            for (int i = 0; i < _nodeCount; i++)
            {
                ref NodeLive live = ref _live[i];
                if (live.Allocated != sums[i]) problems.Add($"node n{i} allocated {live.Allocated} but bindings and reservations sum to {sums[i]}");
                if (live.TaskCount != counts[i]) problems.Add($"node n{i} task count {live.TaskCount} but {counts[i]} bindings");
                if (!live.Allocated.FitsWithin(live.Spec!.Capacity)) problems.Add($"node n{i} over capacity: {live.Allocated} > {live.Spec.Capacity}");
                if (!live.Allocated.IsNonNegative) problems.Add($"node n{i} negative allocation {live.Allocated}");
                if ((_bindingsOnNode[i]?.Count ?? 0) != counts[i]) problems.Add($"node n{i} index holds {_bindingsOnNode[i]?.Count ?? 0} tasks, bindings {counts[i]}");
            }
            for (int t = 0; t < _tenantCount; t++)
            {
                if (_tenantUsage[t] != tenants[t]) problems.Add($"tenant t{t} usage {_tenantUsage[t]} but bindings sum to {tenants[t]}");
                if (_tenantQuota[t] is { } q && !_tenantUsage[t].FitsWithin(q)) problems.Add($"tenant t{t} over quota: {_tenantUsage[t]} > {q}");
                var published = _tenantPublished[t].Read();
                if (published.Usage != _tenantUsage[t] || published.Quota != _tenantQuota[t]) problems.Add($"tenant t{t} published usage {published.Usage} / quota {published.Quota} but holds {_tenantUsage[t]} / {_tenantQuota[t]}");
            }
            AuditProtected(problems);
        }
        return problems;
    }

    /// <inheritdoc />
    public void Dispose() => _counters.Dispose();

    // ---------------------------------------------------------------- writer internals (caller holds _lock)

    private bool IsLive(NodeId id) => (uint)id.Value < (uint)_nodeCount && _live[id.Value].Status != NodeStatus.Removed;

    private void Grow()
    {
        int cap = _slots.Length * 2;
        var slots = new NodeSlot[cap];
        Array.Copy(_slots, slots, _nodeCount);
        Array.Resize(ref _live, cap);
        var bindings = _bindingsOnNode;
        // Never shrink: restore staging may have sized it past the node table (Cell.Restore.cs).
        Array.Resize(ref bindings, Math.Max(cap, bindings.Length));
        Volatile.Write(ref _bindingsOnNode, bindings);
        // Readers holding the old array keep reading versions they are entitled to; new writes go to the new array only.
        Volatile.Write(ref _slots, slots);
    }

    /// <summary>Grows the per-tenant arrays to hold id <paramref name="t"/>. Only ever called for an id the registry is
    /// creating (or restoring), which is below <see cref="CellOptions.MaxTenants"/>: never sized by untrusted input.</summary>
    private void EnsureTenant(int t)
    {
        if (t < _tenantUsage.Length) return;
        int cap = Math.Min(Math.Max(t + 1, _tenantUsage.Length * 2), Math.Max(t + 1, _options.MaxTenants));
        Array.Resize(ref _tenantUsage, cap);
        Array.Resize(ref _tenantQuota, cap);
        Array.Resize(ref _tenantGuarantee, cap);
        Array.Resize(ref _tenantUnmet, cap);
        Array.Resize(ref _tenantNames, cap);
        Array.Resize(ref _tenantTouched, cap);
        // Copied (seq words included) into a new array published before the tenant count that makes the new id readable.
        var published = _tenantPublished;
        Array.Resize(ref published, cap);
        Volatile.Write(ref _tenantPublished, published);
    }

    // The element-wise largest capacity any node has had: admission refuses a request above it (RequestExceedsLargestNode).
    // Only grows (a removed or shrunk node leaves it high), which errs towards accepting: such a job parks instead.
    private ResourceVector _largestCapacity;
    private volatile StrongBoxVector? _largestPublished;

    private sealed class StrongBoxVector(ResourceVector value)
    {
        public readonly ResourceVector Value = value;
    }

    private void NoteCapacity(ResourceVector capacity)
    {
        var max = ResourceVector.Max(_largestCapacity, capacity);
        if (max == _largestCapacity && _largestPublished is not null) return;
        _largestCapacity = max;
        _largestPublished = new StrongBoxVector(max);
    }

    /// <summary>
    /// The element-wise largest capacity of any node the cell has held, or null before the first node. A request above it
    /// in some dimension fits no node; admission refuses it rather than parking it forever. Lock-free.
    /// </summary>
    public ResourceVector? LargestNodeCapacity => _largestPublished?.Value;

    /// <summary>Publishes one node's live state as a new cell version (for single-node changes outside a transaction).</summary>
    private void PublishSingle(int index)
    {
        if (_deferring)
        {
            // Striped release: the version is taken now, the ring entry and the version are written by the caller's
            // publication (Cell.Striped.cs).
            AssignDeferred(SequencedVersion + 1);
            _work!.AddTouched(index);
            return;
        }
        long v = _vw.Published + 1;
        _slots[index].Publish(v, _live[index]);
        Volatile.Write(ref _vw.Published, v);
    }

    private void AddBinding(in Allocation a)
    {
        // TryAdd fails only under Buggify.SkipTaskBoundCheck (TryApply refuses a bound task otherwise): the broken
        // variant overwrites, losing the first binding from the index, which the stress tests must then catch.
        if (!_taskNode.TryAdd(a.Task, a.Node)) _taskNode[a.Task] = a.Node;
        ref NodeLive live = ref _live[a.Node.Value];
        live.Allocated += a.Resources;
        live.TaskCount++;
        if (live.Status == NodeStatus.Schedulable) _schedAllocated += a.Resources;
        if (_deferring) _work!.AddOp(add: true, a); // published outside the lock by the striped path (Cell.Striped.cs)
        else (_bindingsOnNode[a.Node.Value] ??= new NodeBindings(a.Node)).Add(a);
        _tenantUsage[a.Tenant.Value] += a.Resources;
        UsageChanged(a.Tenant.Value);
        TenantChanged(a.Tenant.Value);
    }

    private void RemoveBinding(in Allocation a)
    {
        _taskNode.Remove(a.Task);
        ref NodeLive live = ref _live[a.Node.Value];
        live.Allocated -= a.Resources;
        live.TaskCount--;
        if (live.Status == NodeStatus.Schedulable) _schedAllocated -= a.Resources;
        if (_deferring) _work!.AddOp(add: false, a); // the list removal, then ForgetPhaseOfReleased, at publication
        else
        {
            _bindingsOnNode[a.Node.Value]!.Remove(a.Task);
            ForgetPhaseOfReleased(a.Task); // after the list's removal: the order the lock-free reports rely on (Cell.Lifecycle.cs)
        }
        _tenantUsage[a.Tenant.Value] -= a.Resources;
        UsageChanged(a.Tenant.Value);
        TenantChanged(a.Tenant.Value);
    }

    /// <summary>Publishes a tenant's usage and quota to lock-free readers.</summary>
    private void PublishTenant(int t) => _tenantPublished[t].Publish(_tenantUsage[t], _tenantQuota[t]);

    // Outside a transaction a usage change is published at once; inside one (Commit) it is published once per tenant at
    // the end, after the rollback of a failed all-or-nothing transaction, so readers never see a claim that did not stick.
    private void TenantChanged(int t)
    {
        if (!_deferTenantPublish) { PublishTenant(t); return; }
        if (_tenantTouched[t]) return;
        _tenantTouched[t] = true;
        if (_touchedTenantCount == _touchedTenants.Length) Array.Resize(ref _touchedTenants, _touchedTenants.Length * 2);
        _touchedTenants[_touchedTenantCount++] = t;
    }

    private void PublishTouchedTenants()
    {
        for (int i = 0; i < _touchedTenantCount; i++)
        {
            int t = _touchedTenants[i];
            _tenantTouched[t] = false;
            PublishTenant(t);
        }
        _touchedTenantCount = 0;
        _deferTenantPublish = false;
    }

    private long Now() => _time.GetTimestamp();

    private DateTimeOffset ToWallClock(long timestamp)
    {
        long now = _time.GetTimestamp();
        var delta = TimeSpan.FromSeconds((timestamp - now) / (double)_time.TimestampFrequency);
        return _time.GetUtcNow() + delta;
    }

    private long TicksFor(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    [Conditional("DEBUG")]
    private void AssertLocked() => Debug.Assert(_lock.IsHeldByCurrentThread);
}
