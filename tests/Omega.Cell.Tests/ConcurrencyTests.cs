using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Several writer threads commit random transactions (both modes, both detections, overlapping nodes and tasks,
/// preemptions, releases, idempotent retries, stale tokens) while a reader checks every snapshot it takes.
/// </summary>
public sealed class ConcurrencyTests(ITestOutputHelper output)
{
    private const int Writers = 4;
    private const int OpsPerWriter = 25_000;
    private const int NodeCount = 24;
    private const int PoolTasks = 400;       // job 1: shared by all writers, bound and released over and over
    private const long StaleOnlyJob = 999;   // only ever claimed with a stale token, so must never be bound
    private const int PairPriority = 100;    // gang pairs: never released, never evictable by the pool (priority <= 3)
    private const int MaxPairsPerWriter = 400;
    private static readonly ResourceVector Capacity = new(4000, 64, 1_000_000);

    [Theory]
    [InlineData(null)]
    [InlineData(CommitPath.Striped)] // issue 14: the node-striped path publishes outside the commit lock
    [InlineData(CommitPath.Concurrent)] // issue 14 round 12: checks outside the commit lock
    public void Concurrent_writers_never_overcommit_never_double_bind_never_apply_a_stale_token_and_readers_never_see_half_a_gang(CommitPath? path)
    {
        int baseSeed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"base seed {baseSeed} (writer i uses new Random(baseSeed + i)), path {path?.ToString() ?? "default"}");
        string Context(string what) => $"base seed {baseSeed}: {what}";

        var time = new FakeTimeProvider();   // never advanced: leases end only when a writer rotates its own
        using var cell = new Cell(TestCommitPath.Apply(new CellOptions { Time = time, IdempotencyRetention = 4096 }, path));
        for (int t = 1; t < 3; t++) cell.CreateTenant($"t{t}");
        for (int i = 0; i < NodeCount; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));

        var failures = new ConcurrentQueue<string>();
        var appliedGenerations = new ConcurrentDictionary<long, string>();       // generation -> who applied it
        var committedPairs = new ConcurrentBag<(TaskId A, TaskId B, long Generation)>();
        var staleRejections = new int[Writers];
        int finished = 0;
        long snapshotsChecked = 0, completeSnapshots = 0;
        using var start = new ManualResetEventSlim(false);

        void Fail(string message) => failures.Enqueue(message);

        void Writer(int w)
        {
            try
            {
                var rng = new Random(baseSeed + w);
                string name = $"writer-{w}";
                var lease = cell.AcquireLease(name, TimeSpan.FromHours(1)).Lease;
                var superseded = new List<SchedulerLease>();
                var tx = new Transaction(lease);
                var oldSnapshot = cell.Snapshot();
                int pairIndex = 0;
                ulong keys = 0;
                start.Wait();

                for (int op = 0; op < OpsPerWriter; op++)
                {
                    int dice = rng.Next(100);
                    var snap = rng.Next(10) < 8 ? cell.Snapshot() : oldSnapshot;   // sometimes decide on a stale snapshot
                    if (rng.Next(50) == 0) oldSnapshot = cell.Snapshot();
                    long Version(NodeId n) => snap.TryGetNode(n, out var v) == SnapshotRead.Ok ? v.Version : 0;

                    if (dice < 35)
                    {
                        // Random transaction over the shared pool.
                        var mode = rng.Next(2) == 0 ? CommitMode.Incremental : CommitMode.AllOrNothing;
                        var detection = rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse;
                        bool keyed = rng.Next(5) == 0;
                        tx.Reset(lease, mode, detection, keyed ? new IdempotencyKey((ulong)w + 1, ++keys) : default);
                        int claims = rng.Next(1, 5);
                        for (int c = 0; c < claims; c++)
                        {
                            var node = new NodeId(rng.Next(NodeCount));
                            tx.Add(new Claim(new TaskId(1, rng.Next(PoolTasks)), node, new ResourceVector(rng.Next(1, 16) * 100, rng.Next(1, 9)),
                                Version(node), new TenantId(rng.Next(3)), rng.Next(3)));
                        }
                        var r = cell.Commit(tx).Detach();
                        Record(r, $"writer {w} op {op}");
                        if (keyed)
                        {
                            var again = cell.Commit(tx);   // an immediate retry: the original answer, nothing new
                            if (!again.Replayed || again.Status != r.Status || again.CellVersion != r.CellVersion
                                || !again.ClaimStatuses.Span.SequenceEqual(r.ClaimStatuses.Span))
                                Fail(Context($"writer {w} op {op}: retry {again} of {r} is not a replay of it"));
                        }
                    }
                    else if (dice < 50 && pairIndex < MaxPairsPerWriter)
                    {
                        // A gang of two tasks on two different nodes, marked by one GPU each: any snapshot showing an
                        // odd number of GPUs in use would show half of one.
                        int a = rng.Next(NodeCount), b = (a + 1 + rng.Next(NodeCount - 1)) % NodeCount;
                        var detection = rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse;
                        tx.Reset(lease, CommitMode.AllOrNothing, detection);
                        var ta = new TaskId(100 + w, 2 * pairIndex);
                        var tb = new TaskId(100 + w, 2 * pairIndex + 1);
                        pairIndex++;
                        tx.Add(new Claim(ta, new NodeId(a), new ResourceVector(0, 0, 1), Version(new NodeId(a)), default, PairPriority));
                        tx.Add(new Claim(tb, new NodeId(b), new ResourceVector(0, 0, 1), Version(new NodeId(b)), default, PairPriority));
                        var r = cell.Commit(tx);
                        Record(r, $"writer {w} pair op {op}");
                        if (r.Status == TransactionStatus.Committed) committedPairs.Add((ta, tb, r.Generation));
                        else if (r.Status != TransactionStatus.Rejected || r.AppliedCount != 0) Fail(Context($"writer {w} op {op}: gang gave {r}"));
                    }
                    else if (dice < 70 && dice >= 50)
                    {
                        var task = new TaskId(1, rng.Next(PoolTasks));
                        long generation = rng.Next(2) == 0 && cell.TryGetAllocation(task, out var a) ? a.Generation : 0;
                        cell.Release(task, generation);
                    }
                    else if (dice < 82)
                    {
                        // Preemption: evict up to two pool tasks seen on a node (they may be gone by commit time).
                        var node = new NodeId(rng.Next(NodeCount));
                        var victims = cell.GetAllocationsOnNode(node).Where(x => x.Task.Job.Value == 1 && x.Priority < 3)
                            .Take(rng.Next(1, 3)).Select(x => x.Task).ToArray();
                        tx.Reset(lease, rng.Next(2) == 0 ? CommitMode.Incremental : CommitMode.AllOrNothing,
                            rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse);
                        tx.Add(new Claim(new TaskId(1, rng.Next(PoolTasks)), node, new ResourceVector(rng.Next(1, 30) * 100, rng.Next(1, 9)),
                            Version(node), new TenantId(rng.Next(3)), 3, victims.Length == 0 ? null : victims));
                        if (rng.Next(4) == 0)   // sometimes try to evict a gang pair too: must be refused
                            tx.Add(new Claim(new TaskId(1, rng.Next(PoolTasks)), node, new ResourceVector(100, 1), Version(node), default, 3,
                                cell.GetAllocationsOnNode(node).Where(x => x.Priority == PairPriority).Select(x => x.Task).Take(1).ToArray()));
                        Record(cell.Commit(tx), $"writer {w} preemption op {op}");
                    }
                    else if (dice < 95 || superseded.Count == 0)
                    {
                        if (superseded.Count == 0 || rng.Next(4) == 0)
                        {
                            // Rotate the lease: the old token becomes stale at once.
                            if (cell.ReleaseLease(lease) != LeaseStatus.Renewed) Fail(Context($"writer {w}: could not release its own lease"));
                            var next = cell.AcquireLease(name, TimeSpan.FromHours(1));
                            if (next.Status != LeaseStatus.Granted || next.Lease.Token <= lease.Token) Fail(Context($"writer {w}: re-acquire gave {next.Status} {next.Lease.Token}"));
                            superseded.Add(lease);
                            lease = next.Lease;
                        }
                        else
                        {
                            tx.Reset(lease, CommitMode.Incremental, ConflictDetection.Fine);
                            tx.Add(new Claim(new TaskId(1, rng.Next(PoolTasks)), new NodeId(rng.Next(NodeCount)), new ResourceVector(100, 1), 0));
                            Record(cell.Commit(tx), $"writer {w} filler op {op}");
                        }
                    }
                    else
                    {
                        // A zombie: commit with a superseded token. Must be rejected whole, before anything is checked.
                        var stale = superseded[rng.Next(superseded.Count)];
                        tx.Reset(stale, rng.Next(2) == 0 ? CommitMode.Incremental : CommitMode.AllOrNothing,
                            rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse,
                            rng.Next(2) == 0 ? new IdempotencyKey((ulong)w + 1, ++keys) : default);
                        tx.Add(new Claim(new TaskId(StaleOnlyJob, rng.Next(1000)), new NodeId(rng.Next(NodeCount)), new ResourceVector(100, 1), Version(new NodeId(0))));
                        var r = cell.Commit(tx);
                        if (r.Status != TransactionStatus.StaleFencingToken || r.AppliedCount != 0) Fail(Context($"writer {w} op {op}: stale token gave {r}"));
                        else staleRejections[w]++;
                    }
                }
            }
            catch (Exception e)
            {
                Fail(Context($"writer {w} threw {e}"));
            }
            finally
            {
                Interlocked.Increment(ref finished);
            }
        }

        void Record(CommitResult r, string who)
        {
            if (r.AppliedCount > 0 && !r.Replayed && !appliedGenerations.TryAdd(r.Generation, who))
                Fail(Context($"{who}: generation {r.Generation} was already applied by {appliedGenerations[r.Generation]}"));
            if (r.Status.IsFencingFailure()) Fail(Context($"{who}: a current token was refused: {r}"));
        }

        void Reader()
        {
            try
            {
                long lastVersion = 0;
                start.Wait();
                while (Volatile.Read(ref finished) < Writers)
                {
                    var snap = cell.Snapshot();
                    if (snap.Version < lastVersion) Fail(Context($"snapshot version went back from {lastVersion} to {snap.Version}"));
                    lastVersion = snap.Version;
                    if (CheckSnapshot(snap, Fail, Context)) Interlocked.Increment(ref completeSnapshots);
                    Interlocked.Increment(ref snapshotsChecked);
                    Thread.Yield();   // on a small machine, leave the cores to the writers between checks
                }
            }
            catch (Exception e)
            {
                Fail(Context($"reader threw {e}"));
            }
        }

        var threads = Enumerable.Range(0, Writers).Select(w => new Thread(() => Writer(w))).Append(new Thread(Reader)).ToList();
        foreach (var th in threads) th.Start();
        start.Set();
        foreach (var th in threads) th.Join();

        output.WriteLine($"cell version {cell.Version}, {cell.AllocationCount} bindings, {committedPairs.Count} pairs, "
            + $"{snapshotsChecked} snapshots checked ({completeSnapshots} complete), stale rejections {string.Join("/", staleRejections)}");
        output.WriteLine($"claims applied {cell.Counters.Claims(ClaimStatus.Applied)}, version conflicts {cell.Counters.Claims(ClaimStatus.NodeVersionChanged)}, "
            + $"insufficient {cell.Counters.Claims(ClaimStatus.InsufficientResources)}, already bound {cell.Counters.Claims(ClaimStatus.TaskAlreadyBound)}, "
            + $"victim too high {cell.Counters.Claims(ClaimStatus.VictimPriorityTooHigh)}, replays {cell.Counters.IdempotentReplays}");
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(20)));

        // After the run: the invariants hold and the final state is consistent with what the writers were told.
        Assert.True(CheckSnapshot(cell.Snapshot(), Fail, Context), Context("the final snapshot could not be read completely"));
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(20)));
        var audit = cell.Audit();
        Assert.True(audit.Count == 0, Context("audit: " + string.Join("; ", audit)));
        var bindings = cell.GetAllocations();
        Assert.Equal(bindings.Count, bindings.Select(a => a.Task).Distinct().Count());
        Assert.Equal(cell.AllocationCount, bindings.Count);
        Assert.DoesNotContain(bindings, a => a.Task.Job.Value == StaleOnlyJob);
        foreach (var a in bindings)
            Assert.True(appliedGenerations.ContainsKey(a.Generation), Context($"{a} has a generation no current-token commit produced"));
        foreach (var (ta, tb, generation) in committedPairs)
        {
            Assert.True(cell.TryGetAllocation(ta, out var a) && a.Generation == generation, Context($"pair task {ta} lost"));
            Assert.True(cell.TryGetAllocation(tb, out var b) && b.Generation == generation, Context($"pair task {tb} lost"));
        }
        var final = cell.Snapshot();
        long gpus = 0;
        for (int i = 0; i < NodeCount; i++)
        {
            final.TryGetNode(new NodeId(i), out var v);
            var onNode = bindings.Where(a => a.Node.Value == i).ToList();
            Assert.Equal(onNode.Count, v.TaskCount);
            Assert.Equal(onNode.Aggregate(ResourceVector.Zero, (s, a) => s + a.Resources), v.Allocated);
            gpus += v.Allocated.Gpus;
        }
        Assert.Equal(2L * committedPairs.Count, gpus);
        Assert.All(staleRejections, n => Assert.True(n > 0, Context("a writer never tried a stale token")));
        Assert.True(committedPairs.Count > 100, Context($"only {committedPairs.Count} pairs committed"));
        Assert.True(completeSnapshots > 0, Context("the reader never completed a snapshot check during the run"));
    }

    /// <summary>Checks one snapshot; returns true when every node was readable (so the gang parity check ran).</summary>
    private static bool CheckSnapshot(CellSnapshot snap, Action<string> fail, Func<string, string> context)
    {
        long gpus = 0;
        bool complete = true;
        for (int i = 0; i < snap.NodeCount; i++)
        {
            var read = snap.TryGetNode(new NodeId(i), out var v);
            if (read == SnapshotRead.TooOld) { complete = false; continue; }
            if (read != SnapshotRead.Ok) { fail(context($"snapshot v{snap.Version}: node {i} read {read}")); continue; }
            if (!v.Allocated.FitsWithin(v.Capacity)) fail(context($"snapshot v{snap.Version}: node {i} over capacity: {v.Allocated} > {v.Capacity}"));
            if (!v.Allocated.IsNonNegative || v.TaskCount < 0) fail(context($"snapshot v{snap.Version}: node {i} negative: {v.Allocated}, {v.TaskCount} tasks"));
            if (v.TaskCount == 0 && !v.Allocated.IsZero) fail(context($"snapshot v{snap.Version}: node {i} holds {v.Allocated} with no task"));
            gpus += v.Allocated.Gpus;
        }
        if (complete && gpus % 2 != 0) fail(context($"snapshot v{snap.Version} shows {gpus} pair GPUs in use: half of a gang is visible"));
        return complete;
    }
}
