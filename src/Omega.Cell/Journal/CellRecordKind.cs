namespace Omega.Cells;

/// <summary>
/// The kind of a journal record (the first byte of every record). The value 255 is reserved for the batch frame
/// (<see cref="CellBatch.FrameKind"/>) and must never be given to a record kind.
/// </summary>
public enum CellRecordKind : byte
{
    /// <summary>A transaction: its applied claims (with evicted victims), the touched nodes' new versions and, when keyed, its idempotency entry.</summary>
    Commit = 1,

    /// <summary>A task's binding was released.</summary>
    Release = 2,

    /// <summary>A node was added.</summary>
    NodeAdded = 3,

    /// <summary>A node's spec was replaced.</summary>
    NodeUpdated = 4,

    /// <summary>A node's status changed.</summary>
    NodeStatusChanged = 5,

    /// <summary>A node was removed; its bindings were released.</summary>
    NodeRemoved = 6,

    /// <summary>A scheduler lease was granted, renewed or released (the record carries the lease's full state).</summary>
    Lease = 7,

    /// <summary>A tenant's quota was set or cleared.</summary>
    Quota = 8,

    /// <summary>An operator confirmed a failure domain lost (domain, author, reason, time): the mass-silence brake no longer holds its nodes.</summary>
    DomainLossConfirmed = 13,

    /// <summary>A domain-loss confirmation was withdrawn (domain, author, reason, time).</summary>
    DomainLossWithdrawn = 14,

    /// <summary>A control-plane object was created or replaced (key, creation version, encoded value); its resourceVersion is the record's cell version.</summary>
    ObjectPut = 15,

    /// <summary>A control-plane object was deleted (key); the deletion's resourceVersion is the record's cell version.</summary>
    ObjectDelete = 16,
    /// <summary>A reservation was released (task, reason): its capacity is free again. Reservations are made, and
    /// consumed by a bind, inside <see cref="Commit"/> records (claim kinds, flag bit 2).</summary>
    ReservationReleased = 17,

    /// <summary>A tenant's guaranteed capacity (protected share) was set or cleared.</summary>
    TenantGuarantee = 18,

    /// <summary>A tenant was created: its id (dense, assigned by the cell), name and initial quota.</summary>
    TenantCreated = 9,

    /// <summary>A security record (credential, revocation, audit entry; issue 11) was written: key and opaque value. Does not bump the cell version.</summary>
    AuthRecordPut = 20,

    /// <summary>A security record was deleted (an audit entry past retention, a dropped credential): key.</summary>
    AuthRecordDelete = 21,

    /// <summary>A region's recovery budget was set or cleared (region, has, capacity, minimum priority; issue 13).</summary>
    RecoveryBudget = 30,

    /// <summary>A placement group's failover home region was recorded or cleared (group key, key shift, region; empty = cleared).</summary>
    FailoverHome = 31,
}
