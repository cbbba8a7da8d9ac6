using System.Buffers.Binary;

namespace Omega.Storage.Log;

/// <summary>
/// The journal's unit in FasterLog: one log entry = one chunk. A chunk carries part of a group's record stream.
/// <code>
/// offset size field
///      0    4 magic "OMJ1"
///      4    4 crc32c of bytes 8..end
///      8    8 chunk sequence (1, 2, 3, ... without gaps across the journal's life)
///     16    4 payload length
///     20    4 flags (bit 0: last chunk of its commit group)
///     24    n payload: records, each as length:u32 + record bytes (a record may continue in the next chunk of its group)
/// </code>
/// </summary>
internal static class ChunkFormat
{
    public const uint Magic = 0x314A4D4F; // "OMJ1" little-endian
    public const int HeaderSize = 24;
    public const int LastInGroup = 1;

    public static void WriteHeader(Span<byte> chunk, long sequence, int payloadLength, int flags)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(chunk, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(chunk[8..], sequence);
        BinaryPrimitives.WriteInt32LittleEndian(chunk[16..], payloadLength);
        BinaryPrimitives.WriteInt32LittleEndian(chunk[20..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(chunk[4..], Crc32C.Compute(chunk.Slice(8, 16 + payloadLength)));
    }

    /// <summary>Validates a chunk; on success returns its sequence, flags and payload.</summary>
    public static bool TryRead(ReadOnlySpan<byte> entry, out long sequence, out int flags, out ReadOnlySpan<byte> payload)
    {
        sequence = 0;
        flags = 0;
        payload = default;
        if (entry.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(entry) != Magic) return false;
        int len = BinaryPrimitives.ReadInt32LittleEndian(entry[16..]);
        if (len < 0 || HeaderSize + len > entry.Length) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(entry[4..]) != Crc32C.Compute(entry.Slice(8, 16 + len))) return false;
        sequence = BinaryPrimitives.ReadInt64LittleEndian(entry[8..]);
        flags = BinaryPrimitives.ReadInt32LittleEndian(entry[20..]);
        payload = entry.Slice(HeaderSize, len);
        return true;
    }
}
