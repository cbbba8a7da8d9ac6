using System.Buffers;
using System.Buffers.Binary;

namespace Omega.Storage;

/// <summary>
/// The snapshot file a leader streams to a new or far-behind replica (issue 16; docs/protocol.md, "Replica snapshots",
/// "Snapshot file, format 1"): a 32-byte header (magic <c>OMEGASN1</c>, sequence, cell version, entry count, all
/// little-endian) then the store-of-record entries in store-log order, each
/// <c>flags:u8 (bit 0 tombstone) | key_length:u32 | value_length:u32 | key | value</c>.
/// </summary>
/// <remarks>
/// A logical copy of the store of record rather than FASTER's checkpoint files: those name journal addresses and chunk
/// sequences of the leader's own disk, which mean nothing in the replica's journal, and the store's log files keep
/// growing while they would be copied. Installing the entries into an empty store and checkpointing it at the snapshot's
/// position gives the replica a directory of its own that recovers exactly the leader's state.
/// </remarks>
public static class ReplicaSnapshot
{
    /// <summary>The format number SnapshotBegin carries (key 6).</summary>
    public const int Format = 1;

    /// <summary>Bytes of the header.</summary>
    public const int HeaderSize = 32;

    /// <summary>Bytes before each entry's key.</summary>
    public const int EntryHeaderSize = 9;

    /// <summary>The largest key an entry may have (object keys are the longest, well below this).</summary>
    public const int MaxKeyBytes = 64 * 1024;

    /// <summary>The largest value an entry may have (objects are at most 256 KiB; node specs and outcomes far less).</summary>
    public const int MaxValueBytes = 16 * 1024 * 1024;

    private static ReadOnlySpan<byte> Magic => "OMEGASN1"u8;

    /// <summary>Writes the header.</summary>
    public static void WriteHeader(Span<byte> header, long sequence, long cellVersion, long entries)
    {
        Magic.CopyTo(header);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], cellVersion);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], entries);
    }

    /// <summary>Reads the header: sequence, cell version and entry count. Throws <see cref="InvalidDataException"/> when it is not one.</summary>
    public static (long Sequence, long CellVersion, long Entries) ReadHeader(ReadOnlySpan<byte> header)
    {
        if (header.Length < HeaderSize || !header[..8].SequenceEqual(Magic)) throw new InvalidDataException("not an Omega replica snapshot (bad magic)");
        long seq = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
        long version = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        long entries = BinaryPrimitives.ReadInt64LittleEndian(header[24..]);
        if (seq < 0 || version < 0 || entries < 0) throw new InvalidDataException("replica snapshot header: negative position or count");
        return (seq, version, entries);
    }

    internal static void WriteEntryHeader(Span<byte> entry, bool tombstone, int keyLength, int valueLength)
    {
        entry[0] = tombstone ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(entry[1..], (uint)keyLength);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[5..], (uint)valueLength);
    }

    internal delegate void EntrySink(bool tombstone, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);

    /// <summary>Reads a whole snapshot from <paramref name="source"/>, handing each entry to <paramref name="sink"/>; checks bounds and the count.</summary>
    internal static (long Sequence, long CellVersion, long Entries) ReadEntries(Stream source, EntrySink sink)
    {
        var header = new byte[HeaderSize];
        source.ReadExactly(header);
        var (seq, version, entries) = ReadHeader(header);
        var entryHeader = new byte[EntryHeaderSize];
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            for (long i = 0; i < entries; i++)
            {
                try
                {
                    source.ReadExactly(entryHeader);
                }
                catch (EndOfStreamException e)
                {
                    throw new InvalidDataException($"replica snapshot ends after {i} of {entries} entries", e);
                }
                byte flags = entryHeader[0];
                uint keyLength = BinaryPrimitives.ReadUInt32LittleEndian(entryHeader.AsSpan(1));
                uint valueLength = BinaryPrimitives.ReadUInt32LittleEndian(entryHeader.AsSpan(5));
                if (flags > 1 || keyLength == 0 || keyLength > MaxKeyBytes || valueLength > MaxValueBytes || (flags == 1 && valueLength != 0))
                    throw new InvalidDataException($"replica snapshot entry {i}: flags {flags}, key {keyLength} bytes, value {valueLength} bytes is not a store entry");
                int total = (int)(keyLength + valueLength);
                if (buffer.Length < total)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(total);
                }
                try
                {
                    source.ReadExactly(buffer, 0, total);
                }
                catch (EndOfStreamException e)
                {
                    throw new InvalidDataException($"replica snapshot ends inside entry {i} of {entries}", e);
                }
                sink(flags == 1, buffer.AsSpan(0, (int)keyLength), buffer.AsSpan((int)keyLength, (int)valueLength));
            }
            if (source.ReadByte() != -1) throw new InvalidDataException($"replica snapshot has bytes after its {entries} entries");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (seq, version, entries);
    }
}
