using Omega.Cells;

namespace Omega.Dst.Tests;

/// <summary>
/// Named race replays, each driven deterministically to its dangerous interleaving over the real cell and the
/// simulated disk (docs/testing.md, "Race replays").
/// </summary>
public sealed class RaceReplayTests
{
    private static readonly ResourceVector Node = new(4000, 8L << 30);
    private static readonly ResourceVector Big = new(3000, 1L << 30);

    private sealed class World
    {
        public readonly DstSimulation Sim = new(new DstOptions { Seed = 0, FaultRate = 0 });
        public Cell Cell;
        public NodeId N0;
        public TenantId T1;

        public World()
        {
            Cell = new Cell(Sim.CellOptions(), Sim.Disk.Journal());
            N0 = Cell.AddNode(new NodeSpec("n0", Node));
            T1 = Cell.CreateTenant("t1");
            Sim.Disk.Flush();
        }

        public RemoteCommitter Link(ulong client) => new(Sim, Cell, client);

        public void Crash()
        {
            Cell.Dispose();
            Sim.Disk.Crash(tear: false, new Random(0));
            Cell = Sim.Disk.Recover(Sim.CellOptions());
        }

        public Transaction Reserve(SchedulerLease lease, long job)
        {
            var tx = new Transaction(lease);
            tx.Add(new Claim(new TaskId(job, 0), N0, Big, 0, T1, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMinutes(5)));
            return tx;
        }

        public void AssertSafe()
        {
            var used = ResourceVector.Zero;
            foreach (var r in Cell.GetReservations()) used += r.Resources;
            foreach (var a in Cell.GetAllocations()) used += a.Resources;
            Assert.True(used.FitsWithin(Node), $"n0 over capacity: {used.CpuMillis}m");
            Assert.Empty(Cell.Audit());
        }
    }

    [Fact]
    public void Duplicate_reservation_a_reservation_that_times_out_after_committing_and_is_retried_while_another_scheduler_reserves_the_same_capacity_is_held_once()
    {
        var w = new World();
        var a = w.Link(1);
        var b = w.Link(2);
        var leaseA = a.AcquireLease("sched-a", TimeSpan.FromMinutes(1)).Lease;
        var leaseB = b.AcquireLease("sched-b", TimeSpan.FromMinutes(1)).Lease;
        CommitResult? rivalResult = null;
        bool lost = false;
        // A's reservation applies, its reply is lost; before A's retry, B reserves the same 3000m on n0.
        a.LoseReply = _ => !lost && (lost = true);
        a.Interleave = () => rivalResult = b.Commit(w.Reserve(leaseB, 2));
        var first = a.Commit(w.Reserve(leaseA, 1));

        Assert.True(lost);
        Assert.Equal(1, a.Retries);
        Assert.Equal(ClaimStatus.InsufficientResources, rivalResult!.Value[0]); // the capacity is A's already
        Assert.Equal(TransactionStatus.Committed, first.Status);                // the retry returns A's original outcome
        Assert.True(first.Replayed);
        Assert.Equal(ClaimStatus.Applied, first[0]);
        var held = Assert.Single(w.Cell.GetReservations());
        Assert.Equal(new TaskId(1, 0), held.Task);
        w.AssertSafe();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Duplicate_reservation_with_the_cell_restarted_between_the_lost_reply_and_the_retry_is_held_at_most_once(bool durableBeforeCrash)
    {
        var w = new World();
        var leaseA = w.Link(1).AcquireLease("sched-a", TimeSpan.FromMinutes(1)).Lease;
        var leaseB = w.Link(2).AcquireLease("sched-b", TimeSpan.FromMinutes(1)).Lease;
        w.Sim.Disk.Flush();
        var txA = w.Reserve(leaseA, 1);
        var original = w.Link(1).Commit(txA); // applied; the reply is lost with the process
        Assert.Equal(ClaimStatus.Applied, original[0]);
        if (durableBeforeCrash) w.Sim.Disk.Flush();
        w.Crash();

        // B reserves the same capacity on the recovered cell, then A's client retries its very transaction.
        var rival = w.Link(2).Commit(w.Reserve(leaseB, 2));
        var retry = w.Link(1).Commit(txA);
        var held = Assert.Single(w.Cell.GetReservations());
        if (durableBeforeCrash)
        {
            // A's reservation survived: B is refused, A's retry replays the remembered outcome (restored from the journal).
            Assert.Equal(ClaimStatus.InsufficientResources, rival[0]);
            Assert.True(retry.Replayed);
            Assert.Equal(original.CellVersion, retry.CellVersion);
            Assert.Equal(new TaskId(1, 0), held.Task);
        }
        else
        {
            // A's reservation was never durable (and never acknowledged): B gets the capacity, A's retry is refused.
            Assert.Equal(ClaimStatus.Applied, rival[0]);
            Assert.False(retry.Replayed);
            Assert.Equal(ClaimStatus.InsufficientResources, retry[0]);
            Assert.Equal(new TaskId(2, 0), held.Task);
        }
        w.AssertSafe();
    }

    [Fact]
    public void Without_idempotency_replay_the_same_race_is_caught_by_the_retry_checker()
    {
        var sim = new DstSimulation(new DstOptions { Seed = 0, FaultRate = 0, Buggify = Buggify.SkipIdempotencyReplay });
        var cell = new Cell(sim.CellOptions(), sim.Disk.Journal());
        var n0 = cell.AddNode(new NodeSpec("n0", Node));
        var t1 = cell.CreateTenant("t1");
        var a = new RemoteCommitter(sim, cell, 1) { LoseReply = _ => true };
        var lease = a.AcquireLease("sched-a", TimeSpan.FromMinutes(1)).Lease;
        var tx = new Transaction(lease);
        tx.Add(new Claim(new TaskId(1, 0), n0, Big, 0, t1, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMinutes(5)));
        a.Commit(tx);
        Assert.StartsWith("retry-binds-once:", sim.Violation, StringComparison.Ordinal);
    }

    [Fact]
    public void Rollback_race_a_policy_rollback_while_replicas_placed_under_the_new_revision_are_starting_keeps_every_invariant_and_converges()
    {
        // Found by seed search, then replayed: the first seeds whose run rolls a revision back while replicas are starting.
        int found = 0;
        for (long seed = 1; seed <= 100 && found < 3; seed++)
        {
            var r = DstSimulation.RunSeed(seed, new DstOptions { FaultRate = 2 });
            Assert.True(r.Ok, r.ToString());
            if (r.FaultCounts[(int)DstFault.RollbackWhileStarting] == 0) continue;
            found++;
            Assert.True(r.Converged, r.ToString());
            var again = DstSimulation.RunSeed(seed, new DstOptions { FaultRate = 2 });
            Assert.Equal(r.TraceHash, again.TraceHash); // the interleaving replays exactly from its seed
        }
        Assert.Equal(3, found);
    }
}
