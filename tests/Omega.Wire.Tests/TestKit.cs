using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>A cell, optionally an engine, and a server on a loopback port.</summary>
internal sealed class ServerFixture : IAsyncDisposable
{
    public Cell Cell = null!;
    public SchedulingEngine? Engine;
    public OmegaServer Server = null!;
    public FakeTimeProvider? Fake;

    public IPEndPoint EndPoint => Server.EndPoint;

    public static ServerFixture Start(Action<ServerOptions>? configure = null, bool engine = false, bool fakeTime = false, bool startWorkers = true, Action<Cell>? seed = null, Action<SchedulingOptions>? scheduling = null)
    {
        var fx = new ServerFixture();
        var time = fakeTime ? (fx.Fake = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero))) : (TimeProvider)TimeProvider.System;
        fx.Cell = new Cell(new CellOptions { Time = time, Name = "wire-test" });
        seed?.Invoke(fx.Cell);
        if (engine)
        {
            var so = new SchedulingOptions { Time = time, Seed = 42 };
            so.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5) });
            scheduling?.Invoke(so);
            fx.Engine = new SchedulingEngine(fx.Cell, so);
            if (startWorkers) fx.Engine.Start();
        }
        var options = new ServerOptions { Name = "test", Time = time };
        options.Transport.Time = time;
        if (fakeTime)
        {
            // Tests drive timeouts and leases by hand: timers would fire on every Advance.
            options.Transport.SweepInterval = TimeSpan.FromDays(1);
            options.LifecyclePeriod = null;
        }
        configure?.Invoke(options);
        fx.Server = new OmegaServer(fx.Cell, fx.Engine, new IPEndPoint(IPAddress.Loopback, 0), options);
        fx.Server.Start();
        return fx;
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        if (Engine is not null) await Engine.DisposeAsync();
        Cell.Dispose();
    }
}

/// <summary>A raw loopback socket for hostile input: sends any bytes, reads frames, detects the server closing.</summary>
internal sealed class RawClient : IDisposable
{
    private readonly Socket _s;
    private byte[] _buf = new byte[1 << 16];
    private int _len;

    private RawClient(Socket s) => _s = s;

    public Socket Socket => _s;

    public static async Task<RawClient> ConnectAsync(IPEndPoint ep, int receiveBuffer = 0)
    {
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer > 0) s.ReceiveBufferSize = receiveBuffer;
        await s.ConnectAsync(ep);
        return new RawClient(s);
    }

    public async Task SendAsync(byte[] bytes)
    {
        int sent = 0;
        while (sent < bytes.Length) sent += await _s.SendAsync(bytes.AsMemory(sent), SocketFlags.None);
    }

    public Task SendAsync<T>(uint rid, T msg) where T : IWireMessage<T> => SendAsync(Codec.FrameBytes(rid, msg));

    /// <summary>Next frame, or null when the server closed the connection. Fails the test after the timeout.</summary>
    public async Task<(MessageType Type, uint Rid, byte[] Body)?> ReadFrameAsync(int timeoutMs = 10_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        while (true)
        {
            if (_len >= 9)
            {
                uint length = BinaryPrimitives.ReadUInt32BigEndian(_buf);
                if (_len >= 4 + length)
                {
                    var type = (MessageType)_buf[4];
                    uint rid = BinaryPrimitives.ReadUInt32BigEndian(_buf.AsSpan(5));
                    var body = _buf.AsSpan(9, (int)length - 5).ToArray();
                    Buffer.BlockCopy(_buf, 4 + (int)length, _buf, 0, _len - 4 - (int)length);
                    _len -= 4 + (int)length;
                    return (type, rid, body);
                }
                if (4 + length > _buf.Length) Array.Resize(ref _buf, (int)(4 + length));
            }
            int n;
            try { n = await _s.ReceiveAsync(_buf.AsMemory(_len), SocketFlags.None, cts.Token); }
            catch (SocketException) { return null; }
            catch (OperationCanceledException) { throw new TimeoutException("no frame from the server within the timeout"); }
            if (n == 0) return null;
            _len += n;
        }
    }

    /// <summary>Reads until an Error frame (returned) or the close (null); other frames are skipped.</summary>
    public async Task<ErrorMessage?> ReadErrorAsync()
    {
        while (true)
        {
            var f = await ReadFrameAsync();
            if (f is null) return null;
            if (f.Value.Type == MessageType.Error)
            {
                Assert.True(Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var e, out var err), err);
                return e;
            }
        }
    }

    /// <summary>True once the server has closed the connection (all further frames are drained).</summary>
    public async Task<bool> WaitClosedAsync()
    {
        while (true)
        {
            var f = await ReadFrameAsync();
            if (f is null) return true;
        }
    }

    public async Task<T> ExpectAsync<T>() where T : IWireMessage<T>
    {
        var f = await ReadFrameAsync();
        Assert.NotNull(f);
        if (f.Value.Type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var e, out _);
            Assert.Fail($"expected {T.Type}, got error {e.Code}: {e.Message}");
        }
        Assert.Equal(T.Type, f.Value.Type);
        Assert.True(Codec.TryDecode<T>(new ReadOnlySequence<byte>(f.Value.Body), out var m, out var err), err);
        return m!;
    }

    public async Task<Welcome> HandshakeAsync(PeerRole role, string name = "raw")
    {
        await SendAsync(1, new Hello { Version = Omega.Protocol.Frame.ProtocolVersion, Role = role, Name = name });
        return await ExpectAsync<Welcome>();
    }

    public async Task<Registered> RegisterAsync(string node, ResourceVector capacity, long resumeFrom = 0)
    {
        await HandshakeAsync(PeerRole.Agent, node);
        await SendAsync(2, new Register { Node = node, Capacity = capacity, FailureDomain = "fd", ResumeFrom = resumeFrom });
        return await ExpectAsync<Registered>();
    }

    public void Dispose() => _s.Dispose();

    public static byte[] Frame(byte type, uint rid, ReadOnlySpan<byte> body)
    {
        var b = new byte[9 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(5 + body.Length));
        b[4] = type;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(5), rid);
        body.CopyTo(b.AsSpan(9));
        return b;
    }

    public static byte[] Prefix(uint length) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, length); return b; }
}

internal static class Wait
{
    /// <summary>Polls a condition until it holds (fails the test after the timeout): no fixed sleeps.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what, int timeoutMs = 15_000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) Assert.Fail($"timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }
}
