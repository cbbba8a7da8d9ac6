using System.Buffers.Binary;
using FASTER.core;
using Omega.Cells;

namespace Omega.Storage.Log;

/// <summary>
/// Reads the journal's committed chunks from FasterLog between two addresses, checks every chunk's checksum and the
/// chunk sequence, reassembles the record stream and hands out whole records.
/// </summary>
/// <remarks>
/// Damage handling (docs/storage.md): a chunk that fails its checksum at the very end of the committed log is a torn
/// final write: it is discarded with a warning (with any partial record). A damaged chunk followed by a valid chunk
/// that continues the sequence is such a tail discarded by an earlier open, and is skipped again. Anything else (a
/// damaged chunk followed by a chunk that does not continue the sequence, a gap, a record cut at a group boundary)
/// fails with <see cref="StorageCorruptionException"/> naming the segment file.
/// </remarks>
internal sealed class JournalReader
{
    public delegate void RecordHandler(ReadOnlySpan<byte> record);

    private readonly FasterLog _log;
    private readonly string _logBasePath;
    private readonly int _segmentBits;
    private byte[] _carry = new byte[4096];
    private int _carryLength;

    public JournalReader(FasterLog log, string logBasePath, int segmentBits)
    {
        _log = log;
        _logBasePath = logBasePath;
        _segmentBits = segmentBits;
    }

    /// <summary>The sequence of the last valid chunk read.</summary>
    public long LastChunkSequence { get; private set; }

    /// <summary>Torn chunks discarded during the last read.</summary>
    public List<string> Warnings { get; } = new();

    public string SegmentFile(long address) => $"{_logBasePath}.{address >> _segmentBits}";

    /// <summary>Reads chunks in [<paramref name="from"/>, <paramref name="until"/>); returns the records delivered.</summary>
    public long Read(long from, long until, long lastChunkSequence, RecordHandler onRecord)
    {
        LastChunkSequence = lastChunkSequence;
        _carryLength = 0;
        long delivered = 0;
        if (from >= until) return 0;
        long badAddress = -1;
        int stalls = 0;
        using var iter = _log.Scan(from, until);
        while (true)
        {
            byte[] entry;
            int length;
            long address, next;
            try
            {
                if (!iter.GetNext(out entry, out length, out address, out next))
                {
                    // False means "nothing available yet" as well as "done": a page may still be loading from disk.
                    if (iter.NextAddress >= until) break;
                    if (++stalls > 1000) throw new StorageCorruptionException($"journal scan stalled at address {iter.NextAddress} before the committed end {until} in {SegmentFile(iter.NextAddress)}", SegmentFile(iter.NextAddress));
                    if (!iter.WaitAsync().AsTask().GetAwaiter().GetResult()) break;
                    continue;
                }
                stalls = 0;
            }
            catch (Exception e) when (e is FasterException or IOException or InvalidOperationException or OverflowException or ArgumentException)
            {
                throw new StorageCorruptionException($"journal unreadable near address {iter.NextAddress} in {SegmentFile(iter.NextAddress)}: {e.Message}", SegmentFile(iter.NextAddress), e);
            }
            if (!ChunkFormat.TryRead(entry.AsSpan(0, length), out long seq, out int flags, out var payload))
            {
                if (badAddress < 0) badAddress = address;
                continue;
            }
            if (badAddress >= 0)
            {
                if (seq != LastChunkSequence + 1)
                    throw new StorageCorruptionException($"journal chunk at address {badAddress} in {SegmentFile(badAddress)} fails its checksum and is followed by valid chunks (next valid chunk {seq}, expected {LastChunkSequence + 1}): corruption in the middle of the journal", SegmentFile(badAddress));
                // A tail discarded by an earlier open; the journal continued after it with the next sequence number.
                Warnings.Add($"skipped a damaged chunk at address {badAddress} in {SegmentFile(badAddress)} that an earlier open discarded as a torn tail");
                _carryLength = 0;
                badAddress = -1;
            }
            if (LastChunkSequence != 0 && seq != LastChunkSequence + 1)
                throw new StorageCorruptionException($"journal gap at address {address} in {SegmentFile(address)}: chunk {seq} follows chunk {LastChunkSequence}", SegmentFile(address));
            LastChunkSequence = seq;
            delivered += Consume(payload, onRecord);
            if ((flags & ChunkFormat.LastInGroup) != 0 && _carryLength != 0)
                throw new StorageCorruptionException($"journal chunk {seq} at address {address} in {SegmentFile(address)} ends its group inside a record", SegmentFile(address));
        }
        if (badAddress >= 0)
        {
            Warnings.Add($"discarded a torn final journal chunk at address {badAddress} in {SegmentFile(badAddress)} (checksum mismatch){(_carryLength > 0 ? $" and a partial record of {_carryLength} bytes" : "")}");
            _carryLength = 0;
        }
        else if (_carryLength != 0)
        {
            Warnings.Add($"discarded a partial final record of {_carryLength} bytes at the end of the journal in {SegmentFile(until)}");
            _carryLength = 0;
        }
        return delivered;
    }

    private long Consume(ReadOnlySpan<byte> payload, RecordHandler onRecord)
    {
        long n = 0;
        if (_carryLength > 0)
        {
            // Complete the record carried over from the previous chunk of the group.
            EnsureCarry(_carryLength + payload.Length);
            payload.CopyTo(_carry.AsSpan(_carryLength));
            _carryLength += payload.Length;
            var all = _carry.AsSpan(0, _carryLength);
            int used = ConsumeWhole(all, onRecord, ref n);
            int rest = all.Length - used;
            all[used..].CopyTo(_carry);
            _carryLength = rest;
            return n;
        }
        int consumed = ConsumeWhole(payload, onRecord, ref n);
        if (consumed < payload.Length)
        {
            EnsureCarry(payload.Length - consumed);
            payload[consumed..].CopyTo(_carry);
            _carryLength = payload.Length - consumed;
        }
        return n;
    }

    private static int ConsumeWhole(ReadOnlySpan<byte> s, RecordHandler onRecord, ref long n)
    {
        int pos = 0;
        while (s.Length - pos >= 4)
        {
            int len = BinaryPrimitives.ReadInt32LittleEndian(s[pos..]);
            if (len < 0) throw new StorageCorruptionException($"negative record length {len} in a checksummed chunk", "");
            if (s.Length - pos - 4 < len) break;
            var element = s.Slice(pos + 4, len);
            if (CellBatch.IsFrame(element))
            {
                // A batch frame arrives only whole (the check above), so its records are applied all or none.
                try
                {
                    CellBatch.Validate(element);
                }
                catch (FormatException e)
                {
                    throw new StorageCorruptionException($"malformed batch frame in a checksummed chunk: {e.Message}", "", e);
                }
                foreach (var record in CellBatch.Records(element))
                {
                    onRecord(record);
                    n++;
                }
            }
            else
            {
                onRecord(element);
                n++;
            }
            pos += 4 + len;
        }
        return pos;
    }

    private void EnsureCarry(int n)
    {
        if (_carry.Length < n) Array.Resize(ref _carry, Math.Max(n, _carry.Length * 2));
    }
}
