using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>Real FASTER directories in a temp folder: what was acknowledged comes back identical after a reopen.</summary>
public sealed class RecoveryTests
{
    [Theory]
    [InlineData(1, false, false)]
    [InlineData(2, true, false)]
    [InlineData(3, false, true)]   // the group-commit thread blocks on FasterLog's commit instead of spinning
    public async Task Commit_close_reopen_gives_an_identical_cell(int seed, bool checkpointOnClose, bool blockingWait)
    {
        using var tmp = new TempStore();
        var work = new Workload(seed);
        string before;
        using (var store = tmp.Open(o =>
        {
            o.CheckpointOnDispose = checkpointOnClose;
            o.GroupCommitBlockingWait = blockingWait;
        }))
        {
            work.Setup(store.Cell);
            work.Run(store.Cell, 400);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            Assert.Equal(store.Cell.Version, store.DurableVersion);
            before = CellDump.Of(store.Cell);
            Assert.Empty(store.Cell.Audit());
        }
        using (var store = tmp.Open())
        {
            Assert.Equal(before, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
            Assert.Equal(checkpointOnClose, store.Recovery.FromCheckpoint);
            Assert.Equal(checkpointOnClose ? 0 : store.Cell.JournalSequence, store.Recovery.RecordsReplayed);
            Workload.AssertRetriesReplay(store.Cell, work.Keyed);
        }
        Assert.Empty(tmp.Warnings);
    }

    [Fact]
    public async Task Commit_checkpoint_more_commits_reopen_gives_an_identical_cell()
    {
        using var tmp = new TempStore();
        var work = new Workload(7);
        string before;
        long atCheckpoint;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            work.Setup(store.Cell);
            work.Run(store.Cell, 300);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            await store.CheckpointAsync();
            atCheckpoint = store.Cell.JournalSequence;
            work.Run(store.Cell, 300);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            await store.CheckpointAsync();   // a second checkpoint replaces the first
            work.Run(store.Cell, 300);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            before = CellDump.Of(store.Cell);
        }
        using (var store = tmp.Open())
        {
            Assert.True(store.Recovery.FromCheckpoint);
            Assert.True(store.Recovery.RecordsReplayed > 0, "the tail after the checkpoint is replayed from the journal");
            Assert.True(store.Recovery.RecordsReplayed < store.Cell.JournalSequence - atCheckpoint, $"records covered by the checkpoint are not replayed: replayed {store.Recovery.RecordsReplayed}, seq {store.Cell.JournalSequence}, at first checkpoint {atCheckpoint}");
            Assert.Equal(before, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
            Workload.AssertRetriesReplay(store.Cell, work.Keyed);
            // The reopened cell keeps journaling: more work, another reopen, still identical.
            work.Run(store.Cell, 200);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            before = CellDump.Of(store.Cell);
        }
        using (var store = tmp.Open())
        {
            Assert.Equal(before, CellDump.Of(store.Cell));
        }
        Assert.Empty(tmp.Warnings);
    }

    [Fact]
    public async Task Periodic_checkpoints_truncate_the_journal_only_up_to_what_they_cover()
    {
        using var tmp = new TempStore();
        var work = new Workload(11);
        string before;
        // Small journal segments, so checkpoints truncate whole segment files away.
        void Small(StorageOptions o)
        {
            o.CheckpointOnDispose = false;
            o.JournalSegmentSizeBits = 18;
            o.JournalPageSizeBits = 14;
            o.JournalMemorySizeBits = 17;
        }
        using (var store = tmp.Open(Small))
        {
            work.Setup(store.Cell);
            for (int round = 0; round < 6; round++)
            {
                work.Run(store.Cell, 1500);
                await store.WaitForDurableAsync(store.Cell.JournalSequence);
                await store.CheckpointAsync();
            }
            work.Run(store.Cell, 100);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            before = CellDump.Of(store.Cell);
            Assert.Equal(6, store.Metrics.Checkpoints);
        }
        // Truncation removed whole early segments, yet the cell comes back identical from checkpoint + tail.
        var segments = Directory.GetFiles(Path.Combine(tmp.Directory, "journal"), "journal.log.*");
        Assert.DoesNotContain(segments, f => f.EndsWith(".log.0", StringComparison.Ordinal) && new FileInfo(f).Length > 0);
        using var reopened = tmp.Open(Small);
        var rep = reopened.Recovery;
        Assert.True(before == CellDump.Of(reopened.Cell), $"replay from {rep.ReplayFromAddress} begin {rep.JournalBeginAddress} committed {rep.JournalCommittedAddress} replayed {rep.RecordsReplayed} seq {rep.Sequence} warnings {string.Join(" | ", tmp.Warnings)}");
    }

    [Fact]
    public async Task Concurrent_durable_commits_with_background_checkpoints_reopen_identical()
    {
        using var tmp = new TempStore();
        string before;
        long acked = 0;
        using (var store = tmp.Open(o => { o.CheckpointInterval = TimeSpan.FromMilliseconds(20); o.CheckpointOnDispose = false; }))
        {
            var cell = store.Cell;
            var nodes = Enumerable.Range(0, 16).Select(i => cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(50_000, 1L << 40)))).ToArray();
            var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
            var workers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
            {
                var rng = new Random(w);
                var tx = new Transaction(lease);
                var mine = new List<TaskId>();
                for (int i = 0; i < 400; i++)
                {
                    if (mine.Count > 0 && rng.Next(3) == 0)
                    {
                        cell.Release(mine[^1]);
                        mine.RemoveAt(mine.Count - 1);
                        continue;
                    }
                    tx.Reset(lease, key: new IdempotencyKey((ulong)w + 1, (ulong)i + 1));
                    var task = new TaskId(w * 1_000_000 + i, 0);
                    tx.Add(new Claim(task, nodes[rng.Next(nodes.Length)], new ResourceVector(rng.Next(10, 500), 1 << 20), 0));
                    var r = await store.CommitDurableAsync(tx);
                    Assert.True(store.DurableVersion >= r.CellVersion);
                    if (r.AppliedCount == 1) mine.Add(task);
                    Interlocked.Increment(ref acked);
                }
            })).ToArray();
            await Task.WhenAll(workers);
            await store.WaitForDurableAsync(cell.JournalSequence);
            Assert.True(store.Metrics.Checkpoints > 0, "background checkpoints ran while committing");
            before = CellDump.Of(cell);
        }
        using (var store = tmp.Open())
        {
            Assert.Equal(before, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
        }
        Assert.True(acked > 1000);
    }

    [Fact]
    public async Task Durable_acknowledgement_and_watermark()
    {
        using var tmp = new TempStore();
        using var store = tmp.Open(o => o.GroupCommitWindow = TimeSpan.FromMilliseconds(2));
        var cell = store.Cell;
        var node = cell.AddNode(new NodeSpec("n", new ResourceVector(10_000, 1L << 34)));
        var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
        long lastWatermark = 0;
        for (int i = 0; i < 50; i++)
        {
            var tx = new Transaction(lease).Add(new Claim(new TaskId(i, 0), node, new ResourceVector(100, 1 << 20), 0));
            tx.Key = new IdempotencyKey(1, (ulong)i + 1);
            var r = await store.CommitDurableAsync(tx);
            Assert.Equal(TransactionStatus.Committed, r.Status);
            // Acknowledged => durable: the watermark covers the binding's generation.
            Assert.True(store.DurableVersion >= r.Generation, $"ack of v{r.Generation} before the watermark {store.DurableVersion}");
            Assert.True(store.DurableVersion >= lastWatermark);
            lastWatermark = store.DurableVersion;
            // A retry is acknowledged durably with the original result.
            var again = await store.CommitDurableAsync(tx);
            Assert.True(again.Replayed);
            Assert.Equal(r.Generation, again.Generation);
        }
        // The synchronous path: the in-memory result first, then the wait for the record covering it.
        var tx2 = new Transaction(lease).Add(new Claim(new TaskId(999, 0), node, new ResourceVector(100, 1 << 20), 0));
        var sync = cell.Commit(tx2).Detach();
        await store.WaitForVersionAsync(sync.Generation).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(store.DurableVersion >= sync.Generation);
        Assert.True(store.Metrics.Groups > 0);
    }

    [Fact]
    public async Task In_memory_store_serves_the_same_interface()
    {
        using var store = CellStore.InMemory();
        Assert.False(store.IsPersistent);
        var node = store.Cell.AddNode(new NodeSpec("n", new ResourceVector(1000, 1 << 30)));
        var lease = store.Cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
        var r = await store.CommitDurableAsync(new Transaction(lease).Add(new Claim(new TaskId(1, 0), node, new ResourceVector(100, 1), 0)));
        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.Equal(store.Cell.Version, store.DurableVersion);
        Assert.False(store.Cell.IsJournaled);
        await store.CheckpointAsync();
    }

    [Fact]
    public void A_second_process_cannot_open_the_same_directory()
    {
        using var tmp = new TempStore();
        using var store = tmp.Open();
        Assert.ThrowsAny<IOException>(() => tmp.Open());
    }
}

/// <summary>Smaller behaviours of a reopened store: bounded idempotency memory and the journal's fixed geometry.</summary>
public sealed class ReopenDetailTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_idempotency_window_survives_a_reopen_with_the_same_bound(bool checkpoint)
    {
        using var tmp = new TempStore();
        const int Retention = 10, Keys = 40;
        void Opts(StorageOptions o)
        {
            o.Cell.IdempotencyRetention = Retention;
            o.CheckpointOnDispose = checkpoint;
        }
        var txs = new List<(Transaction Tx, CommitResult Result)>();
        using (var store = tmp.Open(Opts))
        {
            var node = store.Cell.AddNode(new NodeSpec("n", new ResourceVector(1_000_000, 1L << 40)));
            var lease = store.Cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
            for (int i = 0; i < Keys; i++)
            {
                var tx = new Transaction(lease) { Key = new IdempotencyKey(7, (ulong)i + 1) };
                tx.Add(new Claim(new TaskId(i, 0), node, new ResourceVector(1, 1), 0));
                txs.Add((tx, await store.CommitDurableAsync(tx)));
            }
            if (checkpoint) await store.CheckpointAsync();
        }
        using (var store = tmp.Open(Opts))
        {
            // The remembered ones first: a retry of a forgotten key is a new keyed commit and would push them out.
            foreach (int i in Enumerable.Range(Keys - Retention, Retention).Concat(Enumerable.Range(0, Keys - Retention)))
            {
                var (tx, original) = txs[i];
                tx.Token = store.Cell.GetCurrentToken("a")!.Value;
                var again = store.Cell.Commit(tx);
                if (i >= Keys - Retention)
                {
                    // Remembered: the original result, nothing new.
                    Assert.True(again.Replayed, $"key {i} should be remembered");
                    Assert.Equal(original.CellVersion, again.CellVersion);
                }
                else
                {
                    // Forgotten, as the cell before the restart would have: the task is still bound, so the retry is rejected.
                    Assert.False(again.Replayed, $"key {i} should have been forgotten");
                    Assert.Equal(ClaimStatus.TaskAlreadyBound, again[0]);
                }
            }
        }
    }

    [Fact]
    public async Task Reopening_with_other_journal_sizes_uses_the_recorded_geometry()
    {
        using var tmp = new TempStore();
        var work = new Workload(9);
        string before;
        using (var store = tmp.Open(o => { o.CheckpointOnDispose = false; o.JournalSegmentSizeBits = 18; o.JournalPageSizeBits = 14; o.JournalMemorySizeBits = 17; }))
        {
            work.Setup(store.Cell);
            work.Run(store.Cell, 3000);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            before = CellDump.Of(store.Cell);
        }
        using (var store = tmp.Open()) // default test geometry differs: the recorded one is used, with a warning
        {
            Assert.Equal(before, CellDump.Of(store.Cell));
        }
        Assert.Contains(tmp.Warnings, w => w.Contains("the journal was created with", StringComparison.Ordinal));
    }
}
