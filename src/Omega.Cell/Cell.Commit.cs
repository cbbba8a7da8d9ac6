namespace Omega.Cells;

public sealed partial class Cell
{
    // Per-transaction scratch, reused under _lock so a commit allocates nothing.
    private int[] _touched = new int[16];
    private int _touchedCount;
    private UndoEntry[] _undo = new UndoEntry[16];
    private int _undoCount;

    private enum UndoOp : byte { Evicted, Bound, Reserved, Consumed }

    // Allocation doubles as the reservation's hold; Expires is the hold's expiry (Reserved, Consumed only).
    private readonly record struct UndoEntry(UndoOp Op, Allocation Allocation, long Expires = 0);

    // Set when a claim of the current transaction reserved or consumed a reservation: its journal record then carries
    // each applied claim's kind (and a reserve's expiry); ordinary transactions keep the old, shorter layout.
    private bool _txTouchesReservations;

    /// <summary>
    /// Validates and applies a transaction against the live cell state (design.md §3), in this order:
    /// (1) the fencing token is current and its lease live, else the whole transaction is rejected;
    /// (2) a retry with a known idempotency key gets the original result;
    /// then per claim: the node exists and is schedulable; the task is not bound; preemption victims are valid;
    /// the node version is unchanged (coarse) and the resources fit; the tenant's quota holds.
    /// </summary>
    /// <remarks>
    /// The returned result is the in-memory outcome. On an in-memory cell it is final. On a durable cell do not act on it
    /// (push bindings, answer a client) before the durable acknowledgement; see docs/commit-protocol.md.
    /// </remarks>
    public CommitResult Commit(Transaction tx)
    {
        ArgumentNullException.ThrowIfNull(tx);
        if (_prefetch) WarmClaims(tx.Claims);
        if (_preEncode && _journal is not null) PreEncodeClaims(tx);
        // The default (CommitPath.Lock) decides first, before anything the combiner needs: this is the pre-combiner path
        // plus one option read and a TryEnter (the lock is recursive, so a callback from inside a critical section of this
        // cell re-enters it here as before).
        if (PlainLock)
        {
            EnterCommitLock();
            try { return CommitLocked(tx); }
            finally { _lock.Exit(); }
        }
        // Node stripes, then the sequencer; publication outside it (Cell.Striped.cs).
        if (_stripes is not null) return CommitStriped(tx);
        // Node stripes and task partitions, no commit lock (Cell.Concurrent.cs).
        if (_cstripes is not null) return CommitConcurrent(tx);
        // Through the commit combiner (Cell.Combiner.cs): the same CommitLocked, run by whichever thread holds the lock.
        return CommitCombined(tx);
    }

    /// <summary>
    /// Commits several transactions in order in one critical section, as if each were passed to <see cref="Commit"/>
    /// in turn with no other change in between: each is validated and applied on its own (consecutive cell versions,
    /// each published before the next is validated), and their journal records go to the journal as one batch
    /// (<see cref="ICellJournal.AppendBatch"/>; docs/storage.md, "Batch frames"), which a recovery applies whole or not
    /// at all. <paramref name="results"/>[i] is the result of <paramref name="transactions"/>[i]; each refers to its own
    /// transaction's outcome buffer, so pass distinct objects (the same one twice leaves the first result's claim
    /// statuses overwritten by the second's). This is the journal shape the commit
    /// combiner of issue 14 uses; on a durable cell, acknowledge a result once <see cref="JournalSequence"/> read after
    /// this returns is durable.
    /// </summary>
    public void CommitBatch(ReadOnlySpan<Transaction> transactions, Span<CommitResult> results)
    {
        if (results.Length < transactions.Length) throw new ArgumentException($"room for {results.Length} results, {transactions.Length} transactions", nameof(results));
        for (int i = 0; i < transactions.Length; i++) ArgumentNullException.ThrowIfNull(transactions[i], nameof(transactions));
        if (_preEncode && _journal is not null)
            for (int i = 0; i < transactions.Length; i++) PreEncodeClaims(transactions[i]);
        using (Serial())
        {
            BeginJournalBatch();
            try
            {
                for (int i = 0; i < transactions.Length; i++) results[i] = CommitLocked(transactions[i]);
            }
            finally
            {
                EndJournalBatch();
            }
        }
    }

    // Warming the commit's lines before the lock (issue 14, round 8; docs/commit-protocol.md, "Waiting for the commit
    // lock"). On a cell of 10k nodes the lines a claim touches under the lock — its task's slot in the task index, the
    // node's live entry and spec, its binding list's index and append position, its published ring slot — are almost
    // never in the committing core's cache: about eight dependent misses per claim, most of a 16-claim commit's hold time.
    // Reading them here first moves those misses outside the critical section, where they overlap each other (the loads
    // of different claims are independent) and where they delay only this thread, not every waiter.
    // Safe by construction: these are plain racy reads of writer-private state, discarded (summed into a value nobody
    // acts on). Every array is read once into a local, every index is range-checked and every probe bounded, so a
    // concurrent resize or change can at worst make a read useless, never fault or loop; nothing is written, so no check
    // made under the lock depends on them. Off with CellOptions.PrefetchOutsideLock = false (same-binary A/B).
    private const int WarmClaimLimit = 64; // bigger transactions are rare and mostly hold the lock on their own work

    private long _warmSink;

    private void WarmClaims(ReadOnlySpan<Claim> claims)
    {
        if (claims.Length > WarmClaimLimit) return;
        var live = _live;
        var slots = Volatile.Read(ref _slots);
        var bindings = Volatile.Read(ref _bindingsOnNode);
        long sum = 0;
        for (int i = 0; i < claims.Length; i++)
        {
            ref readonly Claim c = ref claims[i];
            sum += _taskNode.Touch(c.Task);
            sum += WarmNode(c.Node.Value, c.Task, live, slots, bindings);
        }
        if (sum == long.MinValue) _warmSink = sum; // never true in practice; keeps the JIT from dropping the loads
    }

    // The release's lines: the task index probe gives (racily) the node, whose lines are then read like a claim's.
    private void WarmRelease(TaskId task)
    {
        int nodePlusOne = _taskNode.Touch(task);
        if (nodePlusOne == 0) return;
        long sum = WarmNode(nodePlusOne - 1, task, _live, Volatile.Read(ref _slots), Volatile.Read(ref _bindingsOnNode));
        if (sum == long.MinValue) _warmSink = sum;
    }

    private static long WarmNode(int idx, TaskId task, NodeLive[] live, NodeSlot[] slots, NodeBindings?[] bindings)
    {
        long sum = 0;
        if ((uint)idx < (uint)live.Length)
        {
            ref readonly NodeLive n = ref live[idx];
            sum += n.Version + n.TxnStamp + n.Allocated.CpuMillis;
            if (n.Spec is { } spec) sum += spec.Capacity.CpuMillis;
        }
        if ((uint)idx < (uint)slots.Length)
        {
            ref NodeSlot slot = ref slots[idx];
            long head = slot.Head;
            sum += head + slot.Ring[(int)((head + 1) & NodeSlot.Mask)].Version;
        }
        if ((uint)idx < (uint)bindings.Length && bindings[idx] is { } set) sum += set.Touch(task);
        return sum;
    }

    // Caller holds _lock.
    private CommitResult CommitLocked(Transaction tx)
    {
        ReadOnlySpan<Claim> claims = tx.Claims;
        ClaimStatus[] outcomes = tx.OutcomeBuffer;
        int n = claims.Length;
        {
            var fence = CheckFencing(tx.Scheduler, tx.Token);
            if (fence != TransactionStatus.Committed) return RejectWhole(outcomes, n, fence);
            if (n == 0 || n > _options.MaxClaimsPerTransaction) return RejectWhole(outcomes, n, TransactionStatus.InvalidTransaction);

            ulong hash = 0;
            if (!tx.Key.IsNone)
            {
                hash = IdempotencyIndex.Hash(tx);
                if ((_options.Buggify & Buggify.SkipIdempotencyReplay) == 0 && _idempotency.TryGet(tx.Scheduler, tx.Key, out var rec))
                {
                    if (rec.TxHash != hash) return RejectWhole(outcomes, n, TransactionStatus.IdempotencyKeyReused);
                    _counters.CountReplay();
                    return IdempotencyIndex.ToResult(rec);
                }
            }

            long newVersion = SequencedVersion + 1;
            bool gang = tx.Mode == CommitMode.AllOrNothing;
            _touchedCount = 0;
            _undoCount = 0;
            _txTouchesReservations = false;
            _deferTenantPublish = true;
            int applied = 0, failedAt = -1;
            for (int i = 0; i < n; i++)
            {
                var s = TryApply(in claims[i], tx.Detection, newVersion, gang);
                outcomes[i] = s;
                if (s == ClaimStatus.Applied) applied++;
                else if (gang) { failedAt = i; break; }
            }
            if (failedAt >= 0)
            {
                // All-or-nothing: undo in reverse. Nothing was published, so readers never saw any of it.
                Rollback();
                _txTouchesReservations = false;
                FlushFeed(0, published: false);
                for (int j = 0; j < failedAt; j++) outcomes[j] = ClaimStatus.Aborted;
                for (int j = failedAt + 1; j < n; j++) outcomes[j] = ClaimStatus.NotEvaluated;
                applied = 0;
            }
            for (int i = 0; i < n; i++) _counters.Count(outcomes[i]);

            var status = applied == n ? TransactionStatus.Committed : applied == 0 ? TransactionStatus.Rejected : TransactionStatus.PartiallyCommitted;
            long resultVersion = SequencedVersion;
            if (applied > 0)
            {
                // Publish every touched node at the new version, then the version itself: a snapshot either sees the
                // whole transaction or none of it. On the striped path the caller does both after the lock, in version
                // order (Cell.Striped.cs, Publish); here the nodes are only recorded.
                if (_deferring)
                {
                    AssignDeferred(newVersion);
                    for (int t = 0; t < _touchedCount; t++) _work!.AddTouched(_touched[t]);
                }
                else
                {
                    for (int t = 0; t < _touchedCount; t++)
                    {
                        int idx = _touched[t];
                        _slots[idx].Publish(newVersion, _live[idx]);
                    }
                    Volatile.Write(ref _vw.Published, newVersion);
                }
                FlushFeed(newVersion, published: true);
                resultVersion = newVersion;
            }
            PublishTouchedTenants();
            if (!tx.Key.IsNone) _idempotency.Add(tx.Scheduler, tx.Key, hash, status, resultVersion, applied, outcomes.AsSpan(0, n));
            if (_journal is not null && (applied > 0 || !tx.Key.IsNone)) JournalCommit(tx, outcomes.AsSpan(0, n), status, resultVersion, applied, hash);
            _counters.Count(status);
            return new CommitResult(status, resultVersion, applied, replayed: false, outcomes.AsMemory(0, n));
        }
    }

    private CommitResult RejectWhole(ClaimStatus[] outcomes, int n, TransactionStatus status)
    {
        outcomes.AsSpan(0, n).Fill(ClaimStatus.NotEvaluated);
        for (int i = 0; i < n; i++) _counters.Count(ClaimStatus.NotEvaluated);
        _counters.Count(status);
        return new CommitResult(status, SequencedVersion, 0, replayed: false, outcomes.AsMemory(0, n));
    }

    private ClaimStatus TryApply(in Claim c, ConflictDetection detection, long newVersion, bool recordUndo)
    {
        // (0) resources within [0, MaxQuantity] in every dimension: with that bound and the overflow-safe fit below, no
        // request can wrap a sum into a "fit". The tenant must exist: per-tenant state is indexed by it.
        if (!c.Resources.IsValidRequest) return ClaimStatus.InvalidClaim;
        if ((uint)c.Tenant.Value >= (uint)_tenantCount) return ClaimStatus.UnknownTenant;
        // (0) the kind's own shape: a reserve has a TTL in (0, MaxReservationTtl] and no victims (a hold evicts no one);
        // the others carry no TTL.
        var kind = c.Kind;
        if (kind != ClaimKind.Bind)
        {
            if (kind == ClaimKind.Reserve)
            {
                if (c.Ttl <= TimeSpan.Zero || c.Ttl > _options.MaxReservationTtl || c.Victims is { Length: > 0 }) return ClaimStatus.InvalidClaim;
            }
            else if (kind != ClaimKind.BindReserved || c.Ttl != TimeSpan.Zero) return ClaimStatus.InvalidClaim;
        }
        else if (c.Ttl != TimeSpan.Zero) return ClaimStatus.InvalidClaim;
        // (0) a victim may not be the claimed task itself or be listed twice: a malformed claim, whatever the node.
        TaskId[]? victims = c.Victims;
        if (victims is { Length: > 0 })
        {
            for (int v = 0; v < victims.Length; v++)
            {
                if (victims[v] == c.Task) return ClaimStatus.InvalidClaim;
                for (int w = 0; w < v; w++)
                    if (victims[w] == victims[v]) return ClaimStatus.InvalidClaim;
            }
        }

        // (2) node exists and is schedulable.
        int idx = c.Node.Value;
        if ((uint)idx >= (uint)_nodeCount) return ClaimStatus.NodeUnknown;
        ref NodeLive live = ref _live[idx];
        switch (live.Status)
        {
            case NodeStatus.Schedulable: break;
            case NodeStatus.Fenced: return ClaimStatus.NodeFenced;
            case NodeStatus.Draining when (_options.Buggify & Buggify.SkipDrainCheck) == 0: return ClaimStatus.NodeDraining;
            case NodeStatus.Draining: break; // the broken variant: the drain is not enforced
            case NodeStatus.Down: return ClaimStatus.NodeDown;
            default: return ClaimStatus.NodeUnknown;
        }

        // (3) the task is not already bound (in the cell, or by an earlier claim of this transaction).
        if (_taskNode.ContainsKey(c.Task) && (_options.Buggify & Buggify.SkipTaskBoundCheck) == 0) return ClaimStatus.TaskAlreadyBound;

        // (3r) reservations: a reserved task is bound only by BindReserved on the reservation's node and tenant, before
        // its expiry; a BindReserved needs one. The Count test keeps this free while the cell holds no reservation.
        ReservationLive held = default;
        bool consumes = false;
        if (_reservations.Count > 0 && _reservations.TryGetValue(c.Task, out held))
        {
            if (kind != ClaimKind.BindReserved) return ClaimStatus.TaskReserved;
            if (held.Hold.Node != c.Node || held.Hold.Tenant != c.Tenant) return ClaimStatus.ReservationMismatch;
            if (Now() >= held.ExpiresAtTimestamp) return ClaimStatus.ReservationExpired;
            consumes = true;
        }
        else if (kind == ClaimKind.BindReserved) return ClaimStatus.ReservationNotFound;
        else if (kind == ClaimKind.Reserve && _reservations.Count >= _options.MaxReservations) return ClaimStatus.ReservationLimitReached;

        // Preemption victims: bound on this node, strictly lower priority.
        ResourceVector freed = default, freedSameTenant = default;
        if (victims is { Length: > 0 })
        {
            for (int v = 0; v < victims.Length; v++)
            {
                var vt = victims[v];
                if (!TryGetBindingLocked(vt, out var va) || va.Node != c.Node) return ClaimStatus.VictimNotFound;
                if (va.Priority >= c.Priority) return ClaimStatus.VictimPriorityTooHigh;
                freed += va.Resources;
                if (va.Tenant == c.Tenant) freedSameTenant += va.Resources;
            }
        }

        // (4) coarse: the node's version is the one the decision saw (compared with the version before this
        // transaction, so several claims of one transaction may land on the same node); fine: it fits.
        // Coarse mode checks the fit too: the no-overcommit invariant never depends on a scheduler's honesty.
        if (detection == ConflictDetection.Coarse)
        {
            long baseVersion = live.TxnStamp == newVersion ? live.PreTxnVersion : live.Version;
            if (baseVersion != c.ExpectedNodeVersion) return ClaimStatus.NodeVersionChanged;
        }
        // A consumed reservation's hold is freed in the same step (it is part of live.Allocated and of the tenant's usage).
        if (consumes)
        {
            freed += held.Hold.Resources;
            freedSameTenant += held.Hold.Resources;
        }
        if (!ResourceVector.Fits(live.Allocated - freed, c.Resources, live.Spec!.Capacity) && (_options.Buggify & Buggify.SkipCapacityCheck) == 0)
            return ClaimStatus.InsufficientResources;

        // (4b) hard anti-affinity, against the live bindings (and earlier claims of this transaction, already applied):
        // the authoritative check that makes the constraint hold under concurrent schedulers (docs/control-plane.md,
        // "Hard gates at commit"). Victims being evicted by this claim do not count.
        if (c.Group.AntiAffinity != PlacementScope.None && GroupConflict(in c, idx, victims)) return ClaimStatus.AntiAffinityViolated;

        // (5) quota.
        int t = c.Tenant.Value;
        if (_tenantQuota[t] is { } quota
            && !ResourceVector.Fits(_tenantUsage[t] - freedSameTenant, c.Resources, quota))
            return ClaimStatus.QuotaExceeded;

        // (6) protected capacity: the other tenants' unmet guarantees stay satisfiable (Cell.Protected.cs).
        if (!ProtectedCapacityHolds(t, c.Resources, freedSameTenant)) return ClaimStatus.ProtectedCapacity;

        // (7) recovery budgets (Cell.RecoveryBudgets.cs): a region's own critical work may not take the capacity promised
        // to failover. One array-length test while no budget exists; one compare for claims below every floor.
        if (_budgets.Length > 0 && c.Priority >= _budgetMinPriorityFloor
            && !RecoveryBudgetHolds(in c, idx, victims, consumes ? held.Hold.Resources : default)) return ClaimStatus.RecoveryBudgetHeld;

        // Apply to the writer's live state; publication happens once per transaction.
        if (live.TxnStamp != newVersion)
        {
            if (_touchedCount == _touched.Length) Array.Resize(ref _touched, _touched.Length * 2);
            _touched[_touchedCount++] = idx;
            live.PreTxnVersion = live.Version;
            live.PreTxnStamp = live.TxnStamp;
            live.TxnStamp = newVersion;
            live.Version++;
        }
        if (victims is { Length: > 0 })
        {
            for (int v = 0; v < victims.Length; v++)
            {
                TryGetBindingLocked(victims[v], out var va); // checked above: bound on this node
                RemoveBinding(va);
                FeedBinding(BindingChange.Unbound, va);
                if (recordUndo) PushUndo(new UndoEntry(UndoOp.Evicted, va));
            }
        }
        var a = new Allocation(c.Task, c.Node, c.Resources, c.Tenant, c.Priority, newVersion);
        if (kind == ClaimKind.Reserve)
        {
            var r = new ReservationLive { Hold = a, ExpiresAtTimestamp = Now() + TicksFor(c.Ttl) };
            AddReservation(in r);
            _txTouchesReservations = true;
            if (recordUndo) PushUndo(new UndoEntry(UndoOp.Reserved, a, r.ExpiresAtTimestamp));
            return ClaimStatus.Applied;
        }
        if (consumes)
        {
            RemoveReservation(in held);
            _txTouchesReservations = true;
            if (recordUndo) PushUndo(new UndoEntry(UndoOp.Consumed, held.Hold, held.ExpiresAtTimestamp));
        }
        AddBinding(a);
        FeedBinding(BindingChange.Bound, a);
        if (recordUndo) PushUndo(new UndoEntry(UndoOp.Bound, a));
        return ClaimStatus.Applied;
    }

    // Caller holds _lock. Node scope scans the node's bindings (tens); failure-domain scope scans the bindings of every
    // node of the domain: O(nodes in the domain) per claim. Only claims that ask for domain anti-affinity pay it, and a
    // group has at most one member per domain, so such claims are few. No index is kept: membership is derived from
    // task ids (PlacementGroup), and the bindings are the only state, persisted already.
    private bool GroupConflict(in Claim c, int idx, TaskId[]? victims)
    {
        var group = c.Group;
        long key = group.KeyOf(c.Task.Job);
        string domain = _live[idx].Spec!.FailureDomain;
        if (group.AntiAffinity == PlacementScope.Node || domain.Length == 0) return NodeHoldsGroup(idx, key, group.KeyShift, victims);
        for (int i = 0; i < _nodeCount; i++)
        {
            ref readonly NodeLive n = ref _live[i];
            if (n.TaskCount == 0 || n.Spec is null) continue;
            if (!ReferenceEquals(n.Spec.FailureDomain, domain) && !string.Equals(n.Spec.FailureDomain, domain, StringComparison.Ordinal)) continue;
            if (NodeHoldsGroup(i, key, group.KeyShift, victims)) return true;
        }
        return false;
    }

    private bool NodeHoldsGroup(int idx, long key, byte shift, TaskId[]? victims)
    {
        var bindings = _bindingsOnNode[idx];
        if (bindings is null) return false;
        for (int i = 0; i < bindings.Count; i++)
        {
            var task = bindings.TaskAt(i);
            if (task.Job.Value >> shift != key) continue;
            if (victims is not null && Array.IndexOf(victims, task) >= 0) continue;
            return true;
        }
        return false;
    }

    private void PushUndo(in UndoEntry e)
    {
        if (_undoCount == _undo.Length) Array.Resize(ref _undo, _undo.Length * 2);
        _undo[_undoCount++] = e;
    }

    private void Rollback()
    {
        for (int i = _undoCount - 1; i >= 0; i--)
        {
            ref readonly var e = ref _undo[i];
            switch (e.Op)
            {
                case UndoOp.Bound: RemoveBinding(e.Allocation); break;
                case UndoOp.Evicted: AddBinding(e.Allocation); break;
                case UndoOp.Reserved: RemoveReservation(new ReservationLive { Hold = e.Allocation, ExpiresAtTimestamp = e.Expires }); break;
                case UndoOp.Consumed: AddReservation(new ReservationLive { Hold = e.Allocation, ExpiresAtTimestamp = e.Expires }); break;
            }
        }
        for (int t = 0; t < _touchedCount; t++)
        {
            ref NodeLive live = ref _live[_touched[t]];
            live.Version = live.PreTxnVersion;
            live.TxnStamp = live.PreTxnStamp;
        }
        // Striped path: the deferred list changes of this transaction (its binds, then the undo's removals) are dropped
        // together, so the lock-free lists never show a binding that was rolled back. All of them are this transaction's.
        if (_deferring) _work!.OpCount = 0;
        _undoCount = 0;
        _touchedCount = 0;
    }
}
