using System.Text;
using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// Issue 11: credentials, revocations and audit entries are security records in the cell's journal (kinds 20/21,
/// store entry 20), restored through journal replay and through the FasterKV store of record after a checkpoint.
/// </summary>
public sealed class AuthRecordDurabilityTests
{
    private static Dictionary<string, string> Records(Cell cell)
        => cell.GetAuthRecords().ToDictionary(kv => kv.Key, kv => Encoding.UTF8.GetString(kv.Value));

    [Fact]
    public async Task Security_records_survive_reopen_through_the_checkpoint_and_the_journal_tail_deletes_included()
    {
        using var tmp = new TempStore();
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            var cell = store.Cell;
            long version = cell.Version;
            Assert.True(cell.PutAuthRecord("c/aaaa", "credential a"u8));
            Assert.True(cell.PutAuthRecord("c/bbbb", "credential b"u8));
            Assert.True(cell.PutAuthRecord("a/0001", "audit 1"u8));
            Assert.Equal(version, cell.Version);   // security records are not cell changes a scheduler syncs on
            Assert.False(cell.PutAuthRecord("", "x"u8));
            Assert.False(cell.PutAuthRecord(new string('k', Cell.MaxAuthKeyLength + 1), "x"u8));
            await store.WaitForDurableAsync(cell.JournalSequence);
            // Into the store of record: these must come back from the checkpoint, not only from the journal.
            await store.CheckpointAsync();
            Assert.True(cell.PutAuthRecord("c/bbbb", "credential b, revoked"u8));
            Assert.True(cell.DeleteAuthRecord("a/0001"));
            Assert.False(cell.DeleteAuthRecord("a/0001"));
            Assert.True(cell.PutAuthRecord("a/0002", "audit 2"u8));
            await store.WaitForDurableAsync(cell.JournalSequence);
        }
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            Assert.True(store.Recovery.FromCheckpoint);
            Assert.Equal(new Dictionary<string, string> { ["c/aaaa"] = "credential a", ["c/bbbb"] = "credential b, revoked", ["a/0002"] = "audit 2" }, Records(store.Cell));
            Assert.True(store.Cell.DeleteAuthRecord("c/aaaa"));
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
            Assert.Equal(new Dictionary<string, string> { ["c/bbbb"] = "credential b, revoked", ["a/0002"] = "audit 2" }, Records(store.Cell));
    }
}
