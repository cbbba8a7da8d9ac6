namespace Omega.Protocol;

/// <summary>The one-byte message type of a frame. Values are fixed by docs/protocol.md and never reused.</summary>
public enum MessageType : byte
{
    /// <summary>Client to server, first frame of every connection: protocol version and role.</summary>
    Hello = 0x01,

    /// <summary>Server to client: the handshake succeeded; carries the server's limits.</summary>
    Welcome = 0x02,

    /// <summary>Server to client: a typed error (<see cref="ErrorCode"/>), echoing the offending request id.</summary>
    Error = 0x03,

    /// <summary>Agent: register a node (capacity, labels, failure domain) and optionally resume a binding stream.</summary>
    Register = 0x10,

    /// <summary>Server: the node is registered and holds a lease.</summary>
    Registered = 0x11,

    /// <summary>Agent: renew the node lease, reporting the last binding version seen.</summary>
    Heartbeat = 0x12,

    /// <summary>Server: heartbeat accepted.</summary>
    HeartbeatAck = 0x13,

    /// <summary>Server push (request id 0): every binding change of one cell version for this node.</summary>
    Bindings = 0x14,

    /// <summary>Agent: a task's state changed (accepted, running, failed, completed, rejected).</summary>
    TaskReport = 0x15,

    /// <summary>Server: the task report was processed.</summary>
    TaskReportAck = 0x16,

    /// <summary>Agent: stop sending new work to this node.</summary>
    Drain = 0x17,

    /// <summary>Server: the node is draining.</summary>
    DrainAck = 0x18,

    /// <summary>Agent: several task reports in one frame (the bind path's batched acknowledgements).</summary>
    TaskReports = 0x19,

    /// <summary>Server: one status per report of a TaskReports frame.</summary>
    TaskReportsAck = 0x1A,

    /// <summary>Scheduler: acquire a scheduler lease and fencing token.</summary>
    AcquireLease = 0x20,

    /// <summary>Server: result of an acquire or renew.</summary>
    LeaseReply = 0x21,

    /// <summary>Scheduler: renew a lease.</summary>
    RenewLease = 0x22,

    /// <summary>Scheduler: read cell state, in full or the nodes changed since a version.</summary>
    Sync = 0x23,

    /// <summary>Server: a page of node records.</summary>
    SyncReply = 0x24,

    /// <summary>Scheduler: commit a transaction of claims.</summary>
    Commit = 0x25,

    /// <summary>Server: the transaction's result.</summary>
    CommitReply = 0x26,

    /// <summary>Scheduler or client: submit a job to the engine's own scheduler workers.</summary>
    SubmitJob = 0x27,

    /// <summary>Server: whether the job was queued.</summary>
    SubmitJobReply = 0x28,

    /// <summary>Scheduler or client: query a submitted job's state.</summary>
    QueryJob = 0x29,

    /// <summary>Server: the job's state.</summary>
    JobStatusReply = 0x2A,

    /// <summary>Operator (scheduler role): the decision record that last covered a task.</summary>
    Explain = 0x30,

    /// <summary>Server: the decision record as text, if one is kept.</summary>
    ExplainReply = 0x31,

    /// <summary>Operator (scheduler role): read nodes, allocations or scheduler statistics as text lines.</summary>
    Inspect = 0x32,

    /// <summary>Server: the lines asked for.</summary>
    InspectReply = 0x33,

    /// <summary>Operator (scheduler role): checkpoint the store, or drain a node by name.</summary>
    Operate = 0x34,

    /// <summary>Server: the operation's outcome.</summary>
    OperateReply = 0x35,

    /// <summary>Version 2, scheduler role: create a control-plane object (a JSON document).</summary>
    CreateObject = 0x40,

    /// <summary>Server: an object as stored after a create, update, status update, delete or get (sent once durable for writes).</summary>
    ObjectReply = 0x41,

    /// <summary>Version 2: update an object's spec and metadata, with a resourceVersion precondition.</summary>
    UpdateObject = 0x42,

    /// <summary>Version 2: replace an object's status (the controller's write), with a resourceVersion precondition.</summary>
    UpdateObjectStatus = 0x43,

    /// <summary>Version 2: delete an object by key, with an optional resourceVersion precondition.</summary>
    DeleteObject = 0x44,

    /// <summary>Version 2: read one object by key.</summary>
    GetObject = 0x45,

    /// <summary>Version 2: list objects by kind, tenant and label selector, paged.</summary>
    ListObjects = 0x46,

    /// <summary>Server: a page of objects, the version it is consistent with, and the continue token.</summary>
    ObjectList = 0x47,

    /// <summary>Version 2: watch every change after a resourceVersion; events come back with this request's id.</summary>
    WatchObjects = 0x48,

    /// <summary>Server push (request id = the watch's): one change of one object.</summary>
    WatchEvent = 0x49,

    /// <summary>Version 2: stop a watch named by its request id.</summary>
    StopWatch = 0x4A,

    /// <summary>Server: the watch is stopped; no event of it follows.</summary>
    WatchStopped = 0x4B,
    /// <summary>Operator (scheduler role): set or clear a tenant's hard limit and guarantee (protected capacity); version 2.</summary>
    SetQuota = 0x60,

    /// <summary>Server: the tenant id and the cell version of the change, sent once it is durable.</summary>
    SetQuotaReply = 0x61,

    /// <summary>Operator (scheduler role): every tenant's usage, limit, guarantee and unmet guarantee; version 2.</summary>
    ListQuotas = 0x62,

    /// <summary>Server: the quotas asked for.</summary>
    QuotasReply = 0x63,
    /// <summary>Version 2, operator (scheduler role): stage, promote, roll back or list SchedulerPolicy revisions.</summary>
    Policy = 0x68,

    /// <summary>Version 2, server: a policy operation's outcome.</summary>
    PolicyReply = 0x69,

    /// <summary>Version 2, operator (scheduler role): the kept decision records of a workload (generation).</summary>
    ExplainWorkload = 0x6A,

    /// <summary>Version 2, server: the records as text.</summary>
    ExplainWorkloadReply = 0x6B,

    /// <summary>Agent with a join token: obtain a node-scoped agent credential for one node (version 2).</summary>
    Join = 0x50,

    /// <summary>Server: the new agent credential; the connection now acts as it.</summary>
    JoinReply = 0x51,

    /// <summary>Operator (admin scope): create a credential.</summary>
    CreateToken = 0x52,

    /// <summary>Server: the created credential's id and token (shown once).</summary>
    TokenCreated = 0x53,

    /// <summary>Operator (admin scope): list credentials (never their secrets).</summary>
    ListTokens = 0x54,

    /// <summary>Server: the credentials.</summary>
    TokenList = 0x55,

    /// <summary>Operator (admin scope): revoke a credential and close its connections.</summary>
    RevokeToken = 0x56,

    /// <summary>Server: the credential is revoked (durably).</summary>
    TokenRevoked = 0x57,

    /// <summary>Operator (admin scope): read the audit log.</summary>
    ReadAudit = 0x58,

    /// <summary>Server: audit entries.</summary>
    AuditLog = 0x59,

    /// <summary>Version 5 (admin scope): a replica asks the leader for a snapshot of the cell (docs/protocol.md, "Replica snapshots").</summary>
    SnapshotRequest = 0x74,

    /// <summary>Server: the snapshot's id, position (sequence, cell version), length, SHA-256 and chunk size.</summary>
    SnapshotBegin = 0x75,

    /// <summary>Version 5 (admin scope): read one chunk of a snapshot at an offset.</summary>
    SnapshotRead = 0x76,

    /// <summary>Server: one chunk of a snapshot (at most the SnapshotBegin's chunk size).</summary>
    SnapshotChunk = 0x77,

    /// <summary>Version 4: stop a job (its pending tasks are not placed, its bindings released); answered once durable.</summary>
    StopJob = 0x78,

    /// <summary>Server: what StopJob did.</summary>
    StopJobReply = 0x79,

    /// <summary>Version 4: subscribe to a job's state; answered by JobEvent frames until the final one.</summary>
    WatchJob = 0x7A,

    /// <summary>Server: a job's state, pushed with the WatchJob's request id.</summary>
    JobEvent = 0x7B,

    /// <summary>Version 4: end a job watch.</summary>
    StopJobWatch = 0x7C,

    /// <summary>Server: the job watch ended.</summary>
    JobWatchStopped = 0x7D,
}

/// <summary>The role a credential names (docs/protocol.md, section 12).</summary>
public enum CredentialRole : byte
{
    /// <summary>A node agent, for the one node named by the credential.</summary>
    Agent = 0,

    /// <summary>An external scheduler, under the one identity (lease name) named by the credential, optionally for listed tenants.</summary>
    Scheduler = 1,

    /// <summary>An operator with scopes (<see cref="OperatorScopes"/>).</summary>
    Operator = 2,

    /// <summary>A submitter of one tenant's jobs.</summary>
    Submitter = 3,

    /// <summary>A short-lived, bounded-use bootstrap token: only Join.</summary>
    Join = 4,
}

/// <summary>Operator scopes, a bit set (docs/protocol.md, section 12).</summary>
[Flags]
public enum OperatorScopes
{
    /// <summary>No scope beyond read (every operator may read).</summary>
    None = 0,

    /// <summary>Reads: Sync, QueryJob, Explain, Inspect.</summary>
    Read = 1,

    /// <summary>Operate DrainNode.</summary>
    Drain = 2,

    /// <summary>Operate CreateTenant, RemoveNode, ConfirmDomainLost, WithdrawDomainLoss, Checkpoint.</summary>
    Override = 4,

    /// <summary>Token management and the audit log.</summary>
    Admin = 8,

    /// <summary>Everything the other scopes allow plus submit/query/explain for any tenant; every request is audited.</summary>
    BreakGlass = 16,

    /// <summary>Every scope.</summary>
    All = Read | Drain | Override | Admin | BreakGlass,
}

/// <summary>Why a request got <see cref="ErrorCode.PermissionDenied"/> (the Error frame's key 2).</summary>
public enum DenyReason : byte
{
    /// <summary>Not a denial.</summary>
    None = 0,

    /// <summary>The credential's role never may send this request.</summary>
    RoleNotAllowed = 1,

    /// <summary>The credential lacks the operator scope (or submitter read) the request needs.</summary>
    ScopeMissing = 2,

    /// <summary>An agent credential acting for another node.</summary>
    OtherNode = 3,

    /// <summary>A scheduler credential naming another lease name or scheduler id.</summary>
    OtherScheduler = 4,

    /// <summary>A tenant outside the credential's tenant or tenant list.</summary>
    OtherTenant = 5,

    /// <summary>Join for a node that already has a live agent credential.</summary>
    NodeHasCredential = 6,
}

/// <summary>The role a connection declares in its <see cref="MessageType.Hello"/>.</summary>
public enum PeerRole : byte
{
    /// <summary>A node agent: may register one node and exchange agent messages.</summary>
    Agent = 0,

    /// <summary>An external scheduler or client: lease, sync, commit, submit and query messages.</summary>
    Scheduler = 1,
}
