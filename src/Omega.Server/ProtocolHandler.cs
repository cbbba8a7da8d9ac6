using System.Diagnostics.Metrics;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Transport;

namespace Omega.Server;

/// <summary>Per-connection protocol state.</summary>
internal sealed class Session
{
    // Open watches by their request id (guarded by locking the session: the processing loop adds and stops, pumps remove).
    public Dictionary<uint, ObjectWatch>? Watches;

    // Open job watches (version 4, WatchJob) by their request id (guarded by locking the session).
    public Dictionary<uint, JobWatch>? JobWatches;

    public PeerRole Role;
    public NodeState? Node;

    // The agent's TaskReports batches decode into this (only the processing loop touches it, one frame at a time, and no
    // report outlives its frame), so a batch costs no array; a batch larger than it gets its own.
    public ReportEntry[]? ReportScratch;

    // Jobs submitted on this connection that may still hold queued tasks, and an upper bound of those tasks (their
    // counts at submission). Recounted exactly from the engine only when the bound would cross the budget, so a
    // submit costs O(1) until the budget is near.
    public List<JobId>? Jobs;
    public long QueuedUpperBound;

    // Authentication (issue 11): the credential the Hello presented (null with authentication off), what its subject
    // resolves to, and the scheduler ids it was seen to hold (so a commit checks ownership without a cell read).
    public Credential? Credential;
    public string HelloName = "";
    public TenantId SubmitterTenant;
    public HashSet<int>? TenantIds;
    public HashSet<int>? OwnSchedulers;

    /// <summary>Who the audit log names: the credential (principal and id), or the Hello name without authentication.</summary>
    public string Who => Credential?.Who ?? $"anonymous({HelloName})";
}

/// <summary>
/// Decodes frames and executes them against the cell and the engine. Every decode failure is caught per frame and
/// answered with a typed error; nothing a peer sends can change committed state except a valid request it is allowed to make.
/// </summary>
internal sealed partial class ProtocolHandler : IFrameHandler, IDisposable
{
    private readonly Cell _cell;
    private readonly SchedulingEngine? _engine;
    private readonly ServerOptions _options;
    private readonly NodeRegistry _nodes;
    private readonly Dispatcher _dispatcher;
    private readonly NodeLifecycleController _lifecycle;
    private readonly Meter _meter;
    private readonly Counter<long> _taskReports, _requests;
    private readonly AuthService _auth;
    private readonly Authorizer _authz;

    public ProtocolHandler(Cell cell, SchedulingEngine? engine, ServerOptions options, NodeRegistry nodes, Dispatcher dispatcher, NodeLifecycleController lifecycle, AuthService auth)
    {
        _auth = auth;
        _authz = new Authorizer(auth, cell, engine);
        _cell = cell;
        _engine = engine;
        _options = options;
        _nodes = nodes;
        _dispatcher = dispatcher;
        _lifecycle = lifecycle;
        _meter = CellCounters.CreateMeter("Omega.Server", cell.Name, options.MeterFactory);
        _taskReports = _meter.CreateCounter<long>("omega.server.task_reports", "{report}", "Task state reports received from agents, by state");
        _requests = _meter.CreateCounter<long>("omega.server.requests", "{request}", "Requests handled (every frame that is a request)");
        _redirects = _meter.CreateCounter<long>("omega.server.redirects", "{connection}", "Clients turned away because this replica does not lead, by code (NotLeader, NoLeader)");
        // The stages of a task's life after its placement (docs/operations.md, "Stage dashboards"). Scheduling is the
        // engine's omega.sched.job.placement.duration; serving is the workload controller's omega.controlplane.replicas.
        dispatcher.Delivery = _meter.CreateHistogram("omega.server.binding.delivery.duration", "s",
            "Binding stage: commit of a binding to its push on the agent's connection (the oldest of each bind-path pass)", tags: null, advice: LatencyBuckets.Advice);
        _startup = _meter.CreateHistogram("omega.server.task.startup.duration", "s",
            "Startup stage: commit of a binding to its agent's first running report", tags: null, advice: LatencyBuckets.Advice);
        _readiness = _meter.CreateHistogram("omega.server.task.readiness.duration", "s",
            "Readiness stage: a binding's running report to its ready report", tags: null, advice: LatencyBuckets.Advice);
        _stageClock = dispatcher.Clock;
        // Job watches (WatchJob) are pushed from the engine's change hook; a multicast delegate, so several servers
        // over one engine each see every change.
        if (engine is not null) engine.JobChanged += OnJobChanged;
        _snapshots = options.Snapshots is { } source ? new SnapshotService(source, options) : null;
    }

    private readonly Counter<long> _redirects;
    private readonly Histogram<double> _startup, _readiness;
    private readonly StageClock? _stageClock;
    private long _redirectCount;

    /// <summary>NotLeader/NoLeader answers sent so far (each closed its connection).</summary>
    public long RedirectCount => Volatile.Read(ref _redirectCount);

    /// <summary>
    /// Turns a client away from a replica that does not lead (docs/protocol.md, section 3, "Replicas and the leader"):
    /// NotLeader naming the leader, or NoLeader when none is known; the connection closes and the client reconnects.
    /// </summary>
    internal void Redirect(FrameConnection c, uint rid, ILeaderGate gate)
    {
        // Read the address once: the gate may change under us, and the code must match the address actually sent.
        string? leader = gate.LeaderAddress;
        long epoch = gate.Epoch;
        bool known = !string.IsNullOrEmpty(leader);
        _redirects.Add(1, new KeyValuePair<string, object?>("code", known ? nameof(ErrorCode.NotLeader) : nameof(ErrorCode.NoLeader)));
        Interlocked.Increment(ref _redirectCount);
        c.SendRedirect(rid, leader, epoch, known
            ? $"replica '{_options.Name}' does not lead; the leader is {leader} (epoch {epoch})"
            : $"replica '{_options.Name}' does not lead and no leader is known; retry another replica or later");
    }

    public long TaskReportsByState(TaskState s) => Volatile.Read(ref _reportCounts[(int)s]);

    private readonly long[] _reportCounts = new long[8];

    public void OnConnected(FrameConnection connection) => connection.State = new Session();

    public void OnDisconnected(FrameConnection connection, DisconnectReason reason)
    {
        if (connection.State is Session { Credential: { } cred }) _auth.Detach(connection, cred);
        if (connection.State is Session session)
        {
            StopAllWatches(session, _options.Stepped);
            StopAllJobWatches(session);
        }
        if (connection.State is Session { Node: { } node })
        {
            bool registered;
            lock (node.Sync)
            {
                registered = node.Connection == connection;
                if (registered) node.Connection = null;
            }
            // The node's own registered connection went away (not a superseded one): the regional signal's input.
            if (registered) _lifecycle.Disconnected(node.Id);
        }
    }

    public void OnFrame(FrameConnection c, in Frame frame)
    {
        var session = (Session)c.State!;
        uint rid = frame.RequestId;
        if (frame.Type == MessageType.Hello)
        {
            HandleHello(c, session, frame);
            return;
        }
        if (!c.HandshakeCompleted)
        {
            c.SendError(rid, ErrorCode.HandshakeRequired, "the first frame must be Hello");
            return;
        }
        // Leadership lost since the handshake (the gate's Changed also closes every connection, but a request may arrive
        // before that runs): nothing is served by a replica that does not lead. One volatile read per frame.
        if (_options.Leadership is { IsLeader: false } gate)
        {
            Redirect(c, rid, gate);
            return;
        }
        // A credential revoked or expired since the handshake is refused at its next request, and the connection closed.
        if (session.Credential is { } cred && !_auth.IsLive(cred, out var dead, out var why))
        {
            c.SendError(rid, dead, why);
            return;
        }
        if (!c.TryBeginRequest())
        {
            c.SendError(rid, ErrorCode.TooManyRequestsInFlight, "too many requests in flight on this connection");
            return;
        }
        _requests.Add(1);
        // The role and scope rules (the matrix of docs/protocol.md, section 12) for requests of this connection's family;
        // the other family gets WrongRole from the switch as before.
        if (session.Credential is not null && IsRequestOf(frame.Type, session.Role) && !_authz.Permit(c, session, rid, frame.Type))
        {
            c.EndRequest();
            return;
        }
        bool ended = true;
        switch (frame.Type)
        {
            case MessageType.Join when session.Role == PeerRole.Agent: ended = HandleJoin(c, session, rid, frame); break;
            case MessageType.CreateToken when session.Role == PeerRole.Scheduler: ended = HandleCreateToken(c, session, rid, frame); break;
            case MessageType.ListTokens when session.Role == PeerRole.Scheduler: HandleListTokens(c, session, rid, frame); break;
            case MessageType.RevokeToken when session.Role == PeerRole.Scheduler: ended = HandleRevokeToken(c, session, rid, frame); break;
            case MessageType.ReadAudit when session.Role == PeerRole.Scheduler: HandleReadAudit(c, rid, frame); break;
            case MessageType.Register when session.Role == PeerRole.Agent: ended = HandleRegister(c, session, rid, frame); break;
            case MessageType.Heartbeat when session.Role == PeerRole.Agent: ended = HandleHeartbeat(c, session, rid, frame); break;
            case MessageType.TaskReport when session.Role == PeerRole.Agent: ended = HandleTaskReport(c, session, rid, frame); break;
            case MessageType.Drain when session.Role == PeerRole.Agent: ended = HandleDrain(c, session, rid, frame); break;
            case MessageType.TaskReports when session.Role == PeerRole.Agent: ended = HandleTaskReports(c, session, rid, frame); break;
            case MessageType.AcquireLease when session.Role == PeerRole.Scheduler: ended = HandleAcquire(c, session, rid, frame); break;
            case MessageType.RenewLease when session.Role == PeerRole.Scheduler: ended = HandleRenew(c, session, rid, frame); break;
            case MessageType.Sync when session.Role == PeerRole.Scheduler: HandleSync(c, rid, frame); break;
            case MessageType.Commit when session.Role == PeerRole.Scheduler: ended = HandleCommit(c, session, rid, frame); break;
            case MessageType.SubmitJob when session.Role == PeerRole.Scheduler: HandleSubmit(c, session, rid, frame); break;
            case MessageType.QueryJob when session.Role == PeerRole.Scheduler: HandleQuery(c, session, rid, frame); break;
            case MessageType.Explain when session.Role == PeerRole.Scheduler: HandleExplain(c, session, rid, frame); break;
            case MessageType.Inspect when session.Role == PeerRole.Scheduler: HandleInspect(c, session, rid, frame); break;
            case MessageType.Operate when session.Role == PeerRole.Scheduler: ended = HandleOperate(c, session, rid, frame); break;
            case MessageType.Policy when session.Role == PeerRole.Scheduler: ended = HandlePolicy(c, rid, frame); break;
            case MessageType.ExplainWorkload when session.Role == PeerRole.Scheduler: HandleExplainWorkload(c, rid, frame); break;
            case MessageType.SetQuota when session.Role == PeerRole.Scheduler: ended = HandleSetQuota(c, rid, frame); break;
            case MessageType.ListQuotas when session.Role == PeerRole.Scheduler: HandleListQuotas(c, rid, frame); break;
            case MessageType.StopJob when session.Role == PeerRole.Scheduler: ended = HandleStopJob(c, session, rid, frame); break;
            case MessageType.SnapshotRequest when session.Role == PeerRole.Scheduler: ended = HandleSnapshotRequest(c, session, rid, frame); break;
            case MessageType.SnapshotRead when session.Role == PeerRole.Scheduler: ended = HandleSnapshotRead(c, rid, frame); break;
            case MessageType.WatchJob when session.Role == PeerRole.Scheduler: ended = HandleWatchJob(c, session, rid, frame); break;
            case MessageType.StopJobWatch when session.Role == PeerRole.Scheduler: ended = HandleStopJobWatch(c, session, rid, frame); break;
            case MessageType.CreateObject or MessageType.UpdateObject or MessageType.UpdateObjectStatus or MessageType.DeleteObject
                or MessageType.GetObject or MessageType.ListObjects or MessageType.WatchObjects or MessageType.StopWatch
                when session.Role == PeerRole.Scheduler:
                ended = HandleObjectMessage(c, session, rid, frame);
                break;
            case MessageType.CreateObject or MessageType.UpdateObject or MessageType.UpdateObjectStatus or MessageType.DeleteObject
                or MessageType.GetObject or MessageType.ListObjects or MessageType.WatchObjects or MessageType.StopWatch:
            case MessageType.Register or MessageType.Heartbeat or MessageType.TaskReport or MessageType.Drain or MessageType.TaskReports
                or MessageType.AcquireLease or MessageType.RenewLease or MessageType.Sync or MessageType.Commit
                or MessageType.SubmitJob or MessageType.QueryJob or MessageType.Explain or MessageType.Inspect or MessageType.Operate
                or MessageType.SetQuota or MessageType.ListQuotas or MessageType.Policy or MessageType.ExplainWorkload
                or MessageType.StopJob or MessageType.WatchJob or MessageType.StopJobWatch
                or MessageType.SnapshotRequest or MessageType.SnapshotRead
                or MessageType.Join or MessageType.CreateToken or MessageType.ListTokens or MessageType.RevokeToken or MessageType.ReadAudit:
                c.SendError(rid, ErrorCode.WrongRole, $"{frame.Type} is not allowed for role {session.Role}");
                break;
            default:
                c.SendError(rid, ErrorCode.UnknownMessageType, $"message type 0x{(byte)frame.Type:x2} is not a request");
                break;
        }
        if (ended) c.EndRequest();
    }

    private static bool IsRequestOf(MessageType t, PeerRole role) => role == PeerRole.Agent
        ? t is MessageType.Register or MessageType.Heartbeat or MessageType.TaskReport or MessageType.Drain or MessageType.TaskReports or MessageType.Join
        : t is MessageType.AcquireLease or MessageType.RenewLease or MessageType.Sync or MessageType.Commit or MessageType.SubmitJob or MessageType.QueryJob
            or MessageType.Explain or MessageType.Inspect or MessageType.Operate
            or MessageType.CreateToken or MessageType.ListTokens or MessageType.RevokeToken or MessageType.ReadAudit
            or MessageType.StopJob or MessageType.WatchJob or MessageType.StopJobWatch
            or MessageType.SnapshotRequest or MessageType.SnapshotRead
            // Control-plane object messages (0x40-0x4F, the cpwire change): authorized fail-closed by Authorizer.ObjectRule.
            || Authorizer.IsObjectMessage(t);

    // ------------------------------------------------------------------ credentials (docs/protocol.md, section 12)

    /// <returns>False when the reply waits for the new credential to be durable.</returns>
    private bool HandleJoin(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Join>(c, rid, frame, out var m)) return true;
        if (s.Credential is not { } join)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "authentication is off on this server: there is nothing to join");
            return true;
        }
        var r = _auth.Join(join, c, m.Node);
        if (r.Code == ErrorCode.PermissionDenied)
        {
            _authz.Deny(c, s, rid, "Join", m.Node, r.Reason, r.Message);
            return true;
        }
        if (r.Code != ErrorCode.None)
        {
            c.SendError(rid, r.Code, r.Message);
            return true;
        }
        _authz.Attach(s, r.Agent!);
        _authz.Audit(s, "Join", m.Node, $"ok: agent credential {r.Agent!.Id} issued by join token {join.Id} ({join.UsesLeft} uses left)");
        return ReplyWhenDurable(c, rid, new JoinReply { Token = r.Token, CredentialId = r.Agent.Id, ExpiresUnixMs = r.Agent.ExpiresUnixMs });
    }

    private bool HandleCreateToken(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<CreateToken>(c, rid, frame, out var m)) return true;
        if (!_auth.Enabled)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "authentication is off on this server (started with --no-auth): credentials would not be checked");
            return true;
        }
        string target = $"{Credential.RoleName(m.Role)}:{m.Subject}";
        // regops (issue 13): break-glass is a bounded emergency grant. Over the wire (a person asking) it needs a reason
        // and a TTL within the maximum; the library API (the bootstrap admin, embedders) is not held to it.
        bool breakGlass = m.Role == CredentialRole.Operator && (m.Scopes & OperatorScopes.BreakGlass) != 0;
        if (breakGlass && _auth.BreakGlassProblem(m) is { } problem)
        {
            _authz.Audit(s, "CreateToken", target, $"{ErrorCode.BreakGlassUnbounded}: {problem}");
            c.SendError(rid, ErrorCode.BreakGlassUnbounded, problem);
            return true;
        }
        var (code, message, reply) = _auth.Create(m, s.Who);
        _authz.Audit(s, "CreateToken", target, code != ErrorCode.None ? $"{code}: {message}"
            : breakGlass ? $"ok: credential {reply.Id}; BREAK-GLASS for {TimeSpan.FromMilliseconds(m.TtlMs)}: {m.Reason}" : $"ok: credential {reply.Id}");
        if (code != ErrorCode.None)
        {
            c.SendError(rid, code, message);
            return true;
        }
        return ReplyWhenDurable(c, rid, reply);
    }

    private void HandleListTokens(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<ListTokens>(c, rid, frame, out var m)) return;
        if (m.Limit is < 1 or > TokenList.MaxEntries)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"list tokens: limit 1-{TokenList.MaxEntries}");
            return;
        }
        if (!_auth.Enabled)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "authentication is off on this server (started with --no-auth)");
            return;
        }
        var all = _auth.ListCredentials();
        _authz.Audit(s, "ListTokens", "", $"ok: {all.Count} credential(s)");
        c.Send(rid, new TokenList { Total = all.Count, Credentials = all.Count <= m.Limit ? all : all.Take(m.Limit).ToList() });
    }

    private bool HandleRevokeToken(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<RevokeToken>(c, rid, frame, out var m)) return true;
        if (!_auth.Enabled)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "authentication is off on this server (started with --no-auth)");
            return true;
        }
        var (code, closed) = _auth.RevokeCore(m.Id, s.Who);
        _authz.Audit(s, "RevokeToken", m.Id, code == ErrorCode.None ? $"ok: {closed} connection(s) closed" : code.ToString());
        if (code != ErrorCode.None)
        {
            c.SendError(rid, code, $"no credential with id '{m.Id}'");
            return true;
        }
        return ReplyWhenDurable(c, rid, new TokenRevoked { Id = m.Id, Closed = closed });
    }

    private void HandleReadAudit(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<ReadAudit>(c, rid, frame, out var m)) return;
        if (m.Limit is < 1 or > TokenList.MaxEntries || m.After < 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"read audit: limit 1-{TokenList.MaxEntries}, after not negative");
            return;
        }
        var (total, entries) = _auth.ReadAudit(m.Limit, m.After);
        c.Send(rid, new AuditLog { Total = total, Entries = entries });
    }

    // ------------------------------------------------------------------ operator requests (docs/protocol.md, "Operator messages")

    // Policy operations run on the thread pool: each is a durable object write (or two), acknowledged once durable.
    // Returns false when the reply is sent later (the request stays in flight until then, like a checkpoint's).
    private bool HandlePolicy(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<PolicyRequest>(c, rid, frame, out var m)) return true;
        if (_options.Policies is not { } policies)
        {
            c.SendError(rid, ErrorCode.ControlPlaneUnavailable, "this server runs no control plane (no SchedulerPolicy revisions)");
            return true;
        }
        if (m.Operation is < 1 or > 5)
        {
            c.SendError(rid, ErrorCode.UnknownPolicyOperation, $"policy operation {m.Operation} is not 1-5");
            return true;
        }
        if (!string.IsNullOrEmpty(m.Policy) && m.Policy != policies.Policy)
        {
            c.Send(rid, new PolicyReply { Status = (byte)Omega.ControlPlane.PolicyStatus.RevisionNotFound, Message = $"this server serves policy '{policies.Policy}', not '{m.Policy}'" });
            return true;
        }
        // Stepped (the simulation): started here; its durable writes resume it inline when the simulated disk flushes.
        if (_options.Stepped) _ = PolicyAndReplyAsync(c, rid, policies, m);
        else _ = Task.Run(() => PolicyAndReplyAsync(c, rid, policies, m));
        return false;
    }

    private static async Task PolicyAndReplyAsync(FrameConnection c, uint rid, Omega.ControlPlane.PolicyRevisions policies, PolicyRequest m)
    {
        PolicyReply reply;
        try
        {
            reply = await RunPolicyAsync(policies, m).ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            reply = new PolicyReply { Status = (byte)Omega.ControlPlane.PolicyStatus.StoreError, Message = "the object store is closed" };
        }
        c.Send(rid, reply);
        c.Flush();
        c.EndRequest();
    }

    private static async Task<PolicyReply> RunPolicyAsync(Omega.ControlPlane.PolicyRevisions policies, PolicyRequest m)
    {
        Omega.ControlPlane.PolicyResult r;
        switch (m.Operation)
        {
            case 1 or 5:
                if (!Omega.ControlPlane.PolicyRevisions.TryParse(m.Document, out var settings, out var error))
                    return new PolicyReply { Status = (byte)Omega.ControlPlane.PolicyStatus.Invalid, Message = error ?? "invalid" };
                r = await policies.StageAsync(settings).ConfigureAwait(false);
                if (r.IsOk && m.Operation == 5) r = await policies.PromoteAsync(r.Revision).ConfigureAwait(false);
                break;
            case 2: r = await policies.PromoteAsync(m.Revision).ConfigureAwait(false); break;
            case 3: r = await policies.RollbackAsync(m.Revision == 0 ? null : m.Revision).ConfigureAwait(false); break;
            default:
                var (revisions, history) = policies.History();
                var lines = new List<string>();
                foreach (var rev in revisions) lines.Add($"revision {rev.Revision} {rev.State} created={rev.Created:O} {rev.Summary}");
                foreach (var h in history) lines.Add($"history {h.Action} r{h.From} -> r{h.Revision} at={h.At:O}");
                return new PolicyReply { Status = 0, Revision = policies.ActiveRevision, Message = $"{revisions.Count} revision(s), active r{policies.ActiveRevision}", Lines = [.. lines] };
        }
        return new PolicyReply { Status = (byte)r.Status, Revision = r.Revision, Message = r.Message };
    }

    private void HandleExplainWorkload(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<ExplainWorkload>(c, rid, frame, out var m)) return;
        if (_options.Decisions is not { } archive)
        {
            c.SendError(rid, ErrorCode.ControlPlaneUnavailable, "this server runs no control plane (no decision archive)");
            return;
        }
        string tenant = string.IsNullOrEmpty(m.Tenant) ? Cell.DefaultTenantName : m.Tenant;
        var sb = new System.Text.StringBuilder();
        var w = archive.Store.Get<Omega.ControlPlane.Workload>(tenant, m.Workload);
        if (w is not null)
        {
            sb.AppendLine($"workload {tenant}/{m.Workload} generation {w.Metadata.Generation} (observed {w.Status.ObservedGeneration}): desired {w.Status.Desired}, bound {w.Status.Bound}, ready {w.Status.Ready}");
            foreach (var cond in w.Status.Conditions)
                sb.AppendLine($"  condition {cond.Type}={cond.Status} reason={cond.Reason} observedGeneration={cond.ObservedGeneration}: {cond.Message}");
        }
        else sb.AppendLine($"workload {tenant}/{m.Workload}: not found (deleted?); its kept decision records follow");
        var records = archive.For(tenant, m.Workload, m.Generation == 0 ? null : m.Generation);
        foreach (var d in records)
        {
            if (sb.Length > 512 * 1024) { sb.AppendLine("... (cut: more records are kept)"); break; }
            sb.Append(d.Spec.Text);
        }
        bool found = records.Count > 0;
        if (!found) sb.AppendLine(m.Generation == 0 ? "no decision record is kept for this workload" : $"no decision record is kept for generation {m.Generation}");
        c.Send(rid, new ExplainWorkloadReply { Found = found, Text = sb.ToString() });
    }

    private void HandleExplain(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Explain>(c, rid, frame, out var m)) return;
        if (m.Format > 1)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "explain: format 0 (text) or 1 (JSON document)");
            return;
        }
        if (!_authz.JobVisible(c, s, rid, MessageType.Explain, m.Task.Job)) return;
        // A credential scoped to tenants sees records of jobs the engine still knows (and can attribute) only.
        if (Authorizer.IsTenantScoped(s) && (_engine is null || !_engine.TryGetJob(m.Task.Job, out _)))
        {
            c.Send(rid, new ExplainReply { Found = false, Text = $"no decision record visible to this credential for {m.Task}" });
            return;
        }
        var record = _engine?.Explain(m.Task);
        c.Send(rid, record is null
            ? new ExplainReply { Found = false, Text = _engine is null ? "this server runs no scheduling engine" : $"no decision record is kept for {m.Task}" }
            : new ExplainReply { Found = true, Text = record.Explain(m.Task.Index), Document = m.Format == 1 ? StructuredReports.Decision(record, m.Task) : null });
    }

    private void HandleInspect(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Inspect>(c, rid, frame, out var m)) return;
        if (m.Limit is < 1 or > InspectReply.MaxLines || m.Format > 1 || (m.Target > InspectTarget.Jobs && m.Target is not (InspectTarget.Liveness or InspectTarget.Audit or InspectTarget.Tenants or InspectTarget.Reservations)))
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"inspect: target 0-3, 5, 6, 10 or 21, limit 1-{InspectReply.MaxLines} and format 0 or 1");
            return;
        }
        // Reads are scoped too: a submitter (or a scheduler limited to tenants) sees its tenants' jobs and bindings only.
        if (!_authz.Inspect(c, s, rid, m.Target, out bool filtered)) return;
        var lines = new List<string>();
        int total = 0;
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        switch (m.Target)
        {
            case InspectTarget.Nodes:
                var snap = _cell.Snapshot();
                for (int i = 0; i < snap.NodeCount; i++)
                {
                    if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.Status == NodeStatus.Removed) continue;
                    total++;
                    if (lines.Count < m.Limit)
                        lines.Add(string.Create(ci, $"{v.Spec.Name} {v.Id} {v.Status} domain={v.Spec.FailureDomain} allocated={v.Allocated} capacity={v.Capacity} tasks={v.TaskCount} version={v.Version} region={v.Spec.Region} zone={v.Spec.Zone}"));
                }
                break;
            case InspectTarget.Allocations:
                var all = _cell.GetAllocations();
                total = all.Count;
                if (filtered) total = 0;
                for (int i = 0; i < all.Count; i++)
                {
                    var a = all[i];
                    if (filtered)
                    {
                        if (!Authorizer.TenantAllowed(s, a.Tenant)) continue;
                        total++;
                    }
                    if (lines.Count >= m.Limit) { if (!filtered) break; continue; }
                    lines.Add(string.Create(ci, $"{a.Task} {a.Node} {a.Resources} tenant={a.Tenant} priority={a.Priority} generation={a.Generation}"));
                }
                break;
            case InspectTarget.Jobs:
                if (_engine is not null)
                {
                    total = filtered ? 0 : _engine.JobCount;
                    foreach (var j in _engine.ListJobs(filtered ? int.MaxValue : m.Limit))
                    {
                        if (filtered)
                        {
                            if (!Authorizer.TenantAllowed(s, j.Job.Tenant)) continue;
                            if (++total > m.Limit) continue;
                        }
                        lines.Add(string.Create(ci, $"{j.Job.Id} scheduler={j.Scheduler} phase={j.Phase} pending={j.Pending} bound={j.Bound} completed={j.Completed} attempts={j.Attempts} generation={j.Generation}{(j.ParkedReason is null ? "" : " parked: " + j.ParkedReason)}"));
                    }
                }
                break;
            case InspectTarget.Reservations:
                // regops (issue 13): what omega doctor checks for leaked holds.
                var now = _options.Time.GetUtcNow();
                foreach (var hold in _cell.GetReservations())
                {
                    if (filtered && !Authorizer.TenantAllowed(s, hold.Tenant)) continue;
                    total++;
                    if (lines.Count < m.Limit)
                        lines.Add(string.Create(ci, $"{hold.Task} {hold.Node} {hold.Resources} tenant={hold.Tenant} expires={hold.ExpiresAt:O} expired={(hold.ExpiresAt <= now ? "true" : "false")}"));
                }
                break;
            case InspectTarget.Tenants:
                var tenants = _cell.GetTenants();
                total = filtered ? 0 : tenants.Count;
                for (int i = 0; i < tenants.Count && lines.Count < m.Limit; i++)
                {
                    var t = tenants[i];
                    if (filtered)
                    {
                        if (!Authorizer.TenantAllowed(s, t.Id)) continue;
                        total++;
                    }
                    lines.Add(string.Create(ci, $"{t.Name} {t.Id} quota={(t.Quota is { } q ? q.ToString() : "none")} usage={t.Usage}"));
                }
                break;
            case InspectTarget.Stats:
                var k = _cell.Counters;
                lines.Add(string.Create(ci, $"cell version={_cell.Version} nodes={_cell.NodeCount} bindings={_cell.AllocationCount}"));
                foreach (var st in Enum.GetValues<TransactionStatus>())
                    if (k.Transactions(st) > 0) lines.Add(string.Create(ci, $"transactions {st}={k.Transactions(st)}"));
                foreach (var st in Enum.GetValues<ClaimStatus>())
                    if (k.Claims(st) > 0) lines.Add(string.Create(ci, $"claims {st}={k.Claims(st)}"));
                if (_engine is not null)
                    foreach (var w in _engine.Kinds)
                    {
                        var (useful, wasted) = _engine.Busyness(w);
                        var (placed, clean, conflicted) = _engine.Totals(w);
                        lines.Add(string.Create(ci, $"scheduler {w} queue={_engine.QueueDepth(w)} busyness useful={useful:0.0000} wasted={wasted:0.0000} placements={placed} clean={clean} conflicted={conflicted} oldest_queued_s={_engine.OldestQueuedAge(w).TotalSeconds:0.000}"));
                    }
                // Liveness summary (version 2): evictions by reason and what the mass-silence brake holds back.
                var live = _lifecycle.Describe(2, out _);
                for (int i = 0; i < 2 && i < live.Count; i++) lines.Add("lifecycle " + live[i]);
                total = lines.Count;
                if (lines.Count > m.Limit) lines.RemoveRange(m.Limit, lines.Count - m.Limit);
                break;
            case InspectTarget.Audit:
                var problems = _cell.Audit();
                lines.Add(problems.Count == 0 ? "ok" : string.Create(ci, $"violations={problems.Count}"));
                foreach (var p in problems) lines.Add(p);
                total = lines.Count;
                if (lines.Count > m.Limit) lines.RemoveRange(m.Limit, lines.Count - m.Limit);
                break;
            case InspectTarget.Liveness:
                lines = _lifecycle.Describe(m.Limit, out total);
                if (lines.Count > m.Limit) lines.RemoveRange(m.Limit, lines.Count - m.Limit);
                break;
        }
        // A reply must fit the peer's frame limit whatever the line count: keep the longest prefix within the byte budget
        // (the client sees Total and that fewer lines came, as with a limit). Without this a 10,000-node listing closed
        // the client's connection with FrameTooLarge.
        long bytes = 0;
        for (int i = 0; i < lines.Count; i++)
        {
            bytes += System.Text.Encoding.UTF8.GetByteCount(lines[i]) + 5;
            if (bytes > InspectReply.MaxLineBytes)
            {
                if (total < lines.Count) total = lines.Count; // targets whose total is the line count keep saying so
                lines.RemoveRange(i, lines.Count - i);
                break;
            }
        }
        c.Send(rid, new InspectReply
        {
            Total = total, Lines = lines,
            Document = m.Format == 1 && m.Target == InspectTarget.Stats ? StructuredReports.Stats(_cell, _engine, _lifecycle) : null,
        });
    }

    /// <returns>False when the reply is sent later (a checkpoint runs in the background), so the request stays in flight.</returns>
    private bool HandleOperate(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Operate>(c, rid, frame, out var m)) return true;
        if (!_authz.Operate(c, s, rid, m.Kind, m.Target)) return true;
        string action = "Operate " + m.Kind;
        switch (m.Kind)
        {
            case OperateKind.DrainNode:
                if (!_cell.TryGetNodeId(m.Target, out var id))
                {
                    _authz.Audit(s, action, m.Target, "UnknownNode");
                    c.Send(rid, new OperateReply { Status = OperateStatus.UnknownNode, Message = $"no node named '{m.Target}'" });
                    return true;
                }
                var st = _cell.SetNodeStatus(id, NodeStatus.Draining);
                _authz.Audit(s, action, m.Target, st == NodeOpStatus.Ok ? "ok" : st.ToString());
                return ReplyWhenDurable(c, rid, st == NodeOpStatus.Ok
                    ? new OperateReply { Status = OperateStatus.Ok, Message = $"node '{m.Target}' ({id}) is draining" }
                    : new OperateReply { Status = OperateStatus.Failed, Message = st.ToString() });
            case OperateKind.CreateTenant:
                return CreateTenant(c, s, rid, m);
            case OperateKind.UndrainNode:
                return HandleUndrain(c, s, rid, m.Target, action);
            case OperateKind.RemoveNode:
                return HandleRemoveNode(c, s, rid, m.Target);
            case OperateKind.Checkpoint when _options.Checkpoint is { } checkpoint:
                _authz.Audit(s, action, "", "started");
                _ = Task.Run(async () =>
                {
                    OperateReply reply;
                    try
                    {
                        await checkpoint(CancellationToken.None).ConfigureAwait(false);
                        reply = new OperateReply { Status = OperateStatus.Ok, Message = $"checkpoint taken at cell version {_cell.Version}" };
                    }
                    catch (IOException e)
                    {
                        reply = new OperateReply { Status = OperateStatus.Failed, Message = e.Message };
                    }
                    c.Send(rid, reply);
                    c.Flush();
                    c.EndRequest();
                });
                return false;
            case OperateKind.Checkpoint:
                _authz.Audit(s, action, "", "Unsupported");
                c.Send(rid, new OperateReply { Status = OperateStatus.Unsupported, Message = "this server has no durable store" });
                return true;
            case OperateKind.ConfirmDomainLost:
            case OperateKind.WithdrawDomainLoss:
                return HandleDomainLoss(c, s, rid, m);
            default:
                _authz.Audit(s, action, m.Target, "InvalidRequest");
                c.SendError(rid, ErrorCode.InvalidRequest, $"operate: unknown kind {(byte)m.Kind}");
                return true;
        }
    }

    /// <returns>False when the reply waits for the record to be durable (the request stays in flight until then).</returns>
    private bool HandleDomainLoss(FrameConnection c, Session s, uint rid, in Operate m)
    {
        string author = string.IsNullOrWhiteSpace(m.Author) ? "" : m.Author.Trim();
        if (string.IsNullOrWhiteSpace(m.Target) || string.IsNullOrWhiteSpace(m.Reason) || author.Length == 0)
        {
            c.SendError(rid, ErrorCode.InvalidConfirmation, "a domain-loss confirmation or withdrawal needs a failure domain (target), a reason and an author");
            return true;
        }
        bool confirm = m.Kind == OperateKind.ConfirmDomainLost;
        long version;
        string text;
        DomainLossStatus st;
        if (confirm)
        {
            st = _cell.ConfirmDomainLost(m.Target, author, m.Reason, out var conf);
            version = conf?.Version ?? 0;
            text = st == DomainLossStatus.AlreadyConfirmed
                ? $"domain '{m.Target}' was already confirmed lost by {conf!.Author} at {conf.At:O}: {conf.Reason}"
                : $"domain '{m.Target}' confirmed lost by {author} at cell version {version}: its silent nodes are evicted despite the mass-silence brake";
        }
        else
        {
            st = _cell.WithdrawDomainLoss(m.Target, author, m.Reason, out version);
            text = st == DomainLossStatus.NotConfirmed
                ? $"domain '{m.Target}' had no confirmation in effect"
                : $"confirmation of domain '{m.Target}' withdrawn by {author} at cell version {version}: the brake applies to it again";
        }
        _authz.Audit(s, "Operate " + m.Kind, m.Target, $"{st} (author {author}, reason {m.Reason})");
        switch (st)
        {
            case DomainLossStatus.Invalid:
                c.SendError(rid, ErrorCode.InvalidConfirmation, $"domain and author at most {Cell.MaxDomainLossNameLength} characters, reason at most {Cell.MaxDomainLossReasonLength}, none empty");
                return true;
            case DomainLossStatus.UnknownDomain:
                c.SendError(rid, ErrorCode.UnknownFailureDomain, $"no live node has failure domain '{m.Target}'");
                return true;
        }
        var reply = new OperateReply { Status = OperateStatus.Ok, Message = text };
        // Acknowledged only once durable: an already-confirmed (or not-confirmed) answer refers to an earlier record,
        // which must be durable too before it is reported as standing.
        return _dispatcher.ReplyWhenPublishable(c, rid, reply, st == DomainLossStatus.Recorded ? version : Math.Max(version, _cell.Version));
    }

    /// <returns>False when the reply waits for durability (the request stays in flight until the dispatcher sends it).</returns>
    private bool CreateTenant(FrameConnection c, Session session, uint rid, in Operate m)
    {
        var s = _cell.CreateTenant(m.Target, m.Quota, out var id);
        _authz.Audit(session, "Operate CreateTenant", m.Target, s == TenantOpStatus.Ok ? $"ok: {id}{(m.Quota is { } q ? " quota " + q : "")}" : s.ToString());
        switch (s)
        {
            case TenantOpStatus.Ok: break;
            case TenantOpStatus.DuplicateName:
                c.SendError(rid, ErrorCode.TenantExists, $"tenant '{m.Target}' already exists ({id})");
                return true;
            case TenantOpStatus.LimitReached:
                c.SendError(rid, ErrorCode.TenantLimitReached, $"the cell already holds its maximum of {_cell.TenantCount} tenants");
                return true;
            case TenantOpStatus.InvalidQuota:
                c.SendError(rid, ErrorCode.InvalidRequest, $"tenant quota must have every element between 0 and {ResourceVector.MaxQuantity}");
                return true;
            default:
                c.SendError(rid, ErrorCode.InvalidRequest, $"tenant name must be 1-{Cell.MaxTenantNameLength} letters, digits, '.', '_' or '-', not '{m.Target}'");
                return true;
        }
        // The creation has its own cell version; acknowledge it only once that version is durable (defect 4's rule:
        // an acknowledged tenant must survive kill -9).
        var reply = new OperateReply { Status = OperateStatus.Ok, Message = $"tenant '{m.Target}' created as {id}", TenantId = id.Value };
        if (_dispatcher.RunWhenPublishable(c, _cell.Version, conn => { conn.Send(rid, reply); conn.EndRequest(); }))
        {
            c.Send(rid, reply);
            return true;
        }
        return false;
    }

    /// <summary>
    /// <c>omega undrain</c>: a draining node becomes schedulable again. Only Draining is undone: fenced and down are the
    /// lifecycle controller's verdicts (an agent coming back clears them), and an operator must not override them.
    /// </summary>
    private bool HandleUndrain(FrameConnection c, Session session, uint rid, string name, string action)
    {
        if (string.IsNullOrEmpty(name) || !_cell.TryGetNodeId(name, out var id))
        {
            c.Send(rid, new OperateReply { Status = OperateStatus.UnknownNode, Message = $"no node named '{name}'" });
            return true;
        }
        var status = _cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed;
        if (status == NodeStatus.Schedulable)
            return ReplyWhenDurable(c, rid, new OperateReply { Status = OperateStatus.Ok, Message = $"node '{name}' ({id}) is schedulable" });
        if (status != NodeStatus.Draining)
        {
            c.Send(rid, new OperateReply { Status = OperateStatus.Failed, Message = $"node '{name}' ({id}) is {status}, not draining: only a drain can be undone" });
            return true;
        }
        var s = _cell.SetNodeStatus(id, NodeStatus.Schedulable);
        _authz.Audit(session, action, name, s == NodeOpStatus.Ok ? "ok" : s.ToString());
        return ReplyWhenDurable(c, rid, s == NodeOpStatus.Ok
            ? new OperateReply { Status = OperateStatus.Ok, Message = $"node '{name}' ({id}) is schedulable" }
            : new OperateReply { Status = OperateStatus.Failed, Message = s.ToString() });
    }

    /// <summary>
    /// <c>omega node remove</c>: removes the node (its bindings are released and their tasks requeued, as an eviction
    /// would) and stops tracking its lease. The reply waits until the NodeRemoved record is durable.
    /// </summary>
    private bool HandleRemoveNode(FrameConnection c, Session s, uint rid, string name)
    {
        if (string.IsNullOrEmpty(name) || !_cell.TryGetNodeId(name, out var id))
        {
            _authz.Audit(s, "Operate RemoveNode", name, "UnknownNode");
            c.Send(rid, new OperateReply { Status = OperateStatus.UnknownNode, Message = $"no node named '{name}'" });
            return true;
        }
        var st = _cell.RemoveNode(id, out var released);
        _authz.Audit(s, "Operate RemoveNode", name, st == NodeOpStatus.Ok ? $"ok: {released.Count} binding(s) released" : st.ToString());
        if (st != NodeOpStatus.Ok) return ReplyWhenDurable(c, rid, new OperateReply { Status = OperateStatus.Failed, Message = st.ToString() });
        _lifecycle.Forget(id);
        if (released.Count > 0 && _engine is not null)
        {
            var tasks = new List<TaskId>(released.Count);
            foreach (var a in released) tasks.Add(a.Task);
            _engine.RequeueReleased(tasks);
        }
        return ReplyWhenDurable(c, rid, new OperateReply { Status = OperateStatus.Ok, Message = $"node '{name}' ({id}) removed; {released.Count} binding(s) released" });
    }

    /// <summary>
    /// The durable-replies rule (docs/network-server.md): a reply that acknowledges a change, or reports state a change
    /// produced, leaves only once the journal record covering it is durable. The sequence read here, after the change,
    /// covers it (and possibly others' later records: waiting for those too is harmless). Returns false when the reply is
    /// held: the request stays in flight and the dispatcher sends it, ends the request and flushes.
    /// </summary>
    private bool ReplyWhenDurable<T>(FrameConnection c, uint rid, T message) where T : IWireMessage<T>
    {
        long seq = _cell.JournalSequence;
        if (_dispatcher.IsPublishable(seq))
        {
            c.Send(rid, message);
            return true;
        }
        _dispatcher.RunWhenPublishable(c, seq, () => c.Send(rid, message));
        return false;
    }

    private static bool Decode<T>(FrameConnection c, uint rid, in Frame frame, out T msg) where T : IWireMessage<T>
    {
        if (Codec.TryDecode<T>(frame.Body, out var m, out var error))
        {
            msg = m!;
            return true;
        }
        c.SendError(rid, ErrorCode.MalformedBody, $"{T.Type}: {error}");
        msg = default!;
        return false;
    }

    private void HandleHello(FrameConnection c, Session s, in Frame frame)
    {
        uint rid = frame.RequestId;
        if (c.HandshakeCompleted)
        {
            c.SendError(rid, ErrorCode.AlreadyHandshaken, "the handshake is already complete");
            return;
        }
        if (!Codec.TryDecode<Hello>(frame.Body, out var hello, out var error))
        {
            // A Hello we cannot read cannot establish a version: fatal, like a request before the handshake.
            c.SendError(rid, ErrorCode.HandshakeRequired, $"unreadable Hello: {error}");
            return;
        }
        if (hello.Version != Frame.ProtocolVersion)
        {
            c.SendError(rid, ErrorCode.UnsupportedVersion, $"protocol version {hello.Version} is not supported; this server speaks {Frame.ProtocolVersion}");
            return;
        }
        if (hello.Role is not (PeerRole.Agent or PeerRole.Scheduler))
        {
            c.SendError(rid, ErrorCode.UnsupportedVersion, $"unknown role {(byte)hello.Role}");
            return;
        }
        // High availability: a follower redirects before it checks the credential. Its copy of the credentials may lag the
        // leader's, and a fresh credential refused here would make a careful client give up for good.
        if (_options.Leadership is { IsLeader: false } follower)
        {
            Redirect(c, rid, follower);
            return;
        }
        s.HelloName = hello.Name ?? "";
        if (_auth.Enabled)
        {
            // Credentials are checked here, in the handshake (docs/protocol.md, section 12); the failures close.
            var code = _auth.Authenticate(hello.Token, hello.Role, c, out var cred, out var why);
            if (code != ErrorCode.None)
            {
                c.SendError(rid, code, why);
                return;
            }
            _authz.Attach(s, cred!);
        }
        s.Role = hello.Role;
        c.HandshakeCompleted = true;
        var t = _options.Transport;
        c.Send(rid, new Welcome
        {
            Version = Frame.ProtocolVersion,
            Server = _options.Name,
            MaxFrameLength = t.MaxFrameLength,
            MaxInFlight = t.MaxRequestsInFlight,
            IdleTimeoutMs = (int)Math.Min(int.MaxValue, t.IdleTimeout.TotalMilliseconds),
            CellVersion = _cell.Version,
            // Keys 6-8 only when authentication is on: a server without it keeps the version-1 Welcome bytes.
            Principal = s.Credential?.Principal,
            CredentialExpiresUnixMs = s.Credential?.ExpiresUnixMs ?? 0,
            AuthRequired = _auth.Enabled,
        });
    }

    // ------------------------------------------------------------------ agent

    private bool HandleRegister(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Register>(c, rid, frame, out var m)) return true;
        if (string.IsNullOrWhiteSpace(m.Node) || !m.Capacity.IsValidRequest || m.ResumeFrom < 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"register needs a node name, a capacity with every element between 0 and {ResourceVector.MaxQuantity}, and a non-negative resume version");
            return true;
        }
        if (!_authz.Register(c, s, rid, m.Node)) return true;
        if (s.Node is { } already && !string.Equals(NameOf(already.Id), m.Node, StringComparison.Ordinal))
        {
            c.SendError(rid, ErrorCode.NodeMismatch, "this connection already registered another node");
            return true;
        }
        if (Topology.Merge(m.Region, m.Zone, m.Labels, out var labels) is { } topologyProblem)
        {
            c.SendError(rid, ErrorCode.InvalidTopology, topologyProblem);
            return true;
        }
        m.Labels = labels;
        NodeId id;
        bool added = false;
        if (_cell.TryGetNodeId(m.Node, out id))
        {
            var snap = _cell.Snapshot();
            if (snap.TryGetNode(id, out var view) == SnapshotRead.Ok)
            {
                // Topology is immutable per node: a residency decision made on a snapshot must still hold at commit.
                string region = labels!.TryGetValue(Topology.RegionLabel, out var r) ? r : "";
                string zone = labels.TryGetValue(Topology.ZoneLabel, out var z) ? z : "";
                if (!string.Equals(view.Spec.Region, region, StringComparison.Ordinal) || !string.Equals(view.Spec.Zone, zone, StringComparison.Ordinal))
                {
                    c.SendError(rid, ErrorCode.TopologyChanged, $"node {m.Node} registered with region '{view.Spec.Region}' zone '{view.Spec.Zone}'; topology cannot change (register under a new name)");
                    return true;
                }
                if (view.Capacity != m.Capacity)
                    _cell.UpdateNode(id, new NodeSpec(m.Node, m.Capacity, m.FailureDomain, m.Labels));
            }
        }
        else
        {
            // A new node: bounded, and pending until its first heartbeat (issue 10, defect 8).
            if (!_lifecycle.TryReserveRegistration())
            {
                c.SendError(rid, ErrorCode.TooManyPendingRegistrations, "too many registered nodes have not sent a heartbeat yet; retry later");
                return true;
            }
            var st = _cell.AddNode(new NodeSpec(m.Node, m.Capacity, m.FailureDomain, m.Labels), out id);
            added = st == NodeOpStatus.Ok;
            if (!added) _lifecycle.CancelRegistration();
            if (!added && !_cell.TryGetNodeId(m.Node, out id))
            {
                c.SendError(rid, ErrorCode.InvalidRequest, $"node could not be added: {st}");
                return true;
            }
        }
        _lifecycle.Registered(id, added);
        // Registered acknowledges the node's existence (and an un-fencing): it leaves once the records are durable, and the
        // connection is attached to the node only then, so no binding is pushed ahead of the Registered reply.
        long seq = _cell.JournalSequence;
        long resume = m.ResumeFrom;
        var held = m.Held;
        if (_dispatcher.IsPublishable(seq))
        {
            CompleteRegister(c, s, rid, id, resume, held);
            return true;
        }
        _dispatcher.RunWhenPublishable(c, seq, () => CompleteRegister(c, s, rid, id, resume, held));
        return false;
    }

    /// <summary>
    /// Version 4 reconciliation: the held tasks (Register key 7) that have no live binding on this node at the held
    /// generation. The outbox cannot always say so: a server that restarted, or a replica that took over, seeds its
    /// outboxes from the cell's live bindings, so a release committed after the agent's resume point but before the
    /// restart or failover left no Stop entry anywhere. Without this the agent would run a task that is bound elsewhere.
    /// </summary>
    private HeldTask[]? StaleHeld(NodeId id, HeldTask[]? held)
    {
        if (held is not { Length: > 0 }) return null;
        List<HeldTask>? stale = null;
        foreach (var h in held)
            if (!_cell.TryGetAllocation(h.Task, out var a) || a.Node != id || a.Generation != h.Generation) (stale ??= new()).Add(h);
        return stale?.ToArray();
    }

    private void CompleteRegister(FrameConnection c, Session s, uint rid, NodeId id, long resumeFrom, HeldTask[]? held)
    {
        var node = _nodes.Get(id);
        lock (node.Sync)
        {
            s.Node = node;
            // Closed while the reply waited for durability: OnDisconnected may already have run, so do not attach.
            if (c.IsClosing) return;
            var old = node.Connection;
            if (old is not null && old != c) old.Close(DisconnectReason.LocalClose);
            node.Connection = c;
            node.ResumeAfter(resumeFrom);
            c.Send(rid, new Registered
            {
                NodeId = id.Value,
                LeaseMs = _lifecycle.LeaseMilliseconds,
                HeartbeatMs = (int)_options.EffectiveHeartbeat.TotalMilliseconds,
                ResumeFrom = resumeFrom,
                CellVersion = _cell.Version,
                Stop = StaleHeld(id, held),
            });
            node.SendPending(new BindingEntry[64]);
        }
    }

    private string NameOf(NodeId id)
        => _cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok ? v.Spec.Name : "";

    private bool OwnNode(FrameConnection c, Session s, uint rid, MessageType type, int nodeId, out NodeState node)
    {
        node = s.Node!;
        if (s.Node is null)
        {
            c.SendError(rid, ErrorCode.NotRegistered, "register first");
            return false;
        }
        // Node restriction: with authentication the registered node is the credential's node, so naming another is a
        // PermissionDenied (OtherNode); without it, the version-1 NodeMismatch.
        if (s.Node.Id.Value != nodeId) return _authz.OtherNode(c, s, rid, type.ToString(), nodeId, s.Node.Id.Value);
        return true;
    }

    private bool HandleHeartbeat(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Heartbeat>(c, rid, frame, out var m)) return true;
        if (!OwnNode(c, s, rid, MessageType.Heartbeat, m.NodeId, out var node)) return true;
        long before = _cell.JournalSequence;
        _lifecycle.Renew(node.Id);
        lock (node.Sync) node.Trim(m.LastVersion);
        var status = _cell.Snapshot().TryGetNode(node.Id, out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed;
        var ack = new HeartbeatAck { LeaseMs = _lifecycle.LeaseMilliseconds, Status = status };
        // Only a heartbeat that changed something (a lost node coming back) waits for durability; the common one does not
        // (its status was read from state that may still be in flight, but it acknowledges nothing the agent acts on).
        if (_cell.JournalSequence == before)
        {
            c.Send(rid, ack);
            return true;
        }
        return ReplyWhenDurable(c, rid, ack);
    }

    private bool HandleTaskReport(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<TaskReport>(c, rid, frame, out var m)) return true;
        if (!OwnNode(c, s, rid, MessageType.TaskReport, m.NodeId, out var node)) return true;
        var status = ApplyReport(node, m.Task, m.Generation, m.State);
        // Request id 0: fire-and-forget (the bind path's acks); no reply frame. An ack of a completion says the binding
        // is released: it waits for durability.
        return rid == 0 || ReplyWhenDurable(c, rid, new TaskReportAck { Body = new StatusOnly { Value = (int)status } });
    }

    private TaskReportStatus ApplyReport(NodeState node, TaskId task, long generation, TaskState state)
    {
        TaskReportStatus status;
        if (state is < TaskState.Accepted or > TaskState.Ready) status = TaskReportStatus.InvalidState;
        else if (state is TaskState.Running or TaskState.Ready)
        {
            // The stage histograms need the phase before this report (a first Running ends startup; a Ready after a
            // Running ends readiness; repeats and re-reports after a reconnect end nothing). Read only while someone
            // listens: one stripe lock, no allocation.
            bool timed = _stageClock is not null && (state == TaskState.Running ? _startup.Enabled : _readiness.Enabled);
            var before = timed ? _cell.GetBindingLifecycle(task, generation) : default;
            // The binding's lifecycle status (started / ready), kept beside the allocation in memory (not journaled): the
            // workload controller's readiness. One cell-lock round trip checks the binding and records the phase.
            status = _cell.ReportBindingPhase(task, node.Id, generation, state == TaskState.Ready ? BindingPhase.Ready : BindingPhase.Started) switch
            {
                BindingPhaseStatus.Ok => TaskReportStatus.Ok,
                BindingPhaseStatus.GenerationMismatch => TaskReportStatus.GenerationMismatch,
                _ => TaskReportStatus.NotBound,
            };
            if (timed && status == TaskReportStatus.Ok) RecordStage(state, generation, before);
        }
        else if (!FindOwnBinding(node.Id, task, generation, out var a)) status = TaskReportStatus.NotBound;
        else if (a.Generation != generation) status = TaskReportStatus.GenerationMismatch;
        else
        {
            status = TaskReportStatus.Ok;
            if (state is TaskState.Completed or TaskState.Failed)
            {
                // The engine releases bindings it made (and marks the task done); others are released directly.
                var r = _engine is not null && _engine.TryGetJob(task.Job, out _) ? _engine.CompleteTask(task) : ReleaseStatus.NotBound;
                if (r != ReleaseStatus.Released) r = _cell.Release(task, generation);
                if (r == ReleaseStatus.GenerationMismatch) status = TaskReportStatus.GenerationMismatch;
            }
        }
        if (status == TaskReportStatus.Ok)
        {
            Interlocked.Increment(ref _reportCounts[(int)state]);
            _taskReports.Add(1, new KeyValuePair<string, object?>("state", StateNames[(int)state]));
        }
        return status;
    }

    // Startup: the binding's generation is the version that committed it, timed by the stage clock; a version older than
    // the clock (committed before a restart, whose phases the cell forgot) is not measured. Readiness: from the running
    // report's time the cell kept (the cell and the server share the host's clock).
    private void RecordStage(TaskState state, long generation, BindingLifecycle before)
    {
        var clock = _stageClock!;
        if (state == TaskState.Running)
        {
            if (before.Phase == BindingPhase.Bound && clock.TryGetCommitTime(generation, out long committed)) _startup.Record(clock.SecondsSince(committed));
        }
        else if (before.Phase == BindingPhase.Started) _readiness.Record(clock.SecondsSince(before.Since));
    }

    // Issue 15: an acknowledgement is validated without the commit lock. The node's seqlocked binding list answers the
    // common case (the binding is live here at the acked generation) lock-free. A negative lock-free answer is confirmed
    // under the lock, because a lock-free reader can see the middle of an all-or-nothing transaction that is being rolled
    // back (a victim briefly evicted): trusting that would drop a completion's release. A positive answer needs no
    // confirmation: a transaction's transient binding is of a task that was unbound, at the version of a transaction
    // that never committed, which no agent was ever pushed.
    private bool FindOwnBinding(NodeId node, TaskId task, long generation, out Allocation a)
    {
        if (_cell.TryGetAllocationOnNode(node, task, out a) && a.Generation == generation) return true;
        return _cell.TryGetAllocation(task, out a) && a.Node == node;
    }

    private static readonly string[] StateNames = ["0", "Accepted", "Running", "Failed", "Completed", "Rejected", "Ready", "7"];

    private bool HandleTaskReports(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!TaskReports.TryDecodeInto(frame.Body, s.ReportScratch ??= new ReportEntry[64], out var m, out var error))
        {
            c.SendError(rid, ErrorCode.MalformedBody, $"{MessageType.TaskReports}: {error}");
            return true;
        }
        if (!OwnNode(c, s, rid, MessageType.TaskReports, m.NodeId, out var node)) return true;
        var reports = m.Reports.Span;
        var statuses = rid == 0 ? null : new TaskReportStatus[reports.Length];
        for (int i = 0; i < reports.Length; i++)
        {
            var st = ApplyReport(node, reports[i].Task, reports[i].Generation, reports[i].State);
            if (statuses is not null) statuses[i] = st;
        }
        return statuses is null || ReplyWhenDurable(c, rid, new TaskReportsAck { Statuses = statuses });
    }

    private bool HandleDrain(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Drain>(c, rid, frame, out var m)) return true;
        if (!OwnNode(c, s, rid, MessageType.Drain, m.Body.Value, out var node)) return true;
        var st = _cell.SetNodeStatus(node.Id, NodeStatus.Draining);
        return ReplyWhenDurable(c, rid, new DrainAck { Body = new StatusOnly { Value = (int)st } });
    }

    // ------------------------------------------------------------------ scheduler

    private static long UnixMs(DateTimeOffset t) => t == default ? 0 : t.ToUnixTimeMilliseconds();

    private bool HandleAcquire(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<AcquireLease>(c, rid, frame, out var m)) return true;
        if (!_authz.Lease(c, s, rid, MessageType.AcquireLease, m.Name, null)) return true;
        var r = m.DurationMs <= 0 ? new LeaseResult(LeaseStatus.Invalid, default, default) : _cell.AcquireLease(m.Name, TimeSpan.FromMilliseconds(m.DurationMs));
        if (r.Succeeded) Authorizer.Granted(s, r.Lease.Id.Value);
        // Defect 4 of issue 10: a grant acknowledged before its Lease record was durable could be handed out again, same
        // scheduler id and token, to another name after a crash. The reply waits for durability, as a commit's does.
        return ReplyWhenDurable(c, rid, new LeaseReply { Status = (byte)r.Status, SchedulerId = r.Lease.Id.Value, Token = r.Lease.Token.Value, ExpiresUnixMs = UnixMs(r.Succeeded ? r.Lease.ExpiresAt : r.HeldUntil) });
    }

    private bool HandleRenew(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<RenewLease>(c, rid, frame, out var m)) return true;
        if (!_authz.Lease(c, s, rid, MessageType.RenewLease, m.Name, m.SchedulerId)) return true;
        var lease = new SchedulerLease(new SchedulerId(m.SchedulerId), m.Name, new FencingToken(m.Token), default);
        var r = m.DurationMs <= 0 || m.SchedulerId < 0 ? new LeaseResult(LeaseStatus.Invalid, default, default) : _cell.RenewLease(lease, TimeSpan.FromMilliseconds(m.DurationMs));
        return ReplyWhenDurable(c, rid, new LeaseReply { Status = (byte)r.Status, SchedulerId = m.SchedulerId, Token = r.Succeeded ? r.Lease.Token.Value : 0, ExpiresUnixMs = UnixMs(r.Lease.ExpiresAt) });
    }

    private void HandleSync(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<Sync>(c, rid, frame, out var m)) return;
        if (m.Since < 0 || m.StartNode < 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "since and start must not be negative");
            return;
        }
        // A page must fit in a frame the client accepts: about 160 bytes per record at most.
        int pageMax = Math.Max(1, (_options.Transport.MaxFrameLength - 64) / 192);
        int max = m.MaxNodes <= 0 ? pageMax : Math.Min(m.MaxNodes, pageMax);
        var snap = _cell.Snapshot();
        var list = new List<NodeRecord>(Math.Min(max, snap.NodeCount));
        int next = -1;
        for (int i = m.StartNode; i < snap.NodeCount; i++)
        {
            if (list.Count == max) { next = i; break; }
            var id = new NodeId(i);
            if (_cell.TryGetNodeChange(id, snap.Version, out long changedAt, out var status) != SnapshotRead.Ok) continue;
            if (m.Since > 0 && changedAt <= m.Since) continue;
            if (status == NodeStatus.Removed)
            {
                list.Add(new NodeRecord(i, "", NodeStatus.Removed, 0, default, default, 0, "", changedAt));
                continue;
            }
            if (snap.TryGetNode(id, out var v) != SnapshotRead.Ok) continue;
            list.Add(new NodeRecord(i, v.Spec.Name, v.Status, v.Version, v.Capacity, v.Allocated, v.TaskCount, v.Spec.FailureDomain, changedAt));
        }
        c.Send(rid, new SyncReply { Version = snap.Version, Full = m.Since == 0, NextNode = next, Nodes = list });
    }

    private bool HandleCommit(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<Commit>(c, rid, frame, out var m)) return true;
        if (m.Mode > 1 || m.Detection > 1 || m.SchedulerId < 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "mode and detection are 0 or 1; scheduler id is not negative");
            return true;
        }
        if (!_authz.Commit(c, s, rid, m)) return true;
        var lease = new SchedulerLease(new SchedulerId(m.SchedulerId), "", new FencingToken(m.Token), default);
        var tx = new Transaction(lease, (CommitMode)m.Mode, (ConflictDetection)m.Detection, Math.Max(1, m.Claims.Count))
        {
            Key = new IdempotencyKey(m.KeyHigh, m.KeyLow),
        };
        foreach (var w in m.Claims)
            tx.Add(new Claim(w.Task, new NodeId(w.Node), w.Resources, w.ExpectedNodeVersion, new TenantId(w.Tenant), w.Priority, w.Victims));
        var result = _cell.Commit(tx);
        var reply = new CommitReply { Status = result.Status, Version = result.CellVersion, Applied = result.AppliedCount, Replayed = result.Replayed, ClaimStatuses = result.ClaimStatuses.ToArray() };
        // Durability: the result goes back only once its version is publishable (durable); the request stays in flight until then.
        // (Buggify.ReplyBeforeDurable, never set by a host, skips the wait so the simulation can show its checker catches it.)
        if ((_options.Buggify & Buggify.ReplyBeforeDurable) == 0 && !_dispatcher.ReplyWhenPublishable(c, rid, reply)) return false;
        c.Send(rid, reply);
        return true;
    }

    private void HandleSubmit(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<SubmitJob>(c, rid, frame, out var m)) return;
        if (_engine is null)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "this server runs no scheduling engine");
            return;
        }
        // Tenants are named on the wire and resolved here: an unknown name is a typed error, never a new tenant.
        // A submitter's empty tenant is its own tenant (docs/protocol.md, section 12).
        string tenantName = !string.IsNullOrEmpty(m.Tenant) ? m.Tenant
            : s.Credential is { Role: CredentialRole.Submitter } sub ? sub.Subject : Cell.DefaultTenantName;
        if (!_cell.TryGetTenant(tenantName, out var tenant))
        {
            // A tenant-scoped credential's own tenants always exist, so an unknown name is one it may not use anyway:
            // it gets the denial, not a hint about which names exist.
            if (Authorizer.IsTenantScoped(s))
            {
                _authz.Submit(c, s, rid, new TenantId(-1), tenantName);
                return;
            }
            c.SendError(rid, ErrorCode.UnknownTenant, $"no tenant named '{tenantName}' (create it first: omega tenant create)");
            return;
        }
        if (!_authz.Submit(c, s, rid, tenant, tenantName)) return;
        // Keys 8/9: the job is its own constraint group (key shift 0). An undefined scope makes the spec invalid (InvalidJob).
        var spec = new JobSpec(new JobId(m.JobId), tenant, m.Priority, m.TaskCount, m.PerTask, m.Gang, m.RequiredLabels)
        {
            Group = new PlacementGroup(0, (PlacementScope)m.AntiAffinity, (PlacementScope)m.Spread),
        };
        // A job above the per-job budget skips the connection's budget so that it gets the permanent error
        // (JobTooLarge) from the engine, never the retry-later one.
        if (m.TaskCount <= _engine.MaxTasksPerJob && !WithinConnectionBudget(s, m.TaskCount))
        {
            c.SendError(rid, ErrorCode.ResourceExhausted, $"this connection's queued-task budget ({_options.MaxQueuedTasksPerConnection}) is spent; retry when its queued tasks were placed");
            return;
        }
        var r = _engine.Submit(spec, string.IsNullOrEmpty(m.Scheduler) ? null : m.Scheduler);
        switch (r.Status)
        {
            // Budget and admission refusals are errors, not SubmitJob statuses (docs/protocol.md, section 5 and
            // "Budgets"): typed, counted in the transport meter, and nothing was created.
            case EnqueueStatus.JobTooLarge: c.SendError(rid, ErrorCode.JobTooLarge, r.Reason ?? "job too large"); return;
            case EnqueueStatus.ResourceExhausted: c.SendError(rid, ErrorCode.ResourceExhausted, r.Reason ?? "queued-task budget spent"); return;
            case EnqueueStatus.InvalidResources: c.SendError(rid, ErrorCode.InvalidResources, r.Reason ?? "invalid resources"); return;
            case EnqueueStatus.RequestExceedsLargestNode: c.SendError(rid, ErrorCode.RequestExceedsLargestNode, r.Reason ?? "request exceeds the largest node"); return;
            case EnqueueStatus.UnknownTenant: c.SendError(rid, ErrorCode.UnknownTenant, r.Reason ?? "unknown tenant"); return;
            case EnqueueStatus.Accepted:
                (s.Jobs ??= []).Add(spec.Id);
                s.QueuedUpperBound += m.TaskCount;
                break;
        }
        c.Send(rid, new SubmitJobReply { Status = (int)r.Status, Reason = r.Reason ?? "" });
    }

    /// <summary>
    /// True when <paramref name="tasks"/> more queued tasks fit this connection's budget. Only when the cheap upper
    /// bound says no are the connection's jobs recounted from the engine (jobs with nothing queued any more are
    /// dropped from the list, so the recount stays proportional to what is really held).
    /// </summary>
    private bool WithinConnectionBudget(Session s, int tasks)
    {
        long budget = _options.MaxQueuedTasksPerConnection;
        if (tasks > budget) return false;
        if (s.QueuedUpperBound + tasks <= budget) return true;
        long held = 0;
        var jobs = s.Jobs!;
        int kept = 0;
        for (int i = 0; i < jobs.Count; i++)
        {
            if (!_engine!.TryGetJob(jobs[i], out var st) || st.Pending == 0) continue;
            held += st.Pending;
            jobs[kept++] = jobs[i];
        }
        jobs.RemoveRange(kept, jobs.Count - kept);
        s.QueuedUpperBound = held;
        return held + tasks <= budget;
    }

    private void HandleQuery(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<QueryJob>(c, rid, frame, out var m)) return;
        if (!_authz.JobVisible(c, s, rid, MessageType.QueryJob, new JobId(m.JobId))) return;
        if (_engine is null || !_engine.TryGetJob(new JobId(m.JobId), out var st))
        {
            c.Send(rid, new JobStatusReply { Found = false, Reason = "" });
            return;
        }
        int unreachable = CountUnreachable(st.Job);
        c.Send(rid, new JobStatusReply
        {
            Found = true, Phase = (int)st.Phase, Pending = st.Pending, Bound = st.Bound, Completed = st.Completed,
            Attempts = st.Attempts, Generation = st.Generation, Reason = st.ParkedReason ?? "",
            Unreachable = unreachable, Degraded = unreachable > 0,
        });
    }

    /// <summary>
    /// Bound tasks of the job whose node cannot be reached: lease overdue (suspect), declared lost, or not schedulable
    /// for a liveness reason (fenced, down, removed). O(tasks) control-plane read per query, never on the placement path.
    /// </summary>
    private int CountUnreachable(JobSpec job)
    {
        int n = 0;
        var snap = _cell.Snapshot();
        for (int i = 0; i < job.TaskCount; i++)
        {
            if (!_cell.TryGetAllocation(job.Task(i), out var a)) continue;
            var read = snap.TryGetNode(a.Node, out var v);
            if (read == SnapshotRead.NotFound || (read == SnapshotRead.Ok && v.Status is NodeStatus.Fenced or NodeStatus.Down or NodeStatus.Removed)
                || _lifecycle.IsSuspect(a.Node) || _lifecycle.IsDead(a.Node))
                n++;
        }
        return n;
    }

    public void Dispose()
    {
        if (_engine is not null) _engine.JobChanged -= OnJobChanged;
        _snapshots?.Dispose();
        _meter.Dispose();
    }
}
