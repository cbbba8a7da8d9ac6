namespace Omega.Cells;

/// <summary>How a transaction's claims are applied.</summary>
public enum CommitMode : byte
{
    /// <summary>Apply every claim that validates and reject the rest (the Omega paper's incremental transactions).</summary>
    Incremental = 0,

    /// <summary>Apply all claims atomically or none (gang scheduling). The first failing claim rolls the transaction back.</summary>
    AllOrNothing = 1,
}

/// <summary>How conflicts with concurrent commits are detected.</summary>
public enum ConflictDetection : byte
{
    /// <summary>Reject a claim only if the node would be overcommitted (resource-fit check against the live state).</summary>
    Fine = 0,

    /// <summary>Reject a claim if the node's version changed since the snapshot (<see cref="Claim.ExpectedNodeVersion"/>).</summary>
    Coarse = 1,
}

/// <summary>What a claim asks the cell to do (docs/commit-protocol.md, "Reservations").</summary>
public enum ClaimKind : byte
{
    /// <summary>Bind the task to the node (the ordinary claim).</summary>
    Bind = 0,

    /// <summary>
    /// Hold the resources on the node for the task, until <see cref="Claim.Ttl"/> passes, without binding it: the hold
    /// counts against the node's capacity and the tenant's usage like a binding. No victims.
    /// </summary>
    Reserve = 1,

    /// <summary>Bind the task to the node, consuming the task's reservation there in the same atomic step.</summary>
    BindReserved = 2,
}

/// <summary>
/// A claim: bind <see cref="Task"/> to <see cref="Node"/> holding <see cref="Resources"/>, optionally evicting lower-priority
/// <see cref="Victims"/> on the same node in the same atomic step (a preemption claim).
/// </summary>
/// <param name="Task">The task to bind.</param>
/// <param name="Node">The node to bind it to.</param>
/// <param name="Resources">The resources the binding holds.</param>
/// <param name="ExpectedNodeVersion">The node's <see cref="NodeView.Version"/> in the snapshot the decision was made on (used by coarse detection).</param>
/// <param name="Tenant">The tenant charged (quota).</param>
/// <param name="Priority">The task's priority. Victims must have strictly lower priority.</param>
/// <param name="Victims">Tasks on the same node to evict first; null or empty for an ordinary claim.</param>
/// <param name="Kind">Bind (default), reserve, or bind consuming the task's reservation.</param>
/// <param name="Ttl">For <see cref="ClaimKind.Reserve"/>: how long the hold lasts from the commit (the cell's clock);
/// in (0, <see cref="CellOptions.MaxReservationTtl"/>]. Ignored otherwise (must be zero).</param>
/// <param name="Group">
/// The task's constraint group. With hard anti-affinity the cell rejects the claim (<see cref="ClaimStatus.AntiAffinityViolated"/>)
/// when another member of the group is bound on the node or in its failure domain; spread is advisory and not checked.
/// Not journaled: membership is derived from the task id (<see cref="PlacementGroup"/>), so the check needs nothing but
/// the bindings the cell already persists.
/// </param>
public readonly record struct Claim(TaskId Task, NodeId Node, ResourceVector Resources, long ExpectedNodeVersion, TenantId Tenant = default, int Priority = 0, TaskId[]? Victims = null,
    ClaimKind Kind = ClaimKind.Bind, TimeSpan Ttl = default, PlacementGroup Group = default)
{
    /// <summary>True when this claim preempts other tasks.</summary>
    public bool IsPreemption => Victims is { Length: > 0 };
}

/// <summary>
/// A transaction under construction: the scheduler's identity and fencing token, a mode, a conflict-detection setting,
/// an idempotency key and a list of claims. Reusable: call <see cref="Reset"/> and fill it again, so a worker's hot
/// loop allocates nothing. Not thread-safe; one owner at a time.
/// </summary>
public sealed class Transaction
{
    private Claim[] _claims;
    private ClaimStatus[] _outcomes;
    private int _count;

    /// <summary>Creates an empty transaction for the holder of <paramref name="lease"/>.</summary>
    public Transaction(SchedulerLease lease, CommitMode mode = CommitMode.Incremental, ConflictDetection detection = ConflictDetection.Fine, int initialCapacity = 4)
    {
        _claims = new Claim[Math.Max(1, initialCapacity)];
        _outcomes = new ClaimStatus[_claims.Length];
        Reset(lease, mode, detection);
    }

    /// <summary>The committing scheduler.</summary>
    public SchedulerId Scheduler { get; set; }

    /// <summary>The fencing token the scheduler holds.</summary>
    public FencingToken Token { get; set; }

    /// <summary>The commit mode.</summary>
    public CommitMode Mode { get; set; }

    /// <summary>The conflict detection setting.</summary>
    public ConflictDetection Detection { get; set; }

    /// <summary>The idempotency key; <see cref="IdempotencyKey.None"/> disables deduplication.</summary>
    public IdempotencyKey Key { get; set; }

    /// <summary>The claims added so far.</summary>
    public ReadOnlySpan<Claim> Claims => _claims.AsSpan(0, _count);

    /// <summary>The number of claims.</summary>
    public int Count => _count;

    /// <summary>Clears the claims and sets the header for the next use. Invalidates the claim statuses of earlier results.</summary>
    public void Reset(SchedulerLease lease, CommitMode mode = CommitMode.Incremental, ConflictDetection detection = ConflictDetection.Fine, IdempotencyKey key = default)
    {
        Scheduler = lease.Id;
        Token = lease.Token;
        Mode = mode;
        Detection = detection;
        Key = key;
        _count = 0;
        JournalClaimsLength = -1;
    }

    /// <summary>Adds a claim.</summary>
    public Transaction Add(in Claim claim)
    {
        if (_count == _claims.Length)
        {
            Array.Resize(ref _claims, _count * 2);
            Array.Resize(ref _outcomes, _count * 2);
        }
        _claims[_count++] = claim;
        JournalClaimsLength = -1;
        return this;
    }

    /// <summary>Adds a claim binding <paramref name="task"/> to the node seen in <paramref name="node"/>, expecting its snapshot version.</summary>
    public Transaction Add(TaskId task, in NodeView node, ResourceVector resources, TenantId tenant = default, int priority = 0)
        => Add(new Claim(task, node.Id, resources, node.Version, tenant, priority));

    internal ClaimStatus[] OutcomeBuffer => _outcomes;

    // The claims section of this transaction's journal record, encoded by the committing thread before it takes the
    // commit lock (Cell.Journal.cs, PreEncodeClaims; docs/storage.md, "Encoding outside the commit lock"). The bytes are
    // a pure function of the claims, so they stay valid until Reset or Add changes them (both set the length to -1);
    // a retry of the same transaction reuses them. -1: not encoded.
    internal byte[]? JournalClaims;
    internal int JournalClaimsLength = -1;
}
