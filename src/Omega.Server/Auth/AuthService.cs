using System.Buffers.Binary;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Omega.Cells;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// Credentials, revocations and the audit log of a server (issue 11; docs/protocol.md, section 12). The state is kept
/// as security records in the cell's journal (<see cref="Cell.PutAuthRecord"/>), so it survives restarts and kill -9
/// exactly like the cell; this class holds the decoded view and answers the questions the protocol handler asks:
/// who is this token, is it still valid, may it do that. Tokens are stored as SHA-256 of their secret and compared in
/// constant time. Acknowledge a change made here only once <see cref="Cell.JournalSequence"/>, read after it, is durable.
/// </summary>
public sealed class AuthService : IDisposable
{
    private const string AuditPrefix = "a/";

    private readonly Cell _cell;
    private readonly AuthOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Credential> _credentials = new(StringComparer.Ordinal);
    // Agent credentials by node name: Join refuses a node that already has a live one (PD:6).
    private readonly Dictionary<string, List<Credential>> _agentsByNode = new(StringComparer.Ordinal);
    private readonly Queue<AuditEntry> _audit = new();
    private long _nextAuditSeq = 1;
    private double _denialTokens;
    private long _denialRefillAt;
    private long _suppressed, _suppressedTotal, _deniedTotal;
    private readonly ITimer? _sweep;
    private readonly Buggify _buggify;
    private readonly Meter _meter;
    private readonly Counter<long> _denied, _handshakes, _suppressedCounter;

    internal AuthService(Cell cell, AuthOptions? options, TimeProvider time, IMeterFactory? meterFactory = null, Buggify buggify = Buggify.None)
    {
        _buggify = buggify;
        _meter = CellCounters.CreateMeter("Omega.Server.Auth", cell.Name, meterFactory);
        _cell = cell;
        Enabled = options is not null;
        _options = options ?? new AuthOptions();
        _time = time;
        _denied = _meter.CreateCounter<long>("omega.auth.denied", "{request}", "Requests refused with PermissionDenied, by credential role and reason.");
        _handshakes = _meter.CreateCounter<long>("omega.auth.handshakes", "{handshake}", "Handshakes by authentication result.");
        _suppressedCounter = _meter.CreateCounter<long>("omega.auth.audit.suppressed", "{denial}", "Denials not written to the audit log over its rate.");
        _denialTokens = Math.Max(1, _options.AuditDenialsPerSecond);
        _denialRefillAt = _time.GetTimestamp();
        Load();
        if (Enabled && _options.ExpirySweepPeriod is { } period && period > TimeSpan.Zero)
            _sweep = _time.CreateTimer(_ => SweepExpired(), null, period, period);
    }

    /// <summary>True when the server checks credentials (<see cref="ServerOptions.Authentication"/> set).</summary>
    public bool Enabled { get; }

    /// <summary>Credentials stored (revoked and expired ones included until dropped).</summary>
    public int CredentialCount
    {
        get { lock (_lock) return _credentials.Count; }
    }

    /// <summary>Requests refused with PermissionDenied since start.</summary>
    public long DeniedCount => Interlocked.Read(ref _deniedTotal);

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    // ---------------------------------------------------------------- restore

    private void Load()
    {
        var audit = new List<AuditEntry>();
        foreach (var (key, value) in _cell.GetAuthRecords())
        {
            if (key.StartsWith(Credential.KeyPrefix, StringComparison.Ordinal))
            {
                var c = Credential.Decode(key[Credential.KeyPrefix.Length..], value);
                // Buggify.ForgetRevocationOnRestart (simulation only): a revoked credential loads as live.
                if ((_buggify & Buggify.ForgetRevocationOnRestart) != 0) c.Revoked = false;
                _credentials[c.Id] = c;
                if (c.Role == CredentialRole.Agent) AgentsOf(c.Subject).Add(c);
            }
            else if (key.StartsWith(AuditPrefix, StringComparison.Ordinal))
            {
                audit.Add(DecodeAudit(value));
            }
        }
        audit.Sort(static (a, b) => a.Seq.CompareTo(b.Seq));
        foreach (var e in audit) _audit.Enqueue(e);
        if (audit.Count > 0) _nextAuditSeq = audit[^1].Seq + 1;
    }

    private List<Credential> AgentsOf(string node)
    {
        if (!_agentsByNode.TryGetValue(node, out var list)) _agentsByNode[node] = list = new List<Credential>(1);
        return list;
    }

    // ---------------------------------------------------------------- public management API (hosting, tests, the wire)

    /// <summary>A new random token of the documented shape (not stored anywhere): for <c>omega token generate</c>.</summary>
    public static string GenerateToken() => Credential.NewToken();

    /// <summary>True when <paramref name="token"/> has the shape <c>omega1.&lt;16 hex&gt;.&lt;43 base64url&gt;</c>.</summary>
    public static bool IsWellFormedToken(string? token) => Credential.TryParse(token, out _, out _);

    /// <summary>The id part of a well-formed token (the name it has in lists and the audit log), or null.</summary>
    public static string? TokenId(string? token) => Credential.TryParse(token, out var id, out _) ? id : null;

    /// <summary>
    /// Creates a credential and returns its token (shown once). Throws <see cref="ArgumentException"/> with the reason
    /// when the request is invalid or the credential limit is reached. Durable once the cell's journal sequence read
    /// after this call is.
    /// </summary>
    public string CreateCredential(CredentialRole role, string subject, OperatorScopes scopes = OperatorScopes.None, TimeSpan? ttl = null,
        int uses = 0, IReadOnlyList<string>? tenants = null, TimeSpan? agentTtl = null, string createdBy = "server")
    {
        var req = new CreateToken
        {
            Role = role, Subject = subject, Scopes = scopes, TtlMs = (long)(ttl?.TotalMilliseconds ?? 0), Uses = uses,
            Tenants = tenants, AgentTtlMs = (long)(agentTtl?.TotalMilliseconds ?? 0),
        };
        var (code, message, created) = Create(req, createdBy);
        return code == ErrorCode.None ? created.Token : throw new ArgumentException($"{code}: {message}");
    }

    /// <summary>
    /// Installs <paramref name="token"/> (made elsewhere, e.g. <c>omega token generate</c> into a file) as a credential,
    /// unless its id is already stored. Returns false with the reason when the token is malformed, or its id is stored
    /// with another secret.
    /// </summary>
    public bool TryInstallToken(string token, CredentialRole role, string subject, OperatorScopes scopes, out string? error)
    {
        error = null;
        if (!Credential.TryParse(token, out var id, out var secret))
        {
            error = "the token is not of the form omega1.<16 hex digits>.<43 base64url characters>";
            return false;
        }
        var hash = Credential.HashSecret(secret);
        lock (_lock)
        {
            if (_credentials.TryGetValue(id, out var existing))
            {
                if (CryptographicOperations.FixedTimeEquals(existing.Hash, hash)) return true;
                error = $"a credential with id {id} exists with another secret";
                return false;
            }
            var c = new Credential
            {
                Id = id, Hash = hash, Role = role, Subject = subject, Scopes = scopes, CreatedUnixMs = NowMs, CreatedBy = "server",
            };
            Store(c);
            return true;
        }
    }

    /// <summary>regops (issue 13): why a break-glass CreateToken from the wire is refused (no reason, no TTL, TTL over the maximum), or null.</summary>
    internal string? BreakGlassProblem(in CreateToken m)
    {
        if (string.IsNullOrWhiteSpace(m.Reason)) return "a break-glass credential needs a reason (CreateToken key 7; omega break-glass --reason)";
        if (m.TtlMs <= 0) return $"a break-glass credential needs a TTL (at most {_options.MaxBreakGlassTtl})";
        if (m.TtlMs > (long)_options.MaxBreakGlassTtl.TotalMilliseconds) return $"a break-glass credential lives at most {_options.MaxBreakGlassTtl}, not {TimeSpan.FromMilliseconds(m.TtlMs)}";
        return null;
    }

    /// <summary>True when at least one credential is stored (the first start of a server creates the admin one when none is).</summary>
    public bool HasCredentials
    {
        get { lock (_lock) return _credentials.Count > 0; }
    }

    /// <summary>Revokes credential <paramref name="id"/> durably and closes its connections; returns how many, or -1 when the id is unknown.</summary>
    public int Revoke(string id, string by = "server")
    {
        var (code, closed) = RevokeCore(id, by);
        return code == ErrorCode.None ? closed : -1;
    }

    /// <summary>Every stored credential, oldest first (never a secret).</summary>
    public IReadOnlyList<CredentialInfo> ListCredentials()
    {
        lock (_lock)
        {
            var list = new List<Credential>(_credentials.Values);
            list.Sort(static (a, b) => a.CreatedUnixMs != b.CreatedUnixMs ? a.CreatedUnixMs.CompareTo(b.CreatedUnixMs) : string.CompareOrdinal(a.Id, b.Id));
            var infos = new List<CredentialInfo>(list.Count);
            foreach (var c in list) infos.Add(c.Info);
            return infos;
        }
    }

    /// <summary>The last <paramref name="limit"/> audit entries with a sequence above <paramref name="after"/>, oldest first, and how many are kept.</summary>
    public (int Total, IReadOnlyList<AuditEntry> Entries) ReadAudit(int limit, long after = 0)
    {
        lock (_lock)
        {
            var all = new List<AuditEntry>(_audit.Count);
            foreach (var e in _audit) if (e.Seq > after) all.Add(e);
            int skip = Math.Max(0, all.Count - limit);
            return (_audit.Count, all.GetRange(skip, all.Count - skip));
        }
    }

    /// <summary>Closes every connection whose credential has expired (the timer runs it every <see cref="AuthOptions.ExpirySweepPeriod"/>).</summary>
    public void SweepExpired()
    {
        long now = NowMs;
        List<FrameConnection>? close = null;
        lock (_lock)
        {
            foreach (var c in _credentials.Values)
            {
                if (c.Connections.Count == 0 || !c.ExpiredAt(now)) continue;
                (close ??= new()).AddRange(c.Connections);
                c.Connections.Clear();
            }
        }
        if (close is null) return;
        foreach (var conn in close) conn.SendError(0, ErrorCode.CredentialExpired, "the credential has expired");
    }

    // ---------------------------------------------------------------- bearer checks for other front ends (the web dashboard)

    /// <summary>
    /// Checks a bearer token outside the TCP protocol (the web dashboard's sign-in, docs/dashboard.md): the same
    /// constant-time comparison as a Hello, the same refusals (unknown, wrong secret, revoked, expired). Only operator
    /// credentials are accepted: agents, schedulers, submitters and join tokens have no business in an operator console.
    /// Returns null with the reason on refusal. Nothing is attached: the caller re-checks with
    /// <see cref="IsCredentialLive"/> on every request, so a revocation takes effect at once.
    /// </summary>
    public BearerIdentity? CheckBearer(string? token, out string reason)
    {
        reason = "";
        if (!Credential.TryParse(token, out var id, out var secret))
        {
            reason = "invalid credential";
            return null;
        }
        var hash = Credential.HashSecret(secret);
        lock (_lock)
        {
            _credentials.TryGetValue(id, out var c);
            bool match = c is not null && CryptographicOperations.FixedTimeEquals(c.Hash, hash);
            if (!match) reason = "invalid credential";
            else if (c!.Revoked) reason = $"credential {id} was revoked";
            else if (c.ExpiredAt(NowMs)) reason = $"credential {id} has expired";
            else if (c.Role != CredentialRole.Operator) reason = $"a {Credential.RoleName(c.Role)} credential cannot sign in to the dashboard: an operator credential is needed";
            else return new BearerIdentity(c.Id, c.Who, c.Role, c.Scopes | OperatorScopes.Read, c.ExpiresUnixMs);
        }
        return null;
    }

    /// <summary>True while credential <paramref name="id"/> exists, is not revoked and has not expired.</summary>
    public bool IsCredentialLive(string id)
    {
        lock (_lock) return _credentials.TryGetValue(id, out var c) && !c.Revoked && !c.ExpiredAt(NowMs);
    }

    /// <summary>Writes an action taken outside the TCP protocol (a dashboard action) and its outcome to the audit log.</summary>
    public void AuditAction(string who, string action, string target, string result) => Audit(who, action, target, result);

    /// <summary>
    /// Counts a refusal outside the TCP protocol (a dashboard sign-in or action) in <c>omega.auth.denied</c> (role
    /// <c>dashboard</c>, tag <c>reason</c> = <paramref name="reason"/>, a short fixed word) and writes it, with
    /// <paramref name="detail"/>, to the audit log; rate-bounded like every denial.
    /// </summary>
    public void AuditRefusal(string who, string action, string target, string reason, string? detail = null)
    {
        Interlocked.Increment(ref _deniedTotal);
        _denied.Add(1, new KeyValuePair<string, object?>("role", "dashboard"), new KeyValuePair<string, object?>("reason", reason));
        AuditDenial(who, action, target, "denied: " + reason + (string.IsNullOrEmpty(detail) ? "" : " (" + detail + ")"));
    }

    // ---------------------------------------------------------------- handshake

    /// <summary>
    /// Authenticates a Hello's token for <paramref name="helloRole"/>. On success the connection is attached to the
    /// credential (so a revocation closes it). Every failure has the same message for unknown id and wrong secret.
    /// </summary>
    internal ErrorCode Authenticate(string? token, PeerRole helloRole, FrameConnection connection, out Credential? credential, out string message)
    {
        credential = null;
        message = "";
        ErrorCode code;
        if (!Credential.TryParse(token, out var id, out var secret))
        {
            code = ErrorCode.Unauthenticated;
            message = string.IsNullOrEmpty(token) ? "this server requires a credential: send a token in Hello (docs/protocol.md, section 12)" : "invalid credential";
        }
        else
        {
            // Hash before the lookup so that a known and an unknown id cost the same.
            var hash = Credential.HashSecret(secret);
            lock (_lock)
            {
                _credentials.TryGetValue(id, out var c);
                bool match = c is not null && CryptographicOperations.FixedTimeEquals(c.Hash, hash);
                if (!match) { code = ErrorCode.Unauthenticated; message = "invalid credential"; }
                else if (c!.Revoked) { code = ErrorCode.CredentialRevoked; message = $"credential {id} was revoked"; }
                else if (c.ExpiredAt(NowMs)) { code = ErrorCode.CredentialExpired; message = $"credential {id} has expired"; }
                else if (c.Role == CredentialRole.Join && c.UsesLeft <= 0) { code = ErrorCode.JoinTokenExhausted; message = $"join token {id} has no use left"; }
                else if ((c.Role is CredentialRole.Agent or CredentialRole.Join) != (helloRole == PeerRole.Agent))
                {
                    code = ErrorCode.Unauthenticated;
                    message = $"a {Credential.RoleName(c.Role)} credential connects with Hello role {(c.Role is CredentialRole.Agent or CredentialRole.Join ? 0 : 1)}";
                }
                else
                {
                    code = ErrorCode.None;
                    c.Connections.Add(connection);
                    credential = c;
                }
            }
        }
        _handshakes.Add(1, new KeyValuePair<string, object?>("result", code switch
        {
            ErrorCode.None => "ok",
            ErrorCode.CredentialExpired => "expired",
            ErrorCode.CredentialRevoked => "revoked",
            ErrorCode.JoinTokenExhausted => "exhausted",
            _ => "unauthenticated",
        }));
        if (code != ErrorCode.None)
            AuditDenial($"unauthenticated({connection.RemoteEndPoint}{(id.Length > 0 ? " id " + id : "")})", "Hello", "", code.ToString());
        return code;
    }

    /// <summary>The connection closed: it no longer belongs to its credential.</summary>
    internal void Detach(FrameConnection connection, Credential? credential)
    {
        if (credential is null) return;
        lock (_lock) credential.Connections.Remove(connection);
    }

    /// <summary>Checked at every request: false (with the closing error) once the credential is revoked or expired.</summary>
    internal bool IsLive(Credential c, out ErrorCode code, out string message)
    {
        if (c.Revoked) { code = ErrorCode.CredentialRevoked; message = $"credential {c.Id} was revoked"; return false; }
        if (c.ExpiresUnixMs != 0 && NowMs >= c.ExpiresUnixMs) { code = ErrorCode.CredentialExpired; message = $"credential {c.Id} has expired"; return false; }
        code = ErrorCode.None;
        message = "";
        return true;
    }

    // ---------------------------------------------------------------- token management

    internal (ErrorCode Code, string Message, TokenCreated Reply) Create(in CreateToken req, string createdBy)
    {
        string subject = (req.Subject ?? "").Trim();
        var tenants = req.Tenants ?? Array.Empty<string>();
        string? invalid = null;
        switch (req.Role)
        {
            case CredentialRole.Agent:
                if (subject.Length is 0 or > 256) invalid = "an agent credential names its node (1-256 characters)";
                break;
            case CredentialRole.Scheduler:
                if (subject.Length is 0 or > 256) invalid = "a scheduler credential names its identity (1-256 characters)";
                foreach (var t in tenants)
                    if (!_cell.TryGetTenant(t, out _)) invalid = $"no tenant named '{t}'";
                break;
            case CredentialRole.Submitter:
                if (!_cell.TryGetTenant(subject, out _)) invalid = $"a submitter credential names an existing tenant; no tenant named '{subject}'";
                break;
            case CredentialRole.Operator:
                if (subject.Length == 0) subject = "operator";
                if (subject.Length > 256 || (req.Scopes & ~OperatorScopes.All) != 0) invalid = "operator: a label of at most 256 characters and scope bits 1-31";
                break;
            case CredentialRole.Join:
                if (subject.Length == 0) subject = "join";
                if (subject.Length > 256) invalid = "join: a label of at most 256 characters";
                if (req.TtlMs <= 0 || req.TtlMs > _options.MaxJoinTokenTtl.TotalMilliseconds) invalid = $"a join token needs a time to live of 1 ms to {_options.MaxJoinTokenTtl}";
                if (req.Uses < 1 || req.Uses > _options.MaxJoinTokenUses) invalid = $"a join token allows 1-{_options.MaxJoinTokenUses} uses";
                if (req.AgentTtlMs < 0) invalid = "agent_ttl_ms must not be negative";
                break;
            default:
                invalid = $"unknown role {(byte)req.Role}";
                break;
        }
        if (invalid is null && (req.TtlMs < 0 || req.TtlMs > TimeSpan.FromDays(3650).TotalMilliseconds)) invalid = "ttl_ms must be 0 (no expiry) up to ten years";
        if (invalid is null && req.Role != CredentialRole.Scheduler && tenants.Count > 0) invalid = "only a scheduler credential lists tenants";
        if (invalid is not null) return (ErrorCode.InvalidRequest, invalid, default);
        string token = Credential.NewToken(out var id, out var secret);
        long now = NowMs;
        var c = new Credential
        {
            Id = id, Hash = Credential.HashSecret(secret), Role = req.Role, Subject = subject,
            Scopes = req.Role == CredentialRole.Operator ? req.Scopes | OperatorScopes.Read : OperatorScopes.None,
            Tenants = req.Role == CredentialRole.Scheduler ? [.. tenants] : [],
            CreatedUnixMs = now, ExpiresUnixMs = req.TtlMs > 0 ? now + req.TtlMs : 0,
            UsesLeft = req.Role == CredentialRole.Join ? req.Uses : 0,
            AgentTtlMs = req.Role == CredentialRole.Join ? req.AgentTtlMs : 0,
            CreatedBy = createdBy,
        };
        lock (_lock)
        {
            if (!MakeRoom()) return (ErrorCode.CredentialLimitReached, $"the server holds its maximum of {_options.MaxCredentials} credentials; revoke some", default);
            Store(c);
        }
        return (ErrorCode.None, "", new TokenCreated { Id = id, Token = token, ExpiresUnixMs = c.ExpiresUnixMs });
    }

    // Caller holds _lock. At the limit, expired and revoked credentials are dropped first (their tokens stay refused:
    // an unknown id is Unauthenticated).
    private bool MakeRoom()
    {
        if (_credentials.Count < _options.MaxCredentials) return true;
        long now = NowMs;
        var drop = new List<Credential>();
        foreach (var c in _credentials.Values)
            if (c.Revoked || c.ExpiredAt(now)) drop.Add(c);
        foreach (var c in drop)
        {
            _credentials.Remove(c.Id);
            if (c.Role == CredentialRole.Agent && _agentsByNode.TryGetValue(c.Subject, out var l)) l.Remove(c);
            _cell.DeleteAuthRecord(Credential.KeyPrefix + c.Id);
        }
        return _credentials.Count < _options.MaxCredentials;
    }

    // Caller holds _lock.
    private void Store(Credential c)
    {
        _credentials[c.Id] = c;
        if (c.Role == CredentialRole.Agent) AgentsOf(c.Subject).Add(c);
        Persist(c);
    }

    private void Persist(Credential c) => _cell.PutAuthRecord(Credential.KeyPrefix + c.Id, c.Encode());

    internal (ErrorCode Code, int Closed) RevokeCore(string id, string by)
    {
        List<FrameConnection> close;
        lock (_lock)
        {
            if (!_credentials.TryGetValue(id ?? "", out var c)) return (ErrorCode.UnknownCredential, 0);
            if (!c.Revoked)
            {
                c.Revoked = true;
                Persist(c);
            }
            close = [.. c.Connections];
            c.Connections.Clear();
        }
        // Outside the lock: closing runs the connection's disconnect path, which takes the lock to detach.
        foreach (var conn in close) conn.SendError(0, ErrorCode.CredentialRevoked, $"credential {id} was revoked by {by}");
        return (ErrorCode.None, close.Count);
    }

    /// <summary>
    /// Join: spends one use of <paramref name="join"/> and issues an agent credential for <paramref name="node"/>; the
    /// connection moves from the join credential to the new one. The reason is set for PermissionDenied.
    /// </summary>
    internal (ErrorCode Code, DenyReason Reason, string Message, Credential? Agent, string Token) Join(Credential join, FrameConnection connection, string node)
    {
        if (string.IsNullOrWhiteSpace(node) || node.Length > 256) return (ErrorCode.InvalidRequest, DenyReason.None, "join needs a node name of 1-256 characters", null, "");
        string token = Credential.NewToken(out var id, out var secret);
        long now = NowMs;
        lock (_lock)
        {
            if (join.Revoked) return (ErrorCode.CredentialRevoked, DenyReason.None, $"join token {join.Id} was revoked", null, "");
            if (join.ExpiredAt(now)) return (ErrorCode.CredentialExpired, DenyReason.None, $"join token {join.Id} has expired", null, "");
            if (join.UsesLeft <= 0) return (ErrorCode.JoinTokenExhausted, DenyReason.None, $"join token {join.Id} has no use left", null, "");
            if (_agentsByNode.TryGetValue(node, out var existing))
                foreach (var e in existing)
                    if (!e.Revoked && !e.ExpiredAt(now))
                        return (ErrorCode.PermissionDenied, DenyReason.NodeHasCredential, $"node '{node}' already has credential {e.Id}; revoke it before joining the node again", null, "");
            if (!MakeRoom()) return (ErrorCode.CredentialLimitReached, DenyReason.None, $"the server holds its maximum of {_options.MaxCredentials} credentials", null, "");
            var agent = new Credential
            {
                Id = id, Hash = Credential.HashSecret(secret), Role = CredentialRole.Agent, Subject = node, CreatedUnixMs = now,
                ExpiresUnixMs = join.AgentTtlMs > 0 ? now + join.AgentTtlMs : 0, CreatedBy = join.Who,
            };
            join.UsesLeft--;
            Persist(join);
            Store(agent);
            join.Connections.Remove(connection);
            agent.Connections.Add(connection);
            return (ErrorCode.None, DenyReason.None, "", agent, token);
        }
    }

    // ---------------------------------------------------------------- denials and audit

    /// <summary>Counts a PermissionDenied by role and reason and writes it to the audit log (rate-bounded).</summary>
    internal void CountDenial(Credential? c, DenyReason reason, string action, string target)
    {
        Interlocked.Increment(ref _deniedTotal);
        _denied.Add(1, new KeyValuePair<string, object?>("role", c is null ? "none" : Credential.RoleName(c.Role)), new KeyValuePair<string, object?>("reason", reason.ToString()));
        AuditDenial(c?.Who ?? "anonymous", action, target, "denied: " + reason);
    }

    private void AuditDenial(string who, string action, string target, string result)
    {
        lock (_lock)
        {
            // Token bucket: a flood of denials (a hostile or broken client) must not turn into a flood of journal records.
            long ts = _time.GetTimestamp();
            double rate = Math.Max(1, _options.AuditDenialsPerSecond);
            _denialTokens = Math.Min(rate, _denialTokens + _time.GetElapsedTime(_denialRefillAt, ts).TotalSeconds * rate);
            _denialRefillAt = ts;
            if (_denialTokens < 1)
            {
                _suppressed++;
                _suppressedTotal++;
                _suppressedCounter.Add(1);
                return;
            }
            _denialTokens -= 1;
            if (_suppressed > 0)
            {
                result += string.Create(CultureInfo.InvariantCulture, $" (+{_suppressed} earlier denials not logged: over {rate}/s)");
                _suppressed = 0;
            }
            AppendLocked(who, action, target, result);
        }
    }

    /// <summary>Appends an audit entry (an operator action, a join, a break-glass request).</summary>
    internal void Audit(string who, string action, string target, string result)
    {
        lock (_lock) AppendLocked(who, action, target, result);
    }

    private void AppendLocked(string who, string action, string target, string result)
    {
        var e = new AuditEntry(_nextAuditSeq++, NowMs, Clip(who), Clip(action), Clip(target), Clip(result));
        _audit.Enqueue(e);
        _cell.PutAuthRecord(AuditKey(e.Seq), EncodeAudit(e));
        while (_audit.Count > Math.Max(1, _options.AuditRetention))
            _cell.DeleteAuthRecord(AuditKey(_audit.Dequeue().Seq));
    }

    private static string Clip(string s) => s.Length <= 512 ? s : s[..512];

    private static string AuditKey(long seq) => AuditPrefix + seq.ToString("x16", CultureInfo.InvariantCulture);

    // Layout: seq:i64 unixMs:i64 who:str action:str target:str result:str (str = len:i32 utf8).
    private static byte[] EncodeAudit(AuditEntry e)
    {
        using var ms = new MemoryStream(96);
        using var w = new BinaryWriter(ms, Encoding.UTF8);
        w.Write(e.Seq);
        w.Write(e.UnixMs);
        foreach (var s in (ReadOnlySpan<string>)[e.Who, e.Action, e.Target, e.Result])
        {
            var b = Encoding.UTF8.GetBytes(s);
            w.Write(b.Length);
            w.Write(b);
        }
        w.Flush();
        return ms.ToArray();
    }

    private static AuditEntry DecodeAudit(ReadOnlySpan<byte> v)
    {
        if (v.Length < 16) throw new InvalidDataException("audit record shorter than its header");
        long seq = BinaryPrimitives.ReadInt64LittleEndian(v), at = BinaryPrimitives.ReadInt64LittleEndian(v[8..]);
        int p = 16;
        string who = Credential.ReadString(v, ref p), action = Credential.ReadString(v, ref p), target = Credential.ReadString(v, ref p), result = Credential.ReadString(v, ref p);
        return new AuditEntry(seq, at, who, action, target, result);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _sweep?.Dispose();
        _meter.Dispose();
    }
}
