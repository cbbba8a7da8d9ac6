using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// The one place where the server decides whether a request is allowed (issue 11; the role matrix of
/// docs/protocol.md, section 12). <see cref="ProtocolHandler"/> asks it twice per request at most: once by message type
/// before decoding (<see cref="Permit"/>: role and operator scope), and once after decoding for the rules that need the
/// body (node, scheduler identity, tenant). Every refusal goes through <see cref="Deny"/>: a typed PermissionDenied with
/// its reason, a counter per role and reason, an audit entry, and nothing changed. With authentication off every
/// session has no credential and every check passes.
/// </summary>
internal sealed class Authorizer
{
    private readonly AuthService _auth;
    private readonly Cell _cell;
    private readonly SchedulingEngine? _engine;

    public Authorizer(AuthService auth, Cell cell, SchedulingEngine? engine)
    {
        _auth = auth;
        _cell = cell;
        _engine = engine;
    }

    /// <summary>Resolves what the credential's subject names (a submitter's tenant, a scheduler's tenant list) once, at the handshake.</summary>
    public void Attach(Session s, Credential c)
    {
        s.Credential = c;
        s.SubmitterTenant = c.Role == CredentialRole.Submitter && _cell.TryGetTenant(c.Subject, out var t) ? t : new TenantId(-1);
        if (c.Role == CredentialRole.Scheduler && c.Tenants.Length > 0)
        {
            s.TenantIds = new HashSet<int>();
            foreach (var name in c.Tenants)
                if (_cell.TryGetTenant(name, out var id)) s.TenantIds.Add(id.Value);
        }
        else s.TenantIds = null;
        s.OwnSchedulers = null;
    }

    /// <summary>The role and scope rule by message type (rows of the matrix). True when allowed; otherwise the denial was sent.</summary>
    public bool Permit(FrameConnection c, Session s, uint rid, MessageType type)
    {
        var cred = s.Credential;
        if (cred is null) return true;
        var reason = Rule(cred, type, out string need);
        if (reason != DenyReason.None) return Deny(c, s, rid, type.ToString(), "", reason, need);
        // Break-glass: every request is on the record (operator actions are audited with their outcome by their handler).
        if ((cred.Scopes & OperatorScopes.BreakGlass) != 0 && type is not (MessageType.Operate or MessageType.CreateToken or MessageType.ListTokens or MessageType.RevokeToken))
            _auth.Audit(cred.Who, type.ToString(), "", "allowed (break-glass)");
        return true;
    }

    /// <summary>Control-plane object messages (0x40-0x4F, allocated to the cpwire change; docs/control-plane.md).</summary>
    public static bool IsObjectMessage(MessageType t) => (byte)t is >= 0x40 and <= 0x4F;

    // The object messages (0x40-0x4F) by type. Operators: every operator may read (get, list, watch); writes need the
    // override scope (Has also admits break-glass), as for the Operate kinds that change the cell. Submitters pass here
    // and are held to their own tenant after decoding (ObjectTenant), since the tenant is in the body. Status writes are
    // the controller's (it runs in the server): a submitter writing status could forge readiness, so it is refused.
    // Schedulers, agents and join tokens never touch objects: a scheduler places tasks, it does not declare workloads.
    private static DenyReason ObjectRule(Credential c, MessageType t, out string need)
    {
        need = "";
        bool read = t is MessageType.GetObject or MessageType.ListObjects or MessageType.WatchObjects or MessageType.StopWatch;
        switch (c.Role)
        {
            case CredentialRole.Operator:
                if (read || c.Has(OperatorScopes.Override)) return DenyReason.None;
                need = "writing control-plane objects needs the override scope";
                return DenyReason.ScopeMissing;
            case CredentialRole.Submitter:
                if (t != MessageType.UpdateObjectStatus) return DenyReason.None;
                need = "object status is written by the server's controllers; a submitter may not write it";
                return DenyReason.ScopeMissing;
            default:
                need = "control-plane objects are for operators, and for submitters in their own tenant";
                return DenyReason.RoleNotAllowed;
        }
    }

    /// <summary>
    /// An object message after decoding: a submitter acts on objects of its own tenant only (the key's tenant, from the
    /// request's tenant field or the document's metadata.tenant; an empty tenant in a list or watch means every tenant and
    /// is refused too). Other credentials passed the type rule already.
    /// </summary>
    public bool ObjectTenant(FrameConnection c, Session s, uint rid, MessageType type, string kind, string tenant, string name)
    {
        if (s.Credential is not { Role: CredentialRole.Submitter } cred || (tenant.Length > 0 && string.Equals(tenant, cred.Subject, StringComparison.Ordinal))) return true;
        string target = tenant.Length == 0 ? $"{kind}/*" : $"{kind}/{tenant}/{name}";
        return Deny(c, s, rid, type.ToString(), target, DenyReason.OtherTenant,
            tenant.Length == 0 ? $"this credential reads tenant '{cred.Subject}' only: name it" : $"this credential acts on tenant '{cred.Subject}' only, not '{tenant}'");
    }

    private static DenyReason Rule(Credential c, MessageType t, out string need)
    {
        need = "";
        if (IsObjectMessage(t)) return ObjectRule(c, t, out need);
        switch (c.Role)
        {
            case CredentialRole.Agent:
                if (t is MessageType.Register or MessageType.Heartbeat or MessageType.TaskReport or MessageType.TaskReports or MessageType.Drain) return DenyReason.None;
                need = "an agent credential may register, heartbeat, report and drain its own node only";
                return DenyReason.RoleNotAllowed;
            case CredentialRole.Join:
                if (t == MessageType.Join) return DenyReason.None;
                need = "a join token may only Join";
                return DenyReason.RoleNotAllowed;
            case CredentialRole.Scheduler:
                if (t is MessageType.AcquireLease or MessageType.RenewLease or MessageType.Sync or MessageType.Commit or MessageType.SubmitJob
                    or MessageType.QueryJob or MessageType.Explain or MessageType.Inspect
                    or MessageType.WatchJob or MessageType.StopJobWatch) return DenyReason.None;
                need = "a scheduler credential may not operate or manage credentials";
                return DenyReason.RoleNotAllowed;
            case CredentialRole.Submitter:
                // StopJob, WatchJob: its own tenant's jobs only, checked after decoding (JobVisible).
                if (t is MessageType.SubmitJob or MessageType.QueryJob or MessageType.Explain or MessageType.Inspect
                    or MessageType.StopJob or MessageType.WatchJob or MessageType.StopJobWatch) return DenyReason.None;
                need = "a submitter credential may submit, query, watch, stop and explain its tenant's jobs only";
                return DenyReason.RoleNotAllowed;
            case CredentialRole.Operator:
                switch (t)
                {
                    case MessageType.Sync or MessageType.QueryJob or MessageType.Explain or MessageType.Inspect or MessageType.Operate:
                        return DenyReason.None;   // Operate: by kind, after decoding
                    case MessageType.SubmitJob:
                        if (c.Has(OperatorScopes.BreakGlass)) return DenyReason.None;
                        need = "submitting as an operator needs the break-glass scope (use a submitter credential)";
                        return DenyReason.ScopeMissing;
                    case MessageType.ListQuotas or MessageType.ExplainWorkload or MessageType.WatchJob or MessageType.StopJobWatch:
                        return DenyReason.None;   // reads: any operator scope
                    case MessageType.StopJob:
                        // Stopping a job takes capacity away from its tenant's work: the override scope, as quota changes.
                        if (c.Has(OperatorScopes.Override)) return DenyReason.None;
                        need = "stopping a job needs the override scope";
                        return DenyReason.ScopeMissing;
                    case MessageType.SetQuota or MessageType.Policy:
                        // Quota and scheduler-policy changes alter what every tenant may get: the override scope.
                        if (c.Has(OperatorScopes.Override)) return DenyReason.None;
                        need = "quota and scheduler-policy changes need the override scope";
                        return DenyReason.ScopeMissing;
                    case MessageType.CreateToken or MessageType.ListTokens or MessageType.RevokeToken or MessageType.ReadAudit:
                        if (c.Has(OperatorScopes.Admin)) return DenyReason.None;
                        need = "token management and the audit log need the admin scope";
                        return DenyReason.ScopeMissing;
                    case MessageType.SnapshotRequest or MessageType.SnapshotRead:
                        // A snapshot holds every credential's hash and the audit log: the scope that manages them.
                        if (c.Has(OperatorScopes.Admin)) return DenyReason.None;
                        need = "a replica snapshot needs the admin scope";
                        return DenyReason.ScopeMissing;
                    default:
                        need = "an operator credential does not hold scheduler leases or commit";
                        return DenyReason.RoleNotAllowed;
                }
            default:
                need = "unknown credential role";
                return DenyReason.RoleNotAllowed;
        }
    }

    /// <summary>Refuses the request: PermissionDenied with the reason, counted per role and reason, audited. Returns false.</summary>
    public bool Deny(FrameConnection c, Session s, uint rid, string action, string target, DenyReason reason, string message)
    {
        _auth.CountDenial(s.Credential, reason, action, target);
        c.SendError(rid, ErrorCode.PermissionDenied, $"permission denied ({reason}): {message}", reason);
        return false;
    }

    // ---------------------------------------------------------------- rules that need the body

    /// <summary>Register: an agent credential registers the node it names only (node restriction).</summary>
    public bool Register(FrameConnection c, Session s, uint rid, string node)
    {
        if (s.Credential is not { Role: CredentialRole.Agent } cred || string.Equals(cred.Subject, node, StringComparison.Ordinal)) return true;
        return Deny(c, s, rid, "Register", node, DenyReason.OtherNode, $"this credential acts for node '{cred.Subject}', not '{node}'");
    }

    /// <summary>AcquireLease / RenewLease: only under the credential's scheduler identity (and, for a renewal, its scheduler id).</summary>
    public bool Lease(FrameConnection c, Session s, uint rid, MessageType type, string name, int? schedulerId)
    {
        if (s.Credential is not { } cred) return true;
        if (!string.Equals(cred.Subject, name, StringComparison.Ordinal))
            return Deny(c, s, rid, type.ToString(), name, DenyReason.OtherScheduler, $"this credential is scheduler '{cred.Subject}', not '{name}'");
        if (schedulerId is { } id && !OwnScheduler(s, cred, id))
            return Deny(c, s, rid, type.ToString(), name, DenyReason.OtherScheduler, $"scheduler id {id} is not held under '{cred.Subject}'");
        return true;
    }

    /// <summary>Remembers a scheduler id granted to this session's identity, so commits check it without a cell read.</summary>
    public static void Granted(Session s, int schedulerId)
    {
        if (s.Credential is null) return;
        (s.OwnSchedulers ??= new HashSet<int>()).Add(schedulerId);
    }

    private bool OwnScheduler(Session s, Credential cred, int id)
    {
        if (s.OwnSchedulers?.Contains(id) == true) return true;
        if (id < 0 || !string.Equals(_cell.LeaseName(new SchedulerId(id)), cred.Subject, StringComparison.Ordinal)) return false;
        Granted(s, id);
        return true;
    }

    /// <summary>Commit: under the credential's own scheduler id, and only for its tenants when it lists some.</summary>
    public bool Commit(FrameConnection c, Session s, uint rid, in Commit m)
    {
        if (s.Credential is not { } cred) return true;
        if (!OwnScheduler(s, cred, m.SchedulerId))
            return Deny(c, s, rid, "Commit", $"s{m.SchedulerId}", DenyReason.OtherScheduler, $"scheduler id {m.SchedulerId} is not held under '{cred.Subject}'");
        if (s.TenantIds is { } allowed)
            foreach (var w in m.Claims)
                if (!allowed.Contains(w.Tenant))
                    return Deny(c, s, rid, "Commit", $"tenant {w.Tenant}", DenyReason.OtherTenant, $"this credential places for tenants {string.Join(',', cred.Tenants)} only");
        return true;
    }

    /// <summary>True when the session may act on jobs of <paramref name="tenant"/> (submit, query, explain, read).</summary>
    public static bool TenantAllowed(Session s, TenantId tenant) => s.Credential switch
    {
        null => true,
        { Role: CredentialRole.Submitter } => tenant == s.SubmitterTenant,
        { Role: CredentialRole.Scheduler } => s.TenantIds is null || s.TenantIds.Contains(tenant.Value),
        { Role: CredentialRole.Operator } => true,
        _ => false,
    };

    /// <summary>True when the session sees only some tenants' jobs (a submitter, or a scheduler with a tenant list).</summary>
    public static bool IsTenantScoped(Session s) => s.Credential is { Role: CredentialRole.Submitter } || (s.Credential is { Role: CredentialRole.Scheduler } && s.TenantIds is not null);

    /// <summary>SubmitJob: a submitter for its tenant, a scheduler for its tenant list.</summary>
    public bool Submit(FrameConnection c, Session s, uint rid, TenantId tenant, string tenantName)
    {
        if (TenantAllowed(s, tenant)) return true;
        return Deny(c, s, rid, "SubmitJob", tenantName, DenyReason.OtherTenant, $"this credential may not submit for tenant '{tenantName}'");
    }

    /// <summary>QueryJob / Explain: a job of another tenant is refused (a job that does not exist is not: "not found" as usual).</summary>
    public bool JobVisible(FrameConnection c, Session s, uint rid, MessageType type, JobId job)
    {
        if (s.Credential is null || _engine is null || !_engine.TryGetJob(job, out var st) || TenantAllowed(s, st.Job.Tenant)) return true;
        return Deny(c, s, rid, type.ToString(), job.ToString(), DenyReason.OtherTenant, $"job {job} belongs to another tenant");
    }

    /// <summary>Inspect: a submitter reads its jobs and its tenant only. Sets <paramref name="filtered"/> when lines must be filtered by tenant.</summary>
    public bool Inspect(FrameConnection c, Session s, uint rid, InspectTarget target, out bool filtered)
    {
        var cred = s.Credential;
        filtered = cred is { Role: CredentialRole.Submitter } || (cred is { Role: CredentialRole.Scheduler } && s.TenantIds is not null);
        if (cred is not { Role: CredentialRole.Submitter } || target is InspectTarget.Jobs or InspectTarget.Tenants) return true;
        return Deny(c, s, rid, "Inspect", target.ToString(), DenyReason.ScopeMissing, "a submitter credential may inspect its jobs (target 3) and its tenant (target 10) only");
    }

    /// <summary>Operate: drain and undrain need the drain scope, every other kind the override scope.</summary>
    public bool Operate(FrameConnection c, Session s, uint rid, OperateKind kind, string target)
    {
        if (s.Credential is not { } cred) return true;
        // Undoing a drain is the same authority as draining.
        var scope = kind is OperateKind.DrainNode or OperateKind.UndrainNode ? OperatorScopes.Drain : OperatorScopes.Override;
        if (cred.Has(scope)) return true;
        return Deny(c, s, rid, "Operate " + kind, target, DenyReason.ScopeMissing, $"Operate {kind} needs the {(scope == OperatorScopes.Drain ? "drain" : "override")} scope");
    }

    /// <summary>An agent request naming a node other than the connection's registered one: PermissionDenied OtherNode when authenticated.</summary>
    public bool OtherNode(FrameConnection c, Session s, uint rid, string action, int nodeId, int own)
    {
        if (s.Credential is null)
        {
            c.SendError(rid, ErrorCode.NodeMismatch, $"this connection is node {own}, not {nodeId}");
            return false;
        }
        return Deny(c, s, rid, action, $"n{nodeId}", DenyReason.OtherNode, $"this credential acts for node {own} ('{s.Credential.Subject}') only, not {nodeId}");
    }

    /// <summary>Writes an operator action (or a join) with its outcome to the audit log.</summary>
    public void Audit(Session s, string action, string target, string result) => _auth.Audit(s.Who, action, target, result);
}
