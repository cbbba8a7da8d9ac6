using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using Omega.Agent;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Benchmarks.Failover;

/// <summary>
/// An external scheduler that follows the leader (docs/protocol.md, section 3, "Replicas and the leader"): Hello in the
/// scheduler role on whichever replica leads (redirects followed by <see cref="LeaderTargets"/>), its lease renewed on
/// the new leader after a failover (the lease lives in the replicated cell), and a commit whose reply was lost retried
/// with the same idempotency key until a leader answers. One commit in flight at a time.
/// </summary>
internal sealed class FailoverScheduler : IFrameHandler, IAsyncDisposable
{
    private readonly LeaderTargets _targets;
    private readonly string _name;
    private string _leaseName;
    private int _leaseGeneration;
    private readonly TimeSpan _replyTimeout;
    private readonly bool _followRedirects;
    private readonly int _maxBackOffMs;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<(MessageType, byte[])>> _pending = new();
    private FrameConnection? _c;
    private uint _rid;

    /// <param name="replicas">The replicas' addresses.</param>
    /// <param name="name">The lease name.</param>
    /// <param name="replyTimeout">How long one request waits for its reply (a paused leader never answers).</param>
    /// <param name="followRedirects">False for a takeover probe pinned to one replica: a redirect is not followed (it could
    /// name the paused leader, whose silence would then cost this probe a reply timeout); the probe asks its replica again.</param>
    /// <param name="maxBackOffMs">The longest back-off between two rounds of failed connection attempts.</param>
    public FailoverScheduler(IReadOnlyList<EndPoint> replicas, string name, TimeSpan replyTimeout, bool followRedirects = true, int maxBackOffMs = 500)
    {
        _followRedirects = followRedirects;
        _maxBackOffMs = maxBackOffMs;
        _targets = new LeaderTargets(replicas);
        _name = name;
        _leaseName = name;
        _replyTimeout = replyTimeout;
    }

    public int SchedulerId { get; private set; }

    public long Token { get; private set; }

    /// <summary>Where the current connection goes (the leader when it was made).</summary>
    public EndPoint? ConnectedTo { get; private set; }

    /// <summary>Every token a grant (AcquireLease) handed to this scheduler, in order.</summary>
    public List<long> GrantedTokens { get; } = new();

    /// <summary>Each grant as "token@replica+seconds" (who granted it, when), for a violation's report.</summary>
    public List<string> Grants { get; } = new();

    /// <summary>The scheduler's name (its lease name's stem).</summary>
    public string Name => _name;

    /// <summary>Connections made (the first and one per failover or lost connection).</summary>
    public int Connections { get; private set; }

    /// <summary>Connects to the leader (retrying until <paramref name="ct"/>), then acquires or renews the lease there.</summary>
    public async Task EnsureConnectedAsync(CancellationToken ct)
    {
        if (_c is { IsClosing: false }) return;
        int round = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var target = _targets.Current;
            bool backOff;
            try
            {
                _c = await FrameClient.ConnectAsync(target, this, new TransportOptions { MaxRequestsInFlight = 64 }, new TransportMetrics("failover-scheduler"), ct).ConfigureAwait(false);
                Expect<Welcome>(await RequestAsync(new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = _name }).ConfigureAwait(false));
                await LeaseAsync().ConfigureAwait(false);
                _targets.Connected();
                ConnectedTo = target;
                Connections++;
                return;
            }
            catch (AgentRequestException e) when (e.Code is ErrorCode.NotLeader or ErrorCode.NoLeader)
            {
                backOff = _followRedirects ? _targets.Redirected(e.Leader) : _targets.Failed();
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or TimeoutException or AgentRequestException)
            {
                if (Environment.GetEnvironmentVariable("OMEGA_FAILOVER_DEBUG") == "1") Console.Error.WriteLine($"{_name} -> {target}: {e.GetType().Name}: {e.Message}");
                backOff = _targets.Failed();
            }
            _c?.Abort(DisconnectReason.LocalClose);
            _c = null;
            if (backOff) await Task.Delay(Math.Min(_maxBackOffMs, 20 << Math.Min(round++, 5)), ct).ConfigureAwait(false);
        }
    }

    private async Task LeaseAsync()
    {
        if (SchedulerId != 0)
        {
            var renewed = Expect<LeaseReply>(await RequestAsync(new RenewLease { SchedulerId = SchedulerId, Name = _leaseName, Token = Token, DurationMs = 60_000 }).ConfigureAwait(false));
            if (renewed.Status == 1) return; // renewed: the same token stays valid on the new leader
            if (Environment.GetEnvironmentVariable("OMEGA_FAILOVER_DEBUG") == "1") Console.Error.WriteLine($"{_name}: renew status {renewed.Status} (scheduler {SchedulerId}, token {Token})");
        }
        var lease = Expect<LeaseReply>(await RequestAsync(new AcquireLease { Name = _leaseName, DurationMs = 60_000 }).ConfigureAwait(false));
        if (lease.Status == 2)
        {
            // Held: an earlier AcquireLease of ours applied but its reply was lost (a reply timeout, a failover). A lease
            // is not idempotent, so take the next name rather than wait a minute for that one to expire.
            _leaseName = $"{_name}-{++_leaseGeneration}";
        }
        if (lease.Status != 0) throw new AgentRequestException(ErrorCode.None, $"lease {_leaseName}: status {lease.Status}");
        SchedulerId = lease.SchedulerId;
        Token = lease.Token;
        GrantedTokens.Add(lease.Token);
        Grants.Add($"{lease.Token}@{ConnectedTo} lease {_leaseName} scheduler {lease.SchedulerId} at {DateTime.UtcNow:HH:mm:ss.fff}");
    }

    /// <summary>Node ids by name (full Sync).</summary>
    public async Task<Dictionary<string, int>> NodesAsync(CancellationToken ct)
    {
        while (true)
        {
            await EnsureConnectedAsync(ct).ConfigureAwait(false);
            try
            {
                var ids = new Dictionary<string, int>();
                int start = 0;
                while (start >= 0)
                {
                    var r = Expect<SyncReply>(await RequestAsync(new Sync { Since = 0, StartNode = start, MaxNodes = 0 }).ConfigureAwait(false));
                    foreach (var n in r.Nodes) if (n.Name.Length > 0) ids[n.Name] = n.Id;
                    start = r.NextNode;
                }
                return ids;
            }
            catch (Exception e) when (e is IOException or TimeoutException or AgentRequestException)
            {
                Drop();
            }
        }
    }

    /// <summary>
    /// Commits <paramref name="claims"/> under key (<paramref name="keyHigh"/>, <paramref name="keyLow"/>), retrying the
    /// same transaction on whichever replica leads until one answers. Returns the reply and the replica that gave it.
    /// </summary>
    public async Task<(CommitReply Reply, EndPoint From)> CommitAsync(WireClaim[] claims, ulong keyHigh, ulong keyLow, CancellationToken ct)
    {
        while (true)
        {
            await EnsureConnectedAsync(ct).ConfigureAwait(false);
            try
            {
                var reply = Expect<CommitReply>(await RequestAsync(new Commit { SchedulerId = SchedulerId, Token = Token, Mode = 0, Detection = 0, KeyHigh = keyHigh, KeyLow = keyLow, Claims = claims }).ConfigureAwait(false));
                // A stale token after a failover means our lease expired meanwhile: take a new one and retry.
                if (reply.Status is TransactionStatus.StaleFencingToken or TransactionStatus.LeaseExpired or TransactionStatus.UnknownScheduler)
                {
                    if (Environment.GetEnvironmentVariable("OMEGA_FAILOVER_DEBUG") == "1") Console.Error.WriteLine($"{_name}: commit {reply.Status} (scheduler {SchedulerId}, token {Token})");
                    SchedulerId = 0;
                    Drop();
                    continue;
                }
                return (reply, ConnectedTo!);
            }
            catch (Exception e) when (e is IOException or TimeoutException or AgentRequestException)
            {
                // Where to go next: the leader a redirect names, else the next replica after the one that failed.
                if (e is AgentRequestException { Code: ErrorCode.NotLeader or ErrorCode.NoLeader } r && _followRedirects) _targets.Redirected(r.Leader);
                else _targets.Failed();
                Drop();
            }
        }
    }

    private void Drop()
    {
        _c?.Abort(DisconnectReason.LocalClose);
        _c = null;
    }

    private async Task<(MessageType, byte[])> RequestAsync<T>(T message) where T : IWireMessage<T>
    {
        var c = _c ?? throw new IOException("not connected");
        uint rid = Interlocked.Increment(ref _rid);
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        if (!c.Send(rid, message)) { _pending.TryRemove(rid, out _); throw new IOException("connection closed"); }
        c.Flush();
        // Bounded: a paused (SIGSTOP) leader keeps the connection open and never answers.
        await Task.WhenAny(tcs.Task, c.Closed, Task.Delay(_replyTimeout)).ConfigureAwait(false);
        if (!tcs.Task.IsCompleted)
        {
            _pending.TryRemove(rid, out _);
            throw c.Closed.IsCompleted ? new IOException("connection closed") : new TimeoutException("no reply");
        }
        return await tcs.Task.ConfigureAwait(false);
    }

    private static T Expect<T>((MessageType Type, byte[] Body) reply) where T : IWireMessage<T>
    {
        if (reply.Type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(reply.Body), out var e, out _);
            throw new AgentRequestException(e.Code, e.Message ?? "") { Leader = e.Leader };
        }
        if (reply.Type != T.Type || !Codec.TryDecode<T>(new ReadOnlySequence<byte>(reply.Body), out var m, out var err))
            throw new AgentRequestException(ErrorCode.MalformedBody, $"unexpected reply {reply.Type}");
        return m!;
    }

    void IFrameHandler.OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;

    void IFrameHandler.OnFrame(FrameConnection connection, in Frame frame)
    {
        if (_pending.TryRemove(frame.RequestId, out var tcs)) tcs.TrySetResult((frame.Type, frame.Body.ToArray()));
        else if (frame.RequestId == 0 && frame.Type == MessageType.Error)
        {
            // The unprompted redirect of a replica losing the leadership: fail what waits so it is retried on the leader.
            foreach (var (rid, pending) in _pending)
                if (_pending.TryRemove(rid, out _)) pending.TrySetResult((frame.Type, frame.Body.ToArray()));
        }
    }

    void IFrameHandler.OnDisconnected(FrameConnection connection, DisconnectReason reason)
    {
        foreach (var (rid, tcs) in _pending)
            if (_pending.TryRemove(rid, out _)) tcs.TrySetException(new IOException($"connection closed ({reason})"));
    }

    public ValueTask DisposeAsync()
    {
        Drop();
        return ValueTask.CompletedTask;
    }
}
