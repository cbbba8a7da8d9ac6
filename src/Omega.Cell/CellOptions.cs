namespace Omega.Cells;

/// <summary>Options for an in-memory <see cref="Cell"/>.</summary>
public sealed class CellOptions
{
    /// <summary>Deliberately broken variants for the deterministic simulation's checker tests (<see cref="Cells.Buggify"/>). Default none.</summary>
    public Buggify Buggify { get; set; }

    /// <summary>A name for the cell, used as a metric tag.</summary>
    public string Name { get; set; } = "default";

    /// <summary>The clock for leases. Inject a fake one in tests. Defaults to <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>
    /// Creates the cell's <c>Omega.Cell</c> meter (a host passes the one from dependency injection, so the meter's lifetime
    /// and scope are the host's). Null: the cell creates its own meter. Either way the meter carries a <c>cell</c> tag
    /// with <see cref="Name"/>, so two cells in one process are told apart.
    /// </summary>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }

    /// <summary>The number of node slots to reserve up front (the table grows as needed).</summary>
    public int InitialNodeCapacity { get; set; } = 1024;

    /// <summary>The largest number of claims one transaction may carry.</summary>
    public int MaxClaimsPerTransaction { get; set; } = 100_000;

    /// <summary>
    /// How many idempotency keys are remembered (oldest forgotten first). A retry must arrive within this many keyed
    /// commits of the original to be deduplicated.
    /// </summary>
    public int IdempotencyRetention { get; set; } = 1_000_000;

    /// <summary>
    /// The most tenants the cell holds, the default tenant included (default 1,024). Tenants are created explicitly
    /// (<see cref="Cell.CreateTenant(string, ResourceVector?, out TenantId)"/>) and per-tenant state is dense by id, so
    /// this bounds what tenant state can cost; a creation beyond it is refused with <see cref="TenantOpStatus.LimitReached"/>.
    /// </summary>
    public int MaxTenants { get; set; } = 1024;

    /// <summary>
    /// The most reservations the cell holds at once (default 100,000); a reserve claim beyond it gets
    /// <see cref="ClaimStatus.ReservationLimitReached"/>. Bounds the reservation table and the controller's expiry scan.
    /// </summary>
    public int MaxReservations { get; set; } = 100_000;

    /// <summary>The longest TTL a reserve claim may ask for (default one hour); longer is an <see cref="ClaimStatus.InvalidClaim"/>.</summary>
    public TimeSpan MaxReservationTtl { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// How concurrent <see cref="Cell.Commit"/> and <see cref="Cell.Release"/> calls reach the commit lock.
    /// <see cref="CommitPath.Lock"/> (default): each call takes the lock itself. <see cref="CommitPath.Combining"/>: flat
    /// combining, one thread answers every queued request in one critical section and one journal append. Results are
    /// identical; only cost differs. The default is the lock because on the 2-core reference machine, quiet, combining
    /// measured no faster at 2 threads (474k vs 473k single-claim commit+release/s) and 10 % slower on one thread
    /// (perf-reports/2026-12-06-commit-scaling); combining stays selectable for machines with more cores.
    /// <see cref="CommitPath.Striped"/>: node stripe locks around a short sequencer, with publication outside it (issue 14;
    /// docs/commit-protocol.md, "The node-striped commit path"); not the default until a quiet run says it is better.
    /// <see cref="CommitPath.Concurrent"/>: eligible commits and releases run without the commit lock, under node stripes
    /// and task-index partitions, with a published-prefix version watermark (docs/commit-protocol.md, "Round 12: the
    /// concurrent path"); opt-in, for in-memory cells.
    /// </summary>
    public CommitPath CommitPath { get; set; } = CommitPath.Lock;

    /// <summary>
    /// How long a <see cref="Cell.Commit"/> or <see cref="Cell.Release"/> that finds the commit lock held spins before it
    /// blocks in the kernel, in rounds of about a microsecond each (default 32, about two to three 16-claim critical sections; 0:
    /// block at once, as before issue 14's round 8). Ignored on a single CPU, where a spinning waiter only delays the
    /// holder. Spinning saves the kernel wake-up a blocked waiter needs (tens of µs on a VM); the budget bounds what a
    /// waiter burns when the holder is descheduled or in a slow journal append. Only timing changes, never a result.
    /// See <see cref="Cell.CommitLockBlocks"/> and docs/commit-protocol.md ("Waiting for the commit lock").
    /// </summary>
    public int CommitLockSpinRounds { get; set; } = 32;

    /// <summary>
    /// Whether <see cref="Cell.Commit"/> and <see cref="Cell.Release"/> read the cell lines they will touch (task index,
    /// node entries, binding lists) before taking the commit lock, so the cache misses happen outside the critical section
    /// (default true). Discarded racy reads: results never change, only how long the lock is held. False for a same-binary
    /// comparison. See docs/commit-protocol.md ("Waiting for the commit lock").
    /// </summary>
    public bool PrefetchOutsideLock { get; set; } = true;

    /// <summary>
    /// Whether a journaled cell encodes the claims section of a transaction's journal record before taking the commit
    /// lock (default true), so that under the lock a fully applied transaction's record costs its header and one copy.
    /// The journal's bytes are the same either way. False for a same-binary comparison. See docs/storage.md ("Encoding
    /// outside the commit lock").
    /// </summary>
    public bool EncodeJournalOutsideLock { get; set; } = true;
}

/// <summary>How single commits and releases are serialised (<see cref="CellOptions.CommitPath"/>; docs/commit-protocol.md).</summary>
public enum CommitPath
{
    /// <summary>Flat combining: a caller queues its request; whoever holds the commit lock answers all queued requests.</summary>
    Combining = 0,

    /// <summary>Every call takes the commit lock itself.</summary>
    Lock = 1,

    /// <summary>
    /// Combining without the uncontended fast path: every call is queued and answered by a combiner, also when the lock
    /// is free. For tests, so that the combining path (batches, hand-over of results, one journal append per batch) is
    /// exercised even under light contention; results are identical to <see cref="Combining"/>.
    /// </summary>
    CombiningAlwaysQueued = 2,

    /// <summary>
    /// Node-striped: a commit takes the stripe locks of its nodes, then the commit lock (the sequencer), which runs every
    /// check and change exactly as <see cref="Lock"/> does and assigns the version; the binding lists, snapshot ring
    /// entries, cell version and binding feed are then published outside the commit lock, under the node stripes, in
    /// version order. Transactions on different nodes publish in parallel. Claims with victims or anti-affinity, and cells
    /// with recovery budgets, run as on <see cref="Lock"/>. Results, versions and the journal are those of some serial order.
    /// </summary>
    Striped = 3,

    /// <summary>
    /// Concurrent (issue 14, round 12): a plain commit or release runs without the commit lock. It takes the stripe locks
    /// of its nodes (64 stripes) and the locks of its tasks' partitions of the task index (64 partitions), decides every
    /// claim, then applies the accepted ones at a version of its own, publishes its nodes' ring entries and advances the
    /// published cell version over every consecutive finished version (a watermark no committer waits on while holding
    /// a lock). Tenant usage, schedulable allocation and outcome counters are kept in per-stripe shards. Eligible: an
    /// in-memory cell (no journal) with no binding listeners, reservations, recovery budgets or capacity guarantees, and
    /// transactions of at most 64 plain Bind claims without victims, anti-affinity or idempotency key, charged to tenants
    /// without a quota. Everything else, and every other operation, runs as on <see cref="Lock"/> after taking the commit
    /// lock and every stripe. Results are those of some serial order (docs/commit-protocol.md, "Round 12: the concurrent
    /// path").
    /// </summary>
    Concurrent = 4,
}
