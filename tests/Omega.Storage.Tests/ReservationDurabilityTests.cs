using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>Issue 12: reservations, their consumption and release, and tenant guarantees survive a restart, through journal replay and through a checkpoint.</summary>
public sealed class ReservationDurabilityTests
{
    private static Transaction Tx(SchedulerLease lease, IdempotencyKey key, params Claim[] claims)
    {
        var tx = new Transaction(lease) { Key = key };
        foreach (var c in claims) tx.Add(c);
        return tx;
    }

    private static Claim Reserve(NodeId n, long job, long cpu, TenantId tenant, TimeSpan ttl)
        => new(new TaskId(job, 0), n, new ResourceVector(cpu, 0), 0, tenant, Kind: ClaimKind.Reserve, Ttl: ttl);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reservations_consumptions_releases_and_guarantees_survive_reopen(bool checkpointBetween)
    {
        using var tmp = new TempStore();
        var key = new IdempotencyKey(3, 9);
        var ttl = TimeSpan.FromMinutes(2);
        DateTimeOffset expiresAt;
        string before;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            var n0 = cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 1 << 20)));
            var n1 = cell.AddNode(new NodeSpec("n1", new ResourceVector(4000, 1 << 20)));
            var t1 = cell.CreateTenant("t1");
            var lease = cell.AcquireLease("s", TimeSpan.FromMinutes(10)).Lease;
            var r = await store.CommitDurableAsync(Tx(lease, key, Reserve(n0, 1, 1000, t1, ttl), Reserve(n1, 2, 1500, t1, ttl), Reserve(n1, 3, 500, default, ttl)));
            Assert.Equal(TransactionStatus.Committed, r.Status);
            expiresAt = tmp.Time.GetUtcNow() + ttl;
            if (checkpointBetween) await store.CheckpointAsync();
            // Consume one, release another: both must be restored as gone.
            var b = await store.CommitDurableAsync(Tx(lease, IdempotencyKey.None, new Claim(new TaskId(2, 0), n1, new ResourceVector(1500, 0), 0, t1, Kind: ClaimKind.BindReserved)));
            Assert.Equal(TransactionStatus.Committed, b.Status);
            Assert.Equal(ReleaseStatus.Released, cell.ReleaseReservation(new TaskId(3, 0)));
            Assert.Equal(TenantOpStatus.Ok, cell.SetTenantGuarantee(t1, new ResourceVector(2000, 0)));
            await store.WaitForDurableAsync(cell.JournalSequence);
            before = CellDump.Of(cell);
        }
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            Assert.Equal(checkpointBetween, store.Recovery.FromCheckpoint);
            Assert.Empty(cell.Audit());
            Assert.Equal(before, CellDump.Of(cell));
            var held = Assert.Single(cell.GetReservations());
            Assert.Equal(new TaskId(1, 0), held.Task);
            Assert.Equal(expiresAt, held.ExpiresAt);
            Assert.True(cell.TryGetAllocation(new TaskId(2, 0), out _));
            cell.TryGetTenant("t1", out var t1);
            Assert.Equal(new ResourceVector(2000, 0), cell.GetTenantGuarantee(t1).Guaranteed);
            Assert.Equal(new ResourceVector(2500, 0), cell.GetTenantUsage(t1).Usage);
            // The retried reserve (same identity, new token) is answered from the restored idempotency index: reserved once.
            tmp.Time.Advance(TimeSpan.FromMinutes(11));
            var lease = cell.AcquireLease("s", TimeSpan.FromMinutes(10)).Lease;
            var n0 = new NodeId(0);
            var n1 = new NodeId(1);
            var retry = cell.Commit(Tx(lease, key, Reserve(n0, 1, 1000, t1, ttl), Reserve(n1, 2, 1500, t1, ttl), Reserve(n1, 3, 500, default, ttl)));
            Assert.True(retry.Replayed);
            Assert.Single(cell.GetReservations());
            // The expiry survived as wall-clock time: now (11 minutes on) it is past, and the release is durable too.
            Assert.Equal(1, cell.ReleaseExpiredReservations(10));
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
        {
            Assert.Empty(store.Cell.GetReservations());
            Assert.Empty(store.Cell.Audit());
        }
    }
}
