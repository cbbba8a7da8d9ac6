namespace Omega;

/// <summary>
/// The outcome of one claim in a transaction. Every value except <see cref="Applied"/> is a rejection with a
/// documented cause; these are expected outcomes, returned as values and counted in metrics, never thrown.
/// The order of the checks follows the commit protocol (docs/commit-protocol.md): token, node, task, fit/version, quota.
/// </summary>
public enum ClaimStatus : byte
{
    /// <summary>The claim was applied: the task is now bound to the node (after evicting its victims, if any).</summary>
    Applied = 0,

    /// <summary>The claim was not examined because the whole transaction was rejected (stale token, expired lease, invalid transaction).</summary>
    NotEvaluated = 1,

    /// <summary>The node id does not exist in the cell (never added, or removed).</summary>
    NodeUnknown = 2,

    /// <summary>The node is fenced (for example its agent's lease expired) and accepts no new claims.</summary>
    NodeFenced = 3,

    /// <summary>The node is draining and accepts no new claims.</summary>
    NodeDraining = 4,

    /// <summary>The node is down and accepts no new claims.</summary>
    NodeDown = 5,

    /// <summary>The task already has a live binding (in the cell, or earlier in the same transaction).</summary>
    TaskAlreadyBound = 6,

    /// <summary>Fine-grained detection: the node would be overcommitted in at least one dimension.</summary>
    InsufficientResources = 7,

    /// <summary>Coarse-grained detection: the node's version changed since the snapshot the claim was made on.</summary>
    NodeVersionChanged = 8,

    /// <summary>The tenant's hard quota would be exceeded.</summary>
    QuotaExceeded = 9,

    /// <summary>All-or-nothing: this claim validated, but another claim in the transaction failed, so nothing was applied.</summary>
    Aborted = 10,

    /// <summary>A preemption victim is not bound, or not bound to the claimed node.</summary>
    VictimNotFound = 11,

    /// <summary>A preemption victim's priority is not strictly lower than the claim's priority.</summary>
    VictimPriorityTooHigh = 12,

    /// <summary>
    /// The claim itself is malformed: resources negative or above <see cref="ResourceVector.MaxQuantity"/> in some
    /// dimension, or a victim listed twice or naming the claimed task.
    /// </summary>
    InvalidClaim = 13,

    /// <summary>The claim charges a tenant that does not exist in the cell (tenants are created before use).</summary>
    UnknownTenant = 14,

    /// <summary>
    /// The task holds a reservation, and the claim is a plain bind or a second reserve: a reserved task is bound with
    /// <c>ClaimKind.BindReserved</c> (which consumes the reservation), or its reservation is released first.
    /// </summary>
    TaskReserved = 15,

    /// <summary>A <c>BindReserved</c> claim, but the task holds no reservation (never reserved, or already released).</summary>
    ReservationNotFound = 16,

    /// <summary>A <c>BindReserved</c> claim whose node or tenant differs from the reservation's.</summary>
    ReservationMismatch = 17,

    /// <summary>
    /// A <c>BindReserved</c> claim after the reservation's expiry: the hold is void (it keeps counting against its node
    /// until the reservation controller releases it, so it never turns into capacity twice).
    /// </summary>
    ReservationExpired = 18,

    /// <summary>
    /// Protected capacity: applying the claim would leave less free schedulable capacity in the cell than the other
    /// tenants' unmet guarantees need (docs/commit-protocol.md, "Protected capacity").
    /// </summary>
    ProtectedCapacity = 19,

    /// <summary>A reserve claim while the cell already holds <c>CellOptions.MaxReservations</c> reservations.</summary>
    ReservationLimitReached = 20,

    /// <summary>
    /// The claim carries hard anti-affinity (the claim's placement group) and another member of its group is bound on the node,
    /// or in the node's failure domain. Checked against the live bindings under the commit lock, so two concurrent
    /// schedulers cannot both place members side by side.
    /// </summary>
    AntiAffinityViolated = 21,

    /// <summary>
    /// Issue 13: the claim is critical (at or above the region's recovery-budget priority floor), is not failover (its
    /// group's home region is this region, or it has none), and would leave the region's free plus reclaimable capacity
    /// below the part of the recovery budget failover has not consumed yet. Failover and lower-priority claims never get it.
    /// </summary>
    RecoveryBudgetHeld = 22,
}

/// <summary>
/// The outcome of a whole transaction. Like <see cref="ClaimStatus"/>, every value is an expected outcome with a documented meaning.
/// </summary>
public enum TransactionStatus : byte
{
    /// <summary>Every claim was applied.</summary>
    Committed = 0,

    /// <summary>Incremental mode only: some claims were applied and some rejected; see each claim's status.</summary>
    PartiallyCommitted = 1,

    /// <summary>No claim was applied (all rejected, or an all-or-nothing transaction rolled back); see each claim's status.</summary>
    Rejected = 2,

    /// <summary>The fencing token is not the scheduler identity's current one: the whole transaction was rejected before anything else was checked.</summary>
    StaleFencingToken = 3,

    /// <summary>The token is current, but its lease has expired: the scheduler must acquire a new lease (and a new token).</summary>
    LeaseExpired = 4,

    /// <summary>The scheduler id was never granted a lease in this cell.</summary>
    UnknownScheduler = 5,

    /// <summary>
    /// The transaction is malformed: no claims, or more than the cell's limit of claims per transaction. (A task claimed
    /// twice is not malformed: the later claim gets <see cref="ClaimStatus.TaskAlreadyBound"/>.)
    /// </summary>
    InvalidTransaction = 6,

    /// <summary>The idempotency key was already used by a different transaction (different claims). Nothing was applied.</summary>
    IdempotencyKeyReused = 7,
}

/// <summary>Extension helpers for result codes.</summary>
public static class ResultCodeExtensions
{
    /// <summary>True when the transaction changed the cell (all or some claims applied).</summary>
    public static bool AppliedAny(this TransactionStatus status)
        => status is TransactionStatus.Committed or TransactionStatus.PartiallyCommitted;

    /// <summary>True for statuses that mean the scheduler lost its authority and must re-acquire a lease before retrying.</summary>
    public static bool IsFencingFailure(this TransactionStatus status)
        => status is TransactionStatus.StaleFencingToken or TransactionStatus.LeaseExpired or TransactionStatus.UnknownScheduler;

    /// <summary>True for claim statuses that are optimistic-concurrency conflicts: the snapshot was stale and a re-sync may help.</summary>
    public static bool IsConflict(this ClaimStatus status)
        => status is ClaimStatus.InsufficientResources or ClaimStatus.NodeVersionChanged or ClaimStatus.TaskAlreadyBound
            or ClaimStatus.VictimNotFound;
}
