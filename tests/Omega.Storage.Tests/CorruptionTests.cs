using System.Text;
using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>Damaged files on real FASTER directories: a torn tail is discarded with a warning, anything else refuses to open by name.</summary>
public sealed class CorruptionTests
{
    private static readonly byte[] ChunkMagic = Encoding.ASCII.GetBytes("OMJ1");

    private static string JournalSegment(TempStore tmp) => Path.Combine(tmp.Directory, "journal", "journal.log.0");

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

    /// <summary>Flips one payload byte of the chunk at <paramref name="offset"/>, keeping FasterLog's own entry header intact.</summary>
    private static void Damage(string path, int offset)
    {
        var bytes = File.ReadAllBytes(path);
        int payloadLength = BitConverter.ToInt32(bytes, offset + 16);
        Assert.True(payloadLength > 0);
        bytes[offset + 24 + payloadLength - 1] ^= 0x5A;
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public async Task Torn_final_chunk_is_discarded_with_a_warning_and_the_journal_continues()
    {
        using var tmp = new TempStore();
        var work = new Workload(3);
        string beforeLastGroup;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            work.Setup(store.Cell);
            work.Run(store.Cell, 200);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            beforeLastGroup = CellDump.Of(store.Cell);
            // One more mutation, made durable on its own: the final group of the journal.
            store.Cell.SetTenantQuota(new TenantId(2), new ResourceVector(1, 1));
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
        }
        var segment = JournalSegment(tmp);
        var chunks = ChunkOffsets(File.ReadAllBytes(segment));
        Damage(segment, chunks[^1]);

        string afterMore;
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            Assert.Equal(beforeLastGroup, CellDump.Of(store.Cell));
            var warning = Assert.Single(store.Recovery.Warnings);
            Assert.Contains("torn final journal chunk", warning, StringComparison.Ordinal);
            Assert.Contains(segment, warning, StringComparison.Ordinal);
            Assert.Contains(warning, tmp.Warnings);
            // The journal continues after the discarded chunk.
            work.Run(store.Cell, 100);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
            afterMore = CellDump.Of(store.Cell);
        }
        using (var store = tmp.Open())
        {
            // The damaged chunk is now in the middle, followed by the chunk that continues the sequence: skipped again.
            Assert.Equal(afterMore, CellDump.Of(store.Cell));
            Assert.Contains(store.Recovery.Warnings, w => w.Contains("earlier open discarded", StringComparison.Ordinal));
            Assert.Empty(store.Cell.Audit());
            await store.CheckpointAsync();
        }
        using (var store = tmp.Open())
        {
            Assert.Equal(afterMore, CellDump.Of(store.Cell));
            Assert.True(store.Recovery.FromCheckpoint);
        }
    }

    [Fact]
    public async Task Damage_in_the_middle_of_the_journal_refuses_to_open_and_names_the_file()
    {
        using var tmp = new TempStore();
        var work = new Workload(4);
        using (var store = tmp.Open(o => o.CheckpointOnDispose = false))
        {
            work.Setup(store.Cell);
            for (int i = 0; i < 5; i++)
            {
                work.Run(store.Cell, 50);
                await store.WaitForDurableAsync(store.Cell.JournalSequence);
            }
        }
        var segment = JournalSegment(tmp);
        var chunks = ChunkOffsets(File.ReadAllBytes(segment));
        Assert.True(chunks.Count >= 5);
        Damage(segment, chunks[1]);
        var e = Assert.Throws<StorageCorruptionException>(() => tmp.Open());
        Assert.Equal(segment, e.FilePath);
        Assert.Contains(segment, e.Message, StringComparison.Ordinal);
        Assert.Contains("middle", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_damaged_checkpoint_file_refuses_to_open_and_names_the_file()
    {
        using var tmp = new TempStore();
        var work = new Workload(5);
        using (var store = tmp.Open())
        {
            work.Setup(store.Cell);
            work.Run(store.Cell, 300);
            await store.WaitForDurableAsync(store.Cell.JournalSequence);
        } // checkpoint on dispose
        string checkpoints = Path.Combine(tmp.Directory, "checkpoints");
        var manifest = Assert.Single(Directory.GetFiles(checkpoints, "omega-checkpoint.*.manifest"));
        var files = File.ReadAllLines(manifest).Where(l => l.StartsWith("file ", StringComparison.Ordinal)).Select(l => l.Split(' ', 4)[3]).ToList();
        Assert.NotEmpty(files);
        foreach (var rel in files)
        {
            string path = Path.Combine(checkpoints, rel);
            var original = File.ReadAllBytes(path);
            if (original.Length == 0) continue;
            var bytes = (byte[])original.Clone();
            bytes[bytes.Length / 2] ^= 0x01;
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<StorageCorruptionException>(() => tmp.Open());
            Assert.Equal(path, e.FilePath);
            Assert.Contains(path, e.Message, StringComparison.Ordinal);
            File.WriteAllBytes(path, original);
        }
        // Restored files: it opens again.
        using var again = tmp.Open();
        Assert.True(again.Recovery.FromCheckpoint);
    }
}
