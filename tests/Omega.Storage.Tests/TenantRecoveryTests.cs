using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 10: a tenant's creation is a durable record (journal kind 9, FasterKV entry 9) restored on open, both by
/// journal replay and from a checkpoint; idempotency outcomes restore under the scheduler that owns the key.
/// </summary>
public sealed class TenantRecoveryTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tenants_quotas_and_scheduler_scoped_keys_survive_a_reopen(bool checkpoint)
    {
        using var tmp = new TempStore();
        var key = new IdempotencyKey(42, 42);
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            var node = cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 4096)));
            Assert.Equal(TenantOpStatus.Ok, cell.CreateTenant("batch-team", new ResourceVector(2000, 1000), out var batch));
            Assert.Equal(TenantOpStatus.Ok, cell.CreateTenant("web", null, out var web));
            var a = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
            cell.AcquireLease("b", TimeSpan.FromMinutes(5));
            var tx = new Transaction(a) { Key = key };
            tx.Add(new Claim(new TaskId(1, 0), node, new ResourceVector(1500, 100), 0, batch));
            Assert.Equal(TransactionStatus.Committed, cell.Commit(tx).Status);
            if (checkpoint) await store.CheckpointAsync();
            await store.WaitForDurableAsync(cell.JournalSequence);
            Assert.Equal(new TenantId(2), web);
        }
        using (var store = tmp.Open())
        {
            var cell = store.Cell;
            Assert.Equal(checkpoint, store.Recovery.FromCheckpoint);
            Assert.True(cell.TryGetTenant("batch-team", out var batch));
            Assert.True(cell.TryGetTenant("web", out var web));
            Assert.Equal((new TenantId(1), new TenantId(2)), (batch, web));
            Assert.Equal((new ResourceVector(1500, 100), (ResourceVector?)new ResourceVector(2000, 1000)), cell.GetTenantUsage(batch));
            Assert.Empty(cell.Audit());
            // The quota is enforced after the restart, and the next tenant gets the next dense id.
            var node = new NodeId(0);
            var b = cell.AcquireLease("b", TimeSpan.FromMinutes(5));
            Assert.Equal(LeaseStatus.HeldByAnother, b.Status);   // restored, unexpired
            tmp.Time.Advance(TimeSpan.FromMinutes(6));
            var bLease = cell.AcquireLease("b", TimeSpan.FromMinutes(5)).Lease;
            var over = new Transaction(bLease);
            over.Add(new Claim(new TaskId(2, 0), node, new ResourceVector(600, 1), 0, batch));
            Assert.Equal(ClaimStatus.QuotaExceeded, cell.Commit(over).Detach()[0]);
            Assert.Equal(TenantOpStatus.Ok, cell.CreateTenant("third", null, out var third));
            Assert.Equal(new TenantId(3), third);
            // A's key belongs to A: B sending it is a new transaction; A (after taking its identity back) gets a replay.
            var fromB = new Transaction(bLease) { Key = key };
            fromB.Add(new Claim(new TaskId(1, 0), node, new ResourceVector(1500, 100), 0, batch));
            var rb = cell.Commit(fromB).Detach();
            Assert.False(rb.Replayed);
            var aLease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
            var fromA = new Transaction(aLease) { Key = key };
            fromA.Add(new Claim(new TaskId(1, 0), node, new ResourceVector(1500, 100), 0, batch));
            var ra = cell.Commit(fromA).Detach();
            Assert.True(ra.Replayed);
            Assert.Equal(TransactionStatus.Committed, ra.Status);
        }
    }
}
