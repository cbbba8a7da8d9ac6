using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// An external scheduler over the wire (docs/protocol.md, section 8), on the same transport as the agent and control
/// clients (FrameClient: plaintext or TLS): Hello in the scheduler role, AcquireLease, Sync, then Commit. The library has
/// no scheduler client (ControlClient submits jobs; it does not claim), so the bench speaks the messages itself.
/// Replies are matched by request id (durable replies may overtake each other), so several commits can be in flight.
/// </summary>
internal sealed class WireScheduler : IFrameHandler, IAsyncDisposable
{
    private FrameConnection? _c;
    private uint _rid;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<(MessageType, byte[])>> _pending = new();

    public int SchedulerId { get; private set; }

    public long Token { get; private set; }

    public static async Task<WireScheduler> ConnectAsync(EndPoint server, TlsClientOptions? tls, string name, int maxInFlight)
    {
        var s = new WireScheduler();
        var options = new TransportOptions { ClientTls = tls, MaxFrameLength = 16 << 20, MaxRequestsInFlight = Math.Max(64, maxInFlight * 2) };
        s._c = await FrameClient.ConnectAsync(server, s, options, new TransportMetrics("bench-scheduler")).ConfigureAwait(false);
        Expect<Welcome>(await s.RequestAsync(new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = name }).ConfigureAwait(false));
        var lease = Expect<LeaseReply>(await s.RequestAsync(new AcquireLease { Name = name, DurationMs = 3_600_000 }).ConfigureAwait(false));
        if (lease.Status != (byte)Omega.Cells.LeaseStatus.Granted) throw new InvalidOperationException($"lease {name}: status {lease.Status}");
        s.SchedulerId = lease.SchedulerId;
        s.Token = lease.Token;
        return s;
    }

    /// <summary>Every schedulable node's id (full Sync, all pages).</summary>
    public async Task<List<int>> NodeIdsAsync()
    {
        var ids = new List<int>();
        int start = 0;
        while (start >= 0)
        {
            var r = Expect<SyncReply>(await RequestAsync(new Sync { Since = 0, StartNode = start, MaxNodes = 0 }).ConfigureAwait(false));
            foreach (var n in r.Nodes) if (n.Name.Length > 0) ids.Add(n.Id);
            start = r.NextNode;
        }
        return ids;
    }

    /// <summary>One commit (fine-grained detection, incremental); returns the reply.</summary>
    public async Task<CommitReply> CommitAsync(WireClaim[] claims)
        => Expect<CommitReply>(await RequestAsync(new Commit { SchedulerId = SchedulerId, Token = Token, Mode = 0, Detection = 0, Claims = claims }).ConfigureAwait(false));

    private async Task<(MessageType, byte[])> RequestAsync<T>(T message) where T : IWireMessage<T>
    {
        var c = _c ?? throw new InvalidOperationException("not connected");
        uint rid = Interlocked.Increment(ref _rid);
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        if (!c.Send(rid, message)) { _pending.TryRemove(rid, out _); throw new IOException("connection closed"); }
        c.Flush();
        await Task.WhenAny(tcs.Task, c.Closed).ConfigureAwait(false);
        if (!tcs.Task.IsCompleted) { _pending.TryRemove(rid, out _); throw new IOException("connection closed"); }
        return await tcs.Task.ConfigureAwait(false);
    }

    private static T Expect<T>((MessageType Type, byte[] Body) reply) where T : IWireMessage<T>
    {
        if (reply.Type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(reply.Body), out var e, out _);
            throw new InvalidOperationException($"server error {e.Code}: {e.Message}");
        }
        if (reply.Type != T.Type) throw new InvalidOperationException($"unexpected reply {reply.Type}, expected {T.Type}");
        if (!Codec.TryDecode<T>(new ReadOnlySequence<byte>(reply.Body), out var m, out var err)) throw new InvalidOperationException($"undecodable {T.Type}: {err}");
        return m!;
    }

    void IFrameHandler.OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;

    void IFrameHandler.OnFrame(FrameConnection connection, in Frame frame)
    {
        if (_pending.TryRemove(frame.RequestId, out var tcs)) tcs.TrySetResult((frame.Type, frame.Body.ToArray()));
    }

    void IFrameHandler.OnDisconnected(FrameConnection connection, DisconnectReason reason)
    {
        foreach (var p in _pending.Values) p.TrySetException(new IOException($"disconnected: {reason}"));
    }

    public ValueTask DisposeAsync()
    {
        _c?.Abort(DisconnectReason.LocalClose);
        return ValueTask.CompletedTask;
    }
}
