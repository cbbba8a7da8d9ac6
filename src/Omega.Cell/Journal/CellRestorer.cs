namespace Omega.Cells;

/// <summary>
/// Rebuilds a <see cref="Cell"/> from stored state: first the materialized state of a checkpoint (fed through the
/// <see cref="ICellRecordVisitor"/> callbacks, in any order, with upsert semantics), then the journal records written
/// after it (<see cref="Replay"/>, in sequence order), then <see cref="Complete"/>. Nothing is re-validated: the records
/// describe what the cell already decided. Derived state (per-node sums, task indexes, tenant usage, name indexes) is
/// recomputed once at the end, and <see cref="Cell.Audit"/> can check it.
/// </summary>
/// <remarks>Single-threaded. The restorer can build one cell only.</remarks>
public sealed class CellRestorer : ICellRecordVisitor, IDisposable
{
    private readonly Cell _cell;
    private readonly List<RestoredNode> _nodes = new();
    private readonly List<RestoredLease?> _leases = new();
    private readonly Dictionary<int, ResourceVector?> _quotas = new();
    private readonly List<DomainLossConfirmation> _domainLosses = new();
    private readonly Dictionary<string, StoredObject> _objects = new(StringComparer.Ordinal);
    private readonly Dictionary<int, string> _tenants = new();
    private readonly Dictionary<TaskId, CellReservation> _reservations = new();
    private readonly Dictionary<int, ResourceVector?> _guarantees = new();
    private readonly Dictionary<string, byte[]> _authRecords = new(StringComparer.Ordinal);
    private readonly Dictionary<string, CellRecoveryBudget> _budgets = new(StringComparer.Ordinal);
    private readonly Dictionary<(byte Shift, long Key), string> _homes = new();
    private readonly Dictionary<IdempotencyIndex.ScopedKey, RestoredOutcome> _outcomes = new();
    private long _version;
    private long _sequence;
    private long _currentSequence;
    private bool _completed;

    /// <summary>Starts restoring a cell with the given options (its clock converts stored lease expiries back).</summary>
    public CellRestorer(CellOptions? options = null)
    {
        _cell = new Cell(options);
    }

    /// <summary>The cell version restored so far.</summary>
    public long CellVersion => _version;

    /// <summary>The journal sequence restored so far: records up to it are included.</summary>
    public long Sequence => _sequence;

    /// <summary>The number of bindings restored so far.</summary>
    public int AllocationCount => _cell.RestoredBindingCount;

    /// <summary>
    /// Sizes the binding table for about <paramref name="count"/> bindings before they are restored (a hint a checkpoint
    /// records): one allocation instead of growth by doubling, which rehashes every entry again and briefly holds the
    /// old and the new table together. A wrong hint costs memory or a later growth, never correctness.
    /// </summary>
    public void ExpectBindings(int count)
    {
        if (count > 0) _cell.ExpectRestoredBindings(count);
    }

    /// <summary>
    /// Sizes each node's binding list before the bindings are restored: <paramref name="capacity"/>[n] is about how many
    /// bindings node n will hold (a checkpoint's per-node counts). Staging then never grows a list by doubling, which
    /// leaves the outgrown arrays as garbage at recovery's memory peak, and the final trim copies nothing. A wrong size
    /// costs a growth or a trim, never correctness. Call before the first binding.
    /// </summary>
    public void ExpectNodeBindings(ReadOnlySpan<int> capacity) => _cell.ExpectRestoredNodeBindings(capacity);

    /// <summary>
    /// Starts a pipelined load of checkpointed bindings (issue 15: recovery in seconds). The caller feeds the bindings and
    /// releases in checkpoint order through the loader (upsert semantics, as <see cref="Bind"/> and <see cref="Unbind"/>);
    /// the loader updates the task index on the caller's thread and hands the records, in blocks, to one dedicated
    /// thread that updates the per-node lists in the same order. <see cref="BindingLoader.Complete"/> waits for that
    /// thread; nothing else may use this restorer until it returns. The result is exactly what Bind/Unbind would build.
    /// </summary>
    public BindingLoader BeginBindingLoad() => new(_cell);

    /// <summary>
    /// A two-thread load of bindings into a restorer (<see cref="BeginBindingLoad"/>). Not thread-safe: one caller feeds
    /// it. Dispose without <see cref="Complete"/> stops the node thread and leaves the restorer unusable.
    /// </summary>
    public sealed class BindingLoader : IDisposable
    {
        // 4,096 records (~512 KB) per block: large enough that the hand-over (two semaphore operations) is noise, small
        // enough that four blocks stay in the caches the two threads share.
        private const int BlockSize = 4096;
        private const int Blocks = 4;

        private struct Op
        {
            public Allocation Allocation; // Node = -1: a release of Allocation.Task
            public int Previous;          // the node the task was on before this record (-1: none)
        }

        private readonly Cell _cell;
        private readonly Op[][] _blocks = new Op[Blocks][];
        private readonly int[] _counts = new int[Blocks];
        private readonly SemaphoreSlim _filled = new(0);
        private readonly SemaphoreSlim _free = new(Blocks);
        private readonly Thread _thread;
        private int _fill;          // block being filled by the caller (ring position)
        private int _n;             // records in it
        private volatile bool _stop;
        private Exception? _error;
        private bool _done;

        internal BindingLoader(Cell cell)
        {
            _cell = cell;
            for (int i = 0; i < Blocks; i++) _blocks[i] = new Op[BlockSize];
            _free.Wait(); // the caller owns block 0 from the start
            _thread = new Thread(NodeLoop) { IsBackground = true, Name = "omega-restore-nodes" };
            _thread.Start();
        }

        /// <summary>Upserts a binding (a later record for the same task replaces the earlier one).</summary>
        public void Bind(in Allocation allocation)
        {
            ref Op op = ref _blocks[_fill][_n];
            op.Previous = _cell.RestoreTaskBind(allocation.Task, allocation.Node);
            op.Allocation = allocation;
            if (++_n == BlockSize) Hand();
        }

        /// <summary>Removes a task's binding if one was restored.</summary>
        public void Unbind(TaskId task)
        {
            int previous = _cell.RestoreTaskUnbind(task);
            if (previous < 0) return; // nothing on any list to remove
            ref Op op = ref _blocks[_fill][_n];
            op.Previous = previous;
            op.Allocation = new Allocation(task, new NodeId(-1), default, default, 0, 0);
            if (++_n == BlockSize) Hand();
        }

        // Gives the filled block to the node thread and takes the next free one (waits while all are in flight).
        private void Hand()
        {
            _counts[_fill] = _n;
            _filled.Release();
            _fill = (_fill + 1) % Blocks;
            _n = 0;
            _free.Wait();
            if (Volatile.Read(ref _error) is { } e) throw new InvalidDataException("restoring the bindings failed: " + e.Message, e);
        }

        private void NodeLoop()
        {
            int take = 0;
            try
            {
                while (true)
                {
                    _filled.Wait();
                    int n = _counts[take];
                    if (n < 0 || _stop) return; // the end marker (Complete) or a stop (Dispose)
                    var block = _blocks[take];
                    for (int i = 0; i < n; i++)
                    {
                        ref readonly Op op = ref block[i];
                        if (op.Allocation.Node.Value < 0) _cell.RestoreNodeUnbind(op.Allocation.Task, op.Previous);
                        else _cell.RestoreNodeBind(op.Allocation, op.Previous);
                    }
                    take = (take + 1) % Blocks;
                    _free.Release();
                }
            }
#pragma warning disable CA1031 // carried to the feeding thread and rethrown there
            catch (Exception e)
            {
                Volatile.Write(ref _error, e);
                _free.Release(Blocks); // a feeder waiting for a block wakes, sees the error and throws
            }
#pragma warning restore CA1031
        }

        /// <summary>Hands over the last records and waits until the node thread has applied everything.</summary>
        public void Complete()
        {
            if (_done) throw new InvalidOperationException("already completed");
            _done = true;
            if (_n > 0) Hand();
            _counts[_fill] = -1;        // the end marker, in the block the caller owns
            _filled.Release();
            _thread.Join();
            if (_error is { } e) throw new InvalidDataException("restoring the bindings failed: " + e.Message, e);
        }

        /// <summary>Stops the node thread if <see cref="Complete"/> was not called (the load failed part-way).</summary>
        public void Dispose()
        {
            if (!_done)
            {
                _done = true;
                _stop = true;
                _filled.Release(Blocks + 1);
                _thread.Join();
            }
            _filled.Dispose();
            _free.Dispose();
        }
    }

    /// <summary>Sets the cell version and journal sequence a checkpoint covers.</summary>
    public void SetCheckpointPosition(long cellVersion, long sequence)
    {
        _version = cellVersion;
        _sequence = sequence;
    }

    /// <summary>
    /// Restores a remembered idempotency outcome of scheduler <paramref name="scheduler"/> from a checkpoint;
    /// <paramref name="order"/> is the sequence of the record that created it.
    /// </summary>
    public void RestoreOutcome(SchedulerId scheduler, IdempotencyKey key, ulong transactionHash, TransactionStatus status, long resultVersion, int applied, ReadOnlySpan<ClaimStatus> claims, long order)
        => _outcomes[new IdempotencyIndex.ScopedKey(scheduler, key)] = new RestoredOutcome(transactionHash, status, resultVersion, applied, claims.ToArray(), order);

    /// <summary>Forgets a remembered idempotency outcome (the store evicted it after the retention window).</summary>
    public void ForgetOutcome(SchedulerId scheduler, IdempotencyKey key) => _outcomes.Remove(new IdempotencyIndex.ScopedKey(scheduler, key));

    /// <summary>The scope under which outcomes stored before keys were scoped to schedulers are restored (no scheduler matches it).</summary>
    public static SchedulerId LegacyScope => IdempotencyScope.Legacy;

    /// <summary>
    /// Applies one journal record. Records at or below <see cref="Sequence"/> are already included and are skipped
    /// (returns false); a record that is not the next one is a gap in the journal and throws <see cref="InvalidDataException"/>.
    /// </summary>
    /// <remarks>A batch frame (<see cref="CellBatch"/>) is accepted too: it is validated whole, then its records are
    /// replayed in order as above; returns true when any of them was applied.</remarks>
    public bool Replay(ReadOnlySpan<byte> record)
    {
        if (CellBatch.IsFrame(record))
        {
            CellBatch.Validate(record);
            bool any = false;
            foreach (var r in CellBatch.Records(record)) any |= Replay(r);
            return any;
        }
        var (_, seq, _) = CellRecord.ReadHeader(record);
        if (seq <= _sequence) return false;
        if (seq != _sequence + 1) throw new InvalidDataException($"journal gap: expected record {_sequence + 1}, found {seq}");
        CellRecord.Decode(record, this);
        return true;
    }

    /// <summary>Finishes the restore: recomputes derived state, publishes every node at the restored version and returns the cell.</summary>
    public Cell Complete()
    {
        if (_completed) throw new InvalidOperationException("already completed");
        _completed = true;
        var nodes = new (NodeSpec, NodeStatus, long)[_nodes.Count];
        for (int i = 0; i < nodes.Length; i++)
        {
            var n = _nodes[i];
            if (n.Spec is null) throw new InvalidDataException($"stored state names node n{i} but holds no spec for it");
            nodes[i] = (n.Spec, n.Status, n.Version);
        }
        var leases = new (string, FencingToken, DateTimeOffset, bool)[_leases.Count];
        for (int i = 0; i < leases.Length; i++)
        {
            var l = _leases[i] ?? throw new InvalidDataException($"stored state names scheduler s{i} but holds no lease for it");
            leases[i] = (l.Name, l.Token, l.ExpiresAt, l.Released);
        }
        var outcomes = new List<KeyValuePair<IdempotencyIndex.ScopedKey, RestoredOutcome>>(_outcomes);
        outcomes.Sort(static (a, b) => a.Value.Order.CompareTo(b.Value.Order));
        _cell.CompleteRestore(nodes, leases, _tenants, _quotas, outcomes, _version, _sequence, _reservations.Values, _guarantees);
        _cell.RestoreDomainLosses(_domainLosses.ToArray());
        _cell.RestoreObjects(_objects);
        _cell.RestoreAuthRecords(_authRecords);
        _cell.RestoreRecoveryBudgets(_budgets.Values, _homes);
        return _cell;
    }

    /// <summary>Disposes the cell under construction unless <see cref="Complete"/> handed it out.</summary>
    public void Dispose()
    {
        if (!_completed) _cell.Dispose();
        _completed = true;
    }

    /// <inheritdoc />
    public void Begin(CellRecordKind kind, long sequence, long cellVersion)
    {
        _currentSequence = sequence;
        _sequence = sequence;
        _version = cellVersion;
    }

    /// <inheritdoc />
    public void Bind(in Allocation allocation) => _cell.RestoreBind(allocation);

    /// <inheritdoc />
    public void Unbind(TaskId task) => _cell.RestoreUnbind(task);

    /// <inheritdoc />
    public void NodeVersion(NodeId node, long nodeVersion)
    {
        var n = NodeAt(node.Value);
        n.Version = Math.Max(n.Version, nodeVersion);
    }

    /// <inheritdoc />
    public void Node(NodeId node, NodeSpec spec, NodeStatus status, long nodeVersion)
    {
        var n = NodeAt(node.Value);
        n.Spec = spec;
        n.Status = status;
        n.Version = Math.Max(n.Version, nodeVersion);
    }

    /// <inheritdoc />
    public void Idempotency(SchedulerId scheduler, IdempotencyKey key, ulong transactionHash, TransactionStatus status, long resultVersion, int applied, ReadOnlySpan<ClaimStatus> claims)
        => RestoreOutcome(scheduler, key, transactionHash, status, resultVersion, applied, claims, _currentSequence);

    /// <inheritdoc />
    public void Lease(SchedulerId id, string name, FencingToken token, DateTimeOffset expiresAt, bool released)
    {
        while (_leases.Count <= id.Value) _leases.Add(null);
        _leases[id.Value] = new RestoredLease(name, token, expiresAt, released);
    }

    /// <inheritdoc />
    public void Quota(TenantId tenant, ResourceVector? limit) => _quotas[tenant.Value] = limit;

    /// <inheritdoc />
    public void DomainLoss(string domain, string author, string reason, DateTimeOffset at, bool withdrawn)
        => RestoreDomainLoss(domain, author, reason, at, _version, withdrawn);

    /// <summary>
    /// Restores (or, withdrawn, removes) a domain-loss confirmation with the cell version of the record that made it
    /// (a checkpoint keeps that version; journal replay takes it from the record header).
    /// </summary>
    public void RestoreDomainLoss(string domain, string author, string reason, DateTimeOffset at, long version, bool withdrawn)
    {
        _domainLosses.RemoveAll(d => string.Equals(d.Domain, domain, StringComparison.Ordinal));
        if (!withdrawn) _domainLosses.Add(new DomainLossConfirmation(domain, author, reason, at, version));
    }

    /// <inheritdoc />
    public void ObjectPut(string key, long created, ReadOnlySpan<byte> value) => RestoreObject(key, value, _version, created);

    /// <inheritdoc />
    public void ObjectDeleted(string key) => _objects.Remove(key);

    /// <summary>
    /// Restores a control-plane object with the version of its last write and its creation version (a checkpoint keeps
    /// both; journal replay takes the version from the record header).
    /// </summary>
    public void RestoreObject(string key, ReadOnlySpan<byte> value, long version, long created)
        => _objects[key] = new StoredObject(key, value.ToArray(), version, created);

    /// <inheritdoc />
    public void AuthRecordPut(string key, ReadOnlySpan<byte> value) => _authRecords[key] = value.ToArray();

    /// <inheritdoc />
    public void AuthRecordDeleted(string key) => _authRecords.Remove(key);

    /// <inheritdoc />
    public void Tenant(TenantId tenant, string name) => _tenants[tenant.Value] = name;

    /// <inheritdoc />
    public void Reserve(in CellReservation reservation) => _reservations[reservation.Task] = reservation;

    /// <inheritdoc />
    public void Unreserve(TaskId task) => _reservations.Remove(task);

    /// <inheritdoc />
    public void Guarantee(TenantId tenant, ResourceVector? guaranteed) => _guarantees[tenant.Value] = guaranteed;

    /// <inheritdoc />
    public void RecoveryBudget(string region, ResourceVector? capacity, int minPriority)
    {
        if (capacity is { } c) _budgets[region] = new CellRecoveryBudget(region, c, minPriority);
        else _budgets.Remove(region);
    }

    /// <inheritdoc />
    public void FailoverHome(long groupKey, byte keyShift, string? region)
    {
        if (region is null) _homes.Remove((keyShift, groupKey));
        else _homes[(keyShift, groupKey)] = region;
    }

    private RestoredNode NodeAt(int index)
    {
        if (index < 0) throw new InvalidDataException($"negative node id {index}");
        while (_nodes.Count <= index) _nodes.Add(new RestoredNode());
        return _nodes[index];
    }

    private sealed class RestoredNode
    {
        public NodeSpec? Spec;
        public NodeStatus Status;
        public long Version;
    }

    private sealed record RestoredLease(string Name, FencingToken Token, DateTimeOffset ExpiresAt, bool Released);

    internal sealed record RestoredOutcome(ulong Hash, TransactionStatus Status, long Version, int Applied, ClaimStatus[] Claims, long Order);
}
