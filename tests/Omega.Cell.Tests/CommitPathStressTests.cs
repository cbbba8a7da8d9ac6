using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Seeded stress of the commit path (issue 14: the commit combiner) at 2, 4 and 8 threads. Every thread checks the
/// invariants after every one of its steps: at most one live binding per task (a shadow table every binder must claim
/// with a CAS), no node over capacity and no tenant over quota in a fresh snapshot, a stale fencing token rejected with
/// nothing applied, a keyed retry answered from the index without a second binding, and journal order = version order
/// with the result of every call covered by the <see cref="Cell.JournalSequence"/> read after it (durable gating). A full
/// <see cref="Cell.Audit"/> runs every 32 steps and at the end. The same harness runs against deliberately broken commit
/// paths (<see cref="Buggify"/>) and must catch each.
/// </summary>
public sealed class CommitPathStressTests(ITestOutputHelper output)
{
    private const int Nodes = 8;
    private const int PoolTasks = 48;
    private static readonly ResourceVector Capacity = new(1000, 16);
    private static readonly ResourceVector TenantOneQuota = new(2500, 1_000);

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Invariants_hold_after_every_step(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads (thread i uses new Random(seed + i)); rerun with this seed to reproduce the schedule of choices");
        var run = Run(seed, threads, Buggify.None, stopAtFirst: false);
        output.WriteLine($"{run.Steps} steps ({run.ExtraSteps} beyond the planned ones, to see combining), {run.Applied} claims applied, {run.Released} released, "
            + $"{run.Combined.Requests} requests in {run.Combined.Batches} combine rounds, {run.Seconds:0.0} s");
        Assert.True(run.Failures.Count == 0, $"seed {seed}, {threads} threads: {run.Failures.Count} violations, first: {string.Join(" | ", run.Failures.Take(3))}");
        Assert.True(run.Applied > 0 && run.Released > 0, $"seed {seed}: the run did no work");
        // The combining path itself was exercised: some round answered more than one thread's request (the run keeps
        // stepping, every step checked, until it saw MinCombinedExtra such requests or its time cap; see Run).
        Assert.True(run.Combined.Requests > run.Combined.Batches,
            $"seed {seed}: no combine round answered two requests ({run.Combined.Requests} requests in {run.Combined.Batches} rounds over {run.Steps} steps, {run.Seconds:0.0} s)");
    }

    /// <summary>The same per-step invariants on the default plain-lock path (issue 14 moved its dispatch ahead of the combiner's).</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Invariants_hold_after_every_step_on_the_plain_lock_path(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Lock (thread i uses new Random(seed + i))");
        var run = Run(seed, threads, Buggify.None, stopAtFirst: false, CommitPath.Lock);
        output.WriteLine($"{run.Steps} steps, {run.Applied} claims applied, {run.Released} released");
        Assert.True(run.Failures.Count == 0, $"seed {seed}, {threads} threads: {run.Failures.Count} violations, first: {string.Join(" | ", run.Failures.Take(3))}");
        Assert.True(run.Applied > 0 && run.Released > 0, $"seed {seed}: the run did no work");
        Assert.Equal((0L, 0L), run.Combined); // the plain path never combines
    }

    /// <summary>
    /// The same per-step invariants on the node-striped path (issue 14: node stripe locks, the commit lock as sequencer,
    /// publication outside it in version order), with the binding feed attached, so its in-order delivery from the
    /// publishing threads is checked too, and each thread's snapshots must never go back in version nor miss its own commit.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Invariants_hold_after_every_step_on_the_striped_path(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Striped (thread i uses new Random(seed + i))");
        var run = Run(seed, threads, Buggify.None, stopAtFirst: false, CommitPath.Striped);
        output.WriteLine($"{run.Steps} steps, {run.Applied} claims applied, {run.Released} released");
        Assert.True(run.Failures.Count == 0, $"seed {seed}, {threads} threads: {run.Failures.Count} violations, first: {string.Join(" | ", run.Failures.Take(3))}");
        Assert.True(run.Applied > 0 && run.Released > 0, $"seed {seed}: the run did no work");
        Assert.Equal((0L, 0L), run.Combined); // the striped path never combines
    }

    /// <summary>
    /// The per-step checks catch each broken variant of the commit checks on the striped path (they run in its sequencer).
    /// The striped path's own two mechanisms open windows of a few hundred nanoseconds that a random schedule seldom hits,
    /// so their broken variants are forced instead: <see cref="A_later_version_is_not_published_before_an_earlier_one_completes"/>
    /// and <see cref="A_transaction_on_a_node_being_published_waits_for_its_stripe"/>.
    /// </summary>
    [Theory]
    [InlineData(2, Buggify.SkipTaskBoundCheck)]
    [InlineData(8, Buggify.SkipTaskBoundCheck)]
    [InlineData(4, Buggify.SkipCapacityCheck)]
    [InlineData(4, Buggify.SkipTokenCheck)]
    [InlineData(4, Buggify.SkipIdempotencyReplay)]
    public void A_broken_commit_path_is_caught_on_the_striped_path(int threads, Buggify broken)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Striped, broken: {broken}");
        var run = Run(seed, threads, broken, stopAtFirst: true, CommitPath.Striped);
        Assert.True(run.Failures.Count > 0, $"seed {seed}, {threads} threads: {broken} went unnoticed in {run.Steps} steps");
        output.WriteLine($"caught after {run.Steps} steps: {run.Failures.First()}");
    }

    /// <summary>
    /// Version order on the striped path, forced rather than timed: transaction A is held inside its binding-feed delivery
    /// (its cell version written, its publication not complete); transaction B on another node then passes the sequencer
    /// (its journal record is appended) but must not publish or return before A completes, so the cell version cannot
    /// skip or step back and the feed stays in version order. With <see cref="Buggify.SkipPublishOrder"/> B returns while A
    /// is held, which this test must detect.
    /// </summary>
    [Theory]
    [InlineData(Buggify.None)]
    [InlineData(Buggify.SkipPublishOrder)]
    public void A_later_version_is_not_published_before_an_earlier_one_completes(Buggify broken)
    {
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { CommitPath = CommitPath.Striped, Buggify = broken }, journal);
        for (int i = 0; i < 2; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var gate = new GatedListener();
        cell.AddBindingListener(gate);
        CommitResult Bind(int task, int node)
        {
            var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine);
            tx.Add(new Claim(new TaskId(new JobId(1), task), new NodeId(node), new ResourceVector(100, 1), 0));
            return cell.Commit(tx).Detach();
        }
        long before = cell.Version;
        gate.Arm();
        CommitResult first = default, second = default;
        var a = new Thread(() => first = Bind(1, 0)) { IsBackground = true, Name = "A" };
        a.Start();
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(60)), "A never delivered its feed");
        long appendsBeforeB = journal.Count;
        var b = new Thread(() => second = Bind(2, 1)) { IsBackground = true, Name = "B" };
        b.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (journal.Count == appendsBeforeB)
        {
            Assert.True(DateTime.UtcNow < deadline, "B never passed the sequencer (its journal record was not appended)");
            Thread.Yield();
        }
        if (broken == Buggify.None)
        {
            // B is past the sequencer and must now wait for A: it cannot return, and the cell version is A's.
            Assert.False(b.Join(TimeSpan.FromMilliseconds(300)), "B returned while the earlier version A was still being published");
            Assert.Equal(before + 1, cell.Version);
            gate.Release.Set();
            Assert.True(a.Join(TimeSpan.FromSeconds(60)) && b.Join(TimeSpan.FromSeconds(60)), "the commits did not finish");
            Assert.Equal(before + 1, first.CellVersion);
            Assert.Equal(before + 2, second.CellVersion);
            Assert.Equal(before + 2, cell.Version);
            Assert.Equal([before + 1, before + 2], gate.Versions);
            Assert.Empty(cell.Audit());
        }
        else
        {
            // The broken variant: B publishes and returns while A is held (then A's feed arrives after B's).
            bool returned = b.Join(TimeSpan.FromSeconds(60));
            gate.Release.Set();
            Assert.True(a.Join(TimeSpan.FromSeconds(60)), "A did not finish");
            Assert.True(returned, "SkipPublishOrder went unnoticed: B did not overtake the held A");
        }
    }

    /// <summary>
    /// Node stripes on the striped path, forced rather than timed: transaction A on node 0 is held inside its publication
    /// (binding-feed delivery); transaction B on the same node must not reach the sequencer (no journal append) until A's
    /// publication is complete, so a node's binding list and ring slot have one writer at a time and B's checks read what
    /// A published. With <see cref="Buggify.SkipStripeLocks"/> B passes the sequencer while A publishes, which this test
    /// must detect.
    /// </summary>
    [Theory]
    [InlineData(Buggify.None)]
    [InlineData(Buggify.SkipStripeLocks)]
    public void A_transaction_on_a_node_being_published_waits_for_its_stripe(Buggify broken)
    {
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { CommitPath = CommitPath.Striped, Buggify = broken }, journal);
        for (int i = 0; i < 2; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var gate = new GatedListener();
        cell.AddBindingListener(gate);
        CommitResult Bind(int task, int node)
        {
            var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine);
            tx.Add(new Claim(new TaskId(new JobId(1), task), new NodeId(node), new ResourceVector(100, 1), 0));
            return cell.Commit(tx).Detach();
        }
        gate.Arm();
        CommitResult first = default, second = default;
        var a = new Thread(() => first = Bind(1, 0)) { IsBackground = true, Name = "A" };
        a.Start();
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(60)), "A never delivered its feed");
        long appendsBeforeB = journal.Count;
        var b = new Thread(() => second = Bind(2, 0)) { IsBackground = true, Name = "B" };
        b.Start();
        if (broken == Buggify.None)
        {
            // B waits for node 0's stripe, before the sequencer: nothing of it is decided or journalled while A publishes.
            Assert.False(b.Join(TimeSpan.FromMilliseconds(300)), "B finished while A was publishing the same node");
            Assert.Equal(appendsBeforeB, journal.Count);
            gate.Release.Set();
            Assert.True(a.Join(TimeSpan.FromSeconds(60)) && b.Join(TimeSpan.FromSeconds(60)), "the commits did not finish");
            Assert.Equal(TransactionStatus.Committed, first.Status);
            Assert.Equal(TransactionStatus.Committed, second.Status);
            Assert.Equal(first.CellVersion + 1, second.CellVersion);
            Assert.Empty(cell.Audit());
        }
        else
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (journal.Count == appendsBeforeB && DateTime.UtcNow < deadline) Thread.Yield();
            bool passed = journal.Count > appendsBeforeB;
            gate.Release.Set();
            Assert.True(a.Join(TimeSpan.FromSeconds(60)) && b.Join(TimeSpan.FromSeconds(60)), "the commits did not finish");
            Assert.True(passed, "SkipStripeLocks went unnoticed: B did not reach the sequencer while A published its node");
        }
    }

    /// <summary>Counts journal appends (the sequencer's last step), thread-safely.</summary>
    private sealed class RecordingJournal : ICellJournal
    {
        private long _count;

        public long Count => Volatile.Read(ref _count);

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record) => Interlocked.Increment(ref _count);
    }

    /// <summary>Once armed, holds the next feed delivery until <see cref="Release"/> is set; records completed versions.</summary>
    private sealed class GatedListener : IBindingListener
    {
        private int _armed;
        public readonly ManualResetEventSlim Entered = new(), Release = new();
        public readonly ConcurrentQueue<long> Completed = new();

        public long[] Versions => [.. Completed];

        public void Arm() => Volatile.Write(ref _armed, 1);

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 0) return;
            Entered.Set();
            Release.Wait(TimeSpan.FromSeconds(120));
        }

        public void OnVersionComplete(long version) => Completed.Enqueue(version);
    }

    /// <summary>
    /// <see cref="Cell.CommitLockContentions"/> counts a commit that finds the lock held by another thread, while it
    /// waits: a journal append holds the lock (blocked on a gate) during one thread's commit, a second thread's commit
    /// must then wait, and the count shows it before the gate opens. Both commits apply; an uncontended commit counts nothing.
    /// </summary>
    [Fact]
    public void A_commit_that_waits_for_the_lock_is_counted_as_contended()
    {
        var journal = new GatedJournal();
        using var cell = new Cell(new CellOptions { CommitPath = CommitPath.Lock }, journal);
        for (int i = 0; i < 2; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        CommitResult Bind(int task, int node)
        {
            var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine);
            tx.Add(new Claim(new TaskId(new JobId(1), task), new NodeId(node), new ResourceVector(100, 1), 0));
            return cell.Commit(tx).Detach();
        }
        Assert.Equal(TransactionStatus.Committed, Bind(0, 0).Status);
        Assert.Equal(0, cell.CommitLockContentions);

        journal.Arm();
        CommitResult first = default, second = default;
        var holder = new Thread(() => first = Bind(1, 0)) { IsBackground = true, Name = "holder" };
        holder.Start();
        Assert.True(journal.Entered.Wait(TimeSpan.FromSeconds(60)), "the first commit never reached its journal append");
        var waiter = new Thread(() => second = Bind(2, 1)) { IsBackground = true, Name = "waiter" };
        waiter.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (cell.CommitLockContentions == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the second commit was not counted as contended while it waited");
            Thread.Yield();
        }
        Assert.True(waiter.IsAlive, "the waiter finished while the lock was held");
        journal.Release.Set();
        Assert.True(holder.Join(TimeSpan.FromSeconds(60)) && waiter.Join(TimeSpan.FromSeconds(60)), "the commits did not finish");
        Assert.Equal(TransactionStatus.Committed, first.Status);
        Assert.Equal(TransactionStatus.Committed, second.Status);
        Assert.Equal(1, cell.CommitLockContentions);
        Assert.Empty(cell.Audit());
    }

    /// <summary>
    /// The plain path's bounded spin (issue 14, round 8): a waiter whose holder frees the lock within the spin budget
    /// takes it without blocking; one whose holder stays longer than the budget blocks, and is counted in
    /// <see cref="Cell.CommitLockBlocks"/> while it still waits. The holder is a commit parked in its journal append, so
    /// "longer than the budget" is forced, not timed.
    /// </summary>
    [Theory]
    [InlineData(int.MaxValue, false)]
    [InlineData(4, true)]
    [InlineData(0, true)]
    public void A_contended_commit_spins_within_its_budget_then_blocks(int spinRounds, bool mustBlock)
    {
        var journal = new GatedJournal();
        using var cell = new Cell(new CellOptions { CommitPath = CommitPath.Lock, CommitLockSpinRounds = spinRounds }, journal);
        for (int i = 0; i < 2; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        CommitResult Bind(int task, int node)
        {
            var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine);
            tx.Add(new Claim(new TaskId(new JobId(1), task), new NodeId(node), new ResourceVector(100, 1), 0));
            return cell.Commit(tx).Detach();
        }
        journal.Arm();
        CommitResult first = default, second = default;
        var holder = new Thread(() => first = Bind(1, 0)) { IsBackground = true, Name = "holder" };
        holder.Start();
        Assert.True(journal.Entered.Wait(TimeSpan.FromSeconds(60)), "the first commit never reached its journal append");
        var waiter = new Thread(() => second = Bind(2, 1)) { IsBackground = true, Name = "waiter" };
        waiter.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        // With a finite budget (on more than one CPU; on one the spin is off) the waiter must end up blocked while the
        // holder still holds the lock; with an unbounded one it only ever spins.
        bool expectBlock = mustBlock;
        while (cell.CommitLockContentions == 0 || (expectBlock && cell.CommitLockBlocks == 0))
        {
            Assert.True(DateTime.UtcNow < deadline, $"contentions {cell.CommitLockContentions}, blocks {cell.CommitLockBlocks}: the waiter was not counted while it waited");
            Thread.Yield();
        }
        Assert.True(waiter.IsAlive, "the waiter finished while the lock was held");
        journal.Release.Set();
        Assert.True(holder.Join(TimeSpan.FromSeconds(60)) && waiter.Join(TimeSpan.FromSeconds(60)), "the commits did not finish");
        Assert.Equal(TransactionStatus.Committed, first.Status);
        Assert.Equal(TransactionStatus.Committed, second.Status);
        Assert.Equal(1, cell.CommitLockContentions);
        // An unbounded spin never blocks (on one CPU the spin is off, so it blocks at once).
        Assert.Equal(mustBlock || Environment.ProcessorCount == 1 ? 1 : 0, cell.CommitLockBlocks);
        Assert.Empty(cell.Audit());
    }

    /// <summary>
    /// Warming a commit's lines before the lock (CellOptions.PrefetchOutsideLock) reads writer-private state racily. Here
    /// the task index and the node lists grow (are replaced) again and again while other threads warm against them:
    /// every commit and release must still succeed exactly as on a single thread, with no fault, and the audit stays clean.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Warming_outside_the_lock_races_table_growth_without_effect(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads");
        using var cell = new Cell(new CellOptions { CommitPath = CommitPath.Lock, PrefetchOutsideLock = true });
        for (int i = 0; i < 4; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1_000_000_000, 1_000_000)));
        const int PerThread = 6_000;
        var failures = new ConcurrentQueue<string>();
        using var start = new Barrier(threads);
        var workers = new Thread[threads];
        for (int w = 0; w < threads; w++)
        {
            int me = w;
            workers[w] = new Thread(() =>
            {
                try
                {
                    var rng = new Random(seed + me);
                    var lease = cell.AcquireLease($"w{me}", TimeSpan.FromDays(1)).Lease;
                    var tx = new Transaction(lease);
                    start.SignalAndWait();
                    // Grow: distinct tasks, 1-4 claims per transaction on random nodes (each node list grows by doubling).
                    for (int i = 0; i < PerThread;)
                    {
                        tx.Reset(lease, CommitMode.AllOrNothing, ConflictDetection.Fine);
                        int k = Math.Min(rng.Next(1, 5), PerThread - i);
                        for (int c = 0; c < k; c++) tx.Add(new Claim(new TaskId(me + 1, i + c), new NodeId(rng.Next(4)), new ResourceVector(1, 1), 0));
                        var r = cell.Commit(tx);
                        if (r.Status != TransactionStatus.Committed) { failures.Enqueue($"thread {me} task {i}: {r.Status}"); return; }
                        i += k;
                    }
                    // Shrink: release in a random order (removals shift probe runs under the racing readers).
                    var order = new int[PerThread];
                    for (int i = 0; i < PerThread; i++) order[i] = i;
                    rng.Shuffle(order);
                    foreach (int i in order)
                    {
                        var s = cell.Release(new TaskId(me + 1, i));
                        if (s != ReleaseStatus.Released) { failures.Enqueue($"thread {me} release of task {i}: {s}"); return; }
                    }
                }
                catch (Exception e) { failures.Enqueue($"thread {me}: {e}"); }
            }) { IsBackground = true };
            workers[w].Start();
        }
        foreach (var t in workers) Assert.True(t.Join(TimeSpan.FromSeconds(120)), $"seed {seed}: a worker did not finish");
        Assert.True(failures.IsEmpty, $"seed {seed}: {string.Join(" | ", failures.Take(3))}");
        Assert.Equal(0, cell.AllocationCount);
        Assert.Empty(cell.Audit());
    }

    /// <summary>Once armed, blocks the next append (under the commit lock) until <see cref="Release"/> is set.</summary>
    private sealed class GatedJournal : ICellJournal
    {
        private int _armed;
        public readonly ManualResetEventSlim Entered = new(), Release = new();

        public void Arm() => Volatile.Write(ref _armed, 1);

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 0) return;
            Entered.Set();
            Release.Wait(TimeSpan.FromSeconds(120));
        }
    }

    /// <summary>Each broken commit path must be caught by the same per-step checks (else the checks prove nothing).</summary>
    [Theory]
    [InlineData(2, Buggify.SkipTaskBoundCheck)]
    [InlineData(4, Buggify.SkipTaskBoundCheck)]
    [InlineData(8, Buggify.SkipTaskBoundCheck)]
    [InlineData(2, Buggify.SkipCapacityCheck)]
    [InlineData(4, Buggify.SkipCapacityCheck)]
    [InlineData(8, Buggify.SkipCapacityCheck)]
    [InlineData(2, Buggify.SkipTokenCheck)]
    [InlineData(4, Buggify.SkipTokenCheck)]
    [InlineData(8, Buggify.SkipTokenCheck)]
    [InlineData(2, Buggify.SkipIdempotencyReplay)]
    [InlineData(4, Buggify.SkipIdempotencyReplay)]
    [InlineData(8, Buggify.SkipIdempotencyReplay)]
    public void A_broken_commit_path_is_caught(int threads, Buggify broken)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, broken: {broken}");
        var run = Run(seed, threads, broken, stopAtFirst: true);
        Assert.True(run.Failures.Count > 0, $"seed {seed}, {threads} threads: {broken} went unnoticed in {run.Steps} steps");
        output.WriteLine($"caught after {run.Steps} steps: {run.Failures.First()}");
    }

    /// <summary>
    /// The same per-step checks catch each broken variant on the default plain-lock path (with its bounded spin), where
    /// threads commit and release on the shared nodes each under its own lock acquisition rather than through a combiner.
    /// </summary>
    [Theory]
    [InlineData(2, Buggify.SkipCapacityCheck)]
    [InlineData(4, Buggify.SkipCapacityCheck)]
    [InlineData(8, Buggify.SkipCapacityCheck)]
    [InlineData(2, Buggify.SkipTaskBoundCheck)]
    [InlineData(8, Buggify.SkipTaskBoundCheck)]
    [InlineData(4, Buggify.SkipTokenCheck)]
    [InlineData(4, Buggify.SkipIdempotencyReplay)]
    public void A_broken_commit_path_is_caught_on_the_plain_lock_path(int threads, Buggify broken)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Lock, broken: {broken}");
        var run = Run(seed, threads, broken, stopAtFirst: true, CommitPath.Lock);
        Assert.True(run.Failures.Count > 0, $"seed {seed}, {threads} threads: {broken} went unnoticed in {run.Steps} steps");
        output.WriteLine($"caught after {run.Steps} steps: {run.Failures.First()}");
    }

    private sealed record RunResult(List<string> Failures, long Steps, long Applied, long Released, (long Batches, long Requests) Combined, long ExtraSteps, double Seconds);

    // On a combining path the run is not over until combine rounds answered at least this many requests beyond one per
    // round (requests − rounds), or ExtendCap has passed since the start: the planned steps alone can run without a
    // single overlap when the machine is loaded (CI: 17,191 requests in 17,191 rounds at 2 threads), and then the
    // per-step checks never saw a combiner answer another thread's request. More than one, so a run that happened to
    // overlap once still goes on to exercise hand-over a few times.
    private const long MinCombinedExtra = 8;
    private static readonly TimeSpan ExtendCap = TimeSpan.FromSeconds(20);

    // On a combining path the binding feed holds the combine round open (it runs under the commit lock, inside the round)
    // at every PauseEvery-th completed version until another thread's request is queued for a combiner, or at most
    // PauseLimit: a combiner descheduled mid-round, as happens on an oversubscribed machine. The other threads run
    // meanwhile and queue their requests, which the combiner's next round takes, so combining is exercised even when the
    // threads would otherwise take turns on one core. It waits for that condition rather than sleeping, and the limit
    // keeps a broken combiner (one that never lets a request queue) from stalling the run. Like the journal's slow
    // append, it widens windows only; every check is the same.
    private const int PauseEvery = 128;
    private static readonly TimeSpan PauseLimit = TimeSpan.FromMilliseconds(2);

    private static RunResult Run(int seed, int threads, Buggify broken, bool stopAtFirst, CommitPath path = CommitPath.CombiningAlwaysQueued)
    {
        int stepsPerThread = 16_000 / threads + 500;
        var time = new FakeTimeProvider();
        var journal = new OrderCheckingJournal();
        using var cell = new Cell(new CellOptions { Time = time, Buggify = broken, IdempotencyRetention = 100_000, CommitPath = path }, journal);
        bool combining = path is CommitPath.Combining or CommitPath.CombiningAlwaysQueued;
        var feed = new OrderCheckingFeed(combining ? PauseEvery : 0);
        feed.Cell = cell;
        cell.AddBindingListener(feed);
        for (int t = 1; t < 3; t++) cell.CreateTenant($"t{t}");
        Assert.Equal(TenantOpStatus.Ok, cell.SetTenantQuota(new TenantId(1), TenantOneQuota));
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));

        var failures = new ConcurrentQueue<string>();
        var shadow = new long[PoolTasks];          // the generation of the task's live binding as its binder recorded it; 0 = free
        long steps = 0, applied = 0, released = 0, extraSteps = 0;
        int stop = 0;
        int settled = combining ? 0 : 1;    // 1 once the run may end after the planned steps (see MinCombinedExtra)
        using var start = new Barrier(threads);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        // Past its planned steps a thread keeps stepping (every step checked as before) until the run is settled: enough
        // combined requests seen, or the cap reached. Looked at every 64 steps (CombinerStats takes the commit lock).
        bool Settled(int step)
        {
            if (Volatile.Read(ref settled) == 1) return true;
            if ((step - stepsPerThread) % 64 != 0) return false;
            var (batches, requests) = cell.CombinerStats;
            if (requests - batches < MinCombinedExtra && clock.Elapsed < ExtendCap) return false;
            Volatile.Write(ref settled, 1);
            return true;
        }

        void Fail(string message)
        {
            failures.Enqueue(message);
            if (stopAtFirst) Volatile.Write(ref stop, 1);
        }

        void Worker(int w)
        {
            var rng = new Random(seed + w);
            string name = $"w{w}";
            var lease = cell.AcquireLease(name, TimeSpan.FromDays(1)).Lease;
            var tx = new Transaction(lease);
            var held = new List<(int Task, long Generation)>();
            ulong keys = 0;
            long seen = 0;      // the highest cell version this thread has seen (its own results, its snapshots)
            start.SignalAndWait();
            for (int step = 0; Volatile.Read(ref stop) == 0 && (step < stepsPerThread || !Settled(step)); step++)
            {
                if (step >= stepsPerThread) Interlocked.Increment(ref extraSteps);
                string at = $"thread {w} step {step}";
                int dice = rng.Next(100);
                long covered = 0;   // the cell version a journal record must cover before JournalSequence does
                if (dice < 50)
                {
                    var mode = rng.Next(4) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental;
                    var detection = rng.Next(3) == 0 ? ConflictDetection.Coarse : ConflictDetection.Fine;
                    bool keyed = rng.Next(4) == 0;
                    tx.Reset(lease, mode, detection, keyed ? new IdempotencyKey((ulong)w + 1, ++keys) : default);
                    var snap = cell.Snapshot();
                    int claims = rng.Next(1, 4);
                    for (int c = 0; c < claims; c++)
                    {
                        var node = new NodeId(rng.Next(Nodes));
                        long version = snap.TryGetNode(node, out var view) == SnapshotRead.Ok ? view.Version : 0;
                        tx.Add(new Claim(new TaskId(1, rng.Next(PoolTasks)), node, new ResourceVector(rng.Next(1, 6) * 100, rng.Next(1, 4)),
                            version, new TenantId(rng.Next(3)), 0));
                    }
                    var r = cell.Commit(tx).Detach();
                    var claimsMade = tx.Claims.ToArray();
                    if (r.Replayed) Fail($"{at}: a fresh transaction was answered as a replay");
                    for (int c = 0; c < claimsMade.Length; c++)
                    {
                        if (r.ClaimStatuses.Span[c] != ClaimStatus.Applied) continue;
                        int task = (int)claimsMade[c].Task.Index;
                        long before = Interlocked.CompareExchange(ref shadow[task], r.CellVersion, 0);
                        if (before != 0) Fail($"{at}: task {task} bound at version {r.CellVersion} while its binding of generation {before} is live");
                        else held.Add((task, r.CellVersion));
                        Interlocked.Increment(ref applied);
                    }
                    if (r.AppliedCount > 0) covered = r.CellVersion;
                    if (r.AppliedCount > 0) seen = Math.Max(seen, r.CellVersion);
                    if (keyed && rng.Next(2) == 0)
                    {
                        // A retry after a lost acknowledgement: the original answer, nothing applied again.
                        var again = cell.Commit(tx).Detach();
                        if (!again.Replayed || again.Status != r.Status || again.CellVersion != r.CellVersion || again.AppliedCount != r.AppliedCount)
                            Fail($"{at}: retry of a keyed transaction got {again.Status} v{again.CellVersion} replayed={again.Replayed}, original {r.Status} v{r.CellVersion}");
                    }
                }
                else if (dice < 85)
                {
                    if (held.Count > 0)
                    {
                        int i = rng.Next(held.Count);
                        var (task, gen) = held[i];
                        held[i] = held[^1];
                        held.RemoveAt(held.Count - 1);
                        // Free the shadow first: once the cell releases, another thread may bind the task at once.
                        if (Interlocked.CompareExchange(ref shadow[task], 0, gen) != gen)
                            Fail($"{at}: shadow of task {task} no longer holds generation {gen}");
                        var s = cell.Release(new TaskId(1, task), gen);
                        if (s != ReleaseStatus.Released) Fail($"{at}: release of task {task} generation {gen} got {s}: its binding was lost or replaced");
                        else Interlocked.Increment(ref released);
                    }
                }
                else if (dice < 95)
                {
                    // Rotate the lease (the old token goes stale), then try the old one: it must be refused whole.
                    var stale = lease;
                    cell.ReleaseLease(lease);
                    var granted = cell.AcquireLease(name, TimeSpan.FromDays(1));
                    if (granted.Status != LeaseStatus.Granted) { Fail($"{at}: lease re-acquire got {granted.Status}"); break; }
                    lease = granted.Lease;
                    tx.Reset(stale, CommitMode.Incremental, ConflictDetection.Fine);
                    tx.Add(new Claim(new TaskId(2, w * 1_000_000 + step), new NodeId(rng.Next(Nodes)), new ResourceVector(1, 0), 0));
                    var r = cell.Commit(tx);
                    if (r.Status != TransactionStatus.StaleFencingToken || r.AppliedCount != 0)
                        Fail($"{at}: a stale fencing token got {r.Status} with {r.AppliedCount} applied");
                    if (r.AppliedCount > 0) cell.Release(new TaskId(2, w * 1_000_000 + step));
                }

                // After every step: the journal covers every result handed out (gating), and a fresh snapshot shows no
                // node over capacity and no tenant over quota.
                long seq = cell.JournalSequence;
                if (covered > 0)
                {
                    // The record must already be in the journal when the call returns, and JournalSequence must cover it.
                    if (journal.SequenceOf(covered) is not long need) Fail($"{at}: commit at version {covered} returned before its journal record was appended");
                    else if (need > seq) Fail($"{at}: version {covered} is in journal record {need} but JournalSequence read after the call is {seq}");
                }
                var check = cell.Snapshot();
                // Versions are published in order: a snapshot taken after a call returned never goes back (in particular
                // it covers this thread's own commit: read-your-writes).
                if (check.Version < seen) Fail($"{at}: snapshot at v{check.Version} after this thread saw v{seen}");
                seen = Math.Max(seen, check.Version);
                for (int n = 0; n < Nodes; n++)
                {
                    if (check.TryGetNode(new NodeId(n), out var v) != SnapshotRead.Ok) continue;
                    if (!v.Allocated.FitsWithin(Capacity)) Fail($"{at}: node n{n} at v{check.Version} holds {v.Allocated} > {Capacity}");
                }
                var (usage, _) = cell.GetTenantUsage(new TenantId(1));
                if (!usage.FitsWithin(TenantOneQuota)) Fail($"{at}: tenant 1 uses {usage} > quota {TenantOneQuota}");
                if (step % 32 == 31)
                    foreach (var p in cell.Audit()) Fail($"{at}: audit: {p}");
                Interlocked.Increment(ref steps);
            }
            // Leave the pool empty so the final audit also checks that releases undid everything.
            foreach (var (task, gen) in held)
            {
                Interlocked.CompareExchange(ref shadow[task], 0, gen);
                cell.Release(new TaskId(1, task), gen);
            }
        }

        var workers = new Thread[threads];
        for (int w = 0; w < threads; w++)
        {
            int me = w;
            workers[w] = new Thread(() =>
            {
                try { Worker(me); }
                catch (Exception e) { Fail($"thread {me}: {e}"); }
            }) { IsBackground = true };
            workers[w].Start();
        }
        foreach (var t in workers) Assert.True(t.Join(TimeSpan.FromSeconds(60)), $"seed {seed}: a worker did not finish within 60 s");
        foreach (var p in cell.Audit()) failures.Enqueue($"final audit: {p}");
        foreach (var p in journal.Problems) failures.Enqueue($"journal: {p}");
        foreach (var p in feed.Problems) failures.Enqueue($"binding feed: {p}");
        return new RunResult([.. failures], steps, applied, released, cell.CombinerStats, extraSteps, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Checks that records arrive with consecutive sequences and non-decreasing cell versions (journal order = version order).</summary>
    private sealed class OrderCheckingJournal : ICellJournal
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<long, long> _firstSequenceOfVersion = new();
        private long _lastSequence, _lastVersion;

        public ConcurrentQueue<string> Problems { get; } = new();

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            // A slow device: widens the window in which a combiner that answered its waiters before the append (or before
            // publishing JournalSequence) is caught by the gating check.
            Thread.SpinWait(100);
            lock (_gate)
            {
                if (sequence != _lastSequence + 1) Problems.Enqueue($"sequence {sequence} after {_lastSequence}");
                if (cellVersion < _lastVersion) Problems.Enqueue($"record {sequence} has version {cellVersion} after version {_lastVersion}");
                _lastSequence = sequence;
                _lastVersion = Math.Max(_lastVersion, cellVersion);
                _firstSequenceOfVersion.TryAdd(cellVersion, sequence);
            }
        }

        public long? SequenceOf(long version)
        {
            lock (_gate) return _firstSequenceOfVersion.TryGetValue(version, out var s) ? s : null;
        }
    }

    /// <summary>
    /// Checks that binding changes are reported in version order; with <paramref name="pauseEvery"/> &gt; 0 it holds every
    /// pauseEvery-th completed version's round open until a request is queued for a combiner, or for at most
    /// <see cref="PauseLimit"/> (a descheduled combiner; see <see cref="PauseEvery"/>).
    /// </summary>
    private sealed class OrderCheckingFeed(int pauseEvery = 0) : IBindingListener
    {
        private long _last, _completed;

        public ConcurrentQueue<string> Problems { get; } = new();

        public Cell? Cell { get; set; }

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (version < _last) Problems.Enqueue($"{change} of {allocation.Task} at version {version} after version {_last}");
            _last = version;
        }

        public void OnVersionComplete(long version)
        {
            if (pauseEvery <= 0 || Cell is not { } cell || Interlocked.Increment(ref _completed) % pauseEvery != 0) return;
            long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(PauseLimit.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
            var spin = new SpinWait();
            while (!cell.HasQueuedRequest && System.Diagnostics.Stopwatch.GetTimestamp() < deadline) spin.SpinOnce(); // yields the core to the threads it waits for
        }
    }

    /// <summary>
    /// The same per-step invariants (journal order and gating, feed order, quota, keyed retries included) on a
    /// <see cref="CommitPath.Concurrent"/> cell (issue 14, round 12). This harness's cell has a journal, a binding listener
    /// and a quota, so every commit and release takes the concurrent path's serial fallback: the commit lock and every
    /// stripe. What the concurrent path's direct commits must keep is checked by ConcurrentPathTests, whose cells are
    /// eligible.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Invariants_hold_after_every_step_on_the_concurrent_paths_serial_fallback(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Concurrent (thread i uses new Random(seed + i))");
        var run = Run(seed, threads, Buggify.None, stopAtFirst: false, CommitPath.Concurrent);
        output.WriteLine($"{run.Steps} steps, {run.Applied} claims applied, {run.Released} released");
        Assert.True(run.Failures.Count == 0, $"seed {seed}, {threads} threads: {run.Failures.Count} violations, first: {string.Join(" | ", run.Failures.Take(3))}");
        Assert.True(run.Applied > 0 && run.Released > 0, $"seed {seed}: the run did no work");
    }
}
