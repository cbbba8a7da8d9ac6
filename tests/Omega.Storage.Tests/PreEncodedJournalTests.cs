using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 15: a transaction's claims are encoded into its journal record before the commit lock and only copied under it
/// (<see cref="CellOptions.EncodeJournalOutsideLock"/>; docs/storage.md, "Encoding outside the commit lock"). These tests
/// hold the new path to the old one's bytes, to version order under concurrent committers on every commit path, to "a
/// claim that failed validation is never journaled", and to recovery from a real store.
/// </summary>
public sealed class PreEncodedJournalTests
{
    private readonly ITestOutputHelper _output;

    public PreEncodedJournalTests(ITestOutputHelper output) => _output = output;

    private int Seed()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} to replay)");
        return seed;
    }

    /// <summary>Keeps every record; calls arrive serialised by the cell (commit lock or sequencer), the lock is a guard.</summary>
    private sealed class RecordingJournal : ICellJournal
    {
        private readonly Lock _gate = new();

        public List<(long Sequence, long Version, byte[] Bytes)> Records { get; } = new();

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            lock (_gate) Records.Add((sequence, cellVersion, record.ToArray()));
        }
    }

    /// <summary>The tasks each Commit record binds, by the record's cell version.</summary>
    private sealed class BindCollector : ICellRecordVisitor
    {
        private CellRecordKind _kind;
        private long _version;

        public Dictionary<long, List<TaskId>> BoundByVersion { get; } = new();

        public void Begin(CellRecordKind kind, long sequence, long cellVersion)
        {
            _kind = kind;
            _version = cellVersion;
        }

        public void Bind(in Allocation allocation)
        {
            Assert.Equal(CellRecordKind.Commit, _kind);
            Assert.Equal(_version, allocation.Generation);
            if (!BoundByVersion.TryGetValue(_version, out var l)) BoundByVersion[_version] = l = new List<TaskId>();
            l.Add(allocation.Task);
        }

        public void Unbind(TaskId task) { }
        public void NodeVersion(NodeId node, long nodeVersion) { }
        public void Node(NodeId node, NodeSpec spec, NodeStatus status, long nodeVersion) { }
        public void Idempotency(SchedulerId scheduler, IdempotencyKey key, ulong transactionHash, TransactionStatus status, long resultVersion, int applied, ReadOnlySpan<ClaimStatus> claims) { }
        public void Lease(SchedulerId id, string name, FencingToken token, DateTimeOffset expiresAt, bool released) { }
        public void Quota(TenantId tenant, ResourceVector? limit) { }
        public void DomainLoss(string domain, string author, string reason, DateTimeOffset at, bool withdrawn) { }
        public void Tenant(TenantId tenant, string name) { }
    }

    [Fact]
    public void Encoding_before_the_lock_writes_the_bytes_encoding_under_it_writes()
    {
        int baseSeed = Seed();
        for (int round = 0; round < 6; round++)
        {
            int seed = baseSeed + round;
            using var tmpA = new TempStore();
            using var tmpB = new TempStore();
            var before = new RecordingJournal();
            var under = new RecordingJournal();
            using var pre = new Cell(new CellOptions { Time = tmpA.Time }, before);
            using var old = new Cell(new CellOptions { Time = tmpB.Time, EncodeJournalOutsideLock = false }, under);
            // The same seeded mix of every journaled mutation (preemptions with victims, keyed and rejected commits,
            // all-or-nothing rollbacks, partial commits, releases, nodes, leases, quotas) on both cells.
            foreach (var (cell, tmp) in new[] { (pre, tmpA), (old, tmpB) })
            {
                var work = new Workload(seed);
                work.Setup(cell);
                work.Run(cell, 150);
                Reservations(cell, tmp);
            }
            Assert.Equal(under.Records.Count, before.Records.Count);
            for (int i = 0; i < under.Records.Count; i++)
                Assert.True(under.Records[i].Bytes.AsSpan().SequenceEqual(before.Records[i].Bytes), $"seed {seed}: record {i + 1} differs");
            var (preCopied, preUnder) = pre.JournalEncodeStats;
            var (oldCopied, oldUnder) = old.JournalEncodeStats;
            Assert.True(preCopied > 0, $"seed {seed}: no record took the pre-encoded claims");
            Assert.True(preUnder > 0, $"seed {seed}: no record fell back (partial commits and reservation kinds must)");
            Assert.Equal(0, oldCopied);
            Assert.Equal(preCopied + preUnder, oldUnder);
        }
    }

    // Reserve and bind-reserved claims carry their kind (and a reserve its expiry): encoded under the lock on both cells.
    private static void Reservations(Cell cell, TempStore tmp)
    {
        var lease = cell.AcquireLease("reserver", TimeSpan.FromMinutes(10)).Lease;
        var node = new NodeId(0);
        var tx = new Transaction(lease);
        tx.Add(new Claim(new TaskId(9_000_001, 0), node, new ResourceVector(10, 1 << 20), 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMinutes(1)));
        var r = cell.Commit(tx);
        tmp.Time.Advance(TimeSpan.FromSeconds(1));
        tx.Reset(lease);
        tx.Add(new Claim(new TaskId(9_000_001, 0), node, new ResourceVector(10, 1 << 20), 0, Kind: ClaimKind.BindReserved));
        cell.Commit(tx);
        // And the same transaction object reused for an ordinary claim afterwards: Reset dropped the old bytes.
        tx.Reset(lease);
        tx.Add(new Claim(new TaskId(9_000_002, 0), node, new ResourceVector(10, 1 << 20), 0));
        cell.Commit(tx);
        _ = r;
    }

    private readonly record struct Outcome(long Version, int Applied, TaskId[] AppliedTasks, TaskId[] FailedTasks);

    [Theory]
    [InlineData(CommitPath.Lock)]
    [InlineData(CommitPath.Combining)]
    [InlineData(CommitPath.CombiningAlwaysQueued)]
    [InlineData(CommitPath.Striped)]
    public void Concurrent_committers_journal_exactly_the_applied_claims_in_version_order(CommitPath path)
    {
        int seed = Seed();
        const int threads = 4, opsPerThread = 1500, nodes = 12;
        using var tmp = new TempStore();
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { Time = tmp.Time, CommitPath = path }, journal);
        for (int i = 0; i < nodes; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 64L << 30), $"r{i % 3}"));
        cell.CreateTenant("t1");
        cell.SetTenantQuota(new TenantId(1), new ResourceVector(30_000, 1L << 40));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;

        var outcomes = new List<Outcome>[threads];
        var workers = new Thread[threads];
        using var start = new Barrier(threads);
        Exception? failure = null;
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            outcomes[me] = new List<Outcome>(opsPerThread);
            workers[t] = new Thread(() =>
            {
                try
                {
                    var rng = new Random(seed * 31 + me);
                    // One transaction object per thread, reused: its pre-encoded bytes must follow every Reset/Add.
                    var tx = new Transaction(lease);
                    var live = new List<TaskId>();
                    long job = ((long)me + 1) << 40;
                    start.SignalAndWait();
                    for (int op = 0; op < opsPerThread; op++)
                    {
                        int kind = rng.Next(100);
                        if (kind < 20 && live.Count > 0)
                        {
                            int at = rng.Next(live.Count);
                            cell.Release(live[at]);
                            live[at] = live[^1];
                            live.RemoveAt(live.Count - 1);
                            continue;
                        }
                        var mode = kind < 35 ? CommitMode.AllOrNothing : CommitMode.Incremental;
                        var key = kind >= 90 ? new IdempotencyKey((ulong)rng.NextInt64(), (ulong)rng.NextInt64() | 1) : default;
                        tx.Reset(lease, mode, ConflictDetection.Fine, key);
                        int n = 1 + rng.Next(3);
                        for (int c = 0; c < n; c++)
                        {
                            // Some claims fail: an unknown node, too large for any node, a task bound twice in one tx.
                            int shape = rng.Next(20);
                            var task = shape == 0 && c > 0 ? tx.Claims[0].Task : new TaskId(job++, rng.Next(2));
                            int node = shape == 1 ? nodes + 5 : rng.Next(nodes);
                            long cpu = shape == 2 ? 100_000 : rng.Next(10, 400);
                            tx.Add(new Claim(task, new NodeId(node), new ResourceVector(cpu, 1 << 20), 0, new TenantId(rng.Next(2)), rng.Next(3)));
                        }
                        var r = cell.Commit(tx);
                        var statuses = r.ClaimStatuses.Span;
                        var applied = new List<TaskId>();
                        var failed = new List<TaskId>();
                        for (int c = 0; c < n; c++)
                        {
                            if (statuses[c] == ClaimStatus.Applied)
                            {
                                applied.Add(tx.Claims[c].Task);
                                live.Add(tx.Claims[c].Task);
                            }
                            else failed.Add(tx.Claims[c].Task);
                        }
                        outcomes[me].Add(new Outcome(r.CellVersion, r.AppliedCount, applied.ToArray(), failed.ToArray()));
                    }
                }
#pragma warning disable CA1031 // reported to the test thread
                catch (Exception e)
#pragma warning restore CA1031
                {
                    failure ??= e;
                }
            }) { IsBackground = true };
            workers[t].Start();
        }
        foreach (var w in workers) w.Join();
        Assert.Null(failure);

        // Version order, no gaps.
        var records = journal.Records;
        Assert.Equal(cell.JournalSequence, records.Count);
        for (int i = 0; i < records.Count; i++)
        {
            Assert.Equal(i + 1, records[i].Sequence);
            if (i > 0) Assert.True(records[i].Version >= records[i - 1].Version, $"seed {seed}: record {i + 1} goes back in version");
            var (_, seq, version) = CellRecord.ReadHeader(records[i].Bytes);
            Assert.Equal(records[i].Sequence, seq);
            Assert.Equal(records[i].Version, version);
        }

        // Each commit that applied claims has exactly one record at its version binding exactly those tasks, in claim
        // order; a claim that failed never appears in any record.
        var binds = new BindCollector();
        foreach (var r in records) CellRecord.Decode(r.Bytes, binds);
        var all = outcomes.SelectMany(o => o).ToList();
        var applying = all.Where(o => o.Applied > 0).ToList();
        Assert.Equal(applying.Count, binds.BoundByVersion.Count);
        foreach (var o in applying)
        {
            Assert.True(binds.BoundByVersion.TryGetValue(o.Version, out var tasks), $"seed {seed}: no record at version {o.Version}");
            Assert.Equal(o.AppliedTasks, tasks);
        }
        // Every claim uses a fresh task except the duplicate-task shape (a failing copy of an applied claim), so a failed
        // task that is not also applied must be in no record at all.
        var journaled = binds.BoundByVersion.SelectMany(p => p.Value).ToHashSet();
        foreach (var o in all)
            foreach (var t in o.FailedTasks)
                if (Array.IndexOf(o.AppliedTasks, t) < 0)
                    Assert.False(journaled.Contains(t), $"seed {seed}: failed claim of {t} was journaled");

        var (copied, underLock) = cell.JournalEncodeStats;
        _output.WriteLine($"{path}: {records.Count} records, {copied} claims sections copied, {underLock} encoded under the lock");
        Assert.True(copied > 0, "no record took the pre-encoded claims");
        Assert.True(underLock > 0, "no partial commit fell back to encoding under the lock");
        Assert.Equal(applying.Count, copied + underLock);

        // And the journal rebuilds the cell.
        using var restorer = new CellRestorer(new CellOptions { Time = tmp.Time });
        foreach (var r in records) Assert.True(restorer.Replay(r.Bytes));
        using var rebuilt = restorer.Complete();
        Assert.True(CellDump.Of(cell) == CellDump.Of(rebuilt), $"seed {seed}: the replayed cell differs");
    }

    [Fact]
    public async Task Concurrent_pre_encoded_commits_recover_from_the_store()
    {
        int seed = Seed();
        const int threads = 3, opsPerThread = 800, nodes = 10;
        using var tmp = new TempStore();
        string expected;
        long sequence;
        using (var store = tmp.Open())
        {
            var cell = store.Cell;
            for (int i = 0; i < nodes; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 64L << 30), $"r{i % 3}"));
            var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
            var workers = new Thread[threads];
            for (int t = 0; t < threads; t++)
            {
                int me = t;
                workers[t] = new Thread(() =>
                {
                    var rng = new Random(seed * 17 + me);
                    var tx = new Transaction(lease);
                    var live = new Queue<TaskId>();
                    long job = ((long)me + 1) << 40;
                    for (int op = 0; op < opsPerThread; op++)
                    {
                        tx.Reset(lease, rng.Next(4) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental);
                        int n = 1 + rng.Next(3);
                        for (int c = 0; c < n; c++)
                            tx.Add(new Claim(new TaskId(job++, 0), new NodeId(rng.Next(nodes + 1)), new ResourceVector(rng.Next(10, 600), 1 << 20), 0));
                        var r = cell.Commit(tx);
                        var statuses = r.ClaimStatuses.Span;
                        for (int c = 0; c < n; c++)
                            if (statuses[c] == ClaimStatus.Applied) live.Enqueue(tx.Claims[c].Task);
                        if (live.Count > 40) cell.Release(live.Dequeue());
                    }
                }) { IsBackground = true };
                workers[t].Start();
            }
            foreach (var w in workers) w.Join();
            var (copied, _) = cell.JournalEncodeStats;
            Assert.True(copied > 0, "no record took the pre-encoded claims");
            sequence = cell.JournalSequence;
            await store.WaitForDurableAsync(sequence);
            expected = CellDump.Of(cell);
        }
        using var reopened = tmp.Open();
        Assert.Equal(sequence, reopened.Cell.JournalSequence);
        Assert.True(expected == CellDump.Of(reopened.Cell), $"seed {seed}: the recovered cell differs");
    }
}
