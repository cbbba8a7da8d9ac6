namespace Omega.Protocol;

/// <summary>
/// Typed errors carried by <see cref="MessageType.Error"/> frames. Each code says whether the server closes the
/// connection after sending it (see docs/protocol.md, "Errors"). Every error sent is counted in the transport meter.
/// </summary>
public enum ErrorCode : ushort
{
    /// <summary>No error.</summary>
    None = 0,

    /// <summary>The length prefix is above the server's maximum frame size (or ≥ 2^31). The connection is closed.</summary>
    FrameTooLarge = 1,

    /// <summary>The length prefix is below 5 (no room for type and request id). The connection is closed.</summary>
    FrameTooSmall = 2,

    /// <summary>The body is not valid MessagePack for its message type (bad bytes, wrong types, too deep, trailing bytes). The connection stays open.</summary>
    MalformedBody = 3,

    /// <summary>The message type is not defined, or is a server-to-client type. The connection stays open.</summary>
    UnknownMessageType = 4,

    /// <summary>The Hello's protocol version is not supported. The connection is closed.</summary>
    UnsupportedVersion = 5,

    /// <summary>A request arrived before the handshake. The connection is closed.</summary>
    HandshakeRequired = 6,

    /// <summary>A second Hello on a connection that already completed its handshake. The connection stays open.</summary>
    AlreadyHandshaken = 7,

    /// <summary>The message is not allowed for the role declared in the Hello. The connection stays open.</summary>
    WrongRole = 8,

    /// <summary>An agent message that needs a registered node arrived before Register succeeded. The connection stays open.</summary>
    NotRegistered = 9,

    /// <summary>The message names a node other than the one this connection registered. The connection stays open.</summary>
    NodeMismatch = 10,

    /// <summary>The connection already has the maximum number of requests in flight. The connection stays open.</summary>
    TooManyRequestsInFlight = 11,

    /// <summary>No Hello within the handshake timeout. Sent best-effort, then the connection is closed.</summary>
    HandshakeTimeout = 12,

    /// <summary>Nothing received within the idle timeout. Sent best-effort, then the connection is closed.</summary>
    IdleTimeout = 13,

    /// <summary>The server is at its maximum number of connections. Sent, then the connection is closed.</summary>
    ServerBusy = 14,

    /// <summary>The request is well-formed but its values are invalid (negative capacity, empty name, ...). The connection stays open.</summary>
    InvalidRequest = 15,

    /// <summary>Register named a node whose lease is held by another live connection. The connection stays open.</summary>
    NodeBusy = 16,

    /// <summary>The server is shutting down. The connection is closed.</summary>
    ShuttingDown = 17,

    /// <summary>Version 2: a domain-loss confirmation or withdrawal named a failure domain no live node has. The connection stays open.</summary>
    UnknownFailureDomain = 36,

    /// <summary>Version 2: a domain-loss confirmation or withdrawal without a reason or author, or with one too long. The connection stays open.</summary>
    InvalidConfirmation = 37,
    // 18-23: admission; 24-29: resource budgets (docs/protocol.md, "Budgets"); 30-35: durability; 36-41: liveness;
    // 42-49: control-plane objects.

    /// <summary>
    /// SubmitJob asked for more tasks than the server's tasks-per-job budget. Permanent for that job: split it. The
    /// connection stays open and nothing changed.
    /// </summary>
    JobTooLarge = 24,

    /// <summary>
    /// Accepting the request would take a budget of queued tasks (per connection, per tenant or in total) above its
    /// limit. Retry once queued tasks were placed. The connection stays open and nothing changed.
    /// </summary>
    ResourceExhausted = 25,

    /// <summary>
    /// The server-wide budget of bytes held for incomplete frames is spent, and this connection's partial frame would
    /// take it further. Sent, then the connection is closed (its buffered bytes are released).
    /// </summary>
    IncompleteFrameBudget = 26,
    /// <summary>SubmitJob: the per-task request has an element negative or above 2^53, or requests nothing. The connection stays open.</summary>
    InvalidResources = 18,

    /// <summary>SubmitJob: the per-task request exceeds, in some dimension, the largest capacity of any node. The connection stays open.</summary>
    RequestExceedsLargestNode = 19,

    /// <summary>SubmitJob names a tenant that was never created. The connection stays open.</summary>
    UnknownTenant = 20,

    /// <summary>CreateTenant with a name that already exists; nothing changed. The connection stays open.</summary>
    TenantExists = 21,

    /// <summary>CreateTenant when the cell holds its maximum number of tenants. The connection stays open.</summary>
    TenantLimitReached = 22,

    /// <summary>
    /// A Register that would add a new node while the server already holds its maximum of registered nodes that have not
    /// yet sent a heartbeat (<c>ServerOptions.MaxPendingRegistrations</c>). Nothing changed; the connection stays open.
    /// Retry after back-off (existing nodes re-register without limit).
    /// </summary>
    TooManyPendingRegistrations = 30,

    /// <summary>
    /// Version 2: the listener speaks TLS and the peer's first bytes were not a TLS handshake (a plaintext client against
    /// a TLS server). Sent in plaintext, then the connection is closed. Reconnect with TLS.
    /// </summary>
    TlsRequired = 60,

    // 50-59: authentication and authorization (issue 11; docs/protocol.md, section 12).

    /// <summary>
    /// Version 2: authentication is on and the Hello carried no token, a malformed or unknown one, a wrong secret, or a
    /// credential of the other role. Sent, then the connection is closed.
    /// </summary>
    Unauthenticated = 50,

    /// <summary>
    /// Version 2: the request is outside the credential's role or scope; the Error frame's key 2 carries the
    /// <see cref="DenyReason"/>. Nothing changed; the connection stays open.
    /// </summary>
    PermissionDenied = 51,

    /// <summary>Version 2: the credential has expired (at Hello or at a later request). Sent, then the connection is closed.</summary>
    CredentialExpired = 52,

    /// <summary>Version 2: the credential was revoked (at Hello, at a later request, or when revoked while connected). Sent, then the connection is closed.</summary>
    CredentialRevoked = 53,

    /// <summary>Version 2: a join token whose uses are all spent. Sent, then the connection is closed.</summary>
    JoinTokenExhausted = 54,

    /// <summary>Version 2: RevokeToken named a credential id the server does not know. Nothing changed; the connection stays open.</summary>
    UnknownCredential = 55,

    /// <summary>Version 2: CreateToken or Join at the server's credential limit. Nothing changed; the connection stays open.</summary>
    CredentialLimitReached = 56,

    /// <summary>Version 2: an object message names a key (kind, tenant, name) that holds no object. The connection stays open.</summary>
    ObjectNotFound = 42,

    /// <summary>Version 2: CreateObject of a key that already holds an object; nothing changed. The connection stays open.</summary>
    ObjectExists = 43,

    /// <summary>
    /// Version 2: the resourceVersion precondition of an update, status update or delete is not the stored one (Kubernetes'
    /// 409); nothing changed: read again and retry. The connection stays open.
    /// </summary>
    ObjectConflict = 44,

    /// <summary>Version 2: the request's object document, or the object's canonical encoding, is over its size budget. The connection stays open.</summary>
    ObjectTooLarge = 45,

    /// <summary>Version 2: the object store holds its maximum number or bytes of objects. The connection stays open.</summary>
    TooManyObjects = 46,

    /// <summary>Version 2: a spec change of an object that is being deleted (only finalizer removal and status writes are accepted). The connection stays open.</summary>
    ObjectTerminating = 47,

    /// <summary>
    /// Version 2: WatchObjects from a resourceVersion older than the history window (Kubernetes' 410 Gone): list again and
    /// watch from the list's version. The connection stays open.
    /// </summary>
    WatchExpired = 48,

    /// <summary>
    /// Version 2: the watch fell too far behind (event lag or bytes queued to the connection) and was ended; resume from the
    /// last event's resourceVersion. The connection stays open.
    /// </summary>
    WatchTooSlow = 49,

    /// <summary>
    /// Version 2: SetQuota whose resulting guarantee (protected capacity) exceeds the resulting hard limit in some
    /// dimension. Nothing changed; the connection stays open.
    /// </summary>
    GuaranteeAboveLimit = 64,

    /// <summary>
    /// Version 2: a Policy or ExplainWorkload request to a server that runs no control plane (no object store, policy
    /// revisions or decision archive). The connection stays open.
    /// </summary>
    ControlPlaneUnavailable = 70,

    /// <summary>Version 2: a Policy request with an unknown operation (key 0). The connection stays open.</summary>
    UnknownPolicyOperation = 71,

    /// <summary>
    /// Version 3: a Register with a malformed region or zone, a zone without a region, or well-known topology labels that
    /// disagree with keys 5/6. Nothing changed; the connection stays open.
    /// </summary>
    InvalidTopology = 80,

    /// <summary>
    /// Version 3: a Register of an existing node with another region or zone than it registered with (topology is
    /// immutable per node). Nothing changed; the connection stays open.
    /// </summary>
    TopologyChanged = 81,

    /// <summary>
    /// Version 5 (replica snapshots): this server cannot produce a snapshot (single-node mode, a standby, no durable
    /// store) or failed to write one. Nothing is held; the connection stays open.
    /// </summary>
    SnapshotUnavailable = 82,

    /// <summary>
    /// Version 5: a SnapshotRead names a snapshot the server does not hold (expired, dropped at a leadership change or
    /// restart, never issued) or an offset outside it. Start over with SnapshotRequest; the connection stays open.
    /// </summary>
    UnknownSnapshot = 83,

    /// <summary>Version 5: the server already holds its maximum of snapshots for other replicas; retry after a back-off. The connection stays open.</summary>
    SnapshotBusy = 84,

    /// <summary>
    /// Version 3 (regops, issue 13): a CreateToken over the wire for a credential with the break-glass scope without a
    /// reason (key 7), without a TTL, or with a TTL over the server's maximum (4 h by default). Nothing was created; the
    /// refusal is audited. The connection stays open.
    /// </summary>
    BreakGlassUnbounded = 85,

    /// <summary>
    /// Version 4 (high availability): this replica does not lead. The error's <c>leader</c> key names the replica that
    /// does (its advertised client address) and <c>epoch</c> its fencing epoch; the client connects there. Sent for a
    /// Hello, for a request after the leadership was lost, and unprompted (request id 0) when it is lost. The connection
    /// is closed.
    /// </summary>
    NotLeader = 86,

    /// <summary>
    /// Version 4 (high availability): this replica does not lead and knows no leader (an election is in progress, or it
    /// cannot reach etcd). The client tries another replica, or this one after a back-off. The connection is closed.
    /// </summary>
    NoLeader = 87,

    /// <summary>Version 4: StopJob names a job the server's engine does not know. Nothing changed; the connection stays open.</summary>
    UnknownJob = 90,

    /// <summary>
    /// Version 4: StopJob of a job a Workload owns (its controller would submit it again): scale or delete the workload.
    /// Nothing changed; the connection stays open.
    /// </summary>
    JobOwnedByWorkload = 91,
}

/// <summary>Helpers over <see cref="ErrorCode"/>.</summary>
public static class ErrorCodeExtensions
{
    /// <summary>True when the server closes the connection after sending this error.</summary>
    public static bool ClosesConnection(this ErrorCode code)
        => code is ErrorCode.FrameTooLarge or ErrorCode.FrameTooSmall or ErrorCode.UnsupportedVersion or ErrorCode.HandshakeRequired
            or ErrorCode.HandshakeTimeout or ErrorCode.IdleTimeout or ErrorCode.ServerBusy or ErrorCode.ShuttingDown
            or ErrorCode.IncompleteFrameBudget or ErrorCode.TlsRequired
            or ErrorCode.Unauthenticated or ErrorCode.CredentialExpired or ErrorCode.CredentialRevoked or ErrorCode.JoinTokenExhausted
            or ErrorCode.NotLeader or ErrorCode.NoLeader;
}
