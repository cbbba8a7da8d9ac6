namespace Omega.Cells;

// The seam between scheduling and the cell (issue 14). Scheduling (SchedulingEngine, SchedulerWorker, PreemptionPlanner)
// sees the cell only through these two interfaces, modelled on Nomad's State snapshot (read) and Planner (submit a
// plan): the in-process Cell implements both today; the simulator, test doubles and a future replicated store (a
// follower's view, a leader's committer) plug into the same two. Keeping them small is the point: whatever the
// scheduler may touch is listed here, so a change of the commit path (a combiner, per-node CAS) cannot leak into the
// scheduler, and a recording double can prove that every decision goes through Commit.

/// <summary>
/// What a scheduler reads: lock-free snapshots of the nodes, tenant usage and the bindings on a node. Every member is
/// safe to call concurrently with commits and never takes the cell's commit lock, so a scheduler worker's per-placement
/// path never waits for a committer (docs/architecture.md, "The seam").
/// </summary>
/// <remarks>
/// Only <see cref="Snapshot"/> is versioned. Tenant usage and node bindings are the latest published values: advisory
/// inputs to a decision that the committer re-checks (quota at commit, victims at commit), never a source of an invariant.
/// </remarks>
public interface ICellView
{
    /// <summary>The cell's name (metric tags).</summary>
    string Name { get; }

    /// <summary>Takes a consistent snapshot of the nodes at one cell version. O(1), lock-free.</summary>
    CellSnapshot Snapshot();

    /// <summary>True when the tenant exists (admission). Lock-free.</summary>
    bool TenantExists(TenantId tenant);

    /// <summary>The element-wise largest capacity any node has had, or null before the first node (admission). Lock-free.</summary>
    ResourceVector? LargestNodeCapacity { get; }

    /// <summary>
    /// A tenant's usage (resources of its live bindings) and hard quota as last published by a committer; (zero, null)
    /// for an unknown tenant. Lock-free; never shows part of a transaction, but is not tied to a snapshot's version.
    /// </summary>
    (ResourceVector Usage, ResourceVector? Quota) GetTenantUsage(TenantId tenant);

    /// <summary>
    /// Appends the live bindings on node <paramref name="id"/> to <paramref name="into"/> (nothing for an unknown node) and
    /// returns how many were appended. Lock-free and allocation-free once <paramref name="into"/> has room.
    /// </summary>
    int CopyAllocationsOnNode(NodeId id, List<Allocation> into);
}

/// <summary>
/// What a scheduler changes: commits of optimistic transactions, releases, its lease (fencing token) and tenant quotas.
/// Every change to the cell that scheduling makes goes through this interface, in the order the implementation applies
/// them (docs/commit-protocol.md, "The seam").
/// </summary>
public interface ICellCommitter
{
    /// <summary>Validates and applies a transaction (see <see cref="Cell.Commit"/> for the validation order).</summary>
    CommitResult Commit(Transaction tx);

    /// <summary>Releases a task's binding; with a non-zero generation only the binding of that generation.</summary>
    ReleaseStatus Release(TaskId task, long expectedGeneration = 0);

    /// <summary>Acquires a lease (a new fencing token) for a scheduler identity.</summary>
    LeaseResult AcquireLease(string name, TimeSpan duration);

    /// <summary>Extends a current, unexpired lease.</summary>
    LeaseResult RenewLease(SchedulerLease lease, TimeSpan duration);

    /// <summary>Gives a lease up early.</summary>
    LeaseStatus ReleaseLease(SchedulerLease lease);

    /// <summary>Sets or clears a tenant's hard quota, enforced at commit.</summary>
    TenantOpStatus SetTenantQuota(TenantId tenant, ResourceVector? limit);
}
