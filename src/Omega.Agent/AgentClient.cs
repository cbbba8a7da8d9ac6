using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Agent;

/// <summary>Why an agent request failed: the server's typed error, or the connection went away.</summary>
public sealed class AgentRequestException(ErrorCode code, string message) : Exception(message)
{
    /// <summary>The server's error code (<see cref="ErrorCode.None"/> when the connection closed before a reply).</summary>
    public ErrorCode Code { get; } = code;

    /// <summary>For <see cref="ErrorCode.PermissionDenied"/>: which rule refused the request (docs/protocol.md, section 12).</summary>
    public DenyReason Reason { get; init; }

    /// <summary>For <see cref="ErrorCode.NotLeader"/> (protocol version 4): the leader's address, <c>HOST:PORT</c>; null otherwise.</summary>
    public string? Leader { get; init; }
}

/// <summary>
/// A node agent speaking the Omega protocol. It registers its node (getting a lease), heartbeats with jitter, receives
/// the node's binding stream in version order and resumes it after a reconnect from the last version it processed, so
/// no binding is lost or seen twice. Each task's highest generation is remembered and an older binding is rejected.
/// Reconnects use exponential back-off with full jitter.
/// </summary>
public sealed class AgentClient : IFrameHandler, IAsyncDisposable
{
    private readonly AgentOptions _options;
    private readonly TransportMetrics _metrics;
    private readonly Random _random;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<(MessageType, byte[])>> _pending = new();
    private readonly Dictionary<TaskId, long> _highest = new();
    // The tasks this agent runs, with the binding each was started from (its generation, and what a fence hands back as
    // a stop) and its last lifecycle report (Running or Ready; 0 before any), which is re-sent after every registration
    // because the server keeps it in memory only (docs/protocol.md, TaskReport "Lifecycle"). One dictionary, not a
    // generation map and a phase map beside a binding map (each was one more insert per binding and one more table growing
    // with the held tasks; perf-reports/2026-12-07-bindpath). With the compact value below, a new held task costs ~313
    // bytes of map growth in all, this map and _highest, instead of ~470 (BindPathFrameBudgetTests, issue 15).
    private readonly Dictionary<TaskId, Held> _running = new();
    // Partition fencing (AgentOptions.FenceOnLeaseLoss): the tasks fenced and not yet reconciled, when the lease was last renewed (the send time of the renewing request,
    // a TimeProvider timestamp), the lease length, and the send times of heartbeats whose acks are awaited.
    private readonly Dictionary<TaskId, AgentBinding> _fenced = new();
    private readonly ConcurrentDictionary<uint, long> _heartbeatSent = new();
    private long _renewedAt;
    private int _leaseMs;
    private ITimer? _fenceTimer;
    private volatile bool _isFenced;
    private long _fences;
    private readonly Lock _stateLock = new();
    private readonly Lock _reportLock = new();
    // Queued reports (guarded by _reportLock). An array reused frame after frame, never handed out: Report copies a value
    // in, and SendQueuedReports encodes the TaskReports frame from it synchronously under the lock (into the connection's
    // output pipe, as bytes) and clears it, so nothing refers to an entry once the lock is released (a ToArray per frame
    // was ~60 bytes per binding on the bind path). It only grows (doubling) when one frame acks more than it holds.
    private ReportEntry[] _reportBuffer = new ReportEntry[64];
    private int _reportCount;
    // The decode target of binding pushes (issue 15: the decoded entry array was ~200 bytes per binding). Lifetime: one
    // OnFrame call. The processing loop that decodes takes it (null while in use: an old connection's loop still running
    // beside a new one's decodes into a fresh array instead, so two loops never share it), Apply copies every entry out
    // into AgentBinding values (the callback and the channel get those copies, never the array or the Bindings message
    // aliasing it), and the loop puts it back before OnFrame returns. A push with more entries than it holds decodes into
    // an array of its own.
    private BindingEntry[]? _entryScratch = new BindingEntry[256];
    private readonly Channel<AgentBinding> _bindings = Channel.CreateUnbounded<AgentBinding>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
    private readonly TaskCompletionSource _firstRegistration = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private FrameConnection? _connection;
    private Task? _run;
    private uint _nextRid;
    private long _lastVersion;
    private int _heartbeatMs = 1000;
    private long _reconnects, _stale, _duplicates, _registrations;
    private string? _token;
    private volatile ErrorCode _credentialRefused;
    private readonly LeaderTargets _targets;
    // A NotLeader/NoLeader the server sent on the current connection (any request id, including the unprompted one of a
    // replica losing the leadership): where to go next. "" for NoLeader, null when none came.
    private volatile string? _redirectHint;
    private long _lastHeard;
    private long _redirects;
    private EndPoint? _connectedTo;

    /// <summary>Creates an agent; <see cref="StartAsync"/> connects it.</summary>
    public AgentClient(AgentOptions options, TransportMetrics? metrics = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.ReadyAfter is { } ra && ra <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), "ReadyAfter must be positive");
        _metrics = metrics ?? new TransportMetrics("agent");
        _token = options.Token;
        var servers = new List<EndPoint>();
        if (options.Server is { } first) servers.Add(first);
        if (options.Servers is { } list)
            foreach (var e in list)
                if (e is not null && !servers.Contains(e)) servers.Add(e);
        if (servers.Count == 0) throw new ArgumentException("AgentOptions needs Server or Servers", nameof(options));
        _targets = new LeaderTargets(servers);
        int seed = options.Seed ?? Random.Shared.Next();
        Seed = seed;
        _random = new Random(seed);
    }

    /// <summary>Seed of the jitter source.</summary>
    public int Seed { get; }

    /// <summary>The node id granted at registration (-1 before).</summary>
    public int NodeId { get; private set; } = -1;

    /// <summary>The last binding version fully processed; a reconnect resumes after it.</summary>
    public long LastVersion => Volatile.Read(ref _lastVersion);

    /// <summary>Accepted bindings, in order (when <see cref="AgentOptions.OnBinding"/> is null).</summary>
    public ChannelReader<AgentBinding> Bindings => _bindings.Reader;

    /// <summary>Reconnections made after the first connection.</summary>
    public long Reconnects => Volatile.Read(ref _reconnects);

    /// <summary>NotLeader redirects followed (high availability).</summary>
    public long RedirectsFollowed => Volatile.Read(ref _redirects);

    /// <summary>The server the agent is (or was last) registered with.</summary>
    public EndPoint? ConnectedTo => Volatile.Read(ref _connectedTo);

    /// <summary>Successful registrations (first and after each reconnect).</summary>
    public long Registrations => Volatile.Read(ref _registrations);

    /// <summary>Binding entries rejected because the agent holds a newer generation of the task.</summary>
    public long RejectedStale => Volatile.Read(ref _stale);

    /// <summary>Binding frames ignored because their version was already processed (should stay 0).</summary>
    public long Duplicates => Volatile.Read(ref _duplicates);

    /// <summary>The agent's own credential: <see cref="AgentOptions.Token"/>, or the one a join issued (null before either).</summary>
    public string? Token => Volatile.Read(ref _token);

    /// <summary>
    /// Set when the server refused this agent's credential for good (revoked, expired, unknown, or a join token spent):
    /// the agent stops reconnecting, because retrying cannot help. <see cref="ErrorCode.None"/> otherwise.
    /// </summary>
    public ErrorCode CredentialRefused => _credentialRefused;

    /// <summary>True while the agent has fenced itself (lease not renewed in time) and not yet reconciled with the server.</summary>
    public bool IsFenced => _isFenced;

    /// <summary>How many times the agent fenced itself.</summary>
    public long Fences => Interlocked.Read(ref _fences);

    /// <summary>True while connected and registered.</summary>
    public bool IsConnected => _connection is { IsClosing: false } && NodeId >= 0;

    /// <summary>Tasks the agent currently runs, with their generations.</summary>
    public IReadOnlyDictionary<TaskId, long> RunningTasks
    {
        get
        {
            lock (_stateLock)
            {
                var copy = new Dictionary<TaskId, long>(_running.Count);
                foreach (var (task, h) in _running) copy[task] = h.Generation;
                return copy;
            }
        }
    }

    /// <summary>Connects, registers, and keeps reconnecting in the background until disposed. Completes at the first registration.</summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        // One one-shot timer per agent, re-armed by every renewal (below), instead of a loop that polled the lease every
        // quarter lease: a fleet of 1,000 simulated agents in one process made 4,000 wakeups/s of that loop, which cost
        // the bind-path bench about a tenth of its rate (perf-reports/2026-12-07-bindpath, "The fence watchdog").
        if (_run is null && _options.FenceOnLeaseLoss)
            _fenceTimer ??= _options.Time.CreateTimer(static s => ((AgentClient)s!).OnFenceTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _run ??= Task.Run(RunAsync, CancellationToken.None);
        return _firstRegistration.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Benchmarks and tests only: makes <paramref name="connection"/>, a detached connection whose handler is this agent
    /// (FrameConnection.CreateDetached), the agent's connection as if it had registered as <paramref name="nodeId"/>,
    /// without the handshake. Binding pushes delivered to it then run the production receive path (decode, apply, the
    /// callback, the TaskReports frame) with no socket, which is what the per-frame allocation budgets measure (issue 15).
    /// </summary>
    internal void AttachDetached(FrameConnection connection, int nodeId)
    {
        _connection = connection;
        NodeId = nodeId;
    }

    /// <summary>Drops the current connection (as a network fault would); the agent reconnects and resumes.</summary>
    public void DropConnection() => _connection?.Abort(DisconnectReason.LocalClose);

    /// <summary>Reports a task's state and waits for the server's answer.</summary>
    public async Task<TaskReportStatus> ReportAsync(TaskId task, long generation, TaskState state, string reason = "")
    {
        var (type, body) = await RequestAsync(new TaskReport { NodeId = NodeId, Task = task, Generation = generation, State = state, Reason = reason }).ConfigureAwait(false);
        var ack = Expect<TaskReportAck>(type, body);
        NoteReported(task, generation, state);
        return (TaskReportStatus)ack.Body.Value;
    }

    /// <summary>
    /// Queues a task report without a reply. Reports queued while a binding frame is being handled (from
    /// <see cref="AgentOptions.OnBinding"/>) leave together as one TaskReports frame (request id 0, no ack) right after
    /// it; others leave at the next <see cref="Flush"/>. Returns false if not connected.
    /// </summary>
    public bool Report(TaskId task, long generation, TaskState state, string reason = "")
    {
        if (_connection is null) return false;
        lock (_reportLock)
        {
            if (_reportCount == _reportBuffer.Length) Array.Resize(ref _reportBuffer, _reportBuffer.Length * 2);
            _reportBuffer[_reportCount++] = new ReportEntry(task, generation, state, reason);
        }
        NoteReported(task, generation, state);
        return true;
    }

    private void NoteReported(TaskId task, long generation, TaskState state)
    {
        lock (_stateLock)
        {
            if (state is TaskState.Completed or TaskState.Failed) _running.Remove(task);
            else if (state is TaskState.Running or TaskState.Ready)
            {
                // In place: no second lookup, no insert.
                ref var h = ref CollectionsMarshal.GetValueRefOrNullRef(_running, task);
                if (!Unsafe.IsNullRef(ref h) && h.Generation == generation) h.Phase = state;
            }
        }
    }

    // After a (re)registration: the server forgot the lifecycle phases it held in memory if it restarted (and a report
    // may have been lost with the old connection), so every held task's last phase is sent again, in one frame.
    private void ReReportHeld(FrameConnection c)
    {
        ReportEntry[] again;
        lock (_stateLock)
        {
            var list = new List<ReportEntry>();
            foreach (var (task, h) in _running)
                if (h.Phase != 0) list.Add(new ReportEntry(task, h.Generation, h.Phase, ""));
            again = list.ToArray();
        }
        if (again.Length == 0) return;
        c.Send(0, new TaskReports { NodeId = NodeId, Reports = again });
        c.Flush();
    }

    private void ScheduleReady(TaskId task, long generation, TimeSpan after)
    {
        _ = Task.Delay(after, _options.Time, _stop.Token).ContinueWith(static (t, s) =>
        {
            if (t.IsCanceled) return;
            var (agent, task, generation) = ((AgentClient, TaskId, long))s!;
            bool held;
            lock (agent._stateLock) held = agent._running.TryGetValue(task, out var h) && h.Generation == generation;
            if (!held) return;
            // Disconnected (the server restarting): remember it anyway; the re-report after registration carries it.
            if (agent.Report(task, generation, TaskState.Ready)) agent.Flush();
            else agent.NoteReported(task, generation, TaskState.Ready);
        }, (this, task, generation), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Sends the queued reports of <see cref="Report"/> now.</summary>
    public void Flush()
    {
        var c = _connection;
        if (c is null) return;
        SendQueuedReports(c);
        c.Flush();
    }

    private void SendQueuedReports(FrameConnection c)
    {
        lock (_reportLock)
        {
            if (_reportCount == 0) return;
            c.Send(0, new TaskReports { NodeId = NodeId, Reports = _reportBuffer.AsMemory(0, _reportCount) });
            // Clear the reason strings so a sent report does not keep them alive.
            Array.Clear(_reportBuffer, 0, _reportCount);
            _reportCount = 0;
        }
    }

    /// <summary>Asks the server to drain this node (no new bindings).</summary>
    public async Task<int> DrainAsync()
    {
        var (type, body) = await RequestAsync(new Drain { Body = new StatusOnly { Value = NodeId } }).ConfigureAwait(false);
        return Expect<DrainAck>(type, body).Body.Value;
    }

    /// <summary>Sends one heartbeat now and waits for its answer; returns the node status the server reports.</summary>
    public async Task<NodeStatus> HeartbeatAsync()
    {
        var (type, body) = await RequestAsync(new Heartbeat { NodeId = NodeId, LastVersion = LastVersion }).ConfigureAwait(false);
        return Expect<HeartbeatAck>(type, body).Status;
    }

    private uint NextRid()
    {
        uint r = Interlocked.Increment(ref _nextRid);
        return r == 0 ? Interlocked.Increment(ref _nextRid) : r;
    }

    private async Task<(MessageType, byte[])> RequestAsync<T>(T message) where T : IWireMessage<T>
    {
        var c = _connection ?? throw new AgentRequestException(ErrorCode.None, "not connected");
        uint rid = NextRid();
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        if (!c.Send(rid, message)) { _pending.TryRemove(rid, out _); throw new AgentRequestException(ErrorCode.None, "connection closed"); }
        c.Flush();
        return await tcs.Task.ConfigureAwait(false);
    }

    private static T Expect<T>(MessageType type, byte[] body) where T : IWireMessage<T>
    {
        if (type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(body), out var err, out _);
            throw new AgentRequestException(err.Code, err.Message ?? "") { Reason = err.Reason, Leader = err.Leader };
        }
        if (type != T.Type || !Codec.TryDecode<T>(new ReadOnlySequence<byte>(body), out var m, out var e))
            throw new AgentRequestException(ErrorCode.MalformedBody, $"unexpected reply {type}");
        return m!;
    }

    // ------------------------------------------------------------------ connection management

    private async Task RunAsync()
    {
        var ct = _stop.Token;
        int attempt = 0;
        while (!ct.IsCancellationRequested)
        {
            FrameConnection? c = null;
            // Where the next attempt goes and whether it must back off first (high availability: follow redirects at once,
            // move along the list on failures, back off after a full round).
            bool backOff;
            try
            {
                _redirectHint = null;
                c = await FrameClient.ConnectAsync(_targets.Current, this, _options.Transport, _metrics, ct).ConfigureAwait(false);
                _connection = c;
                Volatile.Write(ref _lastHeard, _options.Time.GetTimestamp());
                // The node's own credential once it has one; the join token only to get it (docs/protocol.md, section 12).
                string? own = Volatile.Read(ref _token);
                var (wt, wb) = await RequestOn(c, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = _options.NodeName, Token = own ?? _options.JoinToken }, ct).ConfigureAwait(false);
                Expect<Welcome>(wt, wb);
                if (own is null && _options.JoinToken is not null)
                {
                    var (jt, jb) = await RequestOn(c, new Join { Node = _options.NodeName }, ct).ConfigureAwait(false);
                    var joined = Expect<JoinReply>(jt, jb);
                    Volatile.Write(ref _token, joined.Token);
                    _options.OnCredential?.Invoke(joined.Token);
                }
                long registerSent = _options.Time.GetTimestamp();
                var (rt, rb) = await RequestOn(c, new Register
                {
                    Node = _options.NodeName,
                    Capacity = _options.Capacity,
                    Labels = _options.Labels is null ? null : new Dictionary<string, string>(_options.Labels),
                    FailureDomain = _options.FailureDomain,
                    Region = _options.Region,
                    Zone = _options.Zone,
                    ResumeFrom = LastVersion,
                    Held = HeldTasks(),
                }, ct).ConfigureAwait(false);
                var reg = Expect<Registered>(rt, rb);
                if (reg.Stop is { Length: > 0 } stale) StopStale(stale);
                _targets.Connected();
                Volatile.Write(ref _connectedTo, _targets.Current);
                NodeId = reg.NodeId;
                _heartbeatMs = Math.Max(10, reg.HeartbeatMs);
                Volatile.Write(ref _leaseMs, reg.LeaseMs);
                Renewed(registerSent);
                Interlocked.Increment(ref _registrations);
                attempt = 0;
                _firstRegistration.TrySetResult();
                ReReportHeld(c);
                if (_options.FenceOnLeaseLoss) _ = ReconcileFencedAsync();
                if (_options.SendHeartbeats) await HeartbeatLoopAsync(c, ct).ConfigureAwait(false);
                else await c.Closed.WaitAsync(ct).ConfigureAwait(false);
                // The connection ended after a registration: a redirect pushed by a replica losing the leadership says
                // where the leader went; otherwise the server is gone and the next replica is tried. No back-off before
                // the first attempt: the agent was registered a moment ago.
                backOff = NoteFailure(_redirectHint);
                attempt = 0;
            }
            catch (Exception ex) when (ex is System.Net.Sockets.SocketException or AgentRequestException or OperationCanceledException or IOException)
            {
                backOff = ex is AgentRequestException { Code: ErrorCode.NotLeader or ErrorCode.NoLeader } redirect
                    ? NoteFailure(redirect.Leader ?? "")
                    : NoteFailure(_redirectHint);
                if (ex is AgentRequestException { Code: not ErrorCode.None } are && !_firstRegistration.Task.IsCompleted && are.Code is ErrorCode.UnsupportedVersion or ErrorCode.InvalidRequest or ErrorCode.TlsRequired or ErrorCode.PermissionDenied or ErrorCode.InvalidTopology or ErrorCode.TopologyChanged)
                {
                    _firstRegistration.TrySetException(ex);
                    return;
                }
                // A credential the server refuses (unknown, revoked, expired, a spent join token) stays refused: stop,
                // whether or not the agent was registered before, rather than knock on the door every few seconds.
                if (ex is AgentRequestException { Code: ErrorCode.Unauthenticated or ErrorCode.CredentialRevoked or ErrorCode.CredentialExpired or ErrorCode.JoinTokenExhausted } refused)
                {
                    _credentialRefused = refused.Code;
                    _firstRegistration.TrySetException(ex);
                    c?.Abort(DisconnectReason.LocalClose);
                    return;
                }
                // A server we do not trust (or that speaks no TLS) will not become trustworthy by retrying: the first
                // start fails with the typed reason. After a registration the agent keeps retrying instead (a server
                // restarting with a rotated certificate is not a reason for a node to give up).
                if (ex is TransportSecurityException { Failure: not TlsFailure.Timeout } && !_firstRegistration.Task.IsCompleted)
                {
                    _firstRegistration.TrySetException(ex);
                    return;
                }
            }
            c?.Abort(DisconnectReason.LocalClose);
            if (ct.IsCancellationRequested || _credentialRefused != ErrorCode.None) break;
            Interlocked.Increment(ref _reconnects);
            if (!backOff) continue;
            var delay = NextReconnectDelay(attempt);
            attempt++;
            try { await Task.Delay(delay, _options.Time, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
    }

    private HeldTask[]? HeldTasks()
    {
        lock (_stateLock)
        {
            if (_running.Count == 0) return null;
            var held = new HeldTask[Math.Min(_running.Count, HeldTask.MaxEntries)];
            int i = 0;
            foreach (var (task, h) in _running)
            {
                if (i == held.Length) break;
                held[i++] = new HeldTask(task, h.Generation);
            }
            return held;
        }
    }

    // Registered key 5 (version 4): tasks this agent runs whose binding is gone, released while the server restarted or
    // the leader changed, so no Stop entry exists in the stream it resumed. Delivered like a stop of the stream, once.
    private void StopStale(HeldTask[] stale)
    {
        foreach (var h in stale)
        {
            lock (_stateLock)
            {
                if (!_running.TryGetValue(h.Task, out var rb) || rb.Generation != h.Generation) continue;
                _running.Remove(h.Task);
                // The stream may still carry this release's own Stop (a release racing the registration): drop it then.
                // Bounded: entries are removed when that Stop arrives, and a later run of the task clears them below.
                _reconciled.Add((h.Task, h.Generation));
            }
            Interlocked.Increment(ref _reconciledStops);
            var ab = new AgentBinding(BindingKind.Stop, h.Task, h.Generation, default, LastVersion);
            if (_options.OnBinding is { } cb) cb(this, ab);
            else _bindings.Writer.TryWrite(ab);
        }
    }

    private long _reconciledStops;
    private readonly HashSet<(TaskId, long)> _reconciled = new();

    /// <summary>Tasks stopped because the server, at a (re)registration, found their binding gone (Registered key 5).</summary>
    public long ReconciledStops => Volatile.Read(ref _reconciledStops);

    // hint: null = no redirect (a failure: next address), "" = NoLeader (next address), else NotLeader's leader.
    private bool NoteFailure(string? hint)
    {
        if (!string.IsNullOrEmpty(hint))
        {
            Interlocked.Increment(ref _redirects);
            return _targets.Redirected(hint);
        }
        return _targets.Failed();
    }

    /// <summary>
    /// Exponential back-off with full jitter: attempt k waits a uniform time in [d/2, d], d = min(max, base × 2^k), so a
    /// fleet that lost the server does not reconnect in lock-step.
    /// </summary>
    internal TimeSpan NextReconnectDelay(int attempt)
    {
        double cap = Math.Min(_options.ReconnectMax.TotalMilliseconds, _options.ReconnectBase.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 20)));
        double u;
        lock (_random) u = _random.NextDouble();
        return TimeSpan.FromMilliseconds(cap * (0.5 + 0.5 * u));
    }

    /// <summary>The server's heartbeat interval times a uniform factor in [1 - jitter, 1 + jitter].</summary>
    internal TimeSpan NextHeartbeatDelay()
    {
        double u;
        lock (_random) u = _random.NextDouble();
        return TimeSpan.FromMilliseconds(_heartbeatMs * (1 + _options.HeartbeatJitter * (2 * u - 1)));
    }

    private async Task<(MessageType, byte[])> RequestOn<T>(FrameConnection c, T message, CancellationToken ct) where T : IWireMessage<T>
    {
        uint rid = NextRid();
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        if (!c.Send(rid, message)) { _pending.TryRemove(rid, out _); throw new AgentRequestException(ErrorCode.None, "connection closed"); }
        c.Flush();
        var closed = c.Closed;
        // Bounded: a paused server (SIGSTOP) accepts the TCP connection into its backlog and never answers.
        using var silence = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var timeout = Task.Delay(_options.HandshakeReplyTimeout, _options.Time, silence.Token);
        // The read loop completes the reply before it completes Closed, but the reply's continuation runs on the pool
        // (RunContinuationsAsynchronously) and Closed's may run inline, so WhenAny can name Closed although the reply (an
        // error the server sent just before closing, such as TlsRequired) is already there: trust the reply when it is.
        await Task.WhenAny(tcs.Task, closed, timeout).ConfigureAwait(false);
        await silence.CancelAsync().ConfigureAwait(false);
        if (!tcs.Task.IsCompleted)
        {
            _pending.TryRemove(rid, out _);
            ct.ThrowIfCancellationRequested();
            throw new AgentRequestException(ErrorCode.None, closed.IsCompleted ? "connection closed" : $"no reply within {_options.HandshakeReplyTimeout.TotalSeconds:0.#} s");
        }
        return await tcs.Task.ConfigureAwait(false);
    }

    private async Task HeartbeatLoopAsync(FrameConnection c, CancellationToken ct)
    {
        var silenceLimit = _options.ServerSilenceTimeout ?? TimeSpan.FromMilliseconds(2 * _heartbeatMs + 1000);
        while (!c.IsClosing && !ct.IsCancellationRequested)
        {
            var wait = Task.Delay(NextHeartbeatDelay(), _options.Time, ct);
            var done = await Task.WhenAny(wait, c.Closed).ConfigureAwait(false);
            if (done == c.Closed || ct.IsCancellationRequested) return;
            // Every heartbeat is acknowledged: a server that has sent nothing for the silence limit is paused or cut off.
            if (_options.Time.GetElapsedTime(Volatile.Read(ref _lastHeard)) > silenceLimit)
            {
                c.Abort(DisconnectReason.LocalClose);
                return;
            }
            // Fire and forget: the reply is matched to no pending request; with fencing its send time renews the lease.
            uint hrid = NextRid();
            if (_options.FenceOnLeaseLoss)
            {
                _heartbeatSent[hrid] = _options.Time.GetTimestamp();
                if (_heartbeatSent.Count > 64) _heartbeatSent.Clear(); // acks lost with a dead link: never grow
            }
            c.Send(hrid, new Heartbeat { NodeId = NodeId, LastVersion = LastVersion });
            c.Flush();
        }
    }

    // ------------------------------------------------------------------ IFrameHandler (connection's processing loop)

    void IFrameHandler.OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;

    void IFrameHandler.OnFrame(FrameConnection connection, in Frame frame)
    {
        Volatile.Write(ref _lastHeard, _options.Time.GetTimestamp());
        // A replica that does not lead (any more) answers whatever it is sent, a fire-and-forget heartbeat included, with
        // NotLeader/NoLeader and closes: remember where it points before the reply is dropped or the connection ends.
        if (frame.Type == MessageType.Error && Codec.TryDecode<ErrorMessage>(frame.Body, out var redirect, out _)
            && redirect.Code is ErrorCode.NotLeader or ErrorCode.NoLeader)
            _redirectHint = redirect.Code == ErrorCode.NotLeader ? redirect.Leader ?? "" : "";
        if (frame.Type == MessageType.Bindings && frame.RequestId == 0)
        {
            var scratch = Interlocked.Exchange(ref _entryScratch, null);
            if (Omega.Protocol.Bindings.TryDecodeInto(frame.Body, scratch, out var b)) Apply(b);
            // Apply copied every entry out (into AgentBinding values), so the scratch array is free again.
            if (scratch is not null) Volatile.Write(ref _entryScratch, scratch);
            // Acks made by the binding callback leave as one frame; the processing loop flushes after this read.
            SendQueuedReports(connection);
            return;
        }
        if (frame.Type == MessageType.HeartbeatAck && _heartbeatSent.TryRemove(frame.RequestId, out long sent))
        {
            if (Codec.TryDecode<HeartbeatAck>(frame.Body, out var ack, out _))
            {
                Volatile.Write(ref _leaseMs, ack.LeaseMs);
                // Only a schedulable (or draining) node's lease is renewed; a fenced or removed one is not.
                if (ack.Status is NodeStatus.Schedulable or NodeStatus.Draining) Renewed(sent);
            }
            return;
        }
        if (_pending.TryRemove(frame.RequestId, out var tcs)) tcs.TrySetResult((frame.Type, frame.Body.ToArray()));
        else if (frame.RequestId == 0 && frame.Type == MessageType.Error) FailPendingWith(frame);
    }

    /// <summary>
    /// An error the server sent on its own (request id 0) just before closing, such as TlsRequired to a plaintext
    /// client, ServerBusy or HandshakeTimeout: the requests waiting on this connection fail with its code, so the
    /// caller sees why and not only "connection closed".
    /// </summary>
    private void FailPendingWith(in Frame frame)
    {
        if (!Codec.TryDecode<ErrorMessage>(frame.Body, out var e, out _) || !e.Code.ClosesConnection()) return;
        foreach (var (rid, pending) in _pending)
            if (_pending.TryRemove(rid, out _)) pending.TrySetException(new AgentRequestException(e.Code, e.Message ?? "") { Leader = e.Leader });
        if (e.Code is ErrorCode.CredentialRevoked or ErrorCode.CredentialExpired) _credentialRefused = e.Code;
    }

    void IFrameHandler.OnDisconnected(FrameConnection connection, DisconnectReason reason)
    {
        if (_connection == connection) _connection = null;
        foreach (var (rid, tcs) in _pending)
            if (_pending.TryRemove(rid, out _)) tcs.TrySetException(new AgentRequestException(ErrorCode.None, $"connection closed ({reason})"));
    }

    private void Apply(in Bindings b)
    {
        // The stream is in version order; a version at or below the last processed one was already applied.
        if (b.Version <= LastVersion) { Interlocked.Increment(ref _duplicates); return; }
        foreach (ref readonly var e in b.Entries.Span)
        {
            bool accept;
            lock (_stateLock)
            {
                _highest.TryGetValue(e.Task, out long high);
                if (e.Kind == BindingKind.Run)
                {
                    accept = e.Generation > high;
                    if (accept)
                    {
                        _highest[e.Task] = e.Generation;
                        // A newer generation of a held task keeps its reported phase (as the separate phase map did).
                        ref var held = ref CollectionsMarshal.GetValueRefOrAddDefault(_running, e.Task, out _);
                        held.Generation = e.Generation;
                        held.Resources = e.Resources;
                        held.Version = b.Version;
                        held.Priority = e.Priority;
                        if (_reconciled.Count > 0) _reconciled.Remove((e.Task, high));
                    }
                }
                else
                {
                    // A stop applies to the generation it names; a stop for an older generation than one held is stale, and
                    // so is the stream's own stop of a generation a reconciliation at registration already stopped.
                    accept = e.Generation >= high && !(_reconciled.Count > 0 && _reconciled.Remove((e.Task, e.Generation)));
                    if (accept) { _highest[e.Task] = e.Generation; _running.Remove(e.Task); _fenced.Remove(e.Task); }
                }
            }
            if (!accept) { Interlocked.Increment(ref _stale); continue; }
            var ab = new AgentBinding(e.Kind, e.Task, e.Generation, e.Resources, b.Version, e.Priority);
            if (e.Kind == BindingKind.Run && _options.ReadyAfter is { } readyAfter)
            {
                // Started now (leaves with this frame's acks), ready after the configured delay.
                Report(e.Task, e.Generation, TaskState.Running);
                ScheduleReady(e.Task, e.Generation, readyAfter);
            }
            if (_options.OnBinding is { } cb) cb(this, ab);
            else _bindings.Writer.TryWrite(ab);
        }
        Volatile.Write(ref _lastVersion, b.Version);
    }

    // ------------------------------------------------------------------ partition fencing (issue 13, item 6)

    private void Renewed(long sentTimestamp)
    {
        // Monotonic: an old heartbeat's late ack never moves the renewal back.
        long cur;
        do
        {
            cur = Volatile.Read(ref _renewedAt);
            if (sentTimestamp <= cur) return;
        }
        while (Interlocked.CompareExchange(ref _renewedAt, sentTimestamp, cur) != cur);
        ArmFence();
    }

    // The lease is measured on the injected clock from the renewing request's send time. Why the send time: the server
    // renews the lease when the request arrives, which is after it was sent, so the agent's view of the lease's end is
    // never later than the server's — the agent stops serving no later than the server may declare the node lost.
    //
    // The margin before the lease's end at which the agent fences. Not at the end itself: the timer fires late on a
    // loaded host, while the server may evict the node at its first tick after the lease ended and a replacement starts
    // milliseconds later (seen in the partition drill: 9 replicas of a 6 + 1 service running for a moment once the
    // regional signal evicted a whole region at its leases' end). A tenth of the lease, at least 2 × a quarter lease
    // capped at 250 ms (the period of the earlier polling check, kept so short test leases keep their margin), at most a
    // quarter lease: 1 s of a 10 s lease, 375 ms of a 1.5 s one.
    private static double FenceMarginMs(int leaseMs)
    {
        double period = Math.Clamp(leaseMs / 4, 10, 250);
        return Math.Min(leaseMs / 4.0, Math.Max(leaseMs / 10.0, 2 * period));
    }

    // Time left until the fence point (lease − margin after the renewing request was sent); null while no lease is known.
    private TimeSpan? UntilFence()
    {
        int lease = Volatile.Read(ref _leaseMs);
        long renewed = Volatile.Read(ref _renewedAt);
        if (lease <= 0 || renewed == 0) return null;
        return TimeSpan.FromMilliseconds(lease - FenceMarginMs(lease)) - _options.Time.GetElapsedTime(renewed);
    }

    private void ArmFence()
    {
        if (_fenceTimer is not { } timer || UntilFence() is not { } left) return;
        try { timer.Change(left > TimeSpan.Zero ? left : TimeSpan.Zero, Timeout.InfiniteTimeSpan); }
        catch (ObjectDisposedException) { } // disposed by DisposeAsync while a late ack renewed the lease
    }

    // The timer fired: fence if the fence point has passed, else (a renewal raced the timer) wait for the rest. A renewal
    // that arrives after the fence re-arms the timer through Renewed; while fenced the reconciliation owns the state.
    private void OnFenceTimer()
    {
        if (_stop.IsCancellationRequested || _isFenced || UntilFence() is not { } left) return;
        if (left <= TimeSpan.Zero) Fence();
        else ArmFence();
    }

    private void Fence()
    {
        AgentBinding[] stopped;
        lock (_stateLock)
        {
            if (_isFenced) return;
            _isFenced = true;
            stopped = new AgentBinding[_running.Count];
            int i = 0;
            foreach (var (task, held) in _running)
            {
                var binding = held.Binding(task);
                _fenced[task] = binding;
                stopped[i++] = binding with { Kind = Protocol.BindingKind.Stop, Version = -1 };
            }
            _running.Clear();
        }
        Interlocked.Increment(ref _fences);
        foreach (var b in stopped)
        {
            if (_options.OnBinding is { } cb) cb(this, b);
            else _bindings.Writer.TryWrite(b);
        }
    }

    // After a registration: each fenced task is reported Running; the server's answer is its view — still bound (serve
    // it again) or not (it was replaced while the agent was cut off: drop it).
    private async Task ReconcileFencedAsync()
    {
        KeyValuePair<TaskId, AgentBinding>[] todo;
        lock (_stateLock)
        {
            if (!_isFenced && _fenced.Count == 0) return;
            todo = [.. _fenced];
        }
        foreach (var (task, b) in todo)
        {
            TaskReportStatus st;
            try { st = await ReportAsync(task, b.Generation, TaskState.Running).ConfigureAwait(false); }
            catch (AgentRequestException) { return; } // disconnected again: the next registration retries
            bool resume;
            lock (_stateLock)
            {
                resume = st == TaskReportStatus.Ok && _fenced.Remove(task) && (!_highest.TryGetValue(task, out long high) || high <= b.Generation);
                if (st != TaskReportStatus.Ok)
                {
                    _fenced.Remove(task);
                    // Forget the phase of a run the stream started meanwhile (as removing it from the phase map did).
                    ref var h = ref CollectionsMarshal.GetValueRefOrNullRef(_running, task);
                    if (!Unsafe.IsNullRef(ref h)) h.Phase = 0;
                }
                // The binding it was fenced with (resources included), so a second fence hands back the same stop; a phase
                // reported meanwhile is kept.
                if (resume) CollectionsMarshal.GetValueRefOrAddDefault(_running, task, out _).Run(b);
            }
            if (!resume) continue;
            var run = b with { Kind = Protocol.BindingKind.Run, Version = -1 };
            if (_options.ReadyAfter is { } readyAfter) ScheduleReady(task, b.Generation, readyAfter);
            if (_options.OnBinding is { } cb) cb(this, run);
            else _bindings.Writer.TryWrite(run);
        }
        lock (_stateLock) if (_fenced.Count == 0) _isFenced = false;
    }

    /// <summary>Stops reconnecting and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _fenceTimer?.Dispose();
        _connection?.Abort(DisconnectReason.Shutdown);
        if (_run is not null) await _run.ConfigureAwait(false);
        _bindings.Writer.TryComplete();
        _firstRegistration.TrySetCanceled();
        _stop.Dispose();
    }

    // A held task (the key of _running is its id): the Run binding it was started from, and its last lifecycle report (0:
    // none yet). A mutable struct updated in place through CollectionsMarshal refs, under _stateLock. The binding's fields
    // rather than an AgentBinding: the kind is always Run and the task is the key, and without them the value is 64 bytes
    // (ResourceVector rounds a struct holding it to 32 bytes) where an AgentBinding plus the phase took 128.
    private struct Held
    {
        public ResourceVector Resources;
        public long Generation;
        public long Version;
        public int Priority;
        public TaskState Phase;

        public void Run(in AgentBinding b)
        {
            Resources = b.Resources;
            Generation = b.Generation;
            Version = b.Version;
            Priority = b.Priority;
        }

        public readonly AgentBinding Binding(TaskId task) => new(BindingKind.Run, task, Generation, Resources, Version, Priority);
    }
}
