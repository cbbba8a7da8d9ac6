using System.Buffers.Binary;
using System.Numerics;

namespace Omega.Cells;

/// <summary>
/// The journal's shape for a batch of records appended at once (issue 14: a commit combiner applies many transactions
/// under one acquisition of the commit lock and makes one journal append for all of them). A batch frame is
/// <code>
/// offset size field
///      0    1 frame kind 0xFF (<see cref="FrameKind"/>; never a <see cref="CellRecordKind"/>, whose first byte it shares)
///      1    1 format version (1)
///      2    2 reserved, 0
///      4    4 CRC-32C of bytes 8..end
///      8    4 record count N (at least 1)
///     12    4 body length L (bytes after the header)
///     16    8 sequence of the first record
///     24    8 cell version of the first record
///     32    8 cell version of the last record
///     40    L body: N times (length:u32, record) — each record exactly as a bare record (docs/storage.md)
/// </code>
/// The records' sequences are consecutive from the first; their cell versions are in order (each the previous one or
/// the next). A batch of one record is never framed: it is appended as the bare record, byte for byte today's format,
/// so journals written before batches exist read unchanged and the one-mutation path costs nothing more.
/// </summary>
/// <remarks>
/// A reader gets a frame as one element of the journal's record stream and either applies all of its records or, if
/// the element is cut off (a torn tail), none: a batch is never half applied. The CRC makes the frame self-checking
/// for readers that do not see the storage chunks' checksums (a replica, an exported stream).
/// </remarks>
public static class CellBatch
{
    /// <summary>The first byte of a batch frame. Reserved: no <see cref="CellRecordKind"/> may use it.</summary>
    public const byte FrameKind = 0xFF;

    /// <summary>The frame format version this code writes and reads.</summary>
    public const byte FormatVersion = 1;

    /// <summary>The size of the frame header.</summary>
    public const int HeaderSize = 40;

    /// <summary>True when <paramref name="element"/> (one element of the journal's record stream) is a batch frame rather than a bare record.</summary>
    public static bool IsFrame(ReadOnlySpan<byte> element) => element.Length > 0 && element[0] == FrameKind;

    /// <summary>The frame's header fields (no validation beyond its length; <see cref="Validate"/> checks everything).</summary>
    public static (int Count, long FirstSequence, long FirstCellVersion, long LastCellVersion) ReadHeader(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < HeaderSize) throw new FormatException($"batch frame of {frame.Length} bytes is shorter than its header");
        return (BinaryPrimitives.ReadInt32LittleEndian(frame[8..]), BinaryPrimitives.ReadInt64LittleEndian(frame[16..]),
            BinaryPrimitives.ReadInt64LittleEndian(frame[24..]), BinaryPrimitives.ReadInt64LittleEndian(frame[32..]));
    }

    /// <summary>
    /// Checks a frame completely: kind, version, checksum, lengths, every record's header (consecutive sequences, cell
    /// versions in order and matching the header). Throws <see cref="FormatException"/> naming the first problem.
    /// </summary>
    public static void Validate(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < HeaderSize) throw new FormatException($"batch frame of {frame.Length} bytes is shorter than its header");
        if (frame[0] != FrameKind) throw new FormatException($"not a batch frame (first byte {frame[0]})");
        if (frame[1] != FormatVersion) throw new FormatException($"batch frame format {frame[1]} is not {FormatVersion}");
        if (frame[2] != 0 || frame[3] != 0) throw new FormatException("batch frame's reserved bytes are not zero");
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(frame[4..]);
        if (crc != Crc32C(frame[8..])) throw new FormatException("batch frame fails its CRC-32C");
        var (count, first, firstVersion, lastVersion) = ReadHeader(frame);
        int bodyLength = BinaryPrimitives.ReadInt32LittleEndian(frame[12..]);
        if (bodyLength != frame.Length - HeaderSize) throw new FormatException($"batch frame body length {bodyLength} but {frame.Length - HeaderSize} bytes follow the header");
        if (count < 1) throw new FormatException($"batch frame of {count} records");
        int pos = HeaderSize, seen = 0;
        long previousVersion = firstVersion;
        while (pos < frame.Length)
        {
            if (frame.Length - pos < 4) throw new FormatException("batch frame ends inside a record length");
            int len = BinaryPrimitives.ReadInt32LittleEndian(frame[pos..]);
            if (len < CellRecord.HeaderSize || len > frame.Length - pos - 4) throw new FormatException($"batch frame record {seen} has length {len}");
            var (_, seq, version) = CellRecord.ReadHeader(frame.Slice(pos + 4, len));
            if (seq != first + seen) throw new FormatException($"batch frame record {seen} has sequence {seq}, expected {first + seen}");
            if (version < previousVersion) throw new FormatException($"batch frame record {seq} has cell version {version} below the previous {previousVersion}");
            previousVersion = version;
            seen++;
            pos += 4 + len;
        }
        if (seen != count) throw new FormatException($"batch frame holds {seen} records, its header says {count}");
        if (previousVersion != lastVersion) throw new FormatException($"batch frame's last record has cell version {previousVersion}, its header says {lastVersion}");
        var (_, _, v0) = CellRecord.ReadHeader(frame.Slice(HeaderSize + 4, BinaryPrimitives.ReadInt32LittleEndian(frame[HeaderSize..])));
        if (v0 != firstVersion) throw new FormatException($"batch frame's first record has cell version {v0}, its header says {firstVersion}");
    }

    /// <summary>Enumerates the records of a frame (validate it first with <see cref="Validate"/>). Allocation-free.</summary>
    public static RecordEnumerator Records(ReadOnlySpan<byte> frame) => new(frame);

    /// <summary>Enumerates the records of a frame; each <see cref="Current"/> is one bare record.</summary>
    public ref struct RecordEnumerator
    {
        private readonly ReadOnlySpan<byte> _frame;
        private int _pos;

        internal RecordEnumerator(ReadOnlySpan<byte> frame)
        {
            _frame = frame;
            _pos = HeaderSize;
            Current = default;
        }

        /// <summary>The current record.</summary>
        public ReadOnlySpan<byte> Current { get; private set; }

        /// <summary>Moves to the next record.</summary>
        public bool MoveNext()
        {
            if (_frame.Length - _pos < 4) return false;
            int len = BinaryPrimitives.ReadInt32LittleEndian(_frame[_pos..]);
            Current = _frame.Slice(_pos + 4, len);
            _pos += 4 + len;
            return true;
        }

        /// <summary>Returns this enumerator (for <c>foreach</c>).</summary>
        public readonly RecordEnumerator GetEnumerator() => this;
    }

    /// <summary>CRC-32C (Castagnoli), the checksum of batch frames (the storage chunks use the same function).</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8) crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        for (; i < data.Length; i++) crc = BitOperations.Crc32C(crc, data[i]);
        return ~crc;
    }
}

/// <summary>
/// Builds a batch of journal records and hands it to an <see cref="ICellJournal"/>: one bare record through
/// <see cref="ICellJournal.Append"/> (today's path) or a frame (<see cref="CellBatch"/>) through
/// <see cref="ICellJournal.AppendBatch"/>. Reusable; allocates only when its buffer grows.
/// </summary>
public sealed class CellBatchWriter
{
    private byte[] _buf = new byte[4096];
    private int _pos = CellBatch.HeaderSize;

    /// <summary>Records added since the last <see cref="Reset"/>.</summary>
    public int Count { get; private set; }

    /// <summary>The first record's sequence (valid when <see cref="Count"/> &gt; 0).</summary>
    public long FirstSequence { get; private set; }

    /// <summary>The first record's cell version.</summary>
    public long FirstCellVersion { get; private set; }

    /// <summary>The last record's cell version.</summary>
    public long LastCellVersion { get; private set; }

    /// <summary>Empties the batch.</summary>
    public void Reset()
    {
        _pos = CellBatch.HeaderSize;
        Count = 0;
    }

    /// <summary>
    /// Adds one encoded record (see <see cref="CellRecord"/>). Its sequence must follow the previous record's and its
    /// cell version must not be lower; otherwise <see cref="ArgumentException"/> (a bug in the producer).
    /// </summary>
    public void Add(ReadOnlySpan<byte> record)
    {
        var (_, seq, version) = CellRecord.ReadHeader(record);
        if (Count == 0)
        {
            FirstSequence = seq;
            FirstCellVersion = version;
        }
        else
        {
            if (seq != FirstSequence + Count) throw new ArgumentException($"record {seq} does not follow {FirstSequence + Count - 1} in the batch", nameof(record));
            if (version < LastCellVersion) throw new ArgumentException($"record {seq} has cell version {version} below {LastCellVersion}", nameof(record));
        }
        LastCellVersion = version;
        int need = _pos + 4 + record.Length;
        if (need > _buf.Length) Array.Resize(ref _buf, Math.Max(_buf.Length * 2, need));
        BinaryPrimitives.WriteInt32LittleEndian(_buf.AsSpan(_pos), record.Length);
        record.CopyTo(_buf.AsSpan(_pos + 4));
        _pos = need;
        Count++;
    }

    /// <summary>The batch as a frame (header and CRC filled in now).</summary>
    public ReadOnlySpan<byte> Frame()
    {
        var f = _buf.AsSpan(0, _pos);
        f[0] = CellBatch.FrameKind;
        f[1] = CellBatch.FormatVersion;
        f[2] = 0;
        f[3] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(f[8..], Count);
        BinaryPrimitives.WriteInt32LittleEndian(f[12..], _pos - CellBatch.HeaderSize);
        BinaryPrimitives.WriteInt64LittleEndian(f[16..], FirstSequence);
        BinaryPrimitives.WriteInt64LittleEndian(f[24..], FirstCellVersion);
        BinaryPrimitives.WriteInt64LittleEndian(f[32..], LastCellVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(f[4..], CellBatch.Crc32C(f[8..]));
        return f;
    }

    /// <summary>
    /// Hands the batch to <paramref name="journal"/>: nothing when empty, the bare record through
    /// <see cref="ICellJournal.Append"/> when it holds one (byte for byte the unbatched format), else the frame through
    /// <see cref="ICellJournal.AppendBatch"/>.
    /// </summary>
    public void AppendTo(ICellJournal journal)
    {
        ArgumentNullException.ThrowIfNull(journal);
        if (Count == 0) return;
        if (Count == 1)
        {
            int len = BinaryPrimitives.ReadInt32LittleEndian(_buf.AsSpan(CellBatch.HeaderSize));
            journal.Append(FirstSequence, LastCellVersion, _buf.AsSpan(CellBatch.HeaderSize + 4, len));
            return;
        }
        journal.AppendBatch(FirstSequence, Count, LastCellVersion, Frame());
    }
}
