using System.Buffers;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 15's per-frame allocation budgets on the bind path, in the steady state after a warm-up: the agent decodes a
/// binding push into a reused array, the binding feed reuses its chunks, and the transport pipes' block pool reuses
/// its blocks (and never hands one block to two owners).
/// </summary>
public sealed class BindPathAllocationTests
{
    private static ReadOnlySequence<byte> PushBody(int entries)
    {
        var list = new BindingEntry[entries];
        for (int i = 0; i < entries; i++) list[i] = new BindingEntry(BindingKind.Run, new TaskId(7, i), 40 + i, new ResourceVector(100, 1 << 20), 1, 2);
        var frame = Codec.FrameBytes(0, new Bindings { NodeId = 3, Version = 99, Entries = list });
        return new ReadOnlySequence<byte>(frame, Frame.PrefixLength + Frame.HeaderLength, frame.Length - Frame.PrefixLength - Frame.HeaderLength);
    }

    [Fact]
    public void Decoding_a_binding_push_into_the_agents_scratch_array_allocates_nothing_and_reads_every_entry()
    {
        var body = PushBody(16);
        var scratch = new BindingEntry[256];
        Assert.True(Bindings.TryDecodeInto(body, scratch, out var warm));
        long before = GC.GetAllocatedBytesForCurrentThread();
        long checksum = 0;
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(Bindings.TryDecodeInto(body, scratch, out var b));
            checksum += b.Entries.Length;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(16_000, checksum);
        Assert.Equal(99, warm.Version);
        for (int i = 0; i < 16; i++) Assert.Equal(new TaskId(7, i), warm.Entries.Span[i].Task);
        // A push larger than the scratch array still decodes whole (into its own array), and bad bytes are refused.
        Assert.True(Bindings.TryDecodeInto(PushBody(300), scratch, out var big));
        Assert.Equal(300, big.Entries.Length);
        Assert.False(Bindings.TryDecodeInto(new ReadOnlySequence<byte>(new byte[] { 0x83, 0x00 }), scratch, out _));
    }

    private static ReadOnlySequence<byte> ReportsBody(int reports)
    {
        var list = new ReportEntry[reports];
        for (int i = 0; i < reports; i++) list[i] = new ReportEntry(new TaskId(7, i), 40 + i, TaskState.Running, "");
        var frame = Codec.FrameBytes(0, new TaskReports { NodeId = 3, Reports = list });
        return new ReadOnlySequence<byte>(frame, Frame.PrefixLength + Frame.HeaderLength, frame.Length - Frame.PrefixLength - Frame.HeaderLength);
    }

    // prof15: the server decodes each agent's acknowledgement batch into its session's scratch array (it allocated one
    // report array per frame, ~40 bytes per binding in the bind-path bench).
    [Fact]
    public void Decoding_an_acknowledgement_batch_into_the_sessions_scratch_array_allocates_nothing_and_reads_every_report()
    {
        var body = ReportsBody(16);
        var scratch = new ReportEntry[64];
        Assert.True(TaskReports.TryDecodeInto(body, scratch, out var warm, out _));
        long before = GC.GetAllocatedBytesForCurrentThread();
        long checksum = 0;
        for (int i = 0; i < 1000; i++)
        {
            if (!TaskReports.TryDecodeInto(body, scratch, out var m, out _)) checksum = long.MinValue;
            checksum += m.Reports.Length;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(16_000, checksum);
        Assert.Equal(3, warm.NodeId);
        for (int i = 0; i < 16; i++)
        {
            var r = warm.Reports.Span[i];
            Assert.Equal((new TaskId(7, i), 40L + i, TaskState.Running), (r.Task, r.Generation, r.State));
        }
        // A batch larger than the scratch array still decodes whole (into its own array); bad bytes are refused with the
        // reason, as the plain decoder refuses them.
        Assert.True(TaskReports.TryDecodeInto(ReportsBody(300), scratch, out var big, out _));
        Assert.Equal(300, big.Reports.Length);
        Assert.Equal(299, big.Reports.Span[299].Task.Index);
        Assert.False(TaskReports.TryDecodeInto(new ReadOnlySequence<byte>(new byte[] { 0x83, 0x00 }), scratch, out _, out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void The_binding_feed_reuses_its_chunks_once_consumed()
    {
        using var cell = new Cell();
        var node = cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000_000, 1L << 50)));
        using var feed = new BindingFeed();
        var a = new Allocation(new TaskId(1, 0), node, new ResourceVector(1, 1), default, 0, 1);
        // Warm-up: fill and drain a few chunks (4,096 events each) so the spare chunk exists.
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 4096; i++) feed.OnBindingChanged(BindingChange.Bound, a, 1);
            while (feed.TryTake(long.MaxValue, out _)) { }
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        int taken = 0, wrong = 0;
        for (int round = 0; round < 20; round++)
        {
            for (int i = 0; i < 4096; i++) feed.OnBindingChanged(BindingChange.Bound, a, round + 2);
            while (feed.TryTake(long.MaxValue, out var e))
            {
                // Plain comparisons inside the measured loop: an xUnit assertion allocates.
                if (e.Version != round + 2) wrong++;
                taken++;
            }
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(20 * 4096, taken);
        Assert.Equal(0, wrong);
        // Without reuse this is 20 chunks of 4,096 events (several MB).
        Assert.True(allocated < 64 * 1024, $"allocated {allocated} bytes");
    }

    [Fact]
    public void The_pipes_block_pool_reuses_returned_blocks_and_ignores_a_second_return()
    {
        var pool = BlockMemoryPool.Instance;
        var warm = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 64; i++) warm.Add(pool.Rent(4096));
        foreach (var o in warm) o.Dispose();
        long allocated = pool.BlocksAllocated;
        // Another 64 rentals are served from the free list (other tests in this process may rent concurrently, so
        // allow their share, but far fewer than 64 new blocks).
        var again = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 64; i++) again.Add(pool.Rent(1));
        Assert.True(pool.BlocksAllocated - allocated < 32, $"{pool.BlocksAllocated - allocated} new blocks for 64 rentals after 64 returns");
        Assert.All(again, o => Assert.Equal(BlockMemoryPool.BlockSize, o.Memory.Length));
        // A double Dispose must not put one block in the free list twice (two owners writing one buffer).
        var first = again[0];
        first.Dispose();
        first.Dispose();
        var x = pool.Rent(1);
        var y = pool.Rent(1);
        Assert.NotSame(x, y);
        x.Memory.Span.Fill(1);
        y.Memory.Span.Fill(2);
        Assert.Equal(1, x.Memory.Span[0]);
        x.Dispose();
        y.Dispose();
        for (int i = 1; i < again.Count; i++) again[i].Dispose();
        // Sizes above a block are served outside the pool.
        using var big = pool.Rent(BlockMemoryPool.BlockSize + 1);
        Assert.True(big.Memory.Length > BlockMemoryPool.BlockSize);
    }
}
