using System.Buffers;
using System.Buffers.Binary;
using MessagePack;

namespace Omega.Protocol;

/// <summary>A message body codec: one MessagePack map with small non-negative integer keys.</summary>
internal interface IWireMessage<TSelf> where TSelf : IWireMessage<TSelf>
{
    static abstract MessageType Type { get; }

    void Write(ref MessagePackWriter writer);

    static abstract TSelf Read(ref MessagePackReader reader);
}

/// <summary>Raised by decoders for bodies that are valid MessagePack but violate the protocol (wrong key type, bounds).</summary>
internal sealed class ProtocolViolationException(string message) : Exception(message);

/// <summary>Frame and body encoding and decoding shared by the server, the agent library and the tests.</summary>
internal static class Codec
{
    /// <summary>Maximum nesting of MessagePack containers in any body. The deepest legal body (Commit) uses 4.</summary>
    public const int MaxDepth = 8;

    /// <summary>Maximum number of entries in any map (message fields or labels).</summary>
    public const int MaxMapEntries = 64;

    /// <summary>Untrusted-data security with a small maximum depth: every decode uses it.</summary>
    public static readonly MessagePackSecurity Security = MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(MaxDepth);

    [ThreadStatic] private static ArrayBufferWriter<byte>? t_scratch;

    /// <summary>Encodes one whole frame (prefix, type, request id, body) into <paramref name="output"/>; returns its length.</summary>
    public static int WriteFrame<T>(IBufferWriter<byte> output, uint requestId, in T message) where T : IWireMessage<T>
    {
        var scratch = t_scratch ??= new ArrayBufferWriter<byte>(256);
        scratch.ResetWrittenCount();
        var head = scratch.GetSpan(Frame.PrefixLength + Frame.HeaderLength);
        head[Frame.PrefixLength] = (byte)T.Type;
        BinaryPrimitives.WriteUInt32BigEndian(head.Slice(Frame.PrefixLength + 1), requestId);
        scratch.Advance(Frame.PrefixLength + Frame.HeaderLength);
        var w = new MessagePackWriter(scratch);
        message.Write(ref w);
        w.Flush();
        int total = scratch.WrittenCount;
        // The scratch buffer is contiguous, so the prefix can be patched once the body length is known.
        var all = System.Runtime.InteropServices.MemoryMarshal.AsMemory(scratch.WrittenMemory).Span;
        BinaryPrimitives.WriteUInt32BigEndian(all, (uint)(total - Frame.PrefixLength));
        output.Write(all);
        return total;
    }

    /// <summary>Encodes a frame into a new array (tests, docs, cold paths).</summary>
    public static byte[] FrameBytes<T>(uint requestId, in T message) where T : IWireMessage<T>
    {
        var buf = new ArrayBufferWriter<byte>();
        WriteFrame(buf, requestId, message);
        return buf.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Decodes a body. Every exception the MessagePack reader can raise on hostile bytes is caught here, per frame, and
    /// turned into false with a reason (design.md §11: Skip() on a huge bin32 throws ArgumentOutOfRangeException).
    /// </summary>
    public static bool TryDecode<T>(in ReadOnlySequence<byte> body, out T? message, out string? error) where T : IWireMessage<T>
    {
        try
        {
            var r = new MessagePackReader(body);
            message = T.Read(ref r);
            if (!r.End) throw new ProtocolViolationException("trailing bytes after the body");
            error = null;
            return true;
        }
        catch (Exception ex) when (IsDecodeFailure(ex))
        {
            message = default;
            error = ex.Message;
            return false;
        }
    }

    /// <summary>
    /// The exceptions a malformed body raises while it is read (a typed refusal, never a crash): the one list
    /// <see cref="TryDecode{T}"/> and the scratch decoders (<c>Bindings.TryDecodeInto</c>, <c>TaskReports.TryDecodeInto</c>)
    /// catch.
    /// </summary>
    public static bool IsDecodeFailure(Exception ex)
        => ex is MessagePackSerializationException or EndOfStreamException or ArgumentOutOfRangeException
            or OverflowException or InvalidOperationException or ProtocolViolationException or FormatException
            or ArgumentException or InsufficientExecutionStackException;

    // ------------------------------------------------------------------ reading helpers

    /// <summary>Reads a map header (counts one depth level) and bounds its size.</summary>
    public static int ReadMap(ref MessagePackReader r)
    {
        if (r.NextMessagePackType != MessagePackType.Map) throw new ProtocolViolationException($"expected a map, found {r.NextMessagePackType}");
        Security.DepthStep(ref r);
        int n = r.ReadMapHeader();
        if ((uint)n > MaxMapEntries) throw new ProtocolViolationException($"map of {n} entries exceeds {MaxMapEntries}");
        return n;
    }

    /// <summary>Reads an array header (counts one depth level) and bounds its size.</summary>
    public static int ReadArray(ref MessagePackReader r, int max)
    {
        if (r.NextMessagePackType != MessagePackType.Array) throw new ProtocolViolationException($"expected an array, found {r.NextMessagePackType}");
        Security.DepthStep(ref r);
        int n = r.ReadArrayHeader();
        if ((uint)n > (uint)max) throw new ProtocolViolationException($"array of {n} elements exceeds {max}");
        // Each element takes at least one byte, so a count above the remaining bytes is a lie (checked before allocating).
        if (n > r.Sequence.Length - r.Consumed) throw new ProtocolViolationException($"array claims {n} elements but {r.Sequence.Length - r.Consumed} bytes remain");
        return n;
    }

    /// <summary>Closes a container opened by <see cref="ReadMap"/> or <see cref="ReadArray"/>.</summary>
    public static void EndContainer(ref MessagePackReader r) => r.Depth--;

    /// <summary>Reads a field key: a non-negative integer.</summary>
    public static int ReadKey(ref MessagePackReader r)
    {
        if (r.NextMessagePackType != MessagePackType.Integer) throw new ProtocolViolationException("map keys must be integers");
        int k = r.ReadInt32();
        if (k < 0) throw new ProtocolViolationException("map keys must not be negative");
        return k;
    }

    /// <summary>Skips one value of an unknown field, with the same depth bound as everything else.</summary>
    public static void Skip(ref MessagePackReader r)
    {
        switch (r.NextMessagePackType)
        {
            case MessagePackType.Array:
            {
                int n = ReadArray(ref r, int.MaxValue);
                for (int i = 0; i < n; i++) Skip(ref r);
                EndContainer(ref r);
                break;
            }
            case MessagePackType.Map:
            {
                int n = ReadMap(ref r);
                for (int i = 0; i < 2 * n; i++) Skip(ref r);
                EndContainer(ref r);
                break;
            }
            default:
                r.Skip();
                break;
        }
    }

    /// <summary>Reads a string (nil reads as empty) bounded to <paramref name="maxBytes"/> UTF-8 bytes.</summary>
    public static string ReadString(ref MessagePackReader r, int maxBytes = 256)
    {
        if (r.TryReadNil()) return "";
        if (r.NextMessagePackType != MessagePackType.String) throw new ProtocolViolationException("expected a string");
        var s = r.ReadString() ?? "";
        if (s.Length > maxBytes) throw new ProtocolViolationException($"string longer than {maxBytes}");
        return s;
    }

    /// <summary>Reads a resource vector: an array of 1 to 4 integers [cpuMillis, memoryBytes, gpus, diskBytes].</summary>
    public static ResourceVector ReadResources(ref MessagePackReader r)
    {
        int n = ReadArray(ref r, ResourceVector.Dimensions);
        Span<long> v = stackalloc long[ResourceVector.Dimensions];
        for (int i = 0; i < n; i++) v[i] = r.ReadInt64();
        EndContainer(ref r);
        return new ResourceVector(v[0], v[1], v[2], v[3]);
    }

    /// <summary>Writes a resource vector as an array of 4 integers.</summary>
    public static void WriteResources(ref MessagePackWriter w, ResourceVector v)
    {
        w.WriteArrayHeader(4);
        w.Write(v.CpuMillis);
        w.Write(v.MemoryBytes);
        w.Write(v.Gpus);
        w.Write(v.DiskBytes);
    }

    /// <summary>Reads a task id: an array [jobId, index].</summary>
    public static TaskId ReadTask(ref MessagePackReader r)
    {
        int n = ReadArray(ref r, 2);
        if (n != 2) throw new ProtocolViolationException("a task id is [job, index]");
        long job = r.ReadInt64();
        int index = r.ReadInt32();
        EndContainer(ref r);
        return new TaskId(job, index);
    }

    /// <summary>Writes a task id as [jobId, index].</summary>
    public static void WriteTask(ref MessagePackWriter w, TaskId t)
    {
        w.WriteArrayHeader(2);
        w.Write(t.Job.Value);
        w.Write(t.Index);
    }

    /// <summary>Reads a string-to-string map (labels).</summary>
    public static Dictionary<string, string> ReadLabels(ref MessagePackReader r)
    {
        int n = ReadMap(ref r);
        var d = new Dictionary<string, string>(n, Security.GetEqualityComparer<string>());
        for (int i = 0; i < n; i++)
        {
            var k = ReadString(ref r);
            d[k] = ReadString(ref r);
        }
        EndContainer(ref r);
        return d;
    }

    /// <summary>Writes a string-to-string map.</summary>
    public static void WriteLabels(ref MessagePackWriter w, IReadOnlyDictionary<string, string>? labels)
    {
        if (labels is null) { w.WriteMapHeader(0); return; }
        w.WriteMapHeader(labels.Count);
        foreach (var (k, v) in labels) { w.Write(k); w.Write(v); }
    }
}
