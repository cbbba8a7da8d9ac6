using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Omega.Protocol;

// Shared by the test suite (tests/Omega.Wire.Tests, BudgetTests) and the long run (bench/Omega.Benchmarks, mode
// "hostile"), which links this file: the same mutations at two scales.
namespace Omega.Hostile;

/// <summary>What a fleet of hostile clients did and what the server answered.</summary>
internal sealed class HostileStats
{
    public long FramesSent;
    public long Connections;
    public long ServerCloses;
    public long PreHandshakeProbes;
    public readonly long[] ErrorsByCode = new long[64];

    public long Errors(ErrorCode code) => Interlocked.Read(ref ErrorsByCode[(int)code]);

    public string Summary()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append($"frames sent {FramesSent:N0}, connections {Connections:N0} (closed by the server {ServerCloses:N0}, pre-handshake probes {PreHandshakeProbes:N0}); errors:");
        for (int i = 0; i < ErrorsByCode.Length; i++)
            if (ErrorsByCode[i] > 0) sb.Append($" {(ErrorCode)i}={ErrorsByCode[i]:N0}");
        return sb.ToString();
    }
}

/// <summary>
/// Mutations of valid frames: bit flips, random bytes, insertions and deletions, MessagePack markers with huge element
/// counts, truncated bodies (the prefix re-computed so the frame is whole but its body ends early), random type bytes,
/// SubmitJobs with huge task counts, and, rarely, a wrong length prefix (which breaks the stream: the server closes).
/// </summary>
internal sealed class HostileFrames(Random rng)
{
    private static readonly byte[] Markers = [0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xc1, 0xff, 0x9f, 0x8f];
    private static readonly int[] TaskCounts = [1, 3, 1_000, 100_000, 100_001, 1_000_000, int.MaxValue, 0, -1];
    private uint _rid = 2;

    /// <summary>The next frame for a connection of the given role; <paramref name="breaksStream"/> when its prefix is wrong.</summary>
    public byte[] Next(bool agent, out bool breaksStream)
    {
        breaksStream = false;
        uint rid = ++_rid;
        int kind = rng.Next(1000);
        if (kind < 3)
        {
            // Wrong length prefix: too large, too small, or claiming more bytes than follow.
            breaksStream = true;
            uint len = rng.Next(3) switch { 0 => (uint)rng.Next(2 << 20, int.MaxValue), 1 => (uint)rng.Next(0, 5), _ => 0xFFFFFFFF };
            var b = new byte[9];
            BinaryPrimitives.WriteUInt32BigEndian(b, len);
            b[4] = (byte)MessageType.Heartbeat;
            return b;
        }
        var valid = agent ? AgentFrame(rid) : SchedulerFrame(rid);
        if (kind < 150) return valid; // a share of valid frames, so stateful paths (jobs, nodes, leases) are reached
        var body = new List<byte>(valid.AsSpan(9).ToArray());
        byte type = valid[4];
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits; e++)
        {
            switch (rng.Next(9))
            {
                case 0 when body.Count > 0: body[rng.Next(body.Count)] ^= (byte)(1 << rng.Next(8)); break;
                case 1 when body.Count > 0: body[rng.Next(body.Count)] = (byte)rng.Next(256); break;
                case 2: body.Insert(rng.Next(body.Count + 1), (byte)rng.Next(256)); break;
                case 3 when body.Count > 0: body.RemoveAt(rng.Next(body.Count)); break;
                case 4 when body.Count > 0:
                    // A container or string header with a huge declared count, then whatever bytes follow.
                    int at = rng.Next(body.Count);
                    body[at] = Markers[rng.Next(Markers.Length)];
                    body.InsertRange(Math.Min(at + 1, body.Count), [0xFF, 0xFF, 0xFF, (byte)rng.Next(256)]);
                    break;
                case 5 when body.Count > 1:
                    // Truncated body: cut the tail, and the prefix below says so (the frame is whole, its body is not).
                    int cut = rng.Next(body.Count);
                    body.RemoveRange(cut, body.Count - cut);
                    break;
                case 6: type = (byte)rng.Next(0x40); break;
                case 7 when body.Count > 1:
                    int from = rng.Next(body.Count), n = Math.Min(body.Count - from, 1 + rng.Next(8));
                    body.InsertRange(rng.Next(body.Count), body.GetRange(from, n));
                    break;
                default: rid = (uint)rng.Next(); break;
            }
        }
        var f = new byte[9 + body.Count];
        BinaryPrimitives.WriteUInt32BigEndian(f, (uint)(5 + body.Count));
        f[4] = type;
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(5), rid);
        body.CopyTo(f, 9);
        return f;
    }

    // "default" exists everywhere; the others are unknown unless a test created them (UnknownTenant is hostile input too).
    private static readonly string[] TenantNames = ["default", "t1", "t2", "no-such-tenant"];

    private byte[] SchedulerFrame(uint rid) => rng.Next(8) switch
    {
        0 or 1 => Codec.FrameBytes(rid, new SubmitJob
        {
            JobId = rng.NextInt64(1, long.MaxValue), Tenant = TenantNames[rng.Next(TenantNames.Length)], Priority = rng.Next(12),
            TaskCount = TaskCounts[rng.Next(TaskCounts.Length)], PerTask = new ResourceVector(1000, 1 << 20), Gang = rng.Next(8) == 0, Scheduler = "",
        }),
        2 => Codec.FrameBytes(rid, new QueryJob { JobId = rng.NextInt64(0, 1000) }),
        3 => Codec.FrameBytes(rid, new Sync { Since = rng.Next(2) == 0 ? 0 : rng.NextInt64(0, 100), StartNode = rng.Next(4), MaxNodes = rng.Next(64) }),
        4 => Codec.FrameBytes(rid, new AcquireLease { Name = "hostile-" + rng.Next(8), DurationMs = rng.Next(-1, 20_000) }),
        5 => Codec.FrameBytes(rid, new Commit
        {
            SchedulerId = rng.Next(4), Token = rng.Next(4), Mode = (byte)rng.Next(2), Detection = (byte)rng.Next(2),
            Claims = [new WireClaim(new TaskId(rng.NextInt64(1, 1 << 40), rng.Next(8)), rng.Next(8), new ResourceVector(100, 1 << 20), 0, 0, 0, null)],
        }),
        6 => Codec.FrameBytes(rid, new Inspect { Target = (InspectTarget)rng.Next(5), Limit = rng.Next(0, 20) }),
        _ => Codec.FrameBytes(rid, new Explain { Task = new TaskId(rng.NextInt64(0, 1000), rng.Next(4)) }),
    };

    private byte[] AgentFrame(uint rid) => rng.Next(5) switch
    {
        0 => Codec.FrameBytes(rid, new Register { Node = "hostile-" + rng.Next(16), Capacity = new ResourceVector(4000, 8L << 30), FailureDomain = "h", ResumeFrom = rng.Next(3) }),
        1 => Codec.FrameBytes(rid, new Heartbeat { NodeId = rng.Next(32), LastVersion = rng.NextInt64(0, 1000) }),
        2 => Codec.FrameBytes(rid, new TaskReport { NodeId = rng.Next(32), Task = new TaskId(rng.NextInt64(0, 1000), rng.Next(4)), Generation = rng.Next(100), State = (TaskState)rng.Next(7), Reason = "x" }),
        3 => Codec.FrameBytes(rid, new Drain { Body = new StatusOnly { Value = rng.Next(32) } }),
        _ => Codec.FrameBytes(0, new TaskReport { NodeId = rng.Next(32), Task = new TaskId(rng.NextInt64(0, 1000), 0), Generation = 1, State = TaskState.Running, Reason = "" }),
    };
}

/// <summary>
/// One hostile client: connects, sometimes probes the pre-handshake limit, says Hello, then sends batches of mutated
/// frames while a reader drains (and counts) every reply; reconnects whenever the server closes the connection.
/// </summary>
internal static class HostileClient
{
    public static async Task RunAsync(IPEndPoint server, int seed, long frames, HostileStats stats, Func<bool> stop)
    {
        var rng = new Random(seed);
        var gen = new HostileFrames(rng);
        long sent = 0;
        var batch = new ArrayBufferWriter<byte>(64 * 1024);
        while (sent < frames && !stop())
        {
            using var s = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await s.ConnectAsync(server).ConfigureAwait(false);
            Interlocked.Increment(ref stats.Connections);
            var reader = Task.Run(() => DrainAsync(s, stats));
            try
            {
                if (rng.Next(50) == 0)
                {
                    // Before the handshake: a prefix far above the pre-handshake limit (the server must not wait for its body).
                    Interlocked.Increment(ref stats.PreHandshakeProbes);
                    var probe = new byte[9];
                    BinaryPrimitives.WriteUInt32BigEndian(probe, (uint)rng.Next(64 << 10, 1 << 20));
                    probe[4] = (byte)MessageType.Hello;
                    await s.SendAsync(probe, SocketFlags.None).ConfigureAwait(false);
                    sent++;
                    Interlocked.Increment(ref stats.FramesSent);
                    await reader.ConfigureAwait(false);
                    continue;
                }
                bool agent = rng.Next(2) == 0;
                await SendAllAsync(s, Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = agent ? PeerRole.Agent : PeerRole.Scheduler, Name = "hostile" })).ConfigureAwait(false);
                bool broken = false;
                while (!broken && sent < frames && !reader.IsCompleted && !stop())
                {
                    batch.ResetWrittenCount();
                    int n = 0;
                    for (; n < 64 && !broken; n++)
                    {
                        var f = gen.Next(agent, out broken);
                        batch.Write(f);
                    }
                    await SendAllAsync(s, batch.WrittenMemory).ConfigureAwait(false);
                    sent += n;
                    Interlocked.Add(ref stats.FramesSent, n);
                }
                if (broken) await reader.ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException) { }
            try { s.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            s.Close();
            await reader.ConfigureAwait(false);
        }
    }

    private static async Task SendAllAsync(Socket s, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty) data = data[await s.SendAsync(data, SocketFlags.None).ConfigureAwait(false)..];
    }

    /// <summary>Reads frames until the connection ends; counts error codes. Returns when the server (or we) closed it.</summary>
    private static async Task DrainAsync(Socket s, HostileStats stats)
    {
        var buf = new byte[1 << 16];
        int len = 0;
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buf.AsMemory(len), SocketFlags.None).ConfigureAwait(false);
                if (n == 0) { Interlocked.Increment(ref stats.ServerCloses); return; }
                len += n;
                int pos = 0;
                while (len - pos >= 9)
                {
                    int flen = (int)BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(pos));
                    if (4 + flen > buf.Length) { Array.Resize(ref buf, 4 + flen); break; }
                    if (len - pos < 4 + flen) break;
                    if (buf[pos + 4] == (byte)MessageType.Error
                        && Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(buf, pos + 9, flen - 5), out var e, out _)
                        && (int)e.Code < stats.ErrorsByCode.Length)
                        Interlocked.Increment(ref stats.ErrorsByCode[(int)e.Code]);
                    pos += 4 + flen;
                }
                Buffer.BlockCopy(buf, pos, buf, 0, len - pos);
                len -= pos;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }
}
