namespace Omega.Cells;

/// <summary>
/// Deliberately broken variants of the product (FoundationDB's BUGGIFY): each flag disables one safety mechanism so the
/// deterministic simulation (Omega.Dst, docs/testing.md) can prove that its checkers catch the breakage. Off by default;
/// never set outside a simulation or a test.
/// </summary>
/// <remarks>
/// Compiled into the product (not a test double) on purpose: a checker is only trusted once it has failed against the
/// real code with the real mechanism removed. Each flag is one branch on a path that already reads its options, so the
/// default costs one predictable comparison.
/// </remarks>
[Flags]
public enum Buggify
{
    /// <summary>Nothing broken (the product).</summary>
    None = 0,

    /// <summary>The cell applies a transaction whatever its fencing token and lease (a deposed scheduler's commit lands).</summary>
    SkipTokenCheck = 1 << 0,

    /// <summary>The object store acknowledges a write before its journal record is durable (a crash can lose an acked write).</summary>
    AckBeforeDurable = 1 << 1,

    /// <summary>The cell does not remember idempotency keys (a retry after a timeout-after-commit is evaluated again).</summary>
    SkipIdempotencyReplay = 1 << 2,

    /// <summary>The cell never releases expired reservations (the reservation controller's sweep finds nothing).</summary>
    SkipReservationExpiry = 1 << 3,

    /// <summary>The cell does not check a node's free capacity at commit.</summary>
    SkipCapacityCheck = 1 << 4,

    /// <summary>
    /// Expired emergency-quota overrides keep raising their tenant's limit (the control plane's effective limit ignores
    /// the override's TTL): a quota raise outlives its audited window. Read by <c>OverrideController.EffectiveLimit</c>
    /// through <c>ObjectStoreOptions.Buggify</c>.
    /// </summary>
    SkipOverrideExpiry = 1 << 5,

    /// <summary>
    /// The server's protocol handler replies to a Commit before the committed version is durable (a crash can lose a
    /// commit the scheduler was told applied). Read by <c>ProtocolHandler</c> through <c>ServerOptions.Buggify</c>; caught
    /// by the wire simulation's acked-commit-lost checker.
    /// </summary>
    ReplyBeforeDurable = 1 << 6,

    /// <summary>
    /// The object store starts a watch from a resourceVersion older than its history window instead of refusing it with
    /// <c>Expired</c>: the watch silently begins at the oldest event it still holds, so the changes in between are never
    /// delivered and the watcher's cache misses them. Read by <c>ObjectStore.Watch</c> through
    /// <c>ObjectStoreOptions.Buggify</c>; caught by the unified simulation's <c>watch-gap</c> checker.
    /// </summary>
    WatchResumeGap = 1 << 7,

    /// <summary>
    /// The server forgets credential revocations when it restarts (revoked credentials load as live): a revocation the
    /// operator was told succeeded stops holding after a crash. Read by <c>AuthService</c> when it loads the cell's auth
    /// records; caught by the unified simulation's <c>revoked-credential</c> checker.
    /// </summary>
    ForgetRevocationOnRestart = 1 << 8,

    /// <summary>
    /// The cell accepts new claims on a draining node (the drain is recorded but not enforced at commit). Read by the cell's
    /// claim validation; caught by the unified simulation's <c>drain</c> checker.
    /// </summary>
    SkipDrainCheck = 1 << 9,

    /// <summary>
    /// The server does not put restored bindings back into their nodes' outboxes when it starts over a recovered cell
    /// (<c>OmegaServer.SeedOutboxes</c> skipped): an agent that had not yet received a binding committed before the
    /// restart never learns it, so the replica is never started nor reported Ready. A liveness defect, not a safety one:
    /// read through <c>ServerOptions.Buggify</c>; caught by the unified simulation's <c>convergence</c> checker.
    /// </summary>
    SkipOutboxReseed = 1 << 10,

    /// <summary>
    /// The cell does not check that a claimed task is unbound (a second binding replaces the first in the task index):
    /// breaks "at most one live binding per task". For the commit-path stress tests (issue 14). A high bit, so flags
    /// added by other work keep their low numbers.
    /// </summary>
    SkipTaskBoundCheck = 1 << 16,

    /// <summary>
    /// The striped commit path (<see cref="CommitPath.Striped"/>) takes no node stripe locks: two transactions on one node
    /// publish its binding list and ring slot at once, and a release can read a list before the bind that precedes it was
    /// published. For the commit-path stress tests (issue 14).
    /// </summary>
    SkipStripeLocks = 1 << 17,

    /// <summary>
    /// The striped commit path (<see cref="CommitPath.Striped"/>) writes its cell version without waiting for the previous
    /// version's publication: the cell version can step back, and a snapshot can name a version whose node entries are not
    /// all written. For the commit-path stress tests (issue 14).
    /// </summary>
    SkipPublishOrder = 1 << 18,

    /// <summary>
    /// The concurrent commit path (<see cref="CommitPath.Concurrent"/>) publishes each change's version as the cell version
    /// at once, without waiting for the versions before it: the cell version can step back or name a version whose
    /// predecessors' node entries are not yet written, so a snapshot can see part of the changes it claims to include.
    /// For the commit-path stress tests (issue 14, round 12).
    /// </summary>
    BreakVersionWatermark = 1 << 19,

    /// <summary>
    /// The concurrent commit path (<see cref="CommitPath.Concurrent"/>) takes no task-partition locks: two transactions
    /// claiming one task on nodes of different stripes can both find it unbound and both bind it. For the commit-path
    /// stress tests (issue 14, round 12).
    /// </summary>
    SkipTaskPartitionLocks = 1 << 21,

    /// <summary>
    /// The durable store's group-commit thread counts a journal group durable as soon as its FasterLog commit is issued,
    /// instead of when the commit completes: claims are acknowledged (and bindings pushed) before their records are on
    /// disk. Read by Omega.Storage through <c>StorageOptions.Cell.Buggify</c>; caught by the overlapped-commit crash test
    /// (issue 15).
    /// </summary>
    AckOnCommitIssue = 1 << 20,
}
