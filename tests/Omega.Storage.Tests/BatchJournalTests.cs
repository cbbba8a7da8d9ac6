using System.Text;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Storage.Tests;

/// <summary>
/// The journal's shape for a batch (issue 14): several mutations applied in one critical section reach the journal as
/// one frame, round-trip through FasterLog and recovery, and a torn tail inside a frame loses the whole batch, never half.
/// </summary>
public sealed class BatchJournalTests
{
    private static readonly byte[] ChunkMagic = Encoding.ASCII.GetBytes("OMJ1");
    private readonly ITestOutputHelper _output;

    public BatchJournalTests(ITestOutputHelper output) => _output = output;

    private static int Seed(ITestOutputHelper output)
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} to replay)");
        return seed;
    }

    /// <summary>
    /// <paramref name="count"/> fresh transactions of 1-3 claims on random nodes; some keyed, some all-or-nothing, some
    /// bound to be rejected (an oversized claim), so a batch holds records that bump the cell version and records that do not.
    /// </summary>
    private static Transaction[] MakeBatch(Cell cell, SchedulerLease lease, Random rng, ref long nextJob, int count)
    {
        var snap = cell.Snapshot();
        var txs = new Transaction[count];
        for (int i = 0; i < count; i++)
        {
            var mode = rng.Next(4) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental;
            var tx = new Transaction(lease, mode, ConflictDetection.Fine);
            if (rng.Next(3) == 0) tx.Key = new IdempotencyKey((ulong)rng.NextInt64(), (ulong)rng.NextInt64());
            long job = nextJob++;
            int claims = rng.Next(1, 4);
            for (int c = 0; c < claims; c++)
            {
                var node = new NodeId(rng.Next(snap.NodeCount));
                var res = rng.Next(10) == 0 ? new ResourceVector(1_000_000, 1) : new ResourceVector(rng.Next(1, 200), rng.Next(1, 1 << 20));
                tx.Add(new Claim(new TaskId(job, c), node, res, 0, new TenantId(rng.Next(3))));
            }
            txs[i] = tx;
        }
        return txs;
    }

    private sealed class RecordingJournal : ICellJournal
    {
        public List<byte[]> Elements { get; } = new();

        public int Singles, Batches;

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            Singles++;
            Assert.False(CellBatch.IsFrame(record));
            Elements.Add(record.ToArray());
        }

        public void AppendBatch(long firstSequence, int count, long lastCellVersion, ReadOnlySpan<byte> frame)
        {
            Batches++;
            CellBatch.Validate(frame);
            var (n, first, _, last) = CellBatch.ReadHeader(frame);
            Assert.Equal((count, firstSequence, lastCellVersion), (n, first, last));
            Elements.Add(frame.ToArray());
        }
    }

    private static string WithoutJournalSequence(string dump) => dump[(dump.IndexOf('\n', StringComparison.Ordinal) + 1)..];

    [Fact]
    public void A_batch_reaches_the_journal_as_one_frame_and_a_batch_of_one_as_todays_bare_record()
    {
        int seed = Seed(_output);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { Time = time }, journal);
        using var twin = new Cell(new CellOptions { Time = time });
        var work = new Workload(seed);
        work.Setup(cell);
        new Workload(seed).Setup(twin);
        var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(10)).Lease;
        var twinLease = twin.AcquireLease("a", TimeSpan.FromMinutes(10)).Lease;
        int singlesBefore = journal.Singles;
        long job = 1, twinJob = 1;

        var batch = MakeBatch(cell, lease, new Random(seed), ref job, 40);
        var results = new CommitResult[batch.Length];
        long seqBefore = cell.JournalSequence;
        cell.CommitBatch(batch, results);
        Assert.Equal(1, journal.Batches);
        Assert.Equal(singlesBefore, journal.Singles);
        var frame = journal.Elements[^1];
        var (count, first, _, last) = CellBatch.ReadHeader(frame);
        Assert.Equal(seqBefore + 1, first);
        Assert.Equal(cell.JournalSequence, first + count - 1);
        Assert.Equal(cell.Version, last);

        // The same transactions committed one by one on a twin give the same results and the same state.
        var sequential = MakeBatch(twin, twinLease, new Random(seed), ref twinJob, 40);
        for (int i = 0; i < sequential.Length; i++)
        {
            var r = twin.Commit(sequential[i]);
            Assert.Equal(r.Status, results[i].Status);
            Assert.Equal(r.CellVersion, results[i].CellVersion);
            Assert.Equal(r.ClaimStatuses.ToArray(), results[i].ClaimStatuses.ToArray());
        }
        Assert.Equal(twin.Version, cell.Version);
        Assert.Equal(WithoutJournalSequence(CellDump.Of(twin)), WithoutJournalSequence(CellDump.Of(cell))); // the twin has no journal

        // A batch of one is the bare record, byte for byte what Commit writes.
        var one = MakeBatch(cell, lease, new Random(seed + 1), ref job, 1);
        one[0].Key = new IdempotencyKey(7, 7); // keyed: journaled even when rejected
        cell.CommitBatch(one, new CommitResult[1]);
        Assert.Equal(1, journal.Batches);
        Assert.Equal(singlesBefore + 1, journal.Singles);
        var twinOne = MakeBatch(twin, twinLease, new Random(seed + 1), ref twinJob, 1);
        twinOne[0].Key = new IdempotencyKey(7, 7);
        // The twin had no journal: attach one now and compare the record bodies (the headers' sequences differ).
        var twinJournal = new RecordingJournal();
        twin.AttachJournal(twinJournal);
        twin.Commit(twinOne[0]);
        Assert.Equal(journal.Elements[^1].AsSpan(CellRecord.HeaderSize).ToArray(), twinJournal.Elements[^1].AsSpan(CellRecord.HeaderSize).ToArray());

        // Replaying the elements (frames and bare records alike) rebuilds the cell.
        using var restorer = new CellRestorer(new CellOptions { Time = time });
        foreach (var e in journal.Elements) Assert.True(restorer.Replay(e));
        using var rebuilt = restorer.Complete();
        Assert.Equal(CellDump.Of(cell), CellDump.Of(rebuilt));
    }

    [Fact]
    public async Task A_batch_of_records_round_trips_through_the_FASTER_journal_and_recovery()
    {
        int seed = Seed(_output);
        var rng = new Random(seed);
        using var tmp = new TempStore();
        var work = new Workload(seed);
        string expected;
        IReadOnlyList<string> audit;
        long job = 1;
        int batchRecords = 0;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            work.Setup(cell);
            work.Run(cell, 50);
            var lease = cell.AcquireLease("batcher", TimeSpan.FromMinutes(10)).Lease;
            for (int b = 0; b < 5; b++)
            {
                var batch = MakeBatch(cell, lease, rng, ref job, 2 + rng.Next(60));
                long before = cell.JournalSequence;
                cell.CommitBatch(batch, new CommitResult[batch.Length]);
                batchRecords += (int)(cell.JournalSequence - before);
                work.Run(cell, 10); // single records between batches
            }
            await store.WaitForDurableAsync(cell.JournalSequence);
            expected = CellDump.Of(cell);
            audit = cell.Audit(); // the workload may lower a quota below usage; recovery must show the same
        }
        _output.WriteLine($"{batchRecords} records in batches");
        Assert.True(batchRecords >= 10);

        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            Assert.False(store.Recovery.FromCheckpoint);
            Assert.Equal(expected, CellDump.Of(store.Cell));
            Assert.Equal(audit, store.Cell.Audit());
            Assert.Empty(store.Recovery.Warnings);
            Assert.Equal(store.Cell.JournalSequence, store.Recovery.RecordsReplayed);
            // The checkpointer applies the same frames to FasterKV; the next open comes from that checkpoint.
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
        {
            Assert.True(store.Recovery.FromCheckpoint);
            Assert.Equal(expected, CellDump.Of(store.Cell));
            Workload.AssertRetriesReplay(store.Cell, work.Keyed);
        }
    }

    private static List<int> ChunkOffsets(byte[] file)
    {
        var list = new List<int>();
        for (int i = file.AsSpan().IndexOf(ChunkMagic); i >= 0;)
        {
            list.Add(i);
            int next = file.AsSpan(i + 1).IndexOf(ChunkMagic);
            i = next < 0 ? -1 : i + 1 + next;
        }
        return list;
    }

    [Fact]
    public async Task A_torn_batch_recovers_to_the_last_whole_batch_and_never_half_of_one()
    {
        int seed = Seed(_output);
        var rng = new Random(seed);
        using var tmp = new TempStore();
        // Small journal pages: a chunk holds at most ~8 KB, so the last batch spans several chunks.
        void Small(StorageOptions o)
        {
            o.CheckpointOnDispose = false;
            o.JournalSegmentSizeBits = 20;
            o.JournalPageSizeBits = 14;
            o.JournalMemorySizeBits = 17;
        }
        var work = new Workload(seed);
        string afterWholeBatch, afterTornBatch;
        long job = 1;
        string segment = Path.Combine(tmp.Directory, "journal", "journal.log.0");
        int chunksBefore;
        using (var store = tmp.Open(Small))
        {
            var cell = store.Cell;
            work.Setup(cell);
            var lease = cell.AcquireLease("batcher", TimeSpan.FromMinutes(10)).Lease;
            cell.CommitBatch(MakeBatch(cell, lease, rng, ref job, 30), new CommitResult[30]);
            await store.WaitForDurableAsync(cell.JournalSequence);
            afterWholeBatch = CellDump.Of(cell);
            chunksBefore = ChunkOffsets(File.ReadAllBytes(segment)).Count;

            // The last batch: its own group (made durable alone), large enough for several chunks.
            var big = MakeBatch(cell, lease, rng, ref job, 400);
            cell.CommitBatch(big, new CommitResult[big.Length]);
            await store.WaitForDurableAsync(cell.JournalSequence);
            afterTornBatch = CellDump.Of(cell);
        }
        Assert.NotEqual(afterWholeBatch, afterTornBatch);
        var bytes = File.ReadAllBytes(segment);
        var chunks = ChunkOffsets(bytes);
        int batchChunks = chunks.Count - chunksBefore;
        _output.WriteLine($"the last batch spans {batchChunks} chunks");
        Assert.True(batchChunks >= 3, $"the last batch spans {batchChunks} chunks; the test needs it cut after whole chunks");

        // Tear the final chunk (its payload's last byte), keeping FasterLog's own entry header intact.
        int at = chunks[^1];
        int payloadLength = BitConverter.ToInt32(bytes, at + 16);
        bytes[at + 24 + payloadLength - 1] ^= 0x5A;
        File.WriteAllBytes(segment, bytes);

        using (var store = tmp.Open(Small))
        {
            // The earlier chunks of the batch were intact, yet none of its records was applied: all of the batch or none.
            Assert.Equal(afterWholeBatch, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
            var warning = Assert.Single(store.Recovery.Warnings);
            Assert.Contains("torn final journal chunk", warning, StringComparison.Ordinal);
            // The journal goes on after the discarded tail.
            work.Run(store.Cell, 20);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
        }
    }

    [Fact]
    public void Frames_are_self_checking()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { Time = time }, journal);
        new Workload(1).Setup(cell);
        var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(10)).Lease;
        long job = 1;
        var batch = MakeBatch(cell, lease, new Random(1), ref job, 5);
        cell.CommitBatch(batch, new CommitResult[5]);
        var frame = journal.Elements[^1];
        CellBatch.Validate(frame);
        int n = 0;
        foreach (var r in CellBatch.Records(frame))
        {
            var (_, seq, _) = CellRecord.ReadHeader(r);
            Assert.Equal(CellBatch.ReadHeader(frame).FirstSequence + n++, seq);
        }
        Assert.Equal(CellBatch.ReadHeader(frame).Count, n);
        for (int i = 8; i < frame.Length; i += 7)
        {
            var damaged = (byte[])frame.Clone();
            damaged[i] ^= 0x01;
            Assert.Throws<FormatException>(() => CellBatch.Validate(damaged));
        }
        Assert.Throws<FormatException>(() => CellBatch.Validate(frame.AsSpan(0, frame.Length - 1)));

        // A producer cannot put records out of order into a batch.
        var writer = new CellBatchWriter();
        var records = new List<byte[]>();
        foreach (var r in CellBatch.Records(frame)) records.Add(r.ToArray());
        writer.Add(records[0]);
        Assert.Throws<ArgumentException>(() => writer.Add(records[2]));
    }
}
