namespace Omega.Cells;

// The commit combiner (issue 14; docs/commit-protocol.md, "The commit combiner").
//
// Every single-transaction Commit and every Release is a request: the calling thread writes it into its own request
// object, pushes that onto a lock-free stack, and then either finds it answered by another thread or takes the commit
// lock itself and answers everything queued (flat combining). Whoever holds the lock — the combiner — runs the queued
// requests through the same CommitLocked / ReleaseLocked code a lone Commit runs, in arrival order, with consecutive
// versions, and hands the whole batch's journal records to the journal as one append (ICellJournal.AppendBatch; a
// batch of one record is the bare record, byte for byte what a lone commit writes).
//
// Why this and not per-node CAS on packed words: every invariant of the commit (one live binding per task across
// nodes, all-or-nothing gangs over several nodes, quota and protected capacity across all nodes of a tenant,
// reservations, anti-affinity over a failure domain, scheduler-scoped idempotency, and journal order = version order)
// is a check over state that spans nodes. Per-node CAS makes the single-node capacity test lock-free but needs, beside
// it, a task-uniqueness structure, a tenant-usage structure, a multi-node commit protocol (gangs) and a published-prefix
// version watermark — each another shared cache line written per commit, i.e. the same cross-core traffic the lock has,
// spread over more lines, plus a second implementation of every check. The combiner keeps one implementation of every
// check, proven by the existing tests, and removes what actually costs on a contended lock: the cell's working set
// (dictionary buckets, node entries, counters, the journal writer) migrating between cores on every hand-off, and
// waiters parking in the kernel. A waiter only ever writes its own request line and reads its Done flag.
//
// Why a waiter spins first: the combiner holds the lock for the few hundred nanoseconds a batch takes, far less than a
// park/unpark. SpinWait yields the core after a few rounds, so a combiner that was preempted on an oversubscribed
// machine gets it back; after MaxSpins busy rounds (before SpinWait would start yielding) the waiter blocks on the lock
// like a plain caller, so a descheduled combiner or one stuck in a slow journal append does not have every waiter
// burning or yielding its core. The waiter retries TryEnter on every round, so it
// makes progress by itself as soon as the lock is free (no request can be stranded: a request pushed before TryEnter
// succeeds is either taken by an earlier combiner, which answers it before releasing the lock, or by this one).
//
// No thread, no timer: on one thread (the deterministic simulator) every request finds the lock free and is answered
// by its own caller, in call order, exactly as before the combiner.
public sealed partial class Cell
{
    /// <summary>A queued Commit or Release. One per thread, reused (allocation-free once a thread has made one call).</summary>
    private sealed class CombineRequest
    {
        public const int KindCommit = 1, KindRelease = 2;

        public int Kind;
        public Transaction? Tx;
        public TaskId Task;
        public long Generation;
        public CommitResult Commit;
        public ReleaseStatus Release;
        public Exception? Error;
        public CombineRequest? Next;
        // Written last by the combiner (release), after the result fields and after the batch's journal append and
        // JournalSequence publication, so a waiter that sees it reads a sequence that covers its own record.
        public volatile int Done;
        // True while this thread has the request in flight (a listener or journal calling another cell's Commit from
        // inside a combine would otherwise reuse it).
        public bool InUse;
    }

    private bool PlainLock => _options.CommitPath == CommitPath.Lock;

    [ThreadStatic] private static CombineRequest? t_request;

    // The stack of requests waiting for a combiner. Pushed by any thread (CAS), drained whole by the combiner (Exchange).
    private CombineRequest? _pending;

    // Requests answered in the current combine, kept until the journal batch is appended; reused.
    private CombineRequest[] _combining = new CombineRequest[16];

    // Tests: a request is queued for a combiner right now (the stress harness holds a round open until one is, so that
    // combining is exercised without sleeping).
    internal bool HasQueuedRequest => Volatile.Read(ref _pending) is not null;

    // Counted under the lock: combine rounds run and the requests they answered (diagnostics; the lone fast path is not counted).
    private long _combineBatches, _combinedRequests;

    /// <summary>How many combine rounds ran and how many requests they answered (requests ÷ batches is the mean batch).</summary>
    public (long Batches, long Requests) CombinerStats
    {
        get { using (Serial()) return (_combineBatches, _combinedRequests); }
    }

    // Acquisitions of the commit lock by Commit/Release that found it held by another thread (written under the lock).
    private long _commitLockContended;

    /// <summary>
    /// How many <see cref="Commit"/> and <see cref="Release"/> calls found the commit lock held by another thread and had
    /// to wait for it (spin, then block in the kernel until the holder's release wakes them). Divided by the number of
    /// commits and releases, it is the fraction of lock hand-offs between threads: each costs the cell's working set a
    /// trip between cores and, once the waiter has blocked, a wake-up. A count, so it is meaningful on a loaded machine
    /// where timings are not. Read without the lock (a monotonic diagnostic).
    /// </summary>
    public long CommitLockContentions => Volatile.Read(ref _commitLockContended);

    // The plain path's lock entry: TryEnter first, so an uncontended call costs what `lock` costs; a contended one is
    // counted before it waits (an interlocked add on a path that is about to wait anyway), so the count shows a waiter
    // while it still waits.
    //
    // Then it spins for a bounded time before it blocks (issue 14, round 8). The quiet run of 2026-12-07 found the scheduler
    // workers on-CPU only 61 % of their wall time at 2 workers while never idle, with 18 % of transactions contended: a
    // 16-claim commit holds the lock for ~10 µs, longer than System.Threading.Lock's own spin, so a waiter parked in the
    // kernel and was woken by the holder's exit (a cross-CPU interrupt and a reschedule, tens of µs on a VM: about a
    // whole job). Spinning for about one long critical section keeps the waiter on its core and takes the lock a few
    // hundred ns after it frees. Bounded (CellOptions.CommitLockSpinRounds), and off on one CPU, so a holder that is
    // descheduled (more threads than cores) or stuck in a slow journal append costs a waiter at most that budget before
    // it blocks as before. Only timing changes: the lock, and so every check, the order and the journal, are the same.
    private void EnterCommitLock()
    {
        if (_lock.TryEnter()) return;
        Interlocked.Increment(ref _commitLockContended);
        for (int round = _spinRounds; round > 0; round--)
        {
            Thread.SpinWait(SpinIterationsPerRound);
            if (_lock.TryEnter()) return;
        }
        Interlocked.Increment(ref _commitLockBlocked);
        _lock.Enter();
    }

    // Thread.SpinWait's iterations are normalised by the runtime (about 24 ns each on the 2-core reference machine,
    // measured: best of 200 × 100 calls of SpinWait(64)), so a round is about a microsecond: long enough that the
    // TryEnter between rounds (a CAS on the lock word) seldom steals the line from the holder, short enough that a waiter
    // notices a freed lock quickly. 32 rounds (the default) are then about 30 µs, two to three long critical sections.
    private const int SpinIterationsPerRound = 40;

    private static int SpinRoundsFor(CellOptions options) => Environment.ProcessorCount > 1 ? Math.Max(0, options.CommitLockSpinRounds) : 0;

    // Contended acquisitions whose bounded spin ran out, so the caller blocked in the kernel (written with Interlocked).
    private long _commitLockBlocked;

    /// <summary>
    /// How many of the <see cref="CommitLockContentions"/> spun for the whole budget
    /// (<see cref="CellOptions.CommitLockSpinRounds"/>) without getting the lock and then blocked in the kernel until the
    /// holder's release woke them. Contentions minus blocks is the number of hand-offs the bounded spin absorbed.
    /// A count, meaningful on a loaded machine. Read without the lock (a monotonic diagnostic).
    /// </summary>
    public long CommitLockBlocks => Volatile.Read(ref _commitLockBlocked);

    private static CombineRequest RentRequest()
    {
        var r = t_request;
        if (r is null || r.InUse) { r = new CombineRequest(); if (t_request is null) t_request = r; }
        r.InUse = true;
        r.Error = null;
        r.Next = null;
        r.Done = 0;
        return r;
    }

    private static void ReturnRequest(CombineRequest r)
    {
        r.Tx = null;
        r.Commit = default;
        r.InUse = false;
    }

    private CommitResult CommitCombined(Transaction tx)
    {
        // Called back from inside a critical section of this cell (recursive lock): run in place. Combining here would
        // answer other threads' requests in the middle of the caller's own half-finished change.
        if (_lock.IsHeldByCurrentThread) return CommitLocked(tx);
        // Uncontended: nobody queued and the lock is free, so answer in place (no request, no push), then answer whatever
        // queued up meanwhile. This keeps a lone thread's path as short as the plain lock's.
        if (_options.CommitPath == CommitPath.Combining && Volatile.Read(ref _pending) is null && _lock.TryEnter())
        {
            try
            {
                var direct = CommitLocked(tx);
                if (Volatile.Read(ref _pending) is not null) CombineLocked();
                return direct;
            }
            finally { _lock.Exit(); }
        }
        var r = RentRequest();
        r.Kind = CombineRequest.KindCommit;
        r.Tx = tx;
        Submit(r);
        var error = r.Error;
        var result = r.Commit;
        ReturnRequest(r);
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        return result;
    }

    private ReleaseStatus ReleaseCombined(TaskId task, long expectedGeneration)
    {
        if (_lock.IsHeldByCurrentThread) return ReleaseLocked(task, expectedGeneration);
        if (_options.CommitPath == CommitPath.Combining && Volatile.Read(ref _pending) is null && _lock.TryEnter())
        {
            try
            {
                var direct = ReleaseLocked(task, expectedGeneration);
                if (Volatile.Read(ref _pending) is not null) CombineLocked();
                return direct;
            }
            finally { _lock.Exit(); }
        }
        var r = RentRequest();
        r.Kind = CombineRequest.KindRelease;
        r.Task = task;
        r.Generation = expectedGeneration;
        Submit(r);
        var error = r.Error;
        var result = r.Release;
        ReturnRequest(r);
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        return result;
    }

    private void Submit(CombineRequest r)
    {
        // Push (Treiber stack).
        var head = Volatile.Read(ref _pending);
        while (true)
        {
            r.Next = head;
            var seen = Interlocked.CompareExchange(ref _pending, r, head);
            if (ReferenceEquals(seen, head)) break;
            head = seen;
        }
        var spin = new SpinWait();
        while (r.Done == 0)
        {
            // After a bounded spin, block on the lock like a plain caller: a combiner stuck in a slow journal append
            // (back-pressure, a full disk) must not have every waiter burning a core.
            bool acquired = spin.Count >= MaxSpins ? EnterBlocking() : _lock.TryEnter();
            if (acquired)
            {
                try
                {
                    if (r.Done == 0) CombineLocked();
                }
                finally { _lock.Exit(); }
                // Our request was pushed before we took the lock: this combine or an earlier one (which finished before
                // releasing the lock we then took) has answered it.
                System.Diagnostics.Debug.Assert(r.Done != 0);
                return;
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    // SpinWait rounds before a waiter blocks on the lock: SpinWait busy-spins (exponentially longer) for its first 10
    // rounds and only then starts yielding. A few µs of busy spinning covers a normal batch; a yield on an
    // oversubscribed machine can cost a whole time slice per round (measured: a 2-thread run fell to a tenth of the plain
    // lock's rate while 40 yielding rounds were allowed under heavy load), so a waiter that is not answered by then
    // blocks on the lock like a plain caller and is woken when the lock is released.
    private const int MaxSpins = 10;

    private bool EnterBlocking()
    {
        _lock.Enter();
        return true;
    }

    // Caller holds _lock. Answers every queued request (and any that arrive meanwhile, up to a bound so one thread is
    // not kept combining forever), as one journal batch.
    private void CombineLocked()
    {
        int count = 0;
        BeginJournalBatch();
        Exception? journalError = null;
        try
        {
            // Bounded rounds: a batch larger than the waiting threads gains nothing, and the combiner's own caller waits.
            for (int round = 0; round < 4; round++)
            {
                var taken = Interlocked.Exchange(ref _pending, null);
                if (taken is null) break;
                // The stack is newest first; answer in arrival order.
                CombineRequest? fifo = null;
                while (taken is not null)
                {
                    var next = taken.Next;
                    taken.Next = fifo;
                    fifo = taken;
                    taken = next;
                }
                for (var q = fifo; q is not null; q = q.Next)
                {
                    if (count == _combining.Length) Array.Resize(ref _combining, count * 2);
                    _combining[count++] = q;
                    try
                    {
                        if (q.Kind == CombineRequest.KindCommit) q.Commit = CommitLocked(q.Tx!);
                        else q.Release = ReleaseLocked(q.Task, q.Generation);
                    }
                    catch (Exception e)
                    {
                        // A bug or an I/O failure of this request: it is that caller's exception, not the others'.
                        q.Error = e;
                    }
                }
            }
        }
        finally
        {
            try
            {
                EndJournalBatch();
            }
            catch (Exception e)
            {
                // The batch's records did not reach the journal: no request of it may look successful.
                journalError = e;
            }
            if (count > 0)
            {
                _combineBatches++;
                _combinedRequests += count;
            }
            // Done last, after the journal append and the JournalSequence it published.
            for (int i = 0; i < count; i++)
            {
                var q = _combining[i];
                _combining[i] = null!;
                if (journalError is not null) q.Error ??= journalError;
                q.Done = 1;
            }
        }
    }
}
