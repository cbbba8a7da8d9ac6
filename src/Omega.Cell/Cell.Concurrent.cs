using System.Numerics;

namespace Omega.Cells;

// The concurrent commit path (issue 14, round 12; CellOptions.CommitPath = Concurrent; docs/commit-protocol.md, "Round 12:
// the concurrent path").
//
// Every other path runs every check under the one commit lock. Here an eligible Commit or Release runs without it:
// * Node stripes: 64 locks, node n on stripe n & 63, taken in ascending bit order of a ulong mask. A transaction holds
//   the stripes of its nodes from its first check to its last write, so a node's live entry, binding list and ring slot
//   have one writer at a time and nobody else changes them between the check and the apply.
// * Task partitions: the task index is split into 64 tables by a hash of the task, each with its own lock
//   (TaskIndex), taken after the stripes in ascending order. Uniqueness of a task's binding is decided and recorded under
//   its partition's lock.
// * All-or-nothing without rollback: every claim is decided first (phase 1: nothing is written), then the accepted ones
//   are applied (phase 2). A transaction that applies nothing takes no version.
// * Versions: an applied change takes v = ++_vw.Next (the version counter) while it holds all of its locks, writes its
//   node entries, binding lists and ring entries stamped v, marks v done in a ring and advances the published cell
//   version (_vw.Published, the watermark) over every consecutive done version, helping the others, without ever waiting
//   for a predecessor. Because a node's stripe is held from taking v to publishing the node's ring entry, a node's ring
//   entries are written in version order; the watermark only passes versions whose entries are all written, so a
//   snapshot at a version s <= watermark sees every transaction <= s whole and none above it.
// * Cell-wide sums go to shards picked by the lowest stripe a transaction holds: outcome counters to that stripe's own
//   shard (one writer, plain increments), tenant usage and schedulable allocation to one of 8 usage shards (stripe & 7,
//   taken by its seqlock word), one seqlocked write per transaction; readers add the shards.
// * Everything else goes through Serial(): the commit lock and then all 64 stripes, which excludes every concurrent
//   commit and release (each holds at least one stripe from its first read to its last write). On entry Serial() folds
//   the shards into the exact fields the rest of the code reads and finds the watermark caught up, so every other
//   operation, and every transaction this path does not cover, runs exactly as on the Lock path, with no change to its code.
//
// Eligibility is decided per call, after the stripes are taken (the cell-wide conditions change only under Serial(),
// which the stripes exclude): no journal, no binding listeners, no reservation held, no recovery budget, no
// protected-capacity guarantee, and (per transaction) only Bind claims without victims or anti-affinity, no idempotency
// key, at most 64 claims, no claim charged to a tenant with a quota. Each excluded feature reads or writes state that
// spans nodes or tenants (a journal's order, the feed's order, a reservation table, the budget gate's scan of every node,
// S and F of protected capacity, a tenant's usage against its quota, the idempotency index), so it stays serial.
public sealed partial class Cell
{
    private const int DoneRingSize = 4096; // versions in flight beyond the watermark before a committer waits
    private const int ConcurrentMaxClaims = 64;

    private ConcurrentStripe[]? _cstripes;       // non-null only on the concurrent path
    private CellCounters.Shard[]? _counterShards;
    private long[]? _doneRing;

    /// <summary>
    /// The cell version and the concurrent path's version counter, on a cache line of their own: both are written by every
    /// change (on the concurrent path by every core), and in the cell object they would share lines with fields that every
    /// commit only reads. Together, because a change takes its version and then, usually, advances the watermark by one
    /// compare-exchange: one line moved between cores per change, not two.
    /// </summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 192)]
    private sealed class VersionWords
    {
        /// <summary>The published cell version (the watermark on the concurrent path).</summary>
        [System.Runtime.InteropServices.FieldOffset(64)] public long Published;

        /// <summary>
        /// Concurrent path: the last version handed out (Interlocked). Equal to Published whenever no concurrent change is
        /// in flight; Serial() syncs it to Published on exit, since the operations it runs publish with Published + 1.
        /// </summary>
        [System.Runtime.InteropServices.FieldOffset(72)] public long Next;
    }

    // Under _lock: how deep the current thread is in Serial() (the lock is recursive).
    private int _serialDepth;

    // Odd while Serial() folds the shards into the exact fields: GetTenantUsage retries across it.
    private long _shardFold;

    [ThreadStatic] private static ConcurrentScratch? t_concurrent;

    /// <summary>One node stripe of the concurrent path: its lock.</summary>
    private sealed class ConcurrentStripe
    {
        public readonly Lock Gate = new();
        // Keeps the next stripe's lock off this one's line (stripes are allocated one after the other).
        public readonly long[] Pad = new long[8];
    }

    // Usage shards: fewer than the stripes (stripe s writes shard s & (UsageShardCount - 1)), because GetTenantUsage reads
    // every one of them (a scheduler worker calls it once per job): 8 keeps that read to 8 seqlocked lines, while two
    // writers meet on one shard only when their transactions' lowest stripes agree modulo 8. A writer therefore takes
    // the shard by a compare-exchange of its sequence word (even to odd) and holds it only for the additions.
    private const int UsageShardCount = 8;

    private UsageShard[]? _usageShards;

    /// <summary>A shard of the cell-wide sums of the concurrent path (tenant usage, schedulable allocation).</summary>
    private sealed class UsageShard
    {
        public long Seq;                                  // even: stable; odd: being written (and taken by its writer)
        public bool Dirty;                                // something to fold
        public ResourceVector SchedDelta;                 // change of _schedAllocated not yet folded
        // Tenant t's delta at [4t, 4t + 4) (ResourceVector.Dimensions longs): read with acquire loads, so a reader's seqlock
        // validation needs no full fence (GetTenantUsage reads every shard, once per scheduled job).
        public long[] TenantDelta = new long[16 * ResourceVector.Dimensions];
        public int TenantHigh;                            // tenants below this may have a delta
        // Keeps the next shard off this one's line (shards are allocated one after the other).
        public readonly long[] Pad = new long[8];

        // Takes the shard (a compare-exchange: a full fence, so odd is visible before any data write).
        public void BeginWrite()
        {
            long s = Volatile.Read(ref Seq);
            if ((s & 1) == 0 && Interlocked.CompareExchange(ref Seq, s + 1, s) == s) return;
            var spin = new SpinWait();
            while (true)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                s = Volatile.Read(ref Seq);
                if ((s & 1) == 0 && Interlocked.CompareExchange(ref Seq, s + 1, s) == s) return;
            }
        }

        public void EndWrite() => Volatile.Write(ref Seq, Seq + 1);          // release: data before even

        public void AddTenant(int t, ResourceVector delta)
        {
            var d = TenantDelta;
            int b = t * ResourceVector.Dimensions;
            if (b + ResourceVector.Dimensions > d.Length)
            {
                Array.Resize(ref d, Math.Max(b + ResourceVector.Dimensions, d.Length * 2));
                Volatile.Write(ref TenantDelta, d);
            }
            for (int k = 0; k < ResourceVector.Dimensions; k++) d[b + k] += delta[k];
            if (t >= TenantHigh) TenantHigh = t + 1;
            Dirty = true;
        }

        // Writer (under Serial): takes tenant t's delta out of the shard; false when it is zero.
        public bool TakeTenant(int t, out ResourceVector delta)
        {
            var d = TenantDelta;
            int b = t * ResourceVector.Dimensions;
            delta = new ResourceVector(d[b], d[b + 1], d[b + 2], d[b + 3]);
            if (delta.IsZero) return false;
            Array.Clear(d, b, ResourceVector.Dimensions);
            return true;
        }

        // Any thread: this shard's delta of tenant t, read whole.
        public ResourceVector ReadTenant(int t)
        {
            var spin = new SpinWait();
            while (true)
            {
                long s1 = Volatile.Read(ref Seq);
                if ((s1 & 1) == 0)
                {
                    var d = Volatile.Read(ref TenantDelta);
                    int b = t * ResourceVector.Dimensions;
                    // Acquire loads: each completes before the loads after it, so the sequence word is re-read after the
                    // data (the seqlock validation) without a full fence.
                    var value = b + ResourceVector.Dimensions <= d.Length
                        ? new ResourceVector(Volatile.Read(ref d[b]), Volatile.Read(ref d[b + 1]), Volatile.Read(ref d[b + 2]), Volatile.Read(ref d[b + 3]))
                        : default;
                    if (Volatile.Read(ref Seq) == s1) return value;
                }
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>Per-thread scratch of one concurrent commit (no allocation once warm).</summary>
    private sealed class ConcurrentScratch
    {
        public readonly int[] Nodes = new int[ConcurrentMaxClaims];                       // distinct nodes with accepted claims
        public readonly ResourceVector[] Pending = new ResourceVector[ConcurrentMaxClaims]; // accepted resources per such node
        public int NodeCount;
        public readonly int[] Accepted = new int[ConcurrentMaxClaims];                    // claim indexes accepted, in order
        public int AcceptedCount;
    }

    private void InitConcurrent()
    {
        if (_options.CommitPath != CommitPath.Concurrent) return;
        var stripes = new ConcurrentStripe[StripeCount];
        for (int i = 0; i < stripes.Length; i++) stripes[i] = new ConcurrentStripe();
        _counterShards = _counters.CreateShards(StripeCount);
        var usage = new UsageShard[UsageShardCount];
        for (int i = 0; i < usage.Length; i++) usage[i] = new UsageShard();
        _usageShards = usage;
        _doneRing = new long[DoneRingSize];
        _cstripes = stripes;
    }

    // ------------------------------------------------------------------ Serial() on this path

    // Caller holds _lock (Serial). Takes every stripe, so no concurrent commit or release is in flight, then makes the
    // cell look exactly as the Lock path leaves it: the watermark equal to the last version handed out, and the shards
    // folded into _tenantUsage (and its published copy) and _schedAllocated.
    private void EnterSerialConcurrent()
    {
        // Nested (an operation under Serial() calling another): the stripes are held and the cell is quiescent already;
        // syncing again would step the version back over the outer operation's own changes.
        if (_serialDepth++ > 0) return;
        var stripes = _cstripes!;
        for (int i = 0; i < stripes.Length; i++) stripes[i].Gate.Enter();
        // Every committer marks its version done and advances the watermark before it releases its stripes, so here the
        // watermark has caught up (the argument is at MarkDone). Only the broken variant
        // (Buggify.BreakVersionWatermark) can leave it elsewhere; the version is then set to the truth.
        long next = Volatile.Read(ref _vw.Next);
        if (Volatile.Read(ref _vw.Published) != next) Volatile.Write(ref _vw.Published, next);
        FoldShards();
    }

    private void ExitSerialConcurrent()
    {
        if (--_serialDepth > 0) return;
        // The operations under Serial() publish with _vw.Published + 1; the next concurrent change continues from there.
        Volatile.Write(ref _vw.Next, _vw.Published);
        var stripes = _cstripes!;
        for (int i = stripes.Length - 1; i >= 0; i--) stripes[i].Gate.Exit();
    }

    // Caller holds every stripe.
    private void FoldShards()
    {
        var shards = _usageShards!;
        bool any = false;
        for (int i = 0; i < shards.Length && !any; i++) any = shards[i].Dirty;
        if (!any) return;
        Interlocked.Increment(ref _shardFold); // odd: readers of tenant usage wait for the fold to finish
        for (int i = 0; i < shards.Length; i++)
        {
            var s = shards[i];
            if (!s.Dirty) continue;
            s.BeginWrite();
            _schedAllocated += s.SchedDelta;
            s.SchedDelta = default;
            for (int t = 0; t < s.TenantHigh; t++)
            {
                if (!s.TakeTenant(t, out var delta)) continue;
                _tenantUsage[t] += delta;
                PublishTenant(t);
            }
            s.TenantHigh = 0;
            s.Dirty = false;
            s.EndWrite();
        }
        Volatile.Write(ref _shardFold, _shardFold + 1);
    }

    // GetTenantUsage on this path: the folded, published value plus every shard's delta, each shard read whole, the whole
    // read retried across a fold. A transaction's delta is in one shard, so no part of a transaction is ever shown.
    private (ResourceVector Usage, ResourceVector? Quota) ReadTenantConcurrent(int t)
    {
        var shards = _usageShards!;
        var spin = new SpinWait();
        while (true)
        {
            long f = Volatile.Read(ref _shardFold);
            if ((f & 1) == 0)
            {
                var (usage, quota) = Volatile.Read(ref _tenantPublished)[t].Read();
                for (int i = 0; i < shards.Length; i++)
                    if (Volatile.Read(ref shards[i].TenantHigh) > t) usage += shards[i].ReadTenant(t);
                // The reads above end in acquire loads, so this re-read comes after them (no full fence needed).
                if (Volatile.Read(ref _shardFold) == f) return (usage, quota);
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    // ------------------------------------------------------------------ eligibility

    // Caller holds at least one stripe (so these change only under Serial(), which it excludes) or _lock.
    private bool CellEligibleConcurrent()
        => _journal is null && _bindingListeners is null && _reservations.Count == 0 && _budgets.Length == 0
           && _guaranteedTenants == 0 && (_options.Buggify & Buggify.SkipTaskBoundCheck) == 0;

    private CommitResult CommitSerial(Transaction tx)
    {
        Interlocked.Increment(ref _concurrentFallbacks);
        using (Serial()) return CommitLocked(tx);
    }

    private long _concurrentFallbacks;

    /// <summary>
    /// <see cref="CommitPath.Concurrent"/>: how many commits and releases ran without the commit lock (Direct) and how many
    /// were not eligible and ran as on the Lock path (Serial). A diagnostic that says whether a workload uses the path;
    /// (0, 0) on the other paths. Read without any lock.
    /// </summary>
    public (long Direct, long Serial) ConcurrentPathStats => (_counters.DirectCount(), Volatile.Read(ref _concurrentFallbacks));

    // ------------------------------------------------------------------ versions

    // Takes the next version. Caller holds every lock of its change. Waits only when v would lap the done ring (a
    // predecessor DoneRingSize versions back is still in flight).
    private long TakeVersion()
    {
        long v = Interlocked.Increment(ref _vw.Next);
        if (v - DoneRingSize >= Volatile.Read(ref _vw.Published))
        {
            var spin = new SpinWait();
            while (v - DoneRingSize >= Volatile.Read(ref _vw.Published)) spin.SpinOnce(sleep1Threshold: -1);
        }
        return v;
    }

    // Marks v done (its ring entries are all written) and advances the watermark over every consecutive done version.
    //
    // Why the watermark always catches up once the last committer finishes, without anyone waiting: the mark is an
    // Interlocked exchange and the advance a compare-exchange (both full fences), so all marks and advances are in one
    // total order. A committer stops advancing only after it read the watermark w and then saw w + 1 not yet marked.
    // Take the last such stop: the committer of w + 1 marks after that read, then reads the watermark (>= w, it only
    // grows) and keeps advancing from there, through its own mark at least, so it stops later: a contradiction unless
    // w + 1 is never marked, i.e. w is the last version handed out. Hence when every committer has returned from here,
    // _vw.Published == _vw.Next, which Serial() relies on (committers release their stripes only after this).
    private void MarkDone(long v)
    {
        if ((_options.Buggify & Buggify.BreakVersionWatermark) != 0)
        {
            Volatile.Write(ref _vw.Published, v); // the broken variant: publish v without waiting for its predecessors
            return;
        }
        var done = _doneRing!;
        const int mask = DoneRingSize - 1;
        // Fast path: v - 1 is the watermark, so v needs no mark (nobody else can pass v - 1 without it) and the
        // watermark moves by one compare-exchange on the line the version was taken from. The argument above still
        // holds: a successor that saw v unmarked and stopped is covered by the loop below, which reads its mark after
        // this compare-exchange (a full fence) and advances over it.
        long w;
        if (Interlocked.CompareExchange(ref _vw.Published, v, v - 1) == v - 1) w = v;
        else
        {
            Interlocked.Exchange(ref done[v & mask], v);
            w = Volatile.Read(ref _vw.Published);
        }
        while (true)
        {
            long next = w + 1;
            if (Volatile.Read(ref done[next & mask]) != next) return;
            long seen = Interlocked.CompareExchange(ref _vw.Published, next, w);
            w = seen == w ? next : Math.Max(seen, w);
        }
    }

    // After its locks are released: a change returns only once its version is published, so the caller's next snapshot
    // includes it (as on the Lock path; the linearizability tests rely on it). The wait is for predecessors that hold
    // their own locks and need nothing from this thread; it delays only this caller, never a lock holder.
    private void AwaitPublished(long v)
    {
        if (Volatile.Read(ref _vw.Published) >= v || (_options.Buggify & Buggify.BreakVersionWatermark) != 0) return;
        var spin = new SpinWait();
        while (Volatile.Read(ref _vw.Published) < v) spin.SpinOnce(sleep1Threshold: -1);
    }

    // ------------------------------------------------------------------ commit

    private CommitResult CommitConcurrent(Transaction tx)
    {
        ReadOnlySpan<Claim> claims = tx.Claims;
        int n = claims.Length;
        // The transaction's own shape first (no cell state): anything but plain binds goes the Lock path's way.
        if (n == 0 || n > ConcurrentMaxClaims || n > _options.MaxClaimsPerTransaction || !tx.Key.IsNone || _lock.IsHeldByCurrentThread)
            return CommitSerial(tx);
        ulong stripeMask = 0, partMask = 0;
        for (int i = 0; i < n; i++)
        {
            ref readonly Claim c = ref claims[i];
            if (c.Kind != ClaimKind.Bind || c.Victims is { Length: > 0 } || c.Group.AntiAffinity != PlacementScope.None) return CommitSerial(tx);
            stripeMask |= 1UL << (c.Node.Value & (StripeCount - 1));
            partMask |= 1UL << TaskIndex.PartitionOf(c.Task);
        }
        var stripes = _cstripes!;
        for (ulong m = stripeMask; m != 0; m &= m - 1) stripes[BitOperations.TrailingZeroCount(m)].Gate.Enter();
        bool partitions = false;
        long v = 0;
        CommitResult result;
        try
        {
            if (!CellEligibleConcurrent() || !TenantsWithoutQuota(claims))
            {
                for (ulong m = stripeMask; m != 0; m &= m - 1) stripes[BitOperations.TrailingZeroCount(m)].Gate.Exit();
                stripeMask = 0;
                return CommitSerial(tx);
            }
            int owner = BitOperations.TrailingZeroCount(stripeMask);
            var counters = _counterShards![owner];
            ClaimStatus[] outcomes = tx.OutcomeBuffer;
            var fence = CheckFencing(tx.Scheduler, tx.Token);
            if (fence != TransactionStatus.Committed)
            {
                outcomes.AsSpan(0, n).Fill(ClaimStatus.NotEvaluated);
                counters.Claims[(int)ClaimStatus.NotEvaluated] += n;
                counters.Direct++;
                return new CommitResult(counters.Count(fence), Volatile.Read(ref _vw.Published), 0, replayed: false, outcomes.AsMemory(0, n));
            }
            if ((_options.Buggify & Buggify.SkipTaskPartitionLocks) == 0)
            {
                _taskNode.Enter(partMask);
                partitions = true;
            }
            var w = t_concurrent ??= new ConcurrentScratch();
            int applied = Decide(tx, claims, outcomes, w);
            for (int i = 0; i < n; i++) counters.Claims[(int)outcomes[i]]++;
            var status = applied == n ? TransactionStatus.Committed : applied == 0 ? TransactionStatus.Rejected : TransactionStatus.PartiallyCommitted;
            long resultVersion;
            if (applied > 0)
            {
                v = TakeVersion();
                // Marked done also after an exception (a bug, or out of memory growing a list): a version that is never
                // marked would hold the watermark, and every later caller's wait for it, until the next Serial().
                try { Apply(claims, w, v, _usageShards![owner & (UsageShardCount - 1)]); }
                finally { MarkDone(v); }
                resultVersion = v;
            }
            else resultVersion = Volatile.Read(ref _vw.Published);
            counters.Direct++;
            result = new CommitResult(counters.Count(status), resultVersion, applied, replayed: false, outcomes.AsMemory(0, n));
        }
        finally
        {
            if (partitions) _taskNode.Exit(partMask);
            for (ulong m = stripeMask; m != 0; m &= m - 1) stripes[BitOperations.TrailingZeroCount(m)].Gate.Exit();
        }
        if (v != 0) AwaitPublished(v);
        return result;
    }

    private bool TenantsWithoutQuota(ReadOnlySpan<Claim> claims)
    {
        int count = _tenantCount;
        var quota = _tenantQuota;
        for (int i = 0; i < claims.Length; i++)
        {
            int t = claims[i].Tenant.Value;
            if ((uint)t < (uint)count && quota[t] is not null) return false;
        }
        return true;
    }

    // Phase 1: decides every claim against the live state and this transaction's earlier accepted claims, writing
    // nothing shared. The same checks, in the same order and with the same codes, as TryApply makes for a plain bind
    // (the parts TryApply has for reservations, victims, anti-affinity, quota, protected capacity and budgets are absent
    // by eligibility). Returns the number of claims to apply; all-or-nothing stops at the first refusal.
    private int Decide(Transaction tx, ReadOnlySpan<Claim> claims, ClaimStatus[] outcomes, ConcurrentScratch w)
    {
        int n = claims.Length;
        bool gang = tx.Mode == CommitMode.AllOrNothing;
        var detection = tx.Detection;
        var buggify = _options.Buggify;
        int nodeCount = _nodeCount;
        int tenantCount = _tenantCount;
        var live = _live;
        w.NodeCount = 0;
        w.AcceptedCount = 0;
        for (int i = 0; i < n; i++)
        {
            ref readonly Claim c = ref claims[i];
            var s = DecideOne(in c, claims, w, detection, buggify, nodeCount, tenantCount, live);
            outcomes[i] = s;
            if (s == ClaimStatus.Applied)
            {
                w.Accepted[w.AcceptedCount++] = i;
                continue;
            }
            if (!gang) continue;
            for (int j = 0; j < i; j++) outcomes[j] = ClaimStatus.Aborted;
            for (int j = i + 1; j < n; j++) outcomes[j] = ClaimStatus.NotEvaluated;
            w.AcceptedCount = 0;
            w.NodeCount = 0;
            return 0;
        }
        return w.AcceptedCount;
    }

    private ClaimStatus DecideOne(in Claim c, ReadOnlySpan<Claim> claims, ConcurrentScratch w, ConflictDetection detection, Buggify buggify,
        int nodeCount, int tenantCount, NodeLive[] liveAll)
    {
        if (!c.Resources.IsValidRequest) return ClaimStatus.InvalidClaim;
        if ((uint)c.Tenant.Value >= (uint)tenantCount) return ClaimStatus.UnknownTenant;
        if (c.Ttl != TimeSpan.Zero) return ClaimStatus.InvalidClaim;
        int idx = c.Node.Value;
        if ((uint)idx >= (uint)nodeCount) return ClaimStatus.NodeUnknown;
        ref NodeLive live = ref liveAll[idx];
        switch (live.Status)
        {
            case NodeStatus.Schedulable: break;
            case NodeStatus.Fenced: return ClaimStatus.NodeFenced;
            case NodeStatus.Draining when (buggify & Buggify.SkipDrainCheck) == 0: return ClaimStatus.NodeDraining;
            case NodeStatus.Draining: break;
            case NodeStatus.Down: return ClaimStatus.NodeDown;
            default: return ClaimStatus.NodeUnknown;
        }
        // Bound in the cell (its partition's lock is held), or by an earlier accepted claim of this transaction.
        if (_taskNode.ContainsKey(c.Task)) return ClaimStatus.TaskAlreadyBound;
        for (int a = 0; a < w.AcceptedCount; a++)
            if (claims[w.Accepted[a]].Task == c.Task) return ClaimStatus.TaskAlreadyBound;
        // Coarse: against the node's version before this transaction (nothing of it is applied yet).
        if (detection == ConflictDetection.Coarse && live.Version != c.ExpectedNodeVersion) return ClaimStatus.NodeVersionChanged;
        int k = 0;
        while (k < w.NodeCount && w.Nodes[k] != idx) k++;
        var used = k < w.NodeCount ? live.Allocated + w.Pending[k] : live.Allocated;
        if (!ResourceVector.Fits(used, c.Resources, live.Spec!.Capacity) && (buggify & Buggify.SkipCapacityCheck) == 0)
            return ClaimStatus.InsufficientResources;
        if (k == w.NodeCount)
        {
            w.Nodes[k] = idx;
            w.Pending[k] = default;
            w.NodeCount++;
        }
        w.Pending[k] += c.Resources;
        return ClaimStatus.Applied;
    }

    // Phase 2: applies the accepted claims at version v and publishes the touched nodes' ring entries. Caller holds every
    // stripe and partition of the transaction; the shard is that of its lowest stripe.
    private void Apply(ReadOnlySpan<Claim> claims, ConcurrentScratch w, long v, UsageShard shard)
    {
        var live = _live;
        var bindings = _bindingsOnNode;
        ResourceVector sched = default;
        for (int a = 0; a < w.AcceptedCount; a++)
        {
            ref readonly Claim c = ref claims[w.Accepted[a]];
            var alloc = new Allocation(c.Task, c.Node, c.Resources, c.Tenant, c.Priority, v);
            _taskNode.TryAdd(c.Task, c.Node);
            int idx = c.Node.Value;
            ref NodeLive l = ref live[idx];
            if (l.TxnStamp != v)
            {
                // Once per node per transaction, as TryApply does (the pre-transaction fields only matter to it).
                l.PreTxnVersion = l.Version;
                l.PreTxnStamp = l.TxnStamp;
                l.TxnStamp = v;
                l.Version++;
            }
            l.Allocated += c.Resources;
            l.TaskCount++;
            if (l.Status == NodeStatus.Schedulable) sched += c.Resources;
            (bindings[idx] ??= new NodeBindings(c.Node)).Add(alloc);
        }
        // The transaction's whole delta of cell-wide sums, in one seqlocked write of its shard.
        shard.BeginWrite();
        shard.SchedDelta += sched;
        for (int a = 0; a < w.AcceptedCount; a++)
        {
            ref readonly Claim c = ref claims[w.Accepted[a]];
            shard.AddTenant(c.Tenant.Value, c.Resources);
        }
        shard.Dirty = true;
        shard.EndWrite();
        var slots = _slots;
        for (int k = 0; k < w.NodeCount; k++)
        {
            int idx = w.Nodes[k];
            slots[idx].Publish(v, live[idx]);
        }
    }

    // ------------------------------------------------------------------ release

    private ReleaseStatus ReleaseConcurrent(TaskId task, long expectedGeneration)
    {
        if (_lock.IsHeldByCurrentThread) return ReleaseLocked(task, expectedGeneration);
        var stripes = _cstripes!;
        int part = TaskIndex.PartitionOf(task);
        bool lockPartition = (_options.Buggify & Buggify.SkipTaskPartitionLocks) == 0;
        // The task's node, read racily (a hint: 0 when not found in the first probes); confirmed under its partition's
        // lock while holding the hinted node's stripe. With no hint, stripe 0 is held anyway, so that Serial() (which
        // writes the partitions without their locks) is excluded while the partition is read.
        int nodePlusOne = _taskNode.Touch(task);
        while (true)
        {
            int stripe = nodePlusOne == 0 ? 0 : (nodePlusOne - 1) & (StripeCount - 1);
            var gate = stripes[stripe].Gate;
            gate.Enter();
            if (!CellEligibleConcurrent())
            {
                gate.Exit();
                Interlocked.Increment(ref _concurrentFallbacks);
                using (Serial()) return ReleaseLocked(task, expectedGeneration);
            }
            long v = 0;
            ReleaseStatus status;
            if (lockPartition) _taskNode.Enter(1UL << part);
            try
            {
                var table = _taskNode.Part(part);
                if (!table.TryGetValue(task, out var node)) status = ReleaseStatus.NotBound;
                else if ((node.Value & (StripeCount - 1)) != stripe)
                {
                    nodePlusOne = node.Value + 1; // bound on a node of another stripe: retry holding that one
                    continue;
                }
                else
                {
                    int idx = node.Value;
                    var set = _bindingsOnNode[idx]!;
                    set.TryGet(task, out var a);
                    if (expectedGeneration != 0 && a.Generation != expectedGeneration) status = ReleaseStatus.GenerationMismatch;
                    else
                    {
                        v = TakeVersion();
                        try
                        {
                            table.Remove(task);
                            ref NodeLive live = ref _live[idx];
                            live.Allocated -= a.Resources;
                            live.TaskCount--;
                            var shard = _usageShards![stripe & (UsageShardCount - 1)];
                            shard.BeginWrite();
                            if (live.Status == NodeStatus.Schedulable) shard.SchedDelta -= a.Resources;
                            shard.AddTenant(a.Tenant.Value, default(ResourceVector) - a.Resources);
                            shard.EndWrite();
                            set.Remove(task);
                            ForgetPhaseOfReleased(task); // after the list's removal, as RemoveBinding orders them (Cell.Lifecycle.cs)
                            _slots[idx].Publish(v, live);
                        }
                        finally { MarkDone(v); }
                        status = ReleaseStatus.Released;
                    }
                }
                _counterShards![stripe].Count(status);
                _counterShards[stripe].Direct++;
            }
            finally
            {
                if (lockPartition) _taskNode.Exit(1UL << part);
                gate.Exit();
            }
            if (v != 0) AwaitPublished(v);
            return status;
        }
    }
}
