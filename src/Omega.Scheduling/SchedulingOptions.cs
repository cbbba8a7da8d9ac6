using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>One scheduler kind: its workers, its policy and its commit settings. Each kind has its own lease and queue.</summary>
public sealed class SchedulerKindOptions
{
    /// <summary>The kind's name; also its lease identity (each worker holds <c>{Name}/{index}</c>).</summary>
    public required string Name { get; init; }

    /// <summary>Concurrent workers of this kind.</summary>
    public int Workers { get; init; } = 1;

    /// <summary>Commit mode for non-gang jobs (gang jobs are always <see cref="CommitMode.AllOrNothing"/>).</summary>
    public CommitMode Mode { get; init; } = CommitMode.Incremental;

    /// <summary>Conflict detection for this kind's transactions.</summary>
    public ConflictDetection Detection { get; init; } = ConflictDetection.Fine;

    /// <summary>Builds one pipeline per worker (pipelines hold per-worker scratch state).</summary>
    public Func<PlacementPipeline> Pipeline { get; init; } = () => PlacementPipeline.CreateDefault();

    /// <summary>Attempts before a job that still has unplaced tasks is parked with its reason.</summary>
    public int MaxAttempts { get; init; } = 10;

    /// <summary>Back-off after an attempt that found no feasible node (doubles per attempt up to <see cref="MaxBackoff"/>).</summary>
    public TimeSpan Backoff { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>The largest back-off.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The queue's bound.</summary>
    public int QueueCapacity { get; init; } = 100_000;

    /// <summary>Whether tasks that fit nowhere may preempt lower-priority tasks.</summary>
    public bool Preemption { get; init; } = true;

    /// <summary>The scheduler lease duration (renewed at half-life).</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);
}

/// <summary>Options for the scheduling engine.</summary>
public sealed class SchedulingOptions
{
    /// <summary>The scheduler kinds. Jobs go to the kind named at submission, or to the first kind.</summary>
    public IList<SchedulerKindOptions> Kinds { get; } = new List<SchedulerKindOptions>();

    /// <summary>Protected tenants' guaranteed resources: preemption never takes a protected tenant below them.</summary>
    public IDictionary<TenantId, ResourceVector> Guarantees { get; } = new Dictionary<TenantId, ResourceVector>();

    /// <summary>
    /// The active scheduler policy (SchedulerPolicy revisions: docs/scheduling.md, "Policy revisions"). When set, every
    /// kind's workers build their pipelines over it instead of <see cref="SchedulerKindOptions.Pipeline"/>, read it once
    /// per decision, and name its revision in their decision records. Null: each kind's fixed pipeline.
    /// </summary>
    public PolicySource? Policy { get; set; }

    /// <summary>The clock (queue ages, back-offs, leases). Use the cell's clock.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>Decision records kept.</summary>
    public int DecisionLogCapacity { get; set; } = 65_536;

    /// <summary>
    /// Budget: task entries kept over all decision records (the oldest records are dropped first). Bounds the log's memory
    /// whatever the jobs' sizes (about 50 bytes per entry). Default 1,000,000.
    /// </summary>
    public long DecisionLogTaskEntries { get; set; } = 1_000_000;

    /// <summary>Where kept decision records also go (a durable archive; docs/control-plane.md, "Decision reconstruction").</summary>
    public IDecisionSink? DecisionSink { get; set; }

    /// <summary>Keep 1 in N successful decision records (conflicts, failures and parks are always kept).</summary>
    public int DecisionSampleEvery { get; set; } = 1;

    /// <summary>
    /// Completed jobs whose status stays queryable (<see cref="SchedulingEngine.TryGetJob"/>); older ones are forgotten, and
    /// their ids may be submitted again. Jobs that are queued, placed or parked are never forgotten.
    /// </summary>
    public int CompletedJobRetention { get; set; } = 100_000;

    /// <summary>
    /// Budget: the most tasks one job may ask for; a larger job is refused with <see cref="EnqueueStatus.JobTooLarge"/>
    /// (on the wire: error JobTooLarge). Default 100,000.
    /// </summary>
    public int MaxTasksPerJob { get; set; } = 100_000;

    /// <summary>
    /// Budget: queued tasks (of held jobs, neither bound nor completed: queued, being scheduled or parked) over all
    /// tenants; a job that would exceed it is refused with <see cref="EnqueueStatus.ResourceExhausted"/>. Default 2,000,000.
    /// </summary>
    public long MaxQueuedTasks { get; set; } = 2_000_000;

    /// <summary>Budget: queued tasks of one tenant (as <see cref="MaxQueuedTasks"/>). Default 1,000,000.</summary>
    public long MaxQueuedTasksPerTenant { get; set; } = 1_000_000;

    /// <summary>A seed for the workers' random sampling (worker i uses seed + i); null = random. Printed by callers for replay.</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// Creates the engine's <c>Omega.Scheduling</c> meter (a host passes the one from dependency injection). Null: the
    /// engine creates its own. Either way the meter is tagged <c>cell</c> with the cell's name, so two engines in one
    /// process are told apart.
    /// </summary>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }
}
