using Omega.Cells;

namespace Omega.Dst;

/// <summary>What one simulated run does (docs/testing.md). Everything random in a run derives from <see cref="Seed"/>.</summary>
public sealed class DstOptions
{
    /// <summary>The seed of the run's one random stream.</summary>
    public long Seed { get; set; }

    /// <summary>Steps with faults enabled; then the faults stop and the run waits for convergence.</summary>
    public int Steps { get; set; } = 400;

    /// <summary>Simulated time allowed for convergence after the faults stop.</summary>
    public TimeSpan QuiesceLimit { get; set; } = TimeSpan.FromSeconds(90);

    /// <summary>Broken product variants to run with (each must be caught by a checker).</summary>
    public Buggify Buggify { get; set; }

    /// <summary>Nodes in the cell.</summary>
    public int Nodes { get; set; } = 4;

    /// <summary>Workloads the client manages (names w0..).</summary>
    public int Workloads { get; set; } = 3;

    /// <summary>Largest replica count the client asks for.</summary>
    public int MaxReplicas { get; set; } = 3;

    /// <summary>Scheduler lease duration (the bound of clock faults).</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromSeconds(4);

    /// <summary>How long after its expiry a reservation may still be held while the reservation controller runs.</summary>
    public TimeSpan RepairDeadline { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Multiplies the weight of every fault (0: no faults at all).</summary>
    public double FaultRate { get; set; } = 1;

    /// <summary>Events kept for the trace printed with a violation.</summary>
    public int TraceTail { get; set; } = 60;

    /// <summary>Keep every event (for <c>omega dst --seed S --trace</c>).</summary>
    public bool FullTrace { get; set; }
}

/// <summary>The faults a run can inject, counted per run.</summary>
public enum DstFault
{
    /// <summary>A whole server process killed: the non-durable journal suffix lost, everything rebuilt from the disk.</summary>
    Crash,
    /// <summary>A crash that also left a torn journal element behind.</summary>
    TornTail,
    /// <summary>The scheduler (engine and workload controller) restarted mid-placement; the old one lives on as a zombie.</summary>
    SchedulerRestart,
    /// <summary>A zombie scheduler's clock jumped back within its lease (it believes its lease is still live).</summary>
    ZombieClockJump,
    /// <summary>Simulated time jumped forward by up to half a lease.</summary>
    ClockJump,
    /// <summary>A commit applied whose reply was lost: the client timed out and retried with the same idempotency key.</summary>
    CommitTimeout,
    /// <summary>A message dropped.</summary>
    Drop,
    /// <summary>A message duplicated.</summary>
    Duplicate,
    /// <summary>A message delivered out of order (not the oldest deliverable).</summary>
    Reorder,
    /// <summary>An endpoint partitioned from the server (or healed).</summary>
    Partition,
    /// <summary>Every agent disconnected and reconnected at once, re-reporting its (possibly stale) cache.</summary>
    ReconnectStorm,
    /// <summary>A client request timed out and was sent again.</summary>
    ClientRetry,
    /// <summary>An agent report the cell refused as stale (generation mismatch or not bound).</summary>
    StaleReport,
    /// <summary>A reservation decided on a stale cached snapshot.</summary>
    StaleCacheDecision,
    /// <summary>The operator staged, promoted or rolled back a scheduler policy revision.</summary>
    PolicyChange,
    /// <summary>A policy rollback issued while replicas (placed under the revision rolled back) were still starting.</summary>
    RollbackWhileStarting,
    /// <summary>The operator raised tenant t2's quota with an audited emergency-quota override (TTL 1-6 s).</summary>
    QuotaOverride,
    /// <summary>A crash while an override was live, with recovery lasting past its TTL: it expired while the process was down.</summary>
    OverrideExpiryDuringRecovery,
    /// <summary>Unified harness: the operator's watch was lost (connection, crash, too slow) and resumed from its last resourceVersion.</summary>
    WatchResume,
    /// <summary>Unified harness: a resumed watch's version had left the history window (<c>WatchExpired</c>): the operator listed again.</summary>
    WatchExpired,
    /// <summary>Unified harness: the operator drained a node over the wire.</summary>
    Drain,
    /// <summary>Unified harness: the operator revoked a scheduler's credential (acknowledged) and issued it a new one.</summary>
    Revocation,
    /// <summary>Unified harness: a crash right after an acknowledgement reached its client (an acked write or commit must survive it).</summary>
    CrashAfterAck,
    /// <summary>Unified harness: a scheduler gave up on a commit's key after a timeout and sent the same claims again under a new key (the cell must not bind the task twice).</summary>
    ResubmitNewKey,
    /// <summary>Unified harness: an in-process reserver held capacity with a Reserve claim (TTL 1-3 s) and leaked it.</summary>
    Reservation,
}
