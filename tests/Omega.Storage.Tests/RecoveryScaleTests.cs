using System.Globalization;
using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 15's recovery and bind-path changes at a test-sized count: the checkpoint records its live-binding count (the
/// hint recovery sizes the binding table with), recovery from checkpoint + tail stays exact with it, and the store
/// notifies a listener when its durable watermark advances (what wakes the server's bind path instead of a poll).
/// </summary>
public sealed class RecoveryScaleTests
{
    private const int Nodes = 50;

    private static SchedulerLease Populate(Cell cell)
    {
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1_000_000, 1L << 40), $"r{i % 4}"));
        for (int t = 1; t <= 2; t++) cell.CreateTenant($"t{t}", null, out _);
        return cell.AcquireLease("loader", TimeSpan.FromHours(1)).Lease;
    }

    // Binds jobs [from, to) spread over the nodes, 64 claims per commit, as the recovery benchmark does.
    private static void Bind(Cell cell, SchedulerLease lease, long from, long to, int seed)
    {
        var rng = new Random(seed);
        var tx = new Transaction(lease, initialCapacity: 64);
        long job = from;
        while (job < to)
        {
            tx.Reset(lease);
            for (int i = 0; i < 64 && job < to; i++)
                tx.Add(new Claim(new TaskId(job++, 0), new NodeId(rng.Next(Nodes)), new ResourceVector(10, 1 << 20), 0, new TenantId(rng.Next(3)), rng.Next(3)));
            var r = cell.Commit(tx);
            Assert.Equal(tx.Count, r.AppliedCount);
        }
    }

    [Fact]
    public async Task Checkpoint_records_its_live_binding_count_and_recovery_from_it_plus_a_tail_is_exact()
    {
        using var tmp = new TempStore();
        string before;
        int atCheckpoint;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            var lease = Populate(cell);
            Bind(cell, lease, 0, 20_000, seed: 1);
            // Releases before the checkpoint: the hint counts live bindings, not bind records.
            for (long j = 0; j < 20_000; j += 7) Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(j, 0)));
            atCheckpoint = cell.AllocationCount;
            await store.WaitForDurableAsync(cell.JournalSequence);
            await store.CheckpointAsync();
            // A tail after the checkpoint: more bindings and releases on both sides of it.
            Bind(cell, lease, 20_000, 25_000, seed: 2);
            for (long j = 1; j < 25_000; j += 11)
                if (cell.TryGetAllocation(new TaskId(j, 0), out _)) Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(j, 0)));
            await store.WaitForDurableAsync(cell.JournalSequence);
            before = CellDump.Of(cell);
        }
        var hints = Directory.GetFiles(Path.Combine(tmp.Directory, "checkpoints"), "omega-bindings.*");
        var hint = Assert.Single(hints);
        Assert.Equal(atCheckpoint, long.Parse(File.ReadAllText(hint), CultureInfo.InvariantCulture));
        Assert.Contains(Path.GetFileName(hint), File.ReadAllText(Directory.GetFiles(Path.Combine(tmp.Directory, "checkpoints"), "omega-checkpoint.*.manifest").Single()), StringComparison.Ordinal);

        using (var store = tmp.Open(o => o.CheckpointOnDispose = true))
        {
            Assert.True(store.Recovery.FromCheckpoint);
            Assert.True(store.Recovery.RecordsReplayed > 0, "the tail is replayed from the journal");
            Assert.Equal(before, CellDump.Of(store.Cell));
            Assert.Empty(store.Cell.Audit());
        }
        // The checkpoint the reopened store wrote on close counts what it applied from the tail too.
        using (var store = tmp.Open())
        {
            Assert.Equal(before, CellDump.Of(store.Cell));
            hint = Assert.Single(Directory.GetFiles(Path.Combine(tmp.Directory, "checkpoints"), "omega-bindings.*"));
            Assert.Equal(store.Cell.AllocationCount, long.Parse(File.ReadAllText(hint), CultureInfo.InvariantCulture));
            Assert.Empty(store.Cell.Audit());
        }
        Assert.Empty(tmp.Warnings);
    }

    [Fact]
    public async Task A_durable_listener_runs_each_time_a_group_commits_and_stops_when_disposed()
    {
        using var tmp = new TempStore();
        using var store = tmp.Open();
        var cell = store.Cell;
        var lease = Populate(cell);
        await store.WaitForDurableAsync(cell.JournalSequence);
        int calls = 0;
        long seenDurable = 0;
        var registration = store.AddDurableListener(() =>
        {
            Interlocked.Increment(ref calls);
            // The watermark is already advanced when the listener runs: a woken consumer reads it and finds the group.
            long d = store.DurableSequence;
            long seen;
            while ((seen = Volatile.Read(ref seenDurable)) < d && Interlocked.CompareExchange(ref seenDurable, d, seen) != seen) { }
        });
        Assert.NotNull(registration);
        Bind(cell, lease, 0, 64, seed: 3);
        long target = cell.JournalSequence;
        await store.WaitForDurableAsync(target);
        // The listener runs right after the waiters of its group are released: wait for it with a bound.
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref seenDurable) >= target, TimeSpan.FromSeconds(30)),
            $"the listener saw durable sequence {Volatile.Read(ref seenDurable)}, the commits reached {target}");
        Assert.True(Volatile.Read(ref calls) > 0);
        registration!.Dispose();
        int after = Volatile.Read(ref calls);
        Bind(cell, lease, 64, 128, seed: 4);
        await store.WaitForDurableAsync(cell.JournalSequence);
        await store.WaitForDurableAsync(cell.JournalSequence);
        Assert.Equal(after, Volatile.Read(ref calls));
    }
}
