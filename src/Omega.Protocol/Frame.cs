using System.Buffers;
using System.Buffers.Binary;

namespace Omega.Protocol;

/// <summary>Result of trying to cut one frame off the front of a receive buffer.</summary>
public enum FrameReadStatus : byte
{
    /// <summary>A whole frame was read.</summary>
    Ok = 0,

    /// <summary>More bytes are needed; nothing was consumed.</summary>
    Incomplete = 1,

    /// <summary>The length prefix exceeds the maximum frame size: the stream cannot be resynchronised.</summary>
    TooLarge = 2,

    /// <summary>The length prefix is below <see cref="Frame.MinLength"/>: the stream cannot be resynchronised.</summary>
    TooSmall = 3,
}

/// <summary>One decoded frame header and its body (a slice of the receive buffer, valid until the buffer is advanced).</summary>
public readonly struct Frame
{
    /// <summary>Bytes of the length prefix (unsigned 32-bit, big-endian).</summary>
    public const int PrefixLength = 4;

    /// <summary>Bytes of the header after the prefix: type (1) and request id (4, big-endian).</summary>
    public const int HeaderLength = 5;

    /// <summary>Smallest legal value of the length prefix: a header with an empty body.</summary>
    public const int MinLength = HeaderLength;

    /// <summary>
    /// Protocol version spoken by this implementation (sent in Hello and Welcome). A server speaks exactly this one:
    /// a Hello with any other (including 4) gets UnsupportedVersion (docs/protocol.md, "Changes in version 5").
    /// </summary>
    public const int ProtocolVersion = 5;

    /// <summary>Creates a frame view.</summary>
    public Frame(MessageType type, uint requestId, ReadOnlySequence<byte> body)
    {
        Type = type;
        RequestId = requestId;
        Body = body;
    }

    /// <summary>The message type byte (may be a value not defined in <see cref="MessageType"/>).</summary>
    public MessageType Type { get; }

    /// <summary>The request id chosen by the requester; 0 for server pushes.</summary>
    public uint RequestId { get; }

    /// <summary>The MessagePack body.</summary>
    public ReadOnlySequence<byte> Body { get; }

    /// <summary>
    /// Cuts one frame off the front of <paramref name="buffer"/>. The length is checked against
    /// <paramref name="maxFrameLength"/> before any byte of the body is looked at, so an oversized or negative prefix
    /// is rejected without buffering it. On <see cref="FrameReadStatus.Ok"/>, <paramref name="buffer"/> is advanced past the frame.
    /// </summary>
    public static FrameReadStatus TryRead(ref ReadOnlySequence<byte> buffer, int maxFrameLength, out Frame frame)
    {
        frame = default;
        if (buffer.Length < PrefixLength) return FrameReadStatus.Incomplete;
        uint length;
        if (buffer.FirstSpan.Length >= PrefixLength) length = BinaryPrimitives.ReadUInt32BigEndian(buffer.FirstSpan);
        else
        {
            Span<byte> tmp = stackalloc byte[PrefixLength];
            buffer.Slice(0, PrefixLength).CopyTo(tmp);
            length = BinaryPrimitives.ReadUInt32BigEndian(tmp);
        }
        if (length > (uint)maxFrameLength) return FrameReadStatus.TooLarge;
        if (length < MinLength) return FrameReadStatus.TooSmall;
        if (buffer.Length < PrefixLength + length) return FrameReadStatus.Incomplete;
        Span<byte> head = stackalloc byte[HeaderLength];
        buffer.Slice(PrefixLength, HeaderLength).CopyTo(head);
        var type = (MessageType)head[0];
        uint rid = BinaryPrimitives.ReadUInt32BigEndian(head[1..]);
        var body = buffer.Slice(PrefixLength + HeaderLength, length - HeaderLength);
        frame = new Frame(type, rid, body);
        buffer = buffer.Slice(PrefixLength + length);
        return FrameReadStatus.Ok;
    }
}
