using System.Buffers.Binary;
using Omega.Storage.Log;

namespace Omega.Storage.State;

/// <summary>
/// The compact checkpoint (issue 15): every record of the FasterKV store of record at a checkpoint, written beside the
/// FASTER checkpoint as <c>checkpoints/omega-compact.&lt;token&gt;</c> in a flat binary layout that recovery reads
/// straight into the cell instead of recovering and scanning FasterKV's log (the largest part of recovering 10M bindings).
/// </summary>
/// <remarks>
/// <para>Layout (little-endian; docs/storage.md, "Compact checkpoint"): a 64-byte header, then the bindings as fixed
/// 64-byte records in blocks of <see cref="BlockRecords"/>, then the other entries (<c>flags:u8 keyLength:i32
/// valueLength:i32 key value</c>), then one CRC-32C per binding block. The header carries the cell version and journal
/// sequence the file reflects (they must equal the manifest's position) and its own CRC; the entry section has one CRC.</para>
/// <para>Records are in the store log's address order, tombstones included, so loading them with upsert semantics in
/// file order reproduces exactly what the full scan reproduces (a task bound, released and bound again appears three
/// times, the last wins). Keys of different kinds never collide, so the two sections may be read one after the other.</para>
/// <para>Why not a per-node file of live bindings only: FasterKV cannot tell which log records are live without a
/// lookup per record or a temporary store as large as the log; the address-order dump needs neither and costs one
/// sequential pass on the checkpointer thread.</para>
/// <para>The file is NOT listed in the manifest: a damaged compact file must make recovery fall back to the full
/// scan (with a warning), never refuse the store, and the FASTER checkpoint beside it is the authority.</para>
/// </remarks>
internal static class CompactCheckpoint
{
    public const int HeaderSize = 64;
    public const int BindingSize = 64;
    public const int BlockRecords = 1 << 14;   // 1 MiB per block: one CRC each, verified in parallel
    private const uint Magic = 0x4B434D4F;       // "OMCK"
    private const int FormatVersion = 2;       // 2 adds the per-node counts; 1 (no counts) is still read
    private const int MaxCountedNodes = 1 << 24;
    private const byte TombstoneFlag = 1;

    /// <summary>
    /// The fields of a compact checkpoint's header. <see cref="CountedNodes"/>: the length of the per-node count table
    /// (format 2; 0 in format 1, which has none).
    /// </summary>
    public readonly record struct Header(long CellVersion, long Sequence, long Bindings, long Entries, long EntryBytes, uint EntryCrc, int CountedNodes = 0, int Format = FormatVersion)
    {
        public long BindingBlocks => (Bindings + BlockRecords - 1) / BlockRecords;

        public long CountTableOffset => HeaderSize + Bindings * BindingSize + EntryBytes + 4 * BindingBlocks;

        public long FileLength => CountTableOffset + (Format >= 2 ? 4L * CountedNodes + 4 : 0);
    }

    /// <summary>Writes a compact checkpoint; the caller hands the store's records in address order.</summary>
    public sealed class Writer : IDisposable
    {
        private readonly string _path;
        private readonly string _tmp;
        private readonly string _entriesTmp;
        private readonly FileStream _file;
        private readonly FileStream _entries;
        private readonly List<uint> _blockCrcs = new();
        // The binding block being filled: written and checksummed once per 1 MiB block instead of once per 64-byte
        // record (the compact pass runs at every checkpoint; per-record stream writes and CRC calls were most of its
        // own CPU beside FASTER's iterator).
        private readonly byte[] _block = new byte[BlockRecords * BindingSize];
        private int _inBlock;
        private readonly byte[] _entryHead = new byte[9];
        // Binding records (not releases) per node, for the reader to size each node's list once (format 2).
        private int[] _nodeCounts = new int[1024];
        private int _countedNodes;
        private long _bindings;
        private long _entryCount;
        private uint _entryCrc;
        private bool _done;

        public Writer(string path)
        {
            _path = path;
            _tmp = path + ".tmp";
            _entriesTmp = path + ".entries.tmp";
            _file = new FileStream(_tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
            _entries = new FileStream(_entriesTmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
            _file.Write(new byte[HeaderSize]);
        }

        /// <summary>Adds one store record (key and value in the layouts of docs/storage.md).</summary>
        public void Add(bool tombstone, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
        {
            if (key.Length == 13 && key[0] == (byte)EntryKind.Allocation && (tombstone || value.Length == 52))
            {
                // job:i64 index:i32 node:i32 (-1 = released) then the stored value's resources, tenant, priority, generation.
                var r = _block.AsSpan(_inBlock * BindingSize, BindingSize);
                key.Slice(1, 12).CopyTo(r);
                if (tombstone)
                {
                    r[12..].Clear();
                    BinaryPrimitives.WriteInt32LittleEndian(r[12..], -1);
                }
                else
                {
                    value.Slice(0, 4).CopyTo(r[12..]);     // node
                    value.Slice(4, 48).CopyTo(r[16..]);    // resources(32) tenant(4) priority(4) generation(8)
                    int node = BinaryPrimitives.ReadInt32LittleEndian(value);
                    if ((uint)node < MaxCountedNodes)
                    {
                        if (node >= _nodeCounts.Length) Array.Resize(ref _nodeCounts, Math.Max(node + 1, _nodeCounts.Length * 2));
                        _nodeCounts[node]++;
                        _countedNodes = Math.Max(_countedNodes, node + 1);
                    }
                }
                _bindings++;
                if (++_inBlock == BlockRecords) FlushBlock();
                return;
            }
            _entryHead[0] = tombstone ? TombstoneFlag : (byte)0;
            BinaryPrimitives.WriteInt32LittleEndian(_entryHead.AsSpan(1), key.Length);
            BinaryPrimitives.WriteInt32LittleEndian(_entryHead.AsSpan(5), tombstone ? 0 : value.Length);
            _entries.Write(_entryHead);
            _entries.Write(key);
            if (!tombstone) _entries.Write(value);
            _entryCrc = Crc32C.Compute(_entryHead, _entryCrc);
            _entryCrc = Crc32C.Compute(key, _entryCrc);
            if (!tombstone) _entryCrc = Crc32C.Compute(value, _entryCrc);
            _entryCount++;
        }

        // Writes the filled part of the current binding block and records its CRC (a block is complete, or the last one).
        private void FlushBlock()
        {
            var span = _block.AsSpan(0, _inBlock * BindingSize);
            _file.Write(span);
            _blockCrcs.Add(Crc32C.Compute(span));
            _inBlock = 0;
        }

        /// <summary>Finishes the file at the given position, flushes it to the device and renames it into place.</summary>
        public void Complete(long cellVersion, long sequence)
        {
            if (_inBlock > 0) FlushBlock();
            long entryBytes = _entries.Length;
            _entries.Position = 0;
            _entries.CopyTo(_file);
            Span<byte> crc = stackalloc byte[4];
            foreach (var c in _blockCrcs)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(crc, c);
                _file.Write(crc);
            }
            // The per-node count table and its CRC (format 2).
            var table = new byte[4 * _countedNodes];
            for (int i = 0; i < _countedNodes; i++) BinaryPrimitives.WriteInt32LittleEndian(table.AsSpan(4 * i), _nodeCounts[i]);
            _file.Write(table);
            BinaryPrimitives.WriteUInt32LittleEndian(crc, Crc32C.Compute(table));
            _file.Write(crc);
            Span<byte> header = stackalloc byte[HeaderSize];
            WriteHeader(header, new Header(cellVersion, sequence, _bindings, _entryCount, entryBytes, _entryCrc, _countedNodes));
            _file.Position = 0;
            _file.Write(header);
            _file.Flush(flushToDisk: true);
            _file.Dispose();
            File.Move(_tmp, _path, overwrite: true);
            _done = true;
        }

        public void Dispose()
        {
            _entries.Dispose();
            _file.Dispose();
            if (!_done)
            {
                try { File.Delete(_tmp); }
                catch (IOException) { /* a leftover .tmp is ignored by recovery and deleted with older checkpoints */ }
            }
        }
    }

    public static void WriteHeader(Span<byte> h, Header x)
    {
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(h[4..], x.Format);
        BinaryPrimitives.WriteInt64LittleEndian(h[8..], x.CellVersion);
        BinaryPrimitives.WriteInt64LittleEndian(h[16..], x.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(h[24..], x.Bindings);
        BinaryPrimitives.WriteInt64LittleEndian(h[32..], x.Entries);
        BinaryPrimitives.WriteInt64LittleEndian(h[40..], x.EntryBytes);
        BinaryPrimitives.WriteInt32LittleEndian(h[48..], BlockRecords);
        BinaryPrimitives.WriteUInt32LittleEndian(h[52..], x.EntryCrc);
        if (x.Format >= 2) BinaryPrimitives.WriteInt32LittleEndian(h[56..], x.CountedNodes);
        BinaryPrimitives.WriteUInt32LittleEndian(h[60..], Crc32C.Compute(h[..60]));
    }

    /// <summary>
    /// Checks a compact checkpoint completely before anything of it is used: the header (magic, format, its CRC, the
    /// position it reflects, the file length it implies), every binding block's CRC and the entry section's CRC. The
    /// blocks are checked on two threads (the caller and one dedicated thread, never a pool thread) for large files.
    /// Returns null when the file may be loaded, else why not (recovery then falls back to the full scan).
    /// </summary>
    public static string? Verify(string path, long cellVersion, long sequence, out Header header) => Verify(path, cellVersion, sequence, out header, out _);

    /// <summary>As <see cref="Verify(string, long, long, out Header)"/>; also returns the per-node counts (null in format 1).</summary>
    public static string? Verify(string path, long cellVersion, long sequence, out Header header, out int[]? nodeCounts)
    {
        header = default;
        nodeCounts = null;
        if (!File.Exists(path)) return "absent";
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        Span<byte> h = stackalloc byte[HeaderSize];
        if (f.Length < HeaderSize || f.ReadAtLeast(h, HeaderSize, throwOnEndOfStream: false) < HeaderSize) return "shorter than its header";
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != Magic) return "bad magic";
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[60..]) != Crc32C.Compute(h[..60])) return "header fails its checksum";
        int format = BinaryPrimitives.ReadInt32LittleEndian(h[4..]);
        if (format is not (1 or FormatVersion)) return $"format {format} is not 1 or {FormatVersion}";
        if (BinaryPrimitives.ReadInt32LittleEndian(h[48..]) != BlockRecords) return "unexpected block size";
        int counted = format >= 2 ? BinaryPrimitives.ReadInt32LittleEndian(h[56..]) : 0;
        if (counted < 0 || counted > MaxCountedNodes) return "impossible node count table";
        header = new Header(BinaryPrimitives.ReadInt64LittleEndian(h[8..]), BinaryPrimitives.ReadInt64LittleEndian(h[16..]), BinaryPrimitives.ReadInt64LittleEndian(h[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(h[32..]), BinaryPrimitives.ReadInt64LittleEndian(h[40..]), BinaryPrimitives.ReadUInt32LittleEndian(h[52..]), counted, format);
        if (header.CellVersion != cellVersion || header.Sequence != sequence)
            return $"it reflects version {header.CellVersion} sequence {header.Sequence}, the checkpoint {cellVersion}/{sequence}";
        if (header.Bindings < 0 || header.Entries < 0 || header.EntryBytes < 0 || header.Bindings > int.MaxValue) return "negative or impossible counts";
        if (f.Length != header.FileLength) return $"{f.Length} bytes, its header implies {header.FileLength}";
        long blocks = header.BindingBlocks;
        var expected = new byte[4 * blocks];
        RandomAccess.Read(f.SafeFileHandle, expected, HeaderSize + header.Bindings * BindingSize + header.EntryBytes);
        var hdr = header;
        string? failure = null;
        void Check(int first)
        {
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(BlockRecords * BindingSize);
            try
            {
                for (long b = first; b < blocks && Volatile.Read(ref failure) is null; b += 2)
                {
                    long start = b * BlockRecords;
                    int n = (int)Math.Min(BlockRecords, hdr.Bindings - start) * BindingSize;
                    var span = buffer.AsSpan(0, n);
                    if (RandomAccess.Read(f.SafeFileHandle, span, HeaderSize + start * BindingSize) != n) { Interlocked.CompareExchange(ref failure, $"binding block {b} is short", null); return; }
                    if (Crc32C.Compute(span) != BinaryPrimitives.ReadUInt32LittleEndian(expected.AsSpan((int)(4 * b))))
                        Interlocked.CompareExchange(ref failure, $"binding block {b} fails its checksum", null);
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        if (blocks < 2)
        {
            Check(0);
            Check(1);
        }
        else
        {
            Exception? helperError = null;
            var helper = new Thread(() =>
            {
                try { Check(1); }
#pragma warning disable CA1031 // carried to the opening thread and rethrown there
                catch (Exception e) { helperError = e; }
#pragma warning restore CA1031
            }) { IsBackground = true, Name = "omega-compact-verify" };
            helper.Start();
            Check(0);
            helper.Join();
            if (helperError is not null) throw new IOException($"verifying {path}: {helperError.Message}", helperError);
        }
        if (failure is not null) return failure;
        uint crc = 0;
        var chunk = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            long at = HeaderSize + header.Bindings * BindingSize, end = at + header.EntryBytes;
            while (at < end)
            {
                int n = RandomAccess.Read(f.SafeFileHandle, chunk.AsSpan(0, (int)Math.Min(chunk.Length, end - at)), at);
                if (n <= 0) return "entry section is short";
                crc = Crc32C.Compute(chunk.AsSpan(0, n), crc);
                at += n;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(chunk);
        }
        if (crc != header.EntryCrc) return "entry section fails its checksum";
        if (format >= 2)
        {
            var table = new byte[4 * counted + 4];
            if (RandomAccess.Read(f.SafeFileHandle, table, header.CountTableOffset) != table.Length) return "node count table is short";
            if (Crc32C.Compute(table.AsSpan(0, 4 * counted)) != BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(4 * counted))) return "node count table fails its checksum";
            var counts = new int[counted];
            long sum = 0;
            for (int i = 0; i < counted; i++)
            {
                counts[i] = BinaryPrimitives.ReadInt32LittleEndian(table.AsSpan(4 * i));
                if (counts[i] < 0) return "negative node count";
                sum += counts[i];
            }
            // Counts are of binding records, so they can never exceed them (a bound a sizing hint must respect).
            if (sum > header.Bindings) return "node counts exceed the binding records";
            nodeCounts = counts;
        }
        return null;
    }

    /// <summary>Receives every binding record of a verified file (node -1 = a tombstone) in file order.</summary>
    public delegate void BindingSink(ReadOnlySpan<byte> record);

    /// <summary>Receives every other entry of a verified file in file order.</summary>
    public delegate void EntrySink(bool tombstone, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);

    /// <summary>
    /// Reads a file that <see cref="Verify(string, long, long, out Header, out int[])"/> accepted. The bindings are read in 1 MiB blocks by a dedicated reader
    /// thread one block ahead of the caller (double-buffered), so the disk read overlaps the restorer's work.
    /// <paramref name="bindingsDone"/> runs after the last binding and before the first other entry.
    /// </summary>
    public static void Read(string path, Header header, BindingSink binding, EntrySink entry, Action? bindingsDone = null)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        long blocks = header.BindingBlocks;
        byte[][] buffers = { new byte[BlockRecords * BindingSize], new byte[BlockRecords * BindingSize] };
        using var filled = new SemaphoreSlim(0);
        using var free = new SemaphoreSlim(2);
        Exception? readError = null;
        var reader = new Thread(() =>
        {
            try
            {
                for (long b = 0; b < blocks; b++)
                {
                    free.Wait();
                    long start = b * BlockRecords;
                    int n = (int)Math.Min(BlockRecords, header.Bindings - start) * BindingSize;
                    int got = RandomAccess.Read(f.SafeFileHandle, buffers[b & 1].AsSpan(0, n), HeaderSize + start * BindingSize);
                    if (got != n) throw new IOException($"{path}: binding block {b} is short");
                    filled.Release();
                }
            }
#pragma warning disable CA1031 // carried to the opening thread and rethrown there
            catch (Exception e)
            {
                readError = e;
                filled.Release();
            }
#pragma warning restore CA1031
        }) { IsBackground = true, Name = "omega-compact-read" };
        reader.Start();
        try
        {
            for (long b = 0; b < blocks; b++)
            {
                filled.Wait();
                if (readError is not null) break;
                long start = b * BlockRecords;
                int n = (int)Math.Min(BlockRecords, header.Bindings - start);
                var buffer = buffers[b & 1];
                for (int i = 0; i < n; i++) binding(buffer.AsSpan(i * BindingSize, BindingSize));
                free.Release();
            }
        }
        finally
        {
            // Unblock a reader still waiting for a free buffer (the caller failed): it finishes its loop and exits.
            free.Release((int)Math.Min(int.MaxValue - 2, blocks + 2));
            reader.Join();
        }
        if (readError is not null) throw new IOException($"reading {path}: {readError.Message}", readError);
        bindingsDone?.Invoke();
        var section = new byte[Math.Min(header.EntryBytes, 1 << 20)];
        long at = HeaderSize + header.Bindings * BindingSize, end = at + header.EntryBytes;
        // Entries are read through a buffer that grows to the largest entry (objects can be a few hundred KB).
        byte[] buf = section;
        int have = 0, pos = 0;
        for (long e = 0; e < header.Entries; e++)
        {
            if (!Ensure(9)) throw new InvalidDataException($"{path}: entry {e} is cut");
            bool tombstone = (buf[pos] & TombstoneFlag) != 0;
            int kl = BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan(pos + 1)), vl = BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan(pos + 5));
            if (kl <= 0 || vl < 0 || (long)kl + vl > header.EntryBytes) throw new InvalidDataException($"{path}: entry {e} has impossible lengths");
            if (!Ensure(9 + kl + vl)) throw new InvalidDataException($"{path}: entry {e} is cut");
            entry(tombstone, buf.AsSpan(pos + 9, kl), buf.AsSpan(pos + 9 + kl, vl));
            pos += 9 + kl + vl;
        }

        bool Ensure(int need)
        {
            if (have - pos >= need) return true;
            // Move what is left to the front, grow if one entry needs more, refill.
            if (need > buf.Length) Array.Resize(ref buf, need);
            Buffer.BlockCopy(buf, pos, buf, 0, have - pos);
            have -= pos;
            pos = 0;
            while (have < need && at < end)
            {
                int n = RandomAccess.Read(f.SafeFileHandle, buf.AsSpan(have, (int)Math.Min(buf.Length - have, end - at)), at);
                if (n <= 0) return false;
                have += n;
                at += n;
            }
            return have >= need;
        }
    }
}
