using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 15's compact checkpoint (<c>checkpoints/omega-compact.&lt;token&gt;</c>): recovery loads it instead of scanning
/// FasterKV's log, replays only the journal after the checkpoint, and produces exactly the cell the full scan produces;
/// a damaged, stale or missing file makes recovery fall back to the full scan with the same result.
/// </summary>
public sealed class CompactCheckpointTests
{
    // Over one 16,384-record block, so the file has two binding blocks (and the block checks run on two threads).
    private const int BulkBindings = 20_000;

    private sealed class Built
    {
        public required string Before;
        public required IReadOnlyList<(Transaction Tx, CommitResult Result)> Keyed;
    }

    /// <summary>
    /// A store with every kind of entry (the seeded workload: nodes added/updated/drained/removed, leases, quotas, keyed
    /// commits and preemptions, releases) plus 70,000 bulk bindings, some released, checkpointed; then a journal tail
    /// after the checkpoint with more of everything. Closed without a final checkpoint, so the tail must be replayed.
    /// </summary>
    private static async Task<Built> BuildAsync(TempStore tmp, Func<ICellStore, Task>? afterFirstCheckpoint = null)
    {
        var work = new Workload(11);
        using var store = tmp.Open(o => o.CheckpointOnDispose = false);
        var cell = store.Cell;
        work.Setup(cell);
        work.Run(cell, 300);
        var bulk = new NodeId[8];
        for (int i = 0; i < bulk.Length; i++) bulk[i] = cell.AddNode(new NodeSpec($"bulk-{i}", new ResourceVector(1L << 40, 1L << 50), $"rack-{i % 2}"));
        // Tenants of their own: the workload sets random quotas on tenants 0-2.
        var tenants = new[] { cell.CreateTenant("bulk-a"), cell.CreateTenant("bulk-b") };
        var lease = cell.AcquireLease("bulk", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: 64);
        var rng = new Random(5);
        for (long job = 1_000_000; job < 1_000_000 + BulkBindings;)
        {
            tx.Reset(lease);
            for (int i = 0; i < 64 && job < 1_000_000 + BulkBindings; i++)
                tx.Add(new Claim(new TaskId(job++, i % 3), bulk[rng.Next(bulk.Length)], new ResourceVector(1 + rng.Next(100), 1L << 20), 0, tenants[rng.Next(2)], rng.Next(4)));
            var r = cell.Commit(tx);
            Assert.Equal(tx.Count, r.AppliedCount);
        }
        // Released before the checkpoint: the compact file carries their tombstones (or no longer the binding).
        for (long job = 1_000_000; job < 1_000_000 + BulkBindings; job += 13)
            foreach (var index in new[] { 0, 1, 2 })
                cell.Release(new TaskId(job, index));
        await store.WaitForDurableAsync(cell.JournalSequence);
        await store.CheckpointAsync();
        if (afterFirstCheckpoint is not null) await afterFirstCheckpoint(store);
        // The journal suffix after the checkpoint: more workload, releases of checkpointed bindings, a rebind of one.
        work.Run(cell, 200);
        for (long job = 1_000_001; job < 1_000_000 + BulkBindings; job += 17)
            foreach (var index in new[] { 0, 1, 2 })
                cell.Release(new TaskId(job, index));
        tx.Reset(lease);
        tx.Add(new Claim(new TaskId(1_000_001, 1), bulk[0], new ResourceVector(7, 1L << 20), 0, tenants[0], 1));
        Assert.Equal(1, cell.Commit(tx).AppliedCount);
        await store.WaitForDurableAsync(cell.JournalSequence);
        Assert.Empty(cell.Audit());
        return new Built { Before = CellDump.Of(cell), Keyed = work.Keyed };
    }

    private static string CheckpointDir(TempStore tmp) => Path.Combine(tmp.Directory, "checkpoints");

    private static string CompactFile(TempStore tmp) => Assert.Single(Directory.GetFiles(CheckpointDir(tmp), "omega-compact.*"));

    [Fact]
    public async Task Recovery_from_the_compact_checkpoint_equals_the_full_scan_and_replays_only_the_journal_suffix()
    {
        using var tmp = new TempStore();
        var built = await BuildAsync(tmp);
        string compact = CompactFile(tmp);
        // Not listed in the manifest: a damaged compact file must never make the checkpoint itself unusable.
        string manifest = File.ReadAllText(Assert.Single(Directory.GetFiles(CheckpointDir(tmp), "omega-checkpoint.*.manifest")));
        Assert.DoesNotContain("omega-compact", manifest, StringComparison.Ordinal);
        Assert.True(new FileInfo(compact).Length >= 64L * BulkBindings, "the bindings are in the file as 64-byte records");

        string scanned;
        using (var store = tmp.Open(o => { o.CheckpointOnDispose = false; o.UseCompactCheckpoint = false; }))
        {
            Assert.True(store.Recovery.FromCheckpoint);
            Assert.False(store.Recovery.FromCompactCheckpoint);
            scanned = CellDump.Of(store.Cell);
            Assert.Empty(store.Cell.Audit());
        }
        Assert.Equal(built.Before, scanned);

        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var r = store.Recovery;
            Assert.True(r.FromCheckpoint);
            Assert.True(r.FromCompactCheckpoint, $"the compact checkpoint was not used: {r.CompactCheckpointFallback}");
            Assert.Null(r.CompactCheckpointFallback);
            Assert.True(r.RecordsReplayed > 0, "the journal suffix after the checkpoint is replayed");
            Assert.Equal(scanned, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
            // The idempotency outcomes came through the compact file's entry section: every keyed retry replays.
            Workload.AssertRetriesReplay(store.Cell, built.Keyed);
        }
        Assert.Empty(tmp.Warnings);
    }

    [Fact]
    public async Task A_damaged_stale_or_missing_compact_checkpoint_falls_back_to_the_full_scan_with_the_same_state()
    {
        using var tmp = new TempStore();
        byte[]? older = null;
        // Two checkpoints: the intact compact file of the first is kept to put in place of the second's ("stale": its
        // header and checksums are valid, only the position it reflects is wrong).
        var built = await BuildAsync(tmp, async store =>
        {
            older = File.ReadAllBytes(CompactFile(tmp));
            store.Cell.SetTenantQuota(new TenantId(2), new ResourceVector(5, 5));
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            await store.CheckpointAsync();
        });
        var intact = File.ReadAllBytes(CompactFile(tmp));
        long bindings = BitConverter.ToInt64(intact, 24), entryBytes = BitConverter.ToInt64(intact, 40);
        Assert.True(bindings > 16_384 + 5, $"two binding blocks expected, {bindings} records");
        Assert.True(entryBytes > 0);
        // Each damage on its own copy of the closed store (one build for all of them).
        long blockCrcEnd = 64 + bindings * 64 + entryBytes + 4 * ((bindings + 16_383) / 16_384);
        foreach (var damage in new[] { "header", "binding-block-1", "entry-section", "block-checksums", "node-counts", "truncated", "stale", "absent" })
        {
            using var copy = new TempStore();
            CopyDirectory(tmp.Directory, copy.Directory);
            string path = CompactFile(copy);
            var bytes = (byte[])intact.Clone();
            string expected;
            switch (damage)
            {
                case "header": bytes[24] ^= 0x01; expected = "header"; break;
                case "binding-block-1": bytes[64 + (16_384 + 5) * 64 + 20] ^= 0x40; expected = "block 1"; break;
                case "entry-section": bytes[64 + bindings * 64 + entryBytes / 2] ^= 0x10; expected = "entry section"; break;
                case "block-checksums": bytes[blockCrcEnd - 1] ^= 0x01; expected = "block 1"; break;
                // Format 2's per-node counts (the last section): a damaged table must not size lists from garbage.
                case "node-counts": bytes[blockCrcEnd + 2] ^= 0x04; expected = "node count table"; break;
                case "truncated": Array.Resize(ref bytes, bytes.Length - 100); expected = "bytes"; break;
                case "stale": bytes = older!; expected = "reflects version"; break;
                default: bytes = null!; expected = ""; break;
            }
            if (bytes is null) File.Delete(path);
            else File.WriteAllBytes(path, bytes);

            using var store = copy.Open(o => o.CheckpointOnDispose = false);
            var r = store.Recovery;
            Assert.True(r.FromCheckpoint, damage);
            Assert.False(r.FromCompactCheckpoint, $"{damage}: a damaged compact checkpoint was loaded");
            Assert.True(built.Before == CellDump.Of(store.Cell), $"{damage}: the fallback recovered another cell");
            Assert.Empty(store.Cell.Audit());
            if (damage == "absent")
            {
                Assert.Null(r.CompactCheckpointFallback);
                Assert.Empty(copy.Warnings);
            }
            else
            {
                Assert.True(r.CompactCheckpointFallback?.Contains(expected, StringComparison.Ordinal) == true, $"{damage}: fallback reason '{r.CompactCheckpointFallback}'");
                var warning = Assert.Single(copy.Warnings);
                Assert.Contains("compact checkpoint", warning, StringComparison.Ordinal);
            }
            Workload.AssertRetriesReplay(store.Cell, built.Keyed);
        }
    }

    [Fact]
    public async Task A_format_1_compact_checkpoint_without_node_counts_is_still_loaded_with_the_same_state()
    {
        // A store checkpointed by the build before the per-node counts (format 1) must still open by the compact path.
        using var tmp = new TempStore();
        var built = await BuildAsync(tmp);
        string path = CompactFile(tmp);
        var v2 = File.ReadAllBytes(path);
        Assert.Equal(2, BitConverter.ToInt32(v2, 4));
        int counted = BitConverter.ToInt32(v2, 56);
        Assert.True(counted >= 8, $"the count table covers the bulk nodes ({counted} entries)");
        // Format 1 = format 2 without the count table, with 0 in the header's reserved word and the header CRC redone.
        var v1 = v2.AsSpan(0, v2.Length - 4 * counted - 4).ToArray();
        BitConverter.TryWriteBytes(v1.AsSpan(4), 1);
        BitConverter.TryWriteBytes(v1.AsSpan(56), 0);
        BitConverter.TryWriteBytes(v1.AsSpan(60), Omega.Storage.Log.Crc32C.Compute(v1.AsSpan(0, 60)));
        File.WriteAllBytes(path, v1);
        using var store = tmp.Open(o => o.CheckpointOnDispose = false);
        Assert.True(store.Recovery.FromCompactCheckpoint, store.Recovery.CompactCheckpointFallback);
        Assert.Equal(built.Before, CellDump.Of(store.Cell));
        Assert.Empty(store.Cell.Audit());
        Assert.Empty(tmp.Warnings);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)), overwrite: true);
    }

    [Fact]
    public async Task A_store_that_writes_no_compact_checkpoint_recovers_by_the_scan_and_the_next_checkpoint_writes_one()
    {
        using var tmp = new TempStore();
        string before;
        using (var store = tmp.Open(o => { o.CheckpointOnDispose = true; o.WriteCompactCheckpoint = false; }))
        {
            var work = new Workload(4);
            work.Setup(store.Cell);
            work.Run(store.Cell, 200);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            before = CellDump.Of(store.Cell);
        }
        Assert.Empty(Directory.GetFiles(CheckpointDir(tmp), "omega-compact.*"));
        using (var store = tmp.Open(o => o.CheckpointOnDispose = true))
        {
            Assert.False(store.Recovery.FromCompactCheckpoint);
            Assert.Null(store.Recovery.CompactCheckpointFallback);
            Assert.Equal(before, CellDump.Of(store.Cell));
        }
        // The reopened store's final checkpoint wrote one (and deleted nothing it needs); the next open uses it.
        CompactFile(tmp);
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            Assert.True(store.Recovery.FromCompactCheckpoint, store.Recovery.CompactCheckpointFallback);
            Assert.Equal(before, CellDump.Of(store.Cell));
            // The checkpoint's phases are reported, the compact pass with the records it wrote (issue 15: its cost).
            Assert.Equal(default, store.Metrics.LastCheckpoint);
            await store.CheckpointAsync();
            var t = store.Metrics.LastCheckpoint;
            Assert.True(t.CompactRecords > 0, $"compact pass wrote {t.CompactRecords} records");
            Assert.True(t.Compact > TimeSpan.Zero && t.Snapshot > TimeSpan.Zero, t.ToString());
        }
        using (var store = tmp.Open(o => { o.CheckpointOnDispose = false; o.WriteCompactCheckpoint = false; }))
        {
            await store.CheckpointAsync();
            Assert.Equal(1, store.Metrics.Checkpoints);
            Assert.True(store.Metrics.LastCheckpoint.Snapshot > TimeSpan.Zero);
            Assert.Equal(0, store.Metrics.LastCheckpoint.CompactRecords);
            Assert.Equal(TimeSpan.Zero, store.Metrics.LastCheckpoint.Compact);
        }
        Assert.Empty(tmp.Warnings);
    }
}
