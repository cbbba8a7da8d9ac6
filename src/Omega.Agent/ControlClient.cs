using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Agent;

/// <summary>A job's state as the server reports it (<see cref="ControlClient.QueryJobAsync"/>).</summary>
/// <param name="Found">The server knows the job.</param>
/// <param name="Phase">The job phase: 0 queued, 1 scheduling, 2 placed, 3 parked, 4 completed.</param>
/// <param name="Pending">Tasks waiting to be placed.</param>
/// <param name="Bound">Tasks bound.</param>
/// <param name="Completed">Tasks completed.</param>
/// <param name="Reason">Why it is parked, when it is.</param>
/// <param name="Unreachable">Bound tasks whose node cannot be reached (lease overdue, fenced, down or removed); protocol version 2.</param>
/// <param name="Degraded">True when <paramref name="Unreachable"/> is above 0: the job is not healthy whatever its phase says.</param>
public readonly record struct RemoteJobStatus(bool Found, int Phase, int Pending, int Bound, int Completed, string Reason, int Unreachable = 0, bool Degraded = false);

/// <summary>
/// An operator's or tool's connection to an Omega server (role Scheduler, docs/protocol.md): submit and query jobs,
/// explain a task's placement decision, inspect nodes, bindings and statistics, drain a node, take a checkpoint. One
/// connection, no reconnect: a tool that loses the server reports it and exits.
/// </summary>
public sealed partial class ControlClient : IFrameHandler, IAsyncDisposable
{
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<(MessageType, byte[])>> _pending = new();
    private FrameConnection? _connection;
    private uint _nextRid;

    private ControlClient() { }

    /// <summary>Connects in plaintext and completes the handshake (see the overload with <see cref="TransportOptions"/> for TLS).</summary>
    public static Task<ControlClient> ConnectAsync(EndPoint server, string name = "omega-cli", CancellationToken cancellationToken = default)
        => ConnectAsync(server, null, name, cancellationToken);

    /// <summary>
    /// Connects and completes the handshake. <paramref name="server"/> is an <see cref="IPEndPoint"/> or a
    /// <see cref="DnsEndPoint"/> (resolved through DNS; see <see cref="FrameClient.TryParseEndPoint"/>). Throws
    /// <see cref="System.Net.Sockets.SocketException"/> if the name does not resolve or nothing listens there. With TLS
    /// (<paramref name="transport"/>'s <see cref="TransportOptions.ClientTls"/>) the server is verified first; a failed
    /// check throws <see cref="TransportSecurityException"/>. Without <paramref name="transport"/> (or with its
    /// ClientTls null) the connection is plaintext.
    /// </summary>
    public static Task<ControlClient> ConnectAsync(EndPoint server, TransportOptions? transport, string name = "omega-cli", CancellationToken cancellationToken = default)
        => ConnectAsync(server, transport, name, null, cancellationToken);

    /// <summary>
    /// Connects, completes the handshake and presents <paramref name="token"/> (a bearer credential,
    /// docs/protocol.md section 12; null for a server without authentication). A refused credential throws
    /// <see cref="AgentRequestException"/> with Unauthenticated, CredentialExpired or CredentialRevoked.
    /// </summary>
    public static async Task<ControlClient> ConnectAsync(EndPoint server, TransportOptions? transport, string name, string? token, CancellationToken cancellationToken = default)
    {
        var client = new ControlClient();
        client._connection = await FrameClient.ConnectAsync(server, client, transport ?? new TransportOptions(), new TransportMetrics("control"), cancellationToken).ConfigureAwait(false);
        try
        {
            var (t, b) = await client.RequestAsync(new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = name, Token = token }, cancellationToken).ConfigureAwait(false);
            var w = Expect<Welcome>(t, b);
            client.Principal = w.Principal ?? "";
            client.AuthRequired = w.AuthRequired;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return client;
    }

    /// <summary>
    /// Connects to whichever of <paramref name="servers"/> leads (high availability; docs/protocol.md, section 3,
    /// "Replicas and the leader"): a NotLeader redirect is followed to the named leader at once; NoLeader, a refused
    /// connection or a silent one (no Welcome within <paramref name="attemptTimeout"/>, default the transport's handshake
    /// timeout: a paused server accepts TCP but never answers) move on to the next address; after each full round of
    /// failures it waits (100 ms, doubling, at most 2 s) and gives up after <paramref name="maxRounds"/> rounds with the last
    /// failure. A refused credential, a TLS failure or any other typed error is thrown at once. The connection, once made,
    /// does not move: a request on it after the leader changed fails with NotLeader (the caller connects again).
    /// </summary>
    public static async Task<ControlClient> ConnectAsync(IReadOnlyList<EndPoint> servers, TransportOptions? transport, string name, string? token,
        TimeSpan? attemptTimeout = null, int maxRounds = 3, CancellationToken cancellationToken = default)
    {
        var targets = new LeaderTargets(servers);
        transport ??= new TransportOptions();
        var perAttempt = attemptTimeout ?? transport.HandshakeTimeout;
        int round = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var target = targets.Current;
            Exception failure;
            bool backOff;
            using (var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                attempt.CancelAfter(perAttempt);
                try
                {
                    var client = await ConnectAsync(target, transport, name, token, attempt.Token).ConfigureAwait(false);
                    targets.Connected();
                    client.ConnectedTo = target;
                    client.RedirectsFollowed = targets.RedirectsFollowed;
                    return client;
                }
                catch (AgentRequestException e) when (e.Code is ErrorCode.NotLeader or ErrorCode.NoLeader)
                {
                    failure = e;
                    backOff = targets.Redirected(e.Leader);
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or AgentRequestException { Code: ErrorCode.None }
                    || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    failure = e is OperationCanceledException
                        ? new TimeoutException($"{FrameClient.Describe(target)}: no Welcome within {perAttempt.TotalSeconds:0.#} s", e)
                        : e;
                    backOff = targets.Failed();
                }
            }
            if (!backOff) continue;
            if (++round >= maxRounds) throw failure;
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(2000, 100 << Math.Min(round, 5))), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The server this client connected to (the leader, after any redirect); null for a single-address connect.</summary>
    public EndPoint? ConnectedTo { get; private set; }

    /// <summary>NotLeader redirects followed while connecting.</summary>
    public long RedirectsFollowed { get; private set; }

    /// <summary>Who the server authenticated this connection as (empty when the server runs without authentication).</summary>
    public string Principal { get; private set; } = "";

    /// <summary>True when the server checks credentials.</summary>
    public bool AuthRequired { get; private set; }

    /// <summary>
    /// Creates a credential (admin scope) and returns its id, its token (shown once) and its expiry (Unix ms, 0 = none).
    /// Refusals throw <see cref="AgentRequestException"/> (PermissionDenied, InvalidRequest, CredentialLimitReached,
    /// BreakGlassUnbounded: a break-glass credential needs <paramref name="reason"/> and a TTL within the server's maximum).
    /// </summary>
    public async Task<(string Id, string Token, long ExpiresUnixMs)> CreateTokenAsync(CredentialRole role, string subject, OperatorScopes scopes = OperatorScopes.None,
        TimeSpan? ttl = null, int uses = 0, IReadOnlyList<string>? tenants = null, TimeSpan? agentTtl = null, string? reason = null, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new CreateToken
        {
            Role = role, Subject = subject ?? "", Scopes = scopes, TtlMs = (long)(ttl?.TotalMilliseconds ?? 0), Uses = uses, Tenants = tenants,
            AgentTtlMs = (long)(agentTtl?.TotalMilliseconds ?? 0), Reason = reason,
        }, cancellationToken).ConfigureAwait(false);
        var r = Expect<TokenCreated>(t, b);
        return (r.Id, r.Token, r.ExpiresUnixMs);
    }

    /// <summary>Lists credentials (admin scope), oldest first, never their secrets; and how many there are.</summary>
    public async Task<(int Total, IReadOnlyList<CredentialInfo> Credentials)> ListTokensAsync(int limit = 10_000, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new ListTokens { Limit = limit }, cancellationToken).ConfigureAwait(false);
        var r = Expect<TokenList>(t, b);
        return (r.Total, r.Credentials);
    }

    /// <summary>Revokes a credential (admin scope) once durably; returns how many of its connections the server closed.</summary>
    public async Task<int> RevokeTokenAsync(string id, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new RevokeToken { Id = id ?? "" }, cancellationToken).ConfigureAwait(false);
        return Expect<TokenRevoked>(t, b).Closed;
    }

    /// <summary>The last <paramref name="limit"/> audit entries after sequence <paramref name="after"/> (admin scope), and how many are kept.</summary>
    public async Task<(int Total, IReadOnlyList<AuditEntry> Entries)> ReadAuditAsync(int limit = 100, long after = 0, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new ReadAudit { Limit = limit, After = after }, cancellationToken).ConfigureAwait(false);
        var r = Expect<AuditLog>(t, b);
        return (r.Total, r.Entries);
    }

    /// <summary>
    /// Submits a job to the server's own scheduler workers, charged to the tenant named <paramref name="tenant"/>
    /// (null: the <c>default</c> tenant; <see cref="JobSpec.Tenant"/> is not sent, the server resolves the name).
    /// Returns the enqueue status code and reason. A refusal for a budget (error JobTooLarge or ResourceExhausted) is
    /// returned as that error's code (24 or 25, the numbers <c>EnqueueStatus</c> uses for the same refusals), not thrown:
    /// it is an answer about the job, not a broken connection. Admission refusals with their own error code
    /// (InvalidResources, RequestExceedsLargestNode, UnknownTenant) throw <see cref="AgentRequestException"/> with that code.
    /// </summary>
    public async Task<(int Status, string Reason)> SubmitJobAsync(JobSpec job, string? scheduler = null, string? tenant = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var (t, b) = await RequestAsync(new SubmitJob
        {
            JobId = job.Id.Value, Tenant = tenant ?? "", Priority = job.Priority, TaskCount = job.TaskCount, PerTask = job.PerTask,
            Gang = job.Gang, Scheduler = scheduler ?? "", RequiredLabels = job.RequiredLabels.Count == 0 ? null : new Dictionary<string, string>(job.RequiredLabels),
            AntiAffinity = (byte)job.Group.AntiAffinity, Spread = (byte)job.Group.Spread,
        }, cancellationToken).ConfigureAwait(false);
        if (t == MessageType.Error && Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(b), out var e, out _)
            && e.Code is ErrorCode.JobTooLarge or ErrorCode.ResourceExhausted)
            return ((int)e.Code, e.Message);
        var r = Expect<SubmitJobReply>(t, b);
        return (r.Status, r.Reason);
    }

    /// <summary>Reads a job's state.</summary>
    public async Task<RemoteJobStatus> QueryJobAsync(JobId job, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new QueryJob { JobId = job.Value }, cancellationToken).ConfigureAwait(false);
        var r = Expect<JobStatusReply>(t, b);
        return new RemoteJobStatus(r.Found, r.Phase, r.Pending, r.Bound, r.Completed, r.Reason, r.Unreachable, r.Degraded);
    }

    /// <summary>
    /// A SchedulerPolicy operation (docs/protocol.md, "Policy"): 1 stage, 2 promote, 3 undo, 4 history, 5 apply.
    /// Returns the status (0 Ok; PolicyStatus codes), the revision, a message and, for history, its lines.
    /// </summary>
    public async Task<(int Status, int Revision, string Message, IReadOnlyList<string> Lines)> PolicyAsync(int operation, string? document = null, int revision = 0, string? policy = null, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new PolicyRequest { Operation = (byte)operation, Document = document ?? "", Revision = revision, Policy = policy ?? "" }, cancellationToken).ConfigureAwait(false);
        var r = Expect<PolicyReply>(t, b);
        return (r.Status, r.Revision, r.Message, r.Lines ?? []);
    }

    /// <summary>The kept decision records of a workload (of one generation, or 0 for all), with its status, as text.</summary>
    public async Task<(bool Found, string Text)> ExplainWorkloadAsync(string tenant, string workload, long generation, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new ExplainWorkload { Tenant = tenant, Workload = workload, Generation = generation }, cancellationToken).ConfigureAwait(false);
        var r = Expect<ExplainWorkloadReply>(t, b);
        return (r.Found, r.Text);
    }

    /// <summary>The decision record that last covered <paramref name="task"/>, as text; null when none is kept.</summary>
    public async Task<string?> ExplainAsync(TaskId task, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Explain { Task = task }, cancellationToken).ConfigureAwait(false);
        var r = Expect<ExplainReply>(t, b);
        return r.Found ? r.Text : null;
    }

    /// <summary>Lines describing nodes, bindings or statistics, and how many exist in all.</summary>
    public async Task<(int Total, IReadOnlyList<string> Lines)> InspectAsync(InspectTarget target, int limit = 1000, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Inspect { Target = target, Limit = limit }, cancellationToken).ConfigureAwait(false);
        var r = Expect<InspectReply>(t, b);
        return (r.Total, r.Lines);
    }

    /// <summary>
    /// Creates a tenant (with an optional hard quota). Returns its id once the server has made the creation durable.
    /// Throws <see cref="AgentRequestException"/> with TenantExists, TenantLimitReached or InvalidRequest when refused.
    /// </summary>
    public async Task<int> CreateTenantAsync(string name, ResourceVector? quota = null, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Operate { Kind = OperateKind.CreateTenant, Target = name ?? "", Quota = quota }, cancellationToken).ConfigureAwait(false);
        var r = Expect<OperateReply>(t, b);
        if (r.Status != OperateStatus.Ok || r.TenantId is not { } id) throw new AgentRequestException(ErrorCode.None, $"{r.Status}: {r.Message}");
        return id;
    }

    /// <summary>
    /// Drains a node by name, takes a checkpoint, or confirms (withdraws) a failure domain's loss with a reason and an
    /// author. Typed refusals arrive as <see cref="AgentRequestException"/> with the server's error code.
    /// </summary>
    public async Task<(OperateStatus Status, string Message)> OperateAsync(OperateKind kind, string target = "", string reason = "", string author = "", CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Operate { Kind = kind, Target = target, Reason = reason, Author = author }, cancellationToken).ConfigureAwait(false);
        var r = Expect<OperateReply>(t, b);
        return (r.Status, r.Message);
    }

    private async Task<(MessageType, byte[])> RequestAsync<T>(T message, CancellationToken cancellationToken = default) where T : IWireMessage<T>
    {
        var c = _connection ?? throw new AgentRequestException(ErrorCode.None, "not connected");
        uint rid = Interlocked.Increment(ref _nextRid);
        var tcs = new TaskCompletionSource<(MessageType, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = tcs;
        // A cancelled wait forgets the request; the server may still carry it out (a write then happened unseen: read again).
        using var registration = cancellationToken.CanBeCanceled
            ? cancellationToken.Register(() => { if (_pending.TryRemove(rid, out var p)) p.TrySetCanceled(cancellationToken); })
            : default;
        if (!c.Send(rid, message)) { _pending.TryRemove(rid, out _); throw new AgentRequestException(ErrorCode.None, "connection closed"); }
        c.Flush();
        // The read loop completes the reply before it completes Closed, but the reply's continuation runs on the pool
        // (RunContinuationsAsynchronously) and Closed's may run inline, so WhenAny can name Closed although the reply (an
        // error the server sent just before closing, such as TlsRequired) is already there: trust the reply when it is.
        await Task.WhenAny(tcs.Task, c.Closed).ConfigureAwait(false);
        if (!tcs.Task.IsCompleted) { _pending.TryRemove(rid, out _); throw new AgentRequestException(ErrorCode.None, "connection closed"); }
        return await tcs.Task.ConfigureAwait(false);
    }

    private static T Expect<T>(MessageType type, byte[] body) where T : IWireMessage<T>
    {
        if (type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(body), out var err, out _);
            throw new AgentRequestException(err.Code, err.Message ?? "") { Reason = err.Reason, Leader = err.Leader };
        }
        if (type != T.Type || !Codec.TryDecode<T>(new ReadOnlySequence<byte>(body), out var m, out _))
            throw new AgentRequestException(ErrorCode.MalformedBody, $"unexpected reply {type}");
        return m!;
    }

    void IFrameHandler.OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;

    void IFrameHandler.OnFrame(FrameConnection connection, in Frame frame)
    {
        if (_pending.TryRemove(frame.RequestId, out var tcs)) tcs.TrySetResult((frame.Type, frame.Body.ToArray()));
        else if (_streams.TryGetValue(frame.RequestId, out var stream)) Deliver(frame.RequestId, stream, frame.Type, frame.Body.ToArray());
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
    }

    void IFrameHandler.OnDisconnected(FrameConnection connection, DisconnectReason reason)
    {
        foreach (var (rid, stream) in _streams)
            if (_streams.TryRemove(rid, out _)) stream.Writer.TryComplete(new AgentRequestException(ErrorCode.None, $"connection closed ({reason})"));
        foreach (var (rid, tcs) in _pending)
            if (_pending.TryRemove(rid, out _)) tcs.TrySetException(new AgentRequestException(ErrorCode.None, $"connection closed ({reason})"));
    }

    /// <summary>Closes the connection.</summary>
    public ValueTask DisposeAsync()
    {
        _connection?.Abort(DisconnectReason.LocalClose);
        return ValueTask.CompletedTask;
    }
}
