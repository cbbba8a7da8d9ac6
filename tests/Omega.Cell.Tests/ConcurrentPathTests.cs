using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// The concurrent path's stress tests run alone, after the parallel collections: they keep hundreds of thousands of
/// bindings alive for a moment and use every core, which would distort the memory tests (BindingStoreTests measures the
/// whole managed heap) and the timing of the others.
/// </summary>
[CollectionDefinition(nameof(ConcurrentPathCollection), DisableParallelization = true)]
public sealed class ConcurrentPathCollection;

/// <summary>
/// The concurrent commit path (<see cref="CommitPath.Concurrent"/>, issue 14 round 12): commits and releases that check
/// and apply under node stripes and task-index partitions instead of the commit lock, with a published-prefix version
/// watermark. Seeded stress at 2, 4 and 8 threads with the invariants checked after every step, a snapshot-atomicity
/// test for multi-node all-or-nothing transactions, the eligibility fallbacks against the Lock path's results, a
/// quota race, and the two broken variants (<see cref="Buggify.BreakVersionWatermark"/>,
/// <see cref="Buggify.SkipTaskPartitionLocks"/>) that the harnesses must catch.
/// </summary>
/// <remarks>
/// A file of its own rather than the end of CommitPathStressTests: that harness attaches a journal, a binding feed and
/// a tenant quota to every cell, each of which makes a concurrent-path cell run every commit serially, so it would not
/// exercise this path at all.
/// </remarks>
[Collection(nameof(ConcurrentPathCollection))]
public sealed class ConcurrentPathTests(ITestOutputHelper output)
{
    private const int Nodes = 8;       // stripes 0..7: claims of one transaction usually take several stripes
    private const int PoolTasks = 48;  // shared by every thread: task-uniqueness races across stripes
    private static readonly ResourceVector Capacity = new(1000, 16);

    // ------------------------------------------------------------------ stress

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Invariants_hold_after_every_step_on_the_concurrent_path(int threads)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {threads} threads, CommitPath.Concurrent (thread i uses new Random(seed + i))");
        var run = Run(seed, threads, Buggify.None, stopAtFirst: false);
        output.WriteLine($"{run.Steps} steps, {run.Applied} claims applied, {run.Released} released, direct/serial {run.Stats}");
        Assert.True(run.Failures.IsEmpty, $"seed {seed}, {threads} threads: {run.Failures.Count} violations, first: {string.Join(" | ", run.Failures.Take(3))}");
        Assert.True(run.Applied > 0 && run.Released > 0, $"seed {seed}: the run did no work");
        // The path itself ran: most commits and releases were answered without the commit lock.
        Assert.True(run.Stats.Direct > run.Stats.Serial * 4, $"seed {seed}: only {run.Stats.Direct} direct against {run.Stats.Serial} serial");
    }

    /// <summary>
    /// Without the task-partition locks two transactions on nodes of different stripes can both find a task unbound and
    /// both bind it; the per-step shadow check of the stress harness (at most one live binding per task) must notice. The
    /// race is a few hundred nanoseconds wide per claim, so if the random schedule of a loaded machine misses it, two
    /// threads race 64-claim transactions over the same tasks (the window is then a whole phase of 64 checks wide).
    /// </summary>
    [Fact]
    public void Skipping_the_task_partition_locks_is_caught()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, 8 threads, CommitPath.Concurrent, broken: SkipTaskPartitionLocks");
        var run = Run(seed, 8, Buggify.SkipTaskPartitionLocks, stopAtFirst: true);
        if (!run.Failures.IsEmpty)
        {
            output.WriteLine($"stress caught it after {run.Steps} steps: {run.Failures.First()}");
            return;
        }
        var (doubles, rounds) = RaceForSameTasks(Buggify.SkipTaskPartitionLocks, TimeSpan.FromSeconds(10));
        Assert.True(doubles > 0, $"seed {seed}: SkipTaskPartitionLocks went unnoticed in {run.Steps} stress steps and {rounds} racing rounds");
        output.WriteLine($"racing rounds caught it after {rounds} rounds: {doubles} tasks bound twice");
    }

    /// <summary>The same race holds on the correct path: every task is bound once, and the audit is clean.</summary>
    [Fact]
    public void Threads_racing_for_the_same_tasks_on_different_stripes_bind_each_once()
    {
        var (doubles, rounds) = RaceForSameTasks(Buggify.None, TimeSpan.FromSeconds(1));
        output.WriteLine($"{rounds} rounds");
        Assert.Equal(0, doubles);
        Assert.True(rounds > 0);
    }

    // Two threads walk the same sequence of rounds; in round r each commits the same 64 tasks (job r) on its own node,
    // each node on its own stripe. A thread that finds the round's tasks bound is rejected quickly and catches up, so the
    // two keep meeting. Returns the number of tasks bound by both (plus audit problems), and the rounds walked.
    private static (int Doubles, int Rounds) RaceForSameTasks(Buggify broken, TimeSpan budget)
    {
        const int Tasks = 64, MaxRounds = 1 << 16;
        using var cell = new Cell(new CellOptions { Time = new FakeTimeProvider(), Buggify = broken, CommitPath = CommitPath.Concurrent });
        for (int i = 0; i < 2; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1_000_000_000, 1_000_000_000)));
        var applied = new int[MaxRounds];
        int stop = 0, doubles = 0, walked = 0;
        var deadline = DateTime.UtcNow + budget;
        var workers = new Thread[2];
        for (int w = 0; w < workers.Length; w++)
        {
            int me = w;
            workers[w] = new Thread(() =>
            {
                var lease = cell.AcquireLease($"w{me}", TimeSpan.FromDays(1)).Lease;
                var tx = new Transaction(lease, initialCapacity: Tasks);
                for (int r = 0; r < MaxRounds && Volatile.Read(ref stop) == 0; r++)
                {
                    tx.Reset(lease);
                    for (int k = 0; k < Tasks; k++) tx.Add(new Claim(new TaskId(r + 1, k), new NodeId(me), new ResourceVector(1, 1), 0));
                    int n = cell.Commit(tx).AppliedCount;
                    if (Interlocked.Add(ref applied[r], n) > Tasks) Volatile.Write(ref stop, broken != Buggify.None ? 1 : 0);
                    if (me == 0) walked = r + 1;
                    if ((r & 255) == 255 && DateTime.UtcNow > deadline) Volatile.Write(ref stop, 1);
                }
            }) { IsBackground = true };
            workers[w].Start();
        }
        foreach (var t in workers) Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a racing thread did not finish");
        foreach (int a in applied) doubles += Math.Max(0, a - Tasks);
        doubles += cell.Audit().Count;
        return (doubles, walked);
    }

    private sealed record RunResult(ConcurrentQueue<string> Failures, long Steps, long Applied, long Released, (long Direct, long Serial) Stats);

    private static RunResult Run(int seed, int threads, Buggify broken, bool stopAtFirst)
    {
        int stepsPerThread = 16_000 / threads + 500;
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time, Buggify = broken, CommitPath = CommitPath.Concurrent });
        for (int t = 1; t < 3; t++) cell.CreateTenant($"t{t}");
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));

        var failures = new ConcurrentQueue<string>();
        var shadow = new long[PoolTasks];          // the generation of the task's live binding as its binder recorded it; 0 = free
        long steps = 0, applied = 0, released = 0;
        int stop = 0;
        using var start = new Barrier(threads);

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
            long seen = 0; // the highest cell version this thread has seen (its own results, its snapshots)
            start.SignalAndWait();
            for (int step = 0; step < stepsPerThread && Volatile.Read(ref stop) == 0; step++)
            {
                string at = $"thread {w} step {step}";
                int dice = rng.Next(100);
                if (dice < 55)
                {
                    var mode = rng.Next(4) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental;
                    var detection = rng.Next(3) == 0 ? ConflictDetection.Coarse : ConflictDetection.Fine;
                    tx.Reset(lease, mode, detection);
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
                    for (int c = 0; c < claimsMade.Length; c++)
                    {
                        if (r.ClaimStatuses.Span[c] != ClaimStatus.Applied) continue;
                        int task = claimsMade[c].Task.Index;
                        long before = Interlocked.CompareExchange(ref shadow[task], r.CellVersion, 0);
                        if (before != 0) Fail($"{at}: task {task} bound at version {r.CellVersion} while its binding of generation {before} is live");
                        else held.Add((task, r.CellVersion));
                        Interlocked.Increment(ref applied);
                    }
                    if (mode == CommitMode.AllOrNothing && r.AppliedCount != 0 && r.AppliedCount != claimsMade.Length)
                        Fail($"{at}: all-or-nothing transaction applied {r.AppliedCount} of {claimsMade.Length}");
                    if (r.AppliedCount > 0)
                    {
                        if (r.CellVersion <= 0) Fail($"{at}: applied at version {r.CellVersion}");
                        seen = Math.Max(seen, r.CellVersion);
                    }
                }
                else if (dice < 90)
                {
                    if (held.Count > 0)
                    {
                        int i = rng.Next(held.Count);
                        var (task, gen) = held[i];
                        held[i] = held[^1];
                        held.RemoveAt(held.Count - 1);
                        // A late report about an older binding must not free this one.
                        if (rng.Next(8) == 0 && cell.Release(new TaskId(1, task), gen + 1_000_000) != ReleaseStatus.GenerationMismatch)
                            Fail($"{at}: release of task {task} with a wrong generation did not get GenerationMismatch");
                        // Free the shadow first: once the cell releases, another thread may bind the task at once.
                        if (Interlocked.CompareExchange(ref shadow[task], 0, gen) != gen)
                            Fail($"{at}: shadow of task {task} no longer holds generation {gen}");
                        var s = cell.Release(new TaskId(1, task), gen);
                        if (s != ReleaseStatus.Released) Fail($"{at}: release of task {task} generation {gen} got {s}: its binding was lost or replaced");
                        else Interlocked.Increment(ref released);
                    }
                }
                else if (dice < 96)
                {
                    // Rotate the lease (a Serial() operation: every stripe, then the fold), then try the old token.
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
                else
                {
                    // Tenant usage is read lock-free (shards plus the folded value): never negative, never above the cell.
                    var (usage, _) = cell.GetTenantUsage(new TenantId(rng.Next(3)));
                    if (!usage.IsNonNegative || !usage.FitsWithin(new ResourceVector(Capacity.CpuMillis * Nodes, Capacity.MemoryBytes * Nodes)))
                        Fail($"{at}: tenant usage {usage} outside [0, cell capacity]");
                }

                var check = cell.Snapshot();
                // Versions are a published prefix: a snapshot taken after a call returned never goes back, and it covers
                // this thread's own commit (read-your-writes).
                if (check.Version < seen) Fail($"{at}: snapshot at v{check.Version} after this thread saw v{seen}");
                seen = Math.Max(seen, check.Version);
                for (int n = 0; n < Nodes; n++)
                {
                    if (check.TryGetNode(new NodeId(n), out var v) != SnapshotRead.Ok) continue;
                    if (!v.Allocated.FitsWithin(Capacity) || !v.Allocated.IsNonNegative) Fail($"{at}: node n{n} at v{check.Version} holds {v.Allocated}, capacity {Capacity}");
                }
                if (step % 64 == 63)
                    foreach (var p in cell.Audit()) Fail($"{at}: audit: {p}");
                Interlocked.Increment(ref steps);
            }
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
        if (broken == Buggify.None)
        {
            if (cell.AllocationCount != 0) failures.Enqueue($"final: {cell.AllocationCount} bindings left after every thread released its own");
            for (int t = 0; t < 3; t++)
                if (!cell.GetTenantUsage(new TenantId(t)).Usage.IsZero) failures.Enqueue($"final: tenant t{t} usage {cell.GetTenantUsage(new TenantId(t)).Usage} after every release");
        }
        return new RunResult(failures, steps, applied, released, cell.ConcurrentPathStats);
    }

    // ------------------------------------------------------------------ snapshot atomicity

    /// <summary>
    /// Writers commit all-or-nothing gangs of one claim on each of the three nodes of a group (the nodes sit on three
    /// different stripes) and never release them, so at every version the three nodes of a group hold the same number of
    /// tasks. Readers take snapshots and check exactly that: a snapshot that shows a gang on one node of its group but
    /// not on another saw half a transaction. They also check that their snapshots' versions never go back.
    /// </summary>
    [Fact]
    public void A_snapshot_never_sees_half_of_an_all_or_nothing_transaction()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var (failures, gangs, reads) = RunGangs(seed, Buggify.None, stopAtFirst: false, gangsPerWriter: 3000, budget: TimeSpan.FromSeconds(10));
        output.WriteLine($"{gangs} gangs committed, {reads} snapshot checks");
        Assert.True(failures.IsEmpty, $"seed {seed}: {failures.Count} violations, first: {string.Join(" | ", failures.Take(3))}");
        Assert.True(gangs > 0 && reads > 0, $"seed {seed}: no work");
    }

    /// <summary>The same readers must catch a watermark that publishes each version without waiting for its predecessors.</summary>
    [Fact]
    public void A_broken_version_watermark_is_caught_by_the_snapshot_readers()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, broken: BreakVersionWatermark");
        var (failures, gangs, reads) = RunGangs(seed, Buggify.BreakVersionWatermark, stopAtFirst: true, gangsPerWriter: 1_000_000, budget: TimeSpan.FromSeconds(10));
        Assert.True(!failures.IsEmpty, $"seed {seed}: BreakVersionWatermark went unnoticed in {gangs} gangs, {reads} snapshot checks");
        output.WriteLine($"caught after {gangs} gangs: {failures.First()}");
    }

    private static (ConcurrentQueue<string> Failures, long Gangs, long Reads) RunGangs(int seed, Buggify broken, bool stopAtFirst, int gangsPerWriter, TimeSpan budget)
    {
        var deadline = DateTime.UtcNow + budget;
        const int Groups = 4, PerGroup = 3, Writers = 3, Readers = 2, Noise = 8;
        using var cell = new Cell(new CellOptions { Time = new FakeTimeProvider(), Buggify = broken, CommitPath = CommitPath.Concurrent });
        var big = new ResourceVector(10_000_000, 10_000_000);
        // Group g is nodes g, g + Groups, g + 2 Groups: three stripes. Nodes after those take single-claim noise.
        for (int i = 0; i < Groups * PerGroup + Noise; i++) cell.AddNode(new NodeSpec($"n{i}", big));
        var failures = new ConcurrentQueue<string>();
        long gangs = 0, reads = 0;
        int stop = 0, writersLeft = Writers;
        void Fail(string m)
        {
            failures.Enqueue(m);
            if (stopAtFirst) Volatile.Write(ref stop, 1);
        }

        void Writer(int w)
        {
            var rng = new Random(seed + w);
            var lease = cell.AcquireLease($"w{w}", TimeSpan.FromDays(1)).Lease;
            var tx = new Transaction(lease);
            var claim = new ResourceVector(1, 1);
            long seen = 0;
            for (int i = 0; i < gangsPerWriter && Volatile.Read(ref stop) == 0; i++)
            {
                if ((i & 255) == 255 && DateTime.UtcNow > deadline) break;
                int g = rng.Next(Groups);
                tx.Reset(lease, CommitMode.AllOrNothing, ConflictDetection.Fine);
                for (int k = 0; k < PerGroup; k++)
                    tx.Add(new Claim(new TaskId(1000 + w, i * PerGroup + k), new NodeId(g + k * Groups), claim, 0));
                var r = cell.Commit(tx);
                if (r.Status != TransactionStatus.Committed) Fail($"writer {w} gang {i}: {r.Status}");
                Interlocked.Increment(ref gangs);
                // The writer's own view: its snapshots never go back and include its own gang (read-your-writes).
                long now = cell.Snapshot().Version;
                if (now < Math.Max(seen, r.CellVersion)) Fail($"writer {w} gang {i}: snapshot at v{now} after its gang at v{r.CellVersion} (seen v{seen})");
                seen = Math.Max(seen, now);
                // Noise: a single claim and its release on a node outside the groups, so versions interleave.
                var noiseTask = new TaskId(2000 + w, i);
                tx.Reset(lease);
                tx.Add(new Claim(noiseTask, new NodeId(Groups * PerGroup + rng.Next(Noise)), claim, 0));
                if (cell.Commit(tx).Status == TransactionStatus.Committed) cell.Release(noiseTask);
            }
            Interlocked.Decrement(ref writersLeft);
        }

        void Reader(int r)
        {
            long last = 0;
            Span<int> counts = stackalloc int[PerGroup];
            while (Volatile.Read(ref writersLeft) > 0 && Volatile.Read(ref stop) == 0)
            {
                var snap = cell.Snapshot();
                if (snap.Version < last) Fail($"reader {r}: snapshot at v{snap.Version} after v{last}");
                last = Math.Max(last, snap.Version);
                for (int g = 0; g < Groups; g++)
                {
                    bool ok = true;
                    for (int k = 0; k < PerGroup && ok; k++)
                    {
                        ok = snap.TryGetNode(new NodeId(g + k * Groups), out var view) == SnapshotRead.Ok;
                        counts[k] = ok ? view.TaskCount : 0;
                    }
                    if (!ok) continue; // a node changed more than the ring holds since the snapshot: nothing to compare
                    if (counts[0] != counts[1] || counts[1] != counts[2])
                        Fail($"reader {r}: at v{snap.Version} group {g} holds {counts[0]}/{counts[1]}/{counts[2]} tasks: half of a gang is visible");
                }
                Interlocked.Increment(ref reads);
            }
        }

        var threads = new List<Thread>();
        for (int w = 0; w < Writers; w++) { int me = w; threads.Add(new Thread(() => { try { Writer(me); } catch (Exception e) { Fail($"writer {me}: {e}"); Interlocked.Decrement(ref writersLeft); } }) { IsBackground = true }); }
        for (int r = 0; r < Readers; r++) { int me = r; threads.Add(new Thread(() => { try { Reader(me); } catch (Exception e) { Fail($"reader {me}: {e}"); } }) { IsBackground = true }); }
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(60)), $"seed {seed}: a thread did not finish within 60 s");
        if (broken == Buggify.None)
            foreach (var p in cell.Audit()) failures.Enqueue($"final audit: {p}");
        return (failures, gangs, reads);
    }

    // ------------------------------------------------------------------ allocation

    /// <summary>
    /// Once warm, a direct commit (single-claim and a two-node all-or-nothing gang) and its releases allocate nothing
    /// (GC.GetAllocatedBytesForCurrentThread: this thread's own allocations, whatever runs beside it).
    /// </summary>
    [Fact]
    public void A_warm_direct_commit_and_release_allocate_nothing()
    {
        using var cell = new Cell(new CellOptions { Time = new FakeTimeProvider(), CommitPath = CommitPath.Concurrent });
        for (int i = 0; i < 256; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1_000_000, 1_000_000)));
        var lease = cell.AcquireLease("s", TimeSpan.FromDays(1)).Lease;
        var tx = new Transaction(lease);
        var one = new ResourceVector(1, 1);
        void Loop(int n, long job)
        {
            for (int i = 0; i < n; i++)
            {
                tx.Reset(lease);
                tx.Add(new Claim(new TaskId(job + i, 0), new NodeId(i & 255), one, 0));
                cell.Commit(tx);
                tx.Reset(lease, CommitMode.AllOrNothing);
                tx.Add(new Claim(new TaskId(job + i, 1), new NodeId((i + 7) & 255), one, 0));
                tx.Add(new Claim(new TaskId(job + i, 2), new NodeId((i + 9) & 255), one, 0));
                cell.Commit(tx);
                for (int k = 0; k < 3; k++) cell.Release(new TaskId(job + i, k));
            }
        }
        Loop(20_000, 1); // warm: lists, tables and this thread's scratch at their working size
        long before = GC.GetAllocatedBytesForCurrentThread();
        Loop(20_000, 1_000_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{allocated} bytes over 40,000 commits and 60,000 releases; direct/serial {cell.ConcurrentPathStats}");
        Assert.Equal(0, allocated);
        Assert.Equal(0, cell.ConcurrentPathStats.Serial);
        Assert.Empty(cell.Audit());
    }

    // ------------------------------------------------------------------ eligibility fallbacks

    /// <summary>
    /// One script of operations, each of which makes a call ineligible for the concurrent path at some point (a tenant
    /// with a quota, an idempotency key and its retry, preemption victims, a reservation held and consumed, anti-affinity,
    /// a guarantee), interleaved with plain commits and releases that run on it; run on the Lock path and on the
    /// concurrent path, the transcripts (statuses, versions, claim outcomes, tenant usage, bindings) must be identical.
    /// </summary>
    [Fact]
    public void Each_eligibility_fallback_gives_the_lock_paths_result()
    {
        var onLock = Script(CommitPath.Lock, out _);
        var onConcurrent = Script(CommitPath.Concurrent, out var stats);
        output.WriteLine($"{onLock.Count} transcript lines; concurrent path direct/serial {stats}");
        for (int i = 0; i < Math.Min(onLock.Count, onConcurrent.Count); i++)
            Assert.True(onLock[i] == onConcurrent[i], $"line {i}: lock path `{onLock[i]}` but concurrent path `{onConcurrent[i]}`");
        Assert.Equal(onLock.Count, onConcurrent.Count);
        // Both kinds of call happened: the script is not all-serial or all-direct.
        Assert.True(stats.Direct > 0 && stats.Serial > 0, $"direct/serial {stats}");
    }

    private static List<string> Script(CommitPath path, out (long Direct, long Serial) stats)
    {
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time, CommitPath = path });
        var log = new List<string>();
        for (int t = 1; t <= 2; t++) cell.CreateTenant($"t{t}");
        var n = new NodeId[4];
        for (int i = 0; i < n.Length; i++) n[i] = cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1000, 1000), failureDomain: $"rack-{i % 2}"));
        var lease = cell.AcquireLease("s", TimeSpan.FromDays(1)).Lease;
        var tx = new Transaction(lease);
        var r100 = new ResourceVector(100, 10);

        void Commit(string what, CommitMode mode, IdempotencyKey key, params Claim[] claims)
        {
            tx.Reset(lease, mode, ConflictDetection.Fine, key);
            foreach (var c in claims) tx.Add(c);
            var r = cell.Commit(tx);
            log.Add($"{what}: {r.Status} v{r.CellVersion} applied {r.AppliedCount} replayed {r.Replayed} [{string.Join(",", r.ClaimStatuses.ToArray())}] cell v{cell.Version}");
            State(what);
        }

        void Release(string what, TaskId task, long gen = 0) { log.Add($"{what}: {cell.Release(task, gen)} cell v{cell.Version}"); State(what); }

        void State(string what)
        {
            for (int t = 0; t <= 2; t++) log.Add($"  {what} tenant t{t}: {cell.GetTenantUsage(new TenantId(t))}");
            var all = cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).Select(a => $"{a.Task}@{a.Node}/g{a.Generation}");
            log.Add($"  {what} bindings: {string.Join(" ", all)}");
            var snap = cell.Snapshot();
            for (int i = 0; i < n.Length; i++)
            {
                snap.TryGetNode(n[i], out var v);
                log.Add($"  {what} n{i}: v{v.Version} {v.Allocated} x{v.TaskCount}");
            }
            Assert.Empty(cell.Audit());
        }

        Claim C(long job, int idx, int node, int tenant = 0, int prio = 0, ResourceVector? res = null)
            => new(new TaskId(job, idx), n[node], res ?? r100, 0, new TenantId(tenant), prio);

        Commit("plain", CommitMode.Incremental, default, C(1, 0, 0), C(1, 1, 1), C(1, 1, 2));
        Commit("gang refused", CommitMode.AllOrNothing, default, C(1, 2, 0), C(1, 3, 1, res: new ResourceVector(5000, 1)));
        // A tenant with a quota: its claims run serially, and the quota holds; other tenants' claims stay direct.
        Assert.Equal(TenantOpStatus.Ok, cell.SetTenantQuota(new TenantId(1), new ResourceVector(250, 1000)));
        Commit("quota 1", CommitMode.Incremental, default, C(2, 0, 0, tenant: 1), C(2, 1, 1, tenant: 1), C(2, 2, 2, tenant: 1));
        Commit("mixed quota", CommitMode.Incremental, default, C(2, 3, 3, tenant: 2), C(2, 4, 3, tenant: 1));
        Commit("unquotaed", CommitMode.Incremental, default, C(2, 5, 3, tenant: 2));
        Release("release quota'd", new TaskId(2, 0));
        // An idempotency key and its retry.
        Commit("keyed", CommitMode.Incremental, new IdempotencyKey(1, 1), C(3, 0, 1));
        Commit("keyed retry", CommitMode.Incremental, new IdempotencyKey(1, 1), C(3, 0, 1));
        Commit("plain after key", CommitMode.Incremental, default, C(3, 1, 1));
        // Preemption victims.
        Commit("victims", CommitMode.Incremental, default, new Claim(new TaskId(4, 0), n[1], r100, 0, default, 5, [new TaskId(3, 1)]));
        // A reservation held: every call serial until it is consumed.
        var reserve = new Claim(new TaskId(5, 0), n[2], r100, 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMinutes(1));
        Commit("reserve", CommitMode.Incremental, default, reserve);
        Commit("plain while reserved", CommitMode.Incremental, default, C(5, 1, 2));
        Commit("bind other while reserved", CommitMode.Incremental, default, C(5, 0, 2));
        Release("release while reserved", new TaskId(5, 1));
        Commit("bind reserved", CommitMode.Incremental, default, new Claim(new TaskId(5, 0), n[2], r100, 0, Kind: ClaimKind.BindReserved));
        Commit("plain after reservation", CommitMode.Incremental, default, C(5, 2, 2));
        // Anti-affinity.
        var group = new PlacementGroup(0, PlacementScope.Node);
        Commit("anti-affinity", CommitMode.Incremental, default, new Claim(new TaskId(6, 0), n[0], r100, 0, Group: group), new Claim(new TaskId(6, 1), n[0], r100, 0, Group: group));
        // A guarantee: serial while set.
        Assert.Equal(TenantOpStatus.Ok, cell.SetTenantGuarantee(new TenantId(2), new ResourceVector(500, 10)));
        Commit("under guarantee", CommitMode.Incremental, default, C(7, 0, 0), C(7, 1, 3));
        Release("release under guarantee", new TaskId(7, 0));
        Assert.Equal(TenantOpStatus.Ok, cell.SetTenantGuarantee(new TenantId(2), null));
        // Generation checks and node changes.
        Release("stale generation", new TaskId(1, 0), 999);
        Release("released", new TaskId(1, 0));
        Release("not bound", new TaskId(1, 0));
        Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(n[3], NodeStatus.Draining));
        Commit("draining", CommitMode.Incremental, default, C(8, 0, 3), C(8, 1, 2));
        cell.RemoveNode(n[2], out var freed);
        log.Add($"removed n2: {freed.Count} freed, cell v{cell.Version}");
        Commit("after removal", CommitMode.Incremental, default, C(8, 2, 2), C(8, 3, 0));
        stats = cell.ConcurrentPathStats;
        return log;
    }

    /// <summary>
    /// Quota'd and unquota'd commits race on shared nodes: the quota'd tenant's claims run serially (which excludes every
    /// concurrent commit), the others directly; the quota must hold at every step and the usage read lock-free must agree
    /// with the audit at the end.
    /// </summary>
    [Fact]
    public void A_quota_is_never_exceeded_when_quotaed_and_unquotaed_commits_race()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var quota = new ResourceVector(1500, 1000);
        using var cell = new Cell(new CellOptions { Time = new FakeTimeProvider(), CommitPath = CommitPath.Concurrent });
        cell.CreateTenant("quotaed");
        cell.CreateTenant("free");
        Assert.Equal(TenantOpStatus.Ok, cell.SetTenantQuota(new TenantId(1), quota));
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        var failures = new ConcurrentQueue<string>();
        long quotaRefusals = 0;
        var threads = new Thread[4];
        for (int w = 0; w < threads.Length; w++)
        {
            int me = w;
            threads[w] = new Thread(() =>
            {
                try
                {
                    var rng = new Random(seed + me);
                    var lease = cell.AcquireLease($"w{me}", TimeSpan.FromDays(1)).Lease;
                    var tx = new Transaction(lease);
                    var held = new Queue<TaskId>();
                    for (int step = 0; step < 3000; step++)
                    {
                        if (held.Count > 6 || (held.Count > 0 && rng.Next(3) == 0)) cell.Release(held.Dequeue());
                        // Threads 0 and 1 charge the quota'd tenant (mixed with free claims in one transaction sometimes).
                        tx.Reset(lease, rng.Next(3) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental);
                        int claims = rng.Next(1, 3);
                        for (int c = 0; c < claims; c++)
                        {
                            int tenant = me < 2 && rng.Next(4) != 0 ? 1 : 2;
                            tx.Add(new Claim(new TaskId(me + 1, step * 4 + c), new NodeId(rng.Next(Nodes)), new ResourceVector(rng.Next(1, 4) * 100, 1), 0, new TenantId(tenant)));
                        }
                        var r = cell.Commit(tx);
                        var statuses = r.ClaimStatuses.Span;
                        for (int c = 0; c < statuses.Length; c++)
                        {
                            if (statuses[c] == ClaimStatus.Applied) held.Enqueue(tx.Claims[c].Task);
                            if (statuses[c] == ClaimStatus.QuotaExceeded) Interlocked.Increment(ref quotaRefusals);
                        }
                        var (usage, q) = cell.GetTenantUsage(new TenantId(1));
                        if (!usage.FitsWithin(quota) || q != quota) failures.Enqueue($"thread {me} step {step}: tenant 1 uses {usage} against quota {q}");
                    }
                    while (held.Count > 0) cell.Release(held.Dequeue());
                }
                catch (Exception e) { failures.Enqueue($"thread {me}: {e}"); }
            }) { IsBackground = true };
            threads[w].Start();
        }
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(60)), $"seed {seed}: a thread did not finish");
        foreach (var p in cell.Audit()) failures.Enqueue($"audit: {p}");
        output.WriteLine($"{quotaRefusals} quota refusals; direct/serial {cell.ConcurrentPathStats}");
        Assert.True(failures.IsEmpty, $"seed {seed}: {string.Join(" | ", failures.Take(3))}");
        Assert.True(quotaRefusals > 0, $"seed {seed}: the quota was never reached, so it was not tested");
        Assert.True(cell.GetTenantUsage(new TenantId(1)).Usage.IsZero && cell.GetTenantUsage(new TenantId(2)).Usage.IsZero);
    }
}
