namespace Omega.Cells;

// The node-striped commit path (issue 14; CellOptions.CommitPath = Striped; docs/commit-protocol.md, "The node-striped
// commit path").
//
// What stays serial: every check and every change to the writer's state (node live entries, the task index, tenants,
// protected capacity, reservations, budgets, idempotency, leases) and the journal append run, as always, under the
// commit lock, here called the sequencer, through the same CommitLocked / ReleaseLocked as the plain path. So there is
// one implementation of every check, and one serial order of decisions, versions and journal records.
//
// What leaves the sequencer: the publication of a transaction to lock-free readers. That is the per-node binding lists
// (CopyAllocationsOnNode, TryGetAllocationOnNode: a seqlock write, an index insert or a backward-shift removal), the
// per-node ring entries of snapshots, the cell version, and the binding feed. These are the cold lines of a commit
// (issue 14's round-8 profile), and they are per node, so two transactions on different nodes publish in parallel.
//
// How that stays correct:
// * Node stripes. Before the sequencer, a transaction takes the stripe locks of its nodes (node n is on stripe n & 63;
//   a 64-bit mask, taken in ascending bit order, so there is no deadlock) and keeps them until it has published. A
//   node's binding list and ring slot are therefore written by one thread at a time, and the next transaction on that
//   node reaches the sequencer (where it reads the list: a release's binding, below) only after the previous one
//   published it.
// * Version order. The sequencer assigns versions (one more than the last assigned). A publisher writes its ring entries,
//   then waits until the previous version is complete (_doneVersion), then writes the cell version, delivers its feed,
//   and only then marks its own version complete. So the cell version only ever grows by one, every ring entry of a
//   version is written before that version is, and the feed is delivered in version order, one version at a time.
//   Snapshots therefore see each transaction whole or not at all, exactly as on the plain path.
// * Everything else drains. Any other operation under the commit lock (node changes, leases, tenants, reservations,
//   audits, CommitBatch, the restore, and the transactions the striped phase does not cover, below) enters through
//   Serial(): it takes the lock and then waits until no publication is in flight (new ones cannot start: they are
//   created only under the lock). Such an operation sees and writes a fully published cell, as on the plain path.
// * Not covered: a claim with preemption victims or hard anti-affinity reads binding lists of nodes whose stripes it
//   may not hold (a victim's node, a failure domain) or its own transaction's unpublished bindings; a cell with
//   recovery budgets reads every node's list in the budget gate. Those transactions drain and run as on the plain path.
// * Releases take the stripe of the task's node (read racily, then confirmed in the sequencer; on a mismatch the
//   release retries with the right stripe), so the binding it reads from the list is the published one.
//
// The cell still owns no thread and no timer: the waits are bounded by other callers' publication work (no I/O, no
// lock other than the lifecycle stripes a release touches), and on one thread nothing ever waits.
public sealed partial class Cell
{
    private const int StripeCount = 64; // one bit of a ulong mask each; at least 4x the cores of the machines in view

    private readonly Lock[]? _stripes;  // non-null only on the striped path

    // Under _lock: the last version the sequencer handed to a publication (the cell version may lag it).
    private long _assignedVersion;

    // The last version whose publication is complete (ring entries, cell version and feed). Written by publishers in
    // version order; set by the sequencer when nothing is in flight (a version used by a drained operation is complete).
    // A publication is in flight exactly while _doneVersion < _assignedVersion: every assigned version completes, in order.
    // (No separate in-flight counter: two more atomic writes per commit on a line every core writes.)
    private long _doneVersion;

    // Under _lock: true while the striped sequencer runs a transaction or release whose publication it defers.
    private bool _deferring;
    private StripedWork? _work;

    [ThreadStatic] private static StripedWork? t_work;

    /// <summary>
    /// Publications by the striped path that another operation waited for (it drained them before touching the cell);
    /// a count for diagnostics, meaningful on a loaded machine. Zero on the other paths.
    /// </summary>
    public long StripedDrains => Volatile.Read(ref _stripedDrains);

    private long _stripedDrains;

    private bool StripedPath => _stripes is not null;

    private static Lock[]? CreateStripes(CellOptions options)
    {
        if (options.CommitPath != CommitPath.Striped) return null;
        var stripes = new Lock[StripeCount];
        for (int i = 0; i < stripes.Length; i++) stripes[i] = new Lock();
        return stripes;
    }

    // One transaction's or release's deferred publication, owned by the calling thread from the sequencer to the end of
    // its publication.
    private sealed class StripedWork
    {
        public bool InUse;
        public long Version;                 // 0: nothing to publish
        public int[] Touched = new int[16];  // node indexes to publish at Version
        public int TouchedCount;
        public (bool Add, Allocation Allocation)[] Ops = new (bool, Allocation)[16]; // binding-list changes, in order
        public int OpCount;
        public (BindingChange Change, Allocation Allocation)[] Feed = new (BindingChange, Allocation)[16];
        public int FeedCount;
        public IBindingListener[]? Listeners;

        public void Reset()
        {
            Version = 0;
            TouchedCount = 0;
            OpCount = 0;
            FeedCount = 0;
            Listeners = null;
        }

        public void AddOp(bool add, in Allocation a)
        {
            if (OpCount == Ops.Length) Array.Resize(ref Ops, Ops.Length * 2);
            Ops[OpCount++] = (add, a);
        }

        public void AddFeed(BindingChange change, in Allocation a)
        {
            if (FeedCount == Feed.Length) Array.Resize(ref Feed, Feed.Length * 2);
            Feed[FeedCount++] = (change, a);
        }

        public void AddTouched(int idx)
        {
            if (TouchedCount == Touched.Length) Array.Resize(ref Touched, Touched.Length * 2);
            Touched[TouchedCount++] = idx;
        }
    }

    // The entry of every operation other than the striped commit and release: the commit lock, then no publication in
    // flight. Reentrant: inside the striped sequencer (this thread holds the lock with _deferring set) it does not wait,
    // since this thread's own publication starts only after it leaves the lock.
    //
    // On the concurrent path (Cell.Concurrent.cs) it also takes every node stripe, which excludes every concurrent commit
    // and release, and folds their per-stripe shards into the exact fields; its exit releases the stripes, then the lock.
    private SerialScope Serial()
    {
        _lock.Enter();
        if (_cstripes is not null) EnterSerialConcurrent();
        else if (!_deferring && Volatile.Read(ref _doneVersion) < _assignedVersion) DrainPublications();
        return new SerialScope(this);
    }

    private void ExitSerial()
    {
        if (_cstripes is not null) ExitSerialConcurrent();
        _lock.Exit();
    }

    /// <summary>The scope of <see cref="Serial"/>: disposing it leaves the serial section.</summary>
    private readonly ref struct SerialScope(Cell cell)
    {
        public void Dispose() => cell.ExitSerial();
    }

    // Caller holds _lock, so no new publication can be assigned; the ones in flight need no lock to finish.
    private void DrainPublications()
    {
        _stripedDrains++;
        var spin = new SpinWait();
        while (Volatile.Read(ref _doneVersion) < _assignedVersion) spin.SpinOnce(sleep1Threshold: -1); // yield, never Sleep(1): the wait is one publication long
    }

    // The version the sequencer works at: the last assigned, or the cell version if a drained operation moved past it.
    private long SequencedVersion => _deferring ? Math.Max(_assignedVersion, Volatile.Read(ref _vw.Published)) : _vw.Published;

    // Caller holds _lock with _deferring set: version v (= SequencedVersion + 1) is now taken by this publication.
    private void AssignDeferred(long v)
    {
        // Nothing in flight (the last assigned version is complete): every version before v is complete, including any a
        // drained operation used since (they publish synchronously). Otherwise v - 1 is the last assigned version (drained
        // operations run only with nothing in flight), whose publisher will mark it complete. A publisher writes its
        // version once, so reading it complete here cannot be followed by a step back.
        if (Volatile.Read(ref _doneVersion) == _assignedVersion) Volatile.Write(ref _doneVersion, v - 1);
        _assignedVersion = v;
        _work!.Version = v;
    }

    private static StripedWork RentWork()
    {
        var w = t_work;
        // A journal or listener that commits to another striped cell from inside a publication gets its own scratch.
        if (w is null || w.InUse) w = new StripedWork();
        t_work = w;
        w.InUse = true;
        w.Reset();
        return w;
    }

    private void AcquireStripes(ulong mask)
    {
        var stripes = _stripes!;
        if ((_options.Buggify & Buggify.SkipStripeLocks) != 0) return;
        for (ulong m = mask; m != 0; m &= m - 1) stripes[System.Numerics.BitOperations.TrailingZeroCount(m)].Enter();
    }

    private void ReleaseStripes(ulong mask)
    {
        var stripes = _stripes!;
        if ((_options.Buggify & Buggify.SkipStripeLocks) != 0) return;
        for (ulong m = mask; m != 0; m &= m - 1) stripes[System.Numerics.BitOperations.TrailingZeroCount(m)].Exit();
    }

    private CommitResult CommitStriped(Transaction tx)
    {
        ReadOnlySpan<Claim> claims = tx.Claims;
        ulong mask = 0;
        for (int i = 0; i < claims.Length; i++)
        {
            ref readonly Claim c = ref claims[i];
            // Victims and anti-affinity read other nodes' (or this transaction's unpublished) bindings: the plain way.
            if (c.Victims is { Length: > 0 } || c.Group.AntiAffinity != PlacementScope.None)
            {
                using (Serial()) return CommitLocked(tx);
            }
            mask |= 1UL << (c.Node.Value & (StripeCount - 1));
        }
        var w = RentWork();
        AcquireStripes(mask);
        try
        {
            CommitResult result;
            EnterCommitLock();
            try
            {
                BeginDeferred(w);
                result = CommitLocked(tx);
            }
            finally
            {
                _deferring = false;
                _work = null;
                _lock.Exit();
            }
            return result;
        }
        finally
        {
            // Also after an exception (a journal I/O failure): an assigned version must be published, or every later
            // publication would wait for it forever. The in-memory state holds it either way, as on the plain path.
            try { if (w.Version != 0) Publish(w); }
            finally
            {
                ReleaseStripes(mask);
                w.InUse = false;
            }
        }
    }

    private ReleaseStatus ReleaseStriped(TaskId task, long expectedGeneration)
    {
        var w = RentWork();
        try
        {
            // The task's node, read racily first (a hint: 0 also when its probe run is longer than the hint reads); confirmed
            // under the lock, where the task index changes. On a mismatch the retry takes the node the lock showed, so
            // it ends unless the task is re-bound elsewhere between the two, which only another thread's release and bind
            // of the same task can cause.
            int nodePlusOne = _taskNode.Touch(task);
            while (true)
            {
                ulong mask = nodePlusOne == 0 ? 0 : 1UL << ((nodePlusOne - 1) & (StripeCount - 1));
                AcquireStripes(mask);
                try
                {
                    ReleaseStatus status;
                    EnterCommitLock();
                    try
                    {
                        if (_taskNode.TryGetValue(task, out var node)
                            && (mask & (1UL << (node.Value & (StripeCount - 1)))) == 0
                            && (_options.Buggify & Buggify.SkipStripeLocks) == 0)
                        {
                            nodePlusOne = node.Value + 1;
                            continue; // bound on a node whose stripe this call does not hold: retry with it
                        }
                        BeginDeferred(w);
                        status = ReleaseLocked(task, expectedGeneration);
                    }
                    finally
                    {
                        _deferring = false;
                        _work = null;
                        _lock.Exit();
                    }
                    return status;
                }
                finally
                {
                    try { if (w.Version != 0) Publish(w); }
                    finally
                    {
                        w.Reset();
                        ReleaseStripes(mask);
                    }
                }
            }
        }
        finally { w.InUse = false; }
    }

    // Caller holds _lock and the stripes of every node the operation may change.
    private void BeginDeferred(StripedWork w)
    {
        if (_budgets.Length > 0)
        {
            // The recovery-budget gate reads every node's binding list: publish everything first, then run unstriped.
            if (Volatile.Read(ref _doneVersion) < _assignedVersion) DrainPublications();
            return;
        }
        w.Reset();
        w.Listeners = _bindingListeners;
        _work = w;
        _deferring = true;
    }

    // Outside the lock, holding the stripes of every node in w (so no other thread writes these lists or ring slots).
    private void Publish(StripedWork w)
    {
        long v = w.Version;
        var bindings = _bindingsOnNode; // replaced only by drained operations, which wait for this publication
        for (int i = 0; i < w.OpCount; i++)
        {
            ref readonly var op = ref w.Ops[i];
            var a = op.Allocation;
            if (op.Add) (bindings[a.Node.Value] ??= new NodeBindings(a.Node)).Add(a);
            else
            {
                bindings[a.Node.Value]!.Remove(a.Task);
                ForgetPhaseOfReleased(a.Task); // after the list's removal, as RemoveBinding orders them (Cell.Lifecycle.cs)
            }
        }
        // Every ring entry of v before v itself. _live[idx] is stable here: only the sequencer writes it, and only for a
        // transaction holding idx's stripe (or a drained operation, which waits for this publication).
        var live = _live;
        var slots = _slots;
        for (int i = 0; i < w.TouchedCount; i++)
        {
            int idx = w.Touched[i];
            slots[idx].Publish(v, live[idx]);
        }
        if ((_options.Buggify & Buggify.SkipPublishOrder) == 0)
        {
            var spin = new SpinWait();
            while (Volatile.Read(ref _doneVersion) != v - 1) spin.SpinOnce(sleep1Threshold: -1); // yield, never Sleep(1): the wait is one publication long
        }
        Volatile.Write(ref _vw.Published, v);
        var listeners = w.Listeners;
        if (listeners is not null && w.FeedCount > 0)
        {
            for (int i = 0; i < w.FeedCount; i++)
                foreach (var l in listeners) l.OnBindingChanged(w.Feed[i].Change, w.Feed[i].Allocation, v);
            foreach (var l in listeners) l.OnVersionComplete(v);
        }
        // (The broken variant may finish after a later version: never step the watermark back, or drains would wait forever.)
        if ((_options.Buggify & Buggify.SkipPublishOrder) == 0 || Volatile.Read(ref _doneVersion) < v) Volatile.Write(ref _doneVersion, v);
        w.Version = 0;
    }
}
