namespace Omega.Cells;

/// <summary>
/// Receives the decoded parts of a journal record (<see cref="CellRecord.Decode"/>), in the order they must be applied.
/// Every callback describes the state after the mutation, so applying them needs no validation and no reads: a binding
/// to upsert, a task to unbind, a node's full state, a lease's full state.
/// </summary>
public interface ICellRecordVisitor
{
    /// <summary>The start of a record.</summary>
    void Begin(CellRecordKind kind, long sequence, long cellVersion);

    /// <summary>A task is now bound (its generation is the record's cell version).</summary>
    void Bind(in Allocation allocation);

    /// <summary>A task's binding is gone (released, evicted by a preemption claim, or its node was removed).</summary>
    void Unbind(TaskId task);

    /// <summary>A node's version changed to <paramref name="nodeVersion"/> (placements bump it).</summary>
    void NodeVersion(NodeId node, long nodeVersion);

    /// <summary>A node's full spec, status and version (added, updated, status changed or removed).</summary>
    void Node(NodeId node, NodeSpec spec, NodeStatus status, long nodeVersion);

    /// <summary>A keyed transaction's original result, kept for retries of the same scheduler identity (keys are scoped to it).</summary>
    void Idempotency(SchedulerId scheduler, IdempotencyKey key, ulong transactionHash, TransactionStatus status, long resultVersion, int applied, ReadOnlySpan<ClaimStatus> claims);

    /// <summary>A scheduler lease's full state.</summary>
    void Lease(SchedulerId id, string name, FencingToken token, DateTimeOffset expiresAt, bool released);

    /// <summary>A tenant's quota (null: no quota).</summary>
    void Quota(TenantId tenant, ResourceVector? limit);

    /// <summary>
    /// A failure domain was confirmed lost by an operator (<paramref name="withdrawn"/> false) or the confirmation was
    /// withdrawn (true); the confirmation's version is the record's cell version.
    /// </summary>
    void DomainLoss(string domain, string author, string reason, DateTimeOffset at, bool withdrawn);

    /// <summary>
    /// A control-plane object was written (<see cref="CellRecordKind.ObjectPut"/>): its key, the version of the write that
    /// created it and its encoded value; its version is the record's cell version. The default ignores it (a visitor
    /// that does not keep objects).
    /// </summary>
    void ObjectPut(string key, long created, ReadOnlySpan<byte> value) { }

    /// <summary>A control-plane object was deleted (<see cref="CellRecordKind.ObjectDelete"/>). The default ignores it.</summary>
    void ObjectDeleted(string key) { }
    /// <summary>A reservation is now held (made by a reserve claim; its generation is the record's cell version).
    /// The default ignores it (a visitor that does not keep reservations).</summary>
    void Reserve(in CellReservation reservation) { }

    /// <summary>A task's reservation is gone (released, expired, or consumed by a bind). The default ignores it.</summary>
    void Unreserve(TaskId task) { }

    /// <summary>A tenant's guaranteed capacity (null: none). The default ignores it.</summary>
    void Guarantee(TenantId tenant, ResourceVector? guaranteed) { }


    /// <summary>
    /// A security record (credential, revocation, audit entry) was written (<see cref="CellRecordKind.AuthRecordPut"/>).
    /// The default ignores it (a visitor that does not keep security records).
    /// </summary>
    void AuthRecordPut(string key, ReadOnlySpan<byte> value) { }

    /// <summary>A security record was deleted (<see cref="CellRecordKind.AuthRecordDelete"/>). The default ignores it.</summary>
    void AuthRecordDeleted(string key) { }
    /// <summary>A region's recovery budget (null capacity: cleared; issue 13). The default ignores it.</summary>
    void RecoveryBudget(string region, ResourceVector? capacity, int minPriority) { }

    /// <summary>A placement group's failover home region (null: cleared; issue 13). The default ignores it.</summary>
    void FailoverHome(long groupKey, byte keyShift, string? region) { }

    /// <summary>A tenant exists with this name (created; its quota follows as a <see cref="Quota"/> call).</summary>
    void Tenant(TenantId tenant, string name);
}
