using Omega.Cells;
using Omega.Storage;

namespace Omega.Replication.Tests;

/// <summary>
/// The storage half of replication without etcd: a standby store applies the leader's groups (and keeps them on its
/// own disk), promotes into the same cell, and a group the replicated log refused is never written locally and
/// nothing after it is acknowledged.
/// </summary>
public sealed class ReplicaStoreTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "omega-replica-store-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, true);
        }
        catch (IOException)
        {
            // best effort
        }
    }

    private StorageOptions Options(string name) => new() { DataDirectory = Path.Combine(_root, name), GroupCommitWindow = TimeSpan.FromMilliseconds(1), CheckpointInterval = null, CheckpointOnDispose = false };

    /// <summary>Keeps every group (a stand-in for etcd); throws from the <see cref="FailFrom"/>-th call on.</summary>
    private sealed class Recorder : IJournalReplicator
    {
        public List<(byte[] Group, long First, long Last)> Groups { get; } = new();

        public int FailFrom { get; set; } = int.MaxValue;

        public void Replicate(ReadOnlySpan<byte> group, long firstSequence, long lastSequence, long lastCellVersion)
        {
            lock (Groups)
            {
                if (Groups.Count + 1 >= FailFrom) throw new ReplicationFencedException("refused (test)");
                Assert.True(Groups.Count == 0 || Groups[^1].Last + 1 == firstSequence, "groups must be contiguous");
                Groups.Add((group.ToArray(), firstSequence, lastSequence));
            }
        }
    }

    private static async Task<int> CommitSome(ICellStore store, int from, int count)
    {
        var node = store.Cell.AddNode(new NodeSpec("n" + from, new ResourceVector(1_000_000, 1L << 40)));
        var lease = store.Cell.AcquireLease("s" + from, TimeSpan.FromMinutes(5)).Lease;
        for (int i = from; i < from + count; i++)
        {
            var r = await store.CommitDurableAsync(new Transaction(lease).Add(new Claim(new TaskId(i, 0), node, new ResourceVector(10, 1), 0)));
            Assert.Equal(TransactionStatus.Committed, r.Status);
        }
        return count;
    }

    [Fact]
    public async Task A_standby_applies_the_leaders_groups_keeps_them_on_disk_and_promotes_into_the_same_cell()
    {
        var recorder = new Recorder();
        long leaderSeq, leaderVersion;
        using (var leaderReplica = CellStore.OpenReplica(Options("leader")))
        {
            var leader = leaderReplica.Promote(recorder);
            await CommitSome(leader, 0, 100);
            leaderSeq = leader.DurableSequence;
            leaderVersion = leader.Cell.Version;
            // Durable means replicated: the recorder holds every record up to the watermark.
            Assert.Equal(leaderSeq, recorder.Groups[^1].Last);
        }
        using (var standby = CellStore.OpenReplica(Options("standby")))
        {
            Assert.False(standby.IsPromoted);
            Assert.Throws<InvalidOperationException>(() => ((ICellStore)standby).Cell);
            // Half the log, then a restart: the standby resumes from its own disk.
            int half = recorder.Groups.Count / 2;
            for (int g = 0; g < half; g++) standby.Apply(recorder.Groups[g].Group);
            Assert.Equal(recorder.Groups[half - 1].Last, standby.AppliedSequence);
        }
        using (var standby = CellStore.OpenReplica(Options("standby")))
        {
            long resumed = standby.AppliedSequence;
            Assert.True(resumed > 0, "the applied groups were not kept on the standby's disk");
            // The whole log again (as a takeover re-reads from the entry holding its position): applied records are skipped.
            foreach (var g in recorder.Groups) standby.Apply(g.Group);
            Assert.Equal(leaderSeq, standby.AppliedSequence);
            Assert.Equal(leaderVersion, standby.AppliedVersion);
            var promoted = standby.Promote(null);
            Assert.Equal(100, promoted.Cell.AllocationCount);
            Assert.Empty(promoted.Cell.Audit());
            // It goes on from the same sequence.
            await CommitSome(promoted, 100, 5);
            Assert.Equal(105, promoted.Cell.AllocationCount);
        }
    }

    [Fact]
    public async Task A_refused_group_is_not_written_locally_and_nothing_after_it_is_acknowledged()
    {
        var recorder = new Recorder();
        using (var replica = CellStore.OpenReplica(Options("deposed")))
        {
            var store = replica.Promote(recorder);
            await CommitSome(store, 0, 20);
            recorder.FailFrom = recorder.Groups.Count + 1; // the next group is refused (a fenced leader)
            var lease = store.Cell.AcquireLease("late", TimeSpan.FromMinutes(5)).Lease;
            var node = new NodeId(0);
            await Assert.ThrowsAnyAsync<IOException>(async () =>
                await store.CommitDurableAsync(new Transaction(lease).Add(new Claim(new TaskId(999, 0), node, new ResourceVector(10, 1), 0))).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(recorder.Groups[^1].Last, store.DurableSequence);
        }
        // Reopened, the local copy holds exactly what was replicated: no divergent tail.
        using var again = CellStore.OpenReplica(Options("deposed"));
        Assert.Equal(recorder.Groups[^1].Last, again.AppliedSequence);
        var cell = again.Promote(null).Cell;
        Assert.Equal(20, cell.AllocationCount);
        Assert.False(cell.TryGetAllocation(new TaskId(999, 0), out _));
    }

    [Fact]
    public async Task A_snapshot_installs_into_an_empty_directory_as_the_same_cell_and_a_truncated_one_is_refused()
    {
        var leader = CellStore.OpenReplica(Options("leader"));
        var store = leader.Promote(null);
        await CommitSome(store, 0, 40);
        // Releases leave tombstones in the store log: the snapshot must carry them in order.
        for (int i = 0; i < 10; i++) store.Cell.Release(new TaskId(i, 0));
        await store.WaitForDurableAsync(store.Cell.JournalSequence);
        using var file = new MemoryStream();
        var (seq, version) = leader.WriteSnapshot(file);
        Assert.Equal(store.Cell.JournalSequence, seq);
        Assert.Equal(store.Cell.Version, version);

        file.Position = 0;
        Assert.Equal((seq, version), CellStore.InstallSnapshot(Options("copy"), file));
        using (var copy = CellStore.OpenReplica(Options("copy")))
        {
            Assert.Equal(seq, copy.AppliedSequence);
            Assert.Equal(version, copy.AppliedVersion);
            var cell = copy.Promote(null).Cell;
            Assert.Equal(store.Cell.AllocationCount, cell.AllocationCount);
            for (int i = 0; i < 40; i++) Assert.Equal(i >= 10, cell.TryGetAllocation(new TaskId(i, 0), out _));
        }

        // A snapshot cut short is refused before anything is usable, and never into a directory that holds a store.
        var truncated = new MemoryStream(file.ToArray(), 0, (int)file.Length - 7);
        Assert.Throws<InvalidDataException>(() => CellStore.InstallSnapshot(Options("cut"), truncated));
        file.Position = 0;
        Assert.Throws<InvalidOperationException>(() => CellStore.InstallSnapshot(Options("copy"), file));
        store.Dispose();
    }
}
