using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>Issue 10, defect 7: an operator's domain-loss confirmation is a durable record, restored from the journal and from checkpoints.</summary>
public sealed class DomainLossDurabilityTests
{
    [Fact]
    public async Task Confirmations_survive_reopen_through_journal_replay_and_through_a_checkpoint_with_author_reason_and_time()
    {
        using var tmp = new TempStore();
        DomainLossConfirmation a, b;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            cell.AddNode(new NodeSpec("n0", ResourceVector.FromCoresAndGiB(4, 8), failureDomain: "rack-a"));
            cell.AddNode(new NodeSpec("n1", ResourceVector.FromCoresAndGiB(4, 8), failureDomain: "rack-b"));
            Assert.Equal(DomainLossStatus.Recorded, cell.ConfirmDomainLost("rack-a", "alice", "PDU failed, rack dark", out var ca));
            a = ca!;
            await store.WaitForVersionAsync(a.Version);
            // Into the store of record: the confirmation must come back from the checkpoint, not only from the journal.
            await store.CheckpointAsync();
            tmp.Time.Advance(TimeSpan.FromMinutes(3));
            Assert.Equal(DomainLossStatus.Recorded, cell.ConfirmDomainLost("rack-b", "bob", "switch replaced, rack gone", out var cb));
            b = cb!;
            await store.WaitForVersionAsync(b.Version);
            Assert.Equal(DomainLossStatus.AlreadyConfirmed, cell.ConfirmDomainLost("rack-a", "carol", "again", out var again));
            Assert.Equal("alice", again!.Author);
            Assert.Equal(DomainLossStatus.UnknownDomain, cell.ConfirmDomainLost("rack-z", "alice", "typo", out _));
            Assert.Equal(DomainLossStatus.Invalid, cell.ConfirmDomainLost("rack-a", "alice", " ", out _));
        }
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var losses = store.Cell.DomainLosses;
            Assert.Equal(2, losses.Count);
            Assert.Equal(a, losses.Single(d => d.Domain == "rack-a"));   // from the checkpoint
            Assert.Equal(b, losses.Single(d => d.Domain == "rack-b"));   // from the journal tail
            Assert.Equal(DomainLossStatus.Recorded, store.Cell.WithdrawDomainLoss("rack-a", "alice", "rack repaired", out long v));
            await store.WaitForVersionAsync(v);
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
        {
            Assert.Equal([b], store.Cell.DomainLosses);
            Assert.Null(store.Cell.GetDomainLoss("rack-a"));
        }
    }
}
