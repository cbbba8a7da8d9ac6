using System.Buffers;
using System.Collections.Concurrent;

namespace Omega.Transport;

/// <summary>
/// The memory pool behind every connection's input and output pipe: pinned 8 KiB blocks kept in one process-wide free
/// list, each block its own reusable <see cref="IMemoryOwner{T}"/>.
/// </summary>
/// <remarks>
/// Why not the pipes' default (<c>MemoryPool&lt;byte&gt;.Shared</c>, backed by <c>ArrayPool&lt;byte&gt;.Shared</c>): that pool
/// keeps a few dozen arrays per size per core, while 1,000 agent connections hold two segments each at any moment, so
/// on the bind path nearly every segment the pipes asked for was a fresh array (measured with the bindpath
/// bench's allocation sampler: ~345 bytes of byte[] per binding on the server and ~277 in the agent fleet) and a fresh
/// owner object. Blocks are pinned (allocated on the pinned object heap) because sockets pin them for every I/O anyway.
/// The free list keeps at most <see cref="MaxRetainedBlocks"/> blocks (4 MiB); beyond that a returned block is left to
/// the GC, so a burst (40 connections closed with 900 KiB each, in BudgetTests) does not stay held. Blocks in use are
/// not in the free list; it only absorbs the churn between a pipe returning a block and another renting one, which is
/// small next to the blocks in use.
/// </remarks>
internal sealed class BlockMemoryPool : MemoryPool<byte>
{
    /// <summary>
    /// The block size: the receive loop asks its pipe for 8 KiB per socket read (a smaller block would send every read
    /// to the array pool); a write of a few hundred bytes takes a whole block too, which the pipe then fills with the
    /// following frames.
    /// </summary>
    public const int BlockSize = 8192;

    /// <summary>Blocks kept for reuse at most (4 MiB).</summary>
    public const int MaxRetainedBlocks = 512;

    private readonly ConcurrentQueue<Block> _free = new();
    private int _retained;

    /// <summary>The process-wide pool every connection's pipes use.</summary>
    public static BlockMemoryPool Instance { get; } = new();

    /// <inheritdoc />
    public override int MaxBufferSize => BlockSize;

    /// <summary>Blocks allocated in total (a test and diagnostics figure: it stops growing once the pool is warm).</summary>
    public long BlocksAllocated => Volatile.Read(ref _allocated);

    private long _allocated;

    /// <inheritdoc />
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        // A pipe asks this pool only for sizes up to MaxBufferSize; anything larger is served by the array pool.
        if (minBufferSize > BlockSize) return new OversizeOwner(minBufferSize);
        if (_free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _retained);
            block.Rented = 1;
            return block;
        }
        Interlocked.Increment(ref _allocated);
        return new Block(this) { Rented = 1 };
    }

    private void Return(Block block)
    {
        if (Interlocked.Increment(ref _retained) > MaxRetainedBlocks)
        {
            Interlocked.Decrement(ref _retained);
            return;
        }
        _free.Enqueue(block);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        // Process-wide and never disposed; blocks in use stay valid.
    }

    private sealed class Block(BlockMemoryPool pool) : IMemoryOwner<byte>
    {
        private readonly byte[] _array = GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);

        // 1 while rented: a second Dispose of the same rental is ignored instead of handing one block to two owners.
        public int Rented;

        public Memory<byte> Memory => _array;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref Rented, 0) == 1) pool.Return(this);
        }
    }

    private sealed class OversizeOwner(int size) : IMemoryOwner<byte>
    {
        public Memory<byte> Memory { get; } = new byte[size];

        public void Dispose()
        {
        }
    }
}
