using System.Buffers.Binary;
using System.Globalization;
using Omega.Cells;

namespace Omega.Replication;

/// <summary>
/// One entry of the replicated log in etcd: key <c>/omega/{cluster}/log/{firstSequence:D19}</c> (so keys sort by
/// sequence), value = a 28-byte header then a run of whole journal elements (records or batch frames, each as
/// <c>length:u32 LE</c> + bytes, exactly the group stream of the local journal).
/// <code>
/// offset size field
///      0    4 magic "OMR1"
///      4    8 first journal sequence
///     12    8 last journal sequence
///     20    8 cell version after the last record
///     28    n elements
/// </code>
/// </summary>
internal static class LogEntry
{
    public const uint Magic = 0x31524D4F; // "OMR1"
    public const int HeaderSize = 28;

    public static string Key(string prefix, long firstSequence) => prefix + "log/" + firstSequence.ToString("D19", CultureInfo.InvariantCulture);

    public static string LogPrefix(string prefix) => prefix + "log/";

    public static long SequenceOfKey(ReadOnlySpan<byte> key)
    {
        // the last 19 bytes are the digits
        long v = 0;
        for (int i = key.Length - 19; i < key.Length; i++) v = v * 10 + (key[i] - (byte)'0');
        return v;
    }

    public static byte[] Encode(ReadOnlySpan<byte> elements, long first, long last, long lastVersion)
    {
        var b = new byte[HeaderSize + elements.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(4), first);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(12), last);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(20), lastVersion);
        elements.CopyTo(b.AsSpan(HeaderSize));
        return b;
    }

    public static (long First, long Last, long LastVersion) ReadHeader(ReadOnlySpan<byte> value)
    {
        if (value.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(value) != Magic)
            throw new InvalidDataException("a replicated log entry has no valid header");
        return (BinaryPrimitives.ReadInt64LittleEndian(value[4..]), BinaryPrimitives.ReadInt64LittleEndian(value[12..]), BinaryPrimitives.ReadInt64LittleEndian(value[20..]));
    }

    /// <summary>The first and last sequence and last cell version of one element (a record or a batch frame).</summary>
    public static (long First, long Last, long LastVersion) Element(ReadOnlySpan<byte> element)
    {
        if (CellBatch.IsFrame(element))
        {
            var (count, first, _, lastV) = CellBatch.ReadHeader(element);
            return (first, first + count - 1, lastV);
        }
        var (_, seq, version) = CellRecord.ReadHeader(element);
        return (seq, seq, version);
    }
}
