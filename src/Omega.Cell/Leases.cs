namespace Omega.Cells;

/// <summary>A scheduler's lease: its identity, its fencing token and when the lease expires unless renewed.</summary>
/// <param name="Id">The scheduler's id in this cell.</param>
/// <param name="Name">The scheduler identity's name.</param>
/// <param name="Token">The fencing token to put in every transaction.</param>
/// <param name="ExpiresAt">When the lease lapses unless renewed.</param>
public readonly record struct SchedulerLease(SchedulerId Id, string Name, FencingToken Token, DateTimeOffset ExpiresAt);

/// <summary>The outcome of a lease request.</summary>
public enum LeaseStatus : byte
{
    /// <summary>A new lease with a new, larger fencing token was granted.</summary>
    Granted = 0,

    /// <summary>The lease was extended; the token is unchanged.</summary>
    Renewed = 1,

    /// <summary>Another holder of the same identity has an unexpired lease; try again after it expires.</summary>
    HeldByAnother = 2,

    /// <summary>Renewal refused: the lease expired. Acquire a new one (with a new token).</summary>
    Expired = 3,

    /// <summary>Renewal refused: a newer token was granted to this identity since; this holder is stale.</summary>
    Superseded = 4,

    /// <summary>The request was malformed (empty name, non-positive duration, unknown scheduler id).</summary>
    Invalid = 5,
}

/// <summary>The result of a lease request.</summary>
/// <param name="Status">The outcome.</param>
/// <param name="Lease">The lease, when granted or renewed.</param>
/// <param name="HeldUntil">For <see cref="LeaseStatus.HeldByAnother"/>: when the other lease expires.</param>
public readonly record struct LeaseResult(LeaseStatus Status, SchedulerLease Lease, DateTimeOffset HeldUntil)
{
    /// <summary>True when the caller holds a valid lease.</summary>
    public bool Succeeded => Status is LeaseStatus.Granted or LeaseStatus.Renewed;
}

/// <summary>The outcome of a node operation.</summary>
public enum NodeOpStatus : byte
{
    /// <summary>Done.</summary>
    Ok = 0,

    /// <summary>The node id does not exist (or was removed).</summary>
    UnknownNode = 1,

    /// <summary>A node with that name already exists.</summary>
    DuplicateName = 2,

    /// <summary>The new capacity is below what is allocated on the node; drain or release first.</summary>
    CapacityBelowAllocated = 3,

    /// <summary>The request was malformed (negative capacity, renaming a node, setting status Removed directly).</summary>
    Invalid = 4,
}

/// <summary>The outcome of releasing a task.</summary>
public enum ReleaseStatus : byte
{
    /// <summary>The binding was removed and its resources freed.</summary>
    Released = 0,

    /// <summary>The task has no live binding.</summary>
    NotBound = 1,

    /// <summary>The task is bound with another generation than expected (a late report about an older binding); nothing changed.</summary>
    GenerationMismatch = 2,
}
