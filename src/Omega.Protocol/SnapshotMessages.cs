using System.Buffers;
using MessagePack;

namespace Omega.Protocol;

// Replica snapshots (issue 16; docs/protocol.md, section 8, "Replica snapshots"; protocol version 5). A new or
// far-behind replica pulls the leader's snapshot in chunks: SnapshotRequest -> SnapshotBegin, then SnapshotRead ->
// SnapshotChunk until total_bytes. Same conventions as every body: integer keys, unknown keys skipped.

internal struct SnapshotRequest : IWireMessage<SnapshotRequest>
{
    public string Replica;
    public long AppliedSequence;

    public static MessageType Type => MessageType.SnapshotRequest;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Replica ?? "");
        w.Write(1); w.Write(AppliedSequence);
    }

    public static SnapshotRequest Read(ref MessagePackReader r)
    {
        var m = new SnapshotRequest { Replica = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Replica = Codec.ReadString(ref r); break;
                case 1: m.AppliedSequence = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct SnapshotBegin : IWireMessage<SnapshotBegin>
{
    /// <summary>Bytes of a SHA-256 digest.</summary>
    public const int DigestLength = 32;

    public long Snapshot;
    public long Sequence;
    public long CellVersion;
    public long TotalBytes;
    public byte[] Sha256;
    public int ChunkBytes;
    public int Format;
    public long Epoch;

    public static MessageType Type => MessageType.SnapshotBegin;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(8);
        w.Write(0); w.Write(Snapshot);
        w.Write(1); w.Write(Sequence);
        w.Write(2); w.Write(CellVersion);
        w.Write(3); w.Write(TotalBytes);
        w.Write(4); w.Write((Sha256 ?? []).AsSpan());
        w.Write(5); w.Write(ChunkBytes);
        w.Write(6); w.Write(Format);
        w.Write(7); w.Write(Epoch);
    }

    public static SnapshotBegin Read(ref MessagePackReader r)
    {
        var m = new SnapshotBegin { Sha256 = [] };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Snapshot = r.ReadInt64(); break;
                case 1: m.Sequence = r.ReadInt64(); break;
                case 2: m.CellVersion = r.ReadInt64(); break;
                case 3: m.TotalBytes = r.ReadInt64(); break;
                case 4:
                {
                    var b = r.ReadBytes();
                    if (b is not { } bytes || bytes.Length != DigestLength) throw new ProtocolViolationException("sha256 must be 32 bytes of bin");
                    m.Sha256 = bytes.ToArray();
                    break;
                }
                case 5: m.ChunkBytes = r.ReadInt32(); break;
                case 6: m.Format = r.ReadInt32(); break;
                case 7: m.Epoch = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct SnapshotReadRequest : IWireMessage<SnapshotReadRequest>
{
    public long Snapshot;
    public long Offset;

    public static MessageType Type => MessageType.SnapshotRead;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Snapshot);
        w.Write(1); w.Write(Offset);
    }

    public static SnapshotReadRequest Read(ref MessagePackReader r)
    {
        var m = default(SnapshotReadRequest);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Snapshot = r.ReadInt64(); break;
                case 1: m.Offset = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct SnapshotChunk : IWireMessage<SnapshotChunk>
{
    public long Snapshot;
    public long Offset;
    public ReadOnlyMemory<byte> Data;

    public static MessageType Type => MessageType.SnapshotChunk;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Snapshot);
        w.Write(1); w.Write(Offset);
        w.Write(2); w.Write(Data.Span);
    }

    public static SnapshotChunk Read(ref MessagePackReader r)
    {
        var m = default(SnapshotChunk);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Snapshot = r.ReadInt64(); break;
                case 1: m.Offset = r.ReadInt64(); break;
                case 2: m.Data = r.ReadBytes() is { } b ? b.ToArray() : ReadOnlyMemory<byte>.Empty; break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
