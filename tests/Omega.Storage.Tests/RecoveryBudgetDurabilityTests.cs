using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 13: recovery budgets (record and store entry 30) and failover homes (31) survive a restart through journal
/// replay and through a checkpoint, so the budget's consumption — derived from the durable bindings — and the
/// commit-time gate are the same after a kill.
/// </summary>
public sealed class RecoveryBudgetDurabilityTests
{
    private static ResourceVector Cpu(long m) => new(m, 0);

    private static TaskId Task(long group, int serial) => new(new JobId((group << 20) | (uint)serial), 0);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Budgets_homes_and_their_consumption_survive_reopen_and_the_gate_still_holds(bool checkpointBetween)
    {
        using var tmp = new TempStore();
        RecoveryBudgetUsage before;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            Assert.Null(Topology.Merge("r-b", "", null, out var labels));
            var b0 = cell.AddNode(new NodeSpec("b0", Cpu(8000), "fd", labels));
            var t1 = cell.CreateTenant("t1");
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-b", Cpu(4000), 1000, out _));
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-c", Cpu(1000), 10, out _));
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(1, 20, "r-a", out _));
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(3, 20, "r-c", out _));
            if (checkpointBetween) await store.CheckpointAsync();
            // Cleared after the checkpoint: must be restored as gone.
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-c", null, 0, out _));
            Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(3, 20, null, out _));
            var lease = cell.AcquireLease("s", TimeSpan.FromMinutes(10)).Lease;
            var tx = new Transaction(lease);
            tx.Add(new Claim(Task(1, 0), b0, Cpu(3000), 0, t1, 1000));   // failover: consumes
            tx.Add(new Claim(Task(2, 0), b0, Cpu(1000), 0, t1, 1000));   // r-b's own critical work (no home)
            Assert.Equal(TransactionStatus.Committed, (await store.CommitDurableAsync(tx)).Status);
            await store.WaitForDurableAsync(cell.JournalSequence);
            before = cell.GetRecoveryBudgetUsage("r-b")!.Value;
            Assert.Equal(Cpu(3000), before.Consumed);
        }
        using (var store = tmp.Open())
        {
            var cell = store.Cell;
            Assert.Empty(cell.Audit());
            var b = Assert.Single(cell.RecoveryBudgets);
            Assert.Equal(new CellRecoveryBudget("r-b", Cpu(4000), 1000), b);
            Assert.Equal("r-a", cell.GetFailoverHome(Task(1, 5).Job));
            Assert.Null(cell.GetFailoverHome(Task(3, 0).Job));
            var after = cell.GetRecoveryBudgetUsage("r-b")!.Value;
            Assert.Equal((before.Consumed, before.Consumers, before.Free, before.Reclaimable), (after.Consumed, after.Consumers, after.Free, after.Reclaimable));
            // Headroom 4000 free vs 1000 unconsumed budget: r-b's own critical work gets 3000 more, not 3001.
            cell.TryGetTenant("t1", out var t1);
            var lease = cell.AcquireLease("s2", TimeSpan.FromMinutes(10)).Lease;
            var tx = new Transaction(lease);
            tx.Add(new Claim(Task(2, 1), new NodeId(0), Cpu(3001), 0, t1, 1000));
            Assert.Equal(ClaimStatus.RecoveryBudgetHeld, cell.Commit(tx)[0]);
            tx.Reset(lease);
            tx.Add(new Claim(Task(2, 1), new NodeId(0), Cpu(3000), 0, t1, 1000));
            Assert.Equal(ClaimStatus.Applied, cell.Commit(tx)[0]);
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
        {
            Assert.Single(store.Cell.RecoveryBudgets);
            Assert.Equal(Cpu(3000), store.Cell.GetRecoveryBudgetUsage("r-b")!.Value.Consumed);
        }
    }
}
