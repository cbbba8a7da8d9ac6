using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Omega.Protocol;

namespace Omega.CrashHost;

/// <summary>The server closed the connection (or was killed) before a reply came.</summary>
internal sealed class ConnectionLostException(string message) : Exception(message);

/// <summary>The server answered with an Error frame.</summary>
internal sealed class WireErrorException(ErrorCode code, string message) : Exception($"{code}: {message}")
{
    public ErrorCode Code { get; } = code;
}

/// <summary>
/// A minimal client of docs/protocol.md over a raw socket, for the server-path crash driver and its tests: one request
/// at a time or pipelined, replies matched by request id, pushes (request id 0) handed to <see cref="OnPush"/>. It does
/// not reconnect: a killed server fails every pending request with <see cref="ConnectionLostException"/>, which is how
/// the driver learns which requests were never acknowledged.
/// </summary>
internal sealed class WireConn : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<(MessageType Type, byte[] Body)>> _pending = new();
    private readonly Lock _sendLock = new();
    private readonly Task _reader;
    private uint _rid;
    private volatile bool _closed;

    /// <summary>Frames pushed by the server with request id 0 (Bindings), called on the reader thread.</summary>
    public Action<MessageType, byte[]>? OnPush;

    private WireConn(Socket socket)
    {
        _socket = socket;
        _reader = Task.Run(ReadLoopAsync);
    }

    public bool IsClosed => _closed;

    public static async Task<WireConn> ConnectAsync(IPEndPoint server, PeerRole role, string name, TimeSpan timeout)
    {
        var s = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await s.ConnectAsync(server, cts.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            s.Dispose();
            throw new ConnectionLostException($"connect to {server}: {e.Message}");
        }
        var c = new WireConn(s);
        var welcome = await c.RequestAsync<Hello, Welcome>(new Hello { Version = Frame.ProtocolVersion, Role = role, Name = name }, timeout);
        _ = welcome;
        return c;
    }

    /// <summary>Sends a request and waits for its reply of type <typeparamref name="TReply"/> (an Error frame throws).</summary>
    public async Task<TReply> RequestAsync<TRequest, TReply>(TRequest request, TimeSpan timeout)
        where TRequest : IWireMessage<TRequest> where TReply : IWireMessage<TReply>
    {
        uint rid = Interlocked.Increment(ref _rid);
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        if (_closed) throw new ConnectionLostException("connection closed");
        Send(Codec.FrameBytes(rid, request));
        var done = await Task.WhenAny(tcs.Task, Task.Delay(timeout));
        if (done != tcs.Task)
        {
            _pending.TryRemove(rid, out _);
            throw new TimeoutException($"{TRequest.Type}: no reply within {timeout}");
        }
        var (type, body) = await tcs.Task;
        if (type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(body), out var err, out _);
            throw new WireErrorException(err.Code, err.Message ?? "");
        }
        string? error = null;
        if (type != TReply.Type || !Codec.TryDecode<TReply>(new ReadOnlySequence<byte>(body), out var reply, out error))
            throw new InvalidDataException($"{TRequest.Type}: unexpected reply {type} ({error})");
        return reply!;
    }

    /// <summary>Sends a frame that expects no reply (request id 0).</summary>
    public void Post<T>(T message) where T : IWireMessage<T> => Send(Codec.FrameBytes(0, message));

    private void Send(byte[] bytes)
    {
        try
        {
            lock (_sendLock)
            {
                int sent = 0;
                while (sent < bytes.Length) sent += _socket.Send(bytes, sent, bytes.Length - sent, SocketFlags.None);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Fail();
            throw new ConnectionLostException($"send: {e.Message}");
        }
    }

    private async Task ReadLoopAsync()
    {
        var buf = new byte[1 << 16];
        int len = 0;
        try
        {
            while (true)
            {
                if (len == buf.Length) Array.Resize(ref buf, buf.Length * 2);
                int n = await _socket.ReceiveAsync(buf.AsMemory(len), SocketFlags.None);
                if (n == 0) break;
                len += n;
                int at = 0;
                while (len - at >= 9)
                {
                    uint length = BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(at));
                    if (len - at < 4 + (long)length) break;
                    var type = (MessageType)buf[at + 4];
                    uint rid = BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(at + 5));
                    var body = buf.AsSpan(at + 9, (int)length - 5).ToArray();
                    at += 4 + (int)length;
                    if (rid == 0) OnPush?.Invoke(type, body);
                    else if (_pending.TryRemove(rid, out var tcs)) tcs.TrySetResult((type, body));
                }
                if (at > 0)
                {
                    Buffer.BlockCopy(buf, at, buf, 0, len - at);
                    len -= at;
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        Fail();
    }

    private void Fail()
    {
        _closed = true;
        foreach (var (rid, tcs) in _pending)
            if (_pending.TryRemove(rid, out _)) tcs.TrySetException(new ConnectionLostException("connection closed before the reply"));
    }

    public async ValueTask DisposeAsync()
    {
        _closed = true;
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
        await _reader.ConfigureAwait(false);
    }
}
