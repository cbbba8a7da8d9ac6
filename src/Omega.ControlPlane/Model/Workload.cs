using System.Text.Json.Serialization;

namespace Omega.ControlPlane;

/// <summary>What a workload runs.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WorkloadType>))]
public enum WorkloadType : byte
{
    /// <summary>N long-running replicas with a readiness notion; a replica that exits is replaced.</summary>
    Service = 0,

    /// <summary>M tasks run to completion; a completed task is not run again.</summary>
    Batch = 1,
}

/// <summary>Hard anti-affinity between a workload's replicas.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<AntiAffinity>))]
public enum AntiAffinity : byte
{
    /// <summary>No constraint.</summary>
    None = 0,

    /// <summary>No two replicas on one node.</summary>
    Node = 1,

    /// <summary>No two replicas in one failure domain.</summary>
    FailureDomain = 2,
}

/// <summary>Soft spread of a workload's replicas.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SpreadScope>))]
public enum SpreadScope : byte
{
    /// <summary>No preference.</summary>
    None = 0,

    /// <summary>Prefer nodes holding fewer of the workload's replicas.</summary>
    Node = 1,

    /// <summary>Prefer failure domains holding fewer of the workload's replicas.</summary>
    FailureDomain = 2,
}

/// <summary>Topology spread of a workload's replicas (soft).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TopologySpreadScope>))]
public enum TopologySpreadScope : byte
{
    /// <summary>No preference.</summary>
    None = 0,

    /// <summary>Prefer regions holding fewer of the workload's replicas.</summary>
    Region = 1,

    /// <summary>Prefer zones holding fewer of the workload's replicas.</summary>
    Zone = 2,
}

/// <summary>
/// A workload's region constraints (issue 13; docs/control-plane.md, "Topology"). <see cref="RequiredRegions"/> is data
/// residency and <see cref="AvoidRegions"/> an exclusion, both hard gates (filter reasons <c>ResidencyViolation</c>,
/// <c>RegionAvoided</c>); <see cref="PreferredRegions"/> (best first: the failover order) and <see cref="Spread"/> are soft.
/// </summary>
public sealed class WorkloadTopology
{
    /// <summary>Data residency: replicas run only in these regions (empty: anywhere).</summary>
    public List<string> RequiredRegions { get; set; } = new();

    /// <summary>Replicas never run in these regions.</summary>
    public List<string> AvoidRegions { get; set; } = new();

    /// <summary>Preferred regions, best first; when the first is lost, replicas go to the next.</summary>
    public List<string> PreferredRegions { get; set; } = new();

    /// <summary>Soft spread over regions or zones.</summary>
    public TopologySpreadScope Spread { get; set; }

    /// <summary>The engine's form.</summary>
    public TopologyConstraints ToConstraints()
        => RequiredRegions.Count == 0 && AvoidRegions.Count == 0 && PreferredRegions.Count == 0 && Spread == TopologySpreadScope.None
            ? TopologyConstraints.None
            : new TopologyConstraints([.. RequiredRegions], [.. AvoidRegions], [.. PreferredRegions], (TopologySpread)Spread);
}

/// <summary>Per-replica resources, in the engine's units.</summary>
public sealed class ResourceRequest
{
    /// <summary>CPU in thousandths of a core.</summary>
    public long CpuMillis { get; set; }

    /// <summary>Memory in bytes.</summary>
    public long MemoryBytes { get; set; }

    /// <summary>GPUs.</summary>
    public long Gpus { get; set; }

    /// <summary>Disk in bytes.</summary>
    public long DiskBytes { get; set; }

    /// <summary>As an engine resource vector.</summary>
    public ResourceVector ToVector() => new(CpuMillis, MemoryBytes, Gpus, DiskBytes);
}

/// <summary>A workload's desired state.</summary>
public sealed class WorkloadSpec
{
    /// <summary>The most replicas one workload may ask for.</summary>
    public const int MaxReplicas = 100_000;

    /// <summary>Service (long-running replicas) or batch (tasks to completion).</summary>
    public WorkloadType Type { get; set; }

    /// <summary>Service: the number of replicas; batch: the number of tasks to complete.</summary>
    public int Replicas { get; set; }

    /// <summary>The priority (higher preempts lower).</summary>
    public int Priority { get; set; }

    /// <summary>Resources per replica.</summary>
    public ResourceRequest Resources { get; set; } = new();

    /// <summary>Labels a node must carry (label selector).</summary>
    public Dictionary<string, string> NodeSelector { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Node taints tolerated.</summary>
    public List<string> Tolerations { get; set; } = new();

    /// <summary>
    /// Hard anti-affinity between the workload's replicas across nodes or failure domains: checked by the scheduler's
    /// filter and enforced by the cell at commit (docs/control-plane.md, "Hard gates at commit").
    /// </summary>
    public AntiAffinity AntiAffinity { get; set; }

    /// <summary>Soft spread of the replicas across nodes or failure domains (a scorer's preference, never a rejection).</summary>
    public SpreadScope Spread { get; set; }

    /// <summary>Region constraints: residency, avoidance, preference, spread. Default: none.</summary>
    public WorkloadTopology Topology { get; set; } = new();

    /// <summary>Disruption budget: at most this many ready replicas are taken away at once by scale-down (at least 1).</summary>
    public int MaxUnavailable { get; set; } = 1;

    /// <summary>The engine scheduler kind to place with (null: the engine's default).</summary>
    public string? Scheduler { get; set; }

    /// <summary>
    /// Rollout: how many replicas above <see cref="Replicas"/> may exist while a template change rolls out (default 1;
    /// 0..100,000). With 0 an old replica is retired before its replacement is created (within <see cref="MaxUnavailable"/>).
    /// </summary>
    public int MaxSurge { get; set; } = 1;

    /// <summary>
    /// Rollout: how long a rollout may go without a replica of the new template starting to serve before it is rolled
    /// back to the previous template (default 600; 1..86,400). Time the controller was not running does not count.
    /// </summary>
    public double ProgressDeadlineSeconds { get; set; } = 600;

    /// <summary>
    /// Service readiness: a ready replica serves once it has stayed ready this long (Kubernetes' minReadySeconds).
    /// 0 (default): serving as soon as its agent reports it ready. Ignored for batch. 0..3600.
    /// </summary>
    public double MinReadySeconds { get; set; }

    /// <summary>
    /// Batch only (issue 13: "urgent fraud batch jobs with deadlines"): every replica should have completed within this
    /// many seconds of the workload's creation. Null (default): no deadline. 1..86,400. The workload controller reports
    /// the outcome in condition <c>DeadlineExceeded</c> (True, reason <c>PastDeadline</c>, once the deadline passed with
    /// replicas unfinished — it stays True after a late completion, because a miss is a miss; False, reason
    /// <c>CompletedInTime</c> or <c>Running</c>, otherwise). The deadline orders nothing: it is reported, not enforced
    /// (priority decides who preempts whom).
    /// </summary>
    public double? DeadlineSeconds { get; set; }
}

/// <summary>One replica slot and the serial of the engine job backing it.</summary>
/// <param name="Slot">The replica slot (0..replicas-1).</param>
/// <param name="Serial">The per-workload job serial (recorded before the job is submitted).</param>
/// <param name="Revision">The template revision the replica runs (the workload generation that introduced the template; see <see cref="WorkloadStatus.Templates"/>). 0 in status written before rollouts existed: read as the stable revision.</param>
public sealed record ReplicaAssignment(int Slot, int Serial, long Revision = 0);

/// <summary>
/// A replica template kept in status for rollouts: the parts of the spec a replica is made from (everything but
/// <c>replicas</c>, <c>maxSurge</c>, <c>maxUnavailable</c>, <c>minReadySeconds</c> and <c>progressDeadlineSeconds</c>).
/// </summary>
public sealed class WorkloadTemplate
{
    /// <summary>The revision: the workload generation whose spec introduced this template.</summary>
    public long Revision { get; set; }

    /// <summary>The template's hash (SHA-256 of its canonical JSON, 16 hex digits): equal templates, equal hashes.</summary>
    public string Hash { get; set; } = "";

    /// <summary>The template (a spec whose non-template fields are zero).</summary>
    public WorkloadSpec Spec { get; set; } = new();
}

/// <summary>Where a workload's rollout stands (written by the rollout stage of the workload controller).</summary>
public sealed class RolloutStatus
{
    /// <summary><c>Complete</c>, <c>Progressing</c> or <c>RolledBack</c>.</summary>
    public string Phase { get; set; } = RolloutPhases.Complete;

    /// <summary>The target template revision: what new replicas are made from.</summary>
    public long Revision { get; set; }

    /// <summary>The last template revision that completed (the rollback target).</summary>
    public long StableRevision { get; set; }

    /// <summary>Replicas (slots below <c>replicas</c>) of the target revision that are bound.</summary>
    public int Updated { get; set; }

    /// <summary>Of those, ready.</summary>
    public int UpdatedReady { get; set; }

    /// <summary>Of those, serving.</summary>
    public int UpdatedServing { get; set; }

    /// <summary>When the current rollout started.</summary>
    public DateTimeOffset? StartedAt { get; set; }

    /// <summary>When a replica of the target revision last started serving (the progress deadline counts from here).</summary>
    public DateTimeOffset? LastProgressAt { get; set; }

    /// <summary>The hash of the template that was rolled back: a spec still asking for it does not start it again.</summary>
    public string? FailedHash { get; set; }

    /// <summary>The revision that was rolled back (0: none).</summary>
    public long FailedRevision { get; set; }

    /// <summary>Why the last rollback happened, or null.</summary>
    public string? Reason { get; set; }
}

/// <summary>The values of <see cref="RolloutStatus.Phase"/>.</summary>
public static class RolloutPhases
{
    /// <summary>Every replica runs the target template and serves.</summary>
    public const string Complete = "Complete";

    /// <summary>Replicas are being replaced by the target template's.</summary>
    public const string Progressing = "Progressing";

    /// <summary>The last new template failed its progress deadline; the stable template is (being) restored.</summary>
    public const string RolledBack = "RolledBack";
}

/// <summary>A workload's observed state, written by the workload controller.</summary>
public sealed class WorkloadStatus
{
    /// <summary>The generation the controller last reconciled.</summary>
    public long ObservedGeneration { get; set; }

    /// <summary>The replicas the reconciled spec asks for.</summary>
    public int Desired { get; set; }

    /// <summary>Replicas whose task has a binding in the cell.</summary>
    public int Bound { get; set; }

    /// <summary>Bound replicas whose agent reported them ready (see docs/control-plane.md, Readiness).</summary>
    public int Ready { get; set; }

    /// <summary>Ready replicas that serve: ready for at least <c>spec.minReadySeconds</c>.</summary>
    public int Serving { get; set; }

    /// <summary>Batch: tasks completed.</summary>
    public int Succeeded { get; set; }

    /// <summary>
    /// Bound replicas whose node is unreachable (suspect, fenced, down or removed): not counted as ready or serving
    /// (issue 13). Condition <c>ReplicasUnreachable</c> says which regions.
    /// </summary>
    public int Unreachable { get; set; }

    /// <summary>Serving replicas per region (nodes without a region under <c>""</c>), in ordinal order.</summary>
    public SortedDictionary<string, int> ServingByRegion { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The next job serial to hand out (write-ahead: recorded before use).</summary>
    public int NextSerial { get; set; }

    /// <summary>The live slot → serial mapping.</summary>
    public List<ReplicaAssignment> Replicas { get; set; } = new();

    /// <summary>Serials retired (scale-down, replacement) whose binding may still need releasing.</summary>
    public List<int> Retired { get; set; } = new();

    /// <summary>Batch: completed slots as ranges, for example <c>0-9,12</c>.</summary>
    public string CompletedSlots { get; set; } = "";

    /// <summary>Why a replica cannot be placed (the engine's parked reason), or null.</summary>
    public string? PendingReason { get; set; }

    /// <summary>The replica templates in use: the stable one and, during a rollout, the target (at most two).</summary>
    public List<WorkloadTemplate> Templates { get; set; } = new();

    /// <summary>The rollout's state and progress (services; see docs/control-plane.md, "The rollout controller").</summary>
    public RolloutStatus Rollout { get; set; } = new();

    /// <summary>Conditions: Available, Progressing, Degraded, RolloutComplete, RolledBack.</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// A workload: a service of N replicas or a batch of M tasks, reconciled by the workload controller (<c>Omega.ControlPlane.Controllers.WorkloadController</c>).
/// </summary>
public sealed class Workload : ApiObject<WorkloadSpec, WorkloadStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Workload";

    /// <summary>The finalizer the workload controller adds so that a deleted workload's bindings are released first.</summary>
    public const string BindingsFinalizer = "omega.io/workload-bindings";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        var s = Spec;
        if (s is null) return "spec is required";
        if (s.Replicas < 0 || s.Replicas > WorkloadSpec.MaxReplicas) return $"spec.replicas must be 0..{WorkloadSpec.MaxReplicas}";
        if (s.Resources is null) return "spec.resources is required";
        var r = s.Resources.ToVector();
        if (!r.IsValidRequest) return "spec.resources must not be negative";
        if (r.IsZero) return "spec.resources must request something";
        if (s.MaxUnavailable < 1) return "spec.maxUnavailable must be at least 1";
        if (s.MaxSurge < 0 || s.MaxSurge > WorkloadSpec.MaxReplicas) return $"spec.maxSurge must be 0..{WorkloadSpec.MaxReplicas}";
        if (!(s.ProgressDeadlineSeconds is >= 1 and <= 86_400)) return "spec.progressDeadlineSeconds must be 1..86400";
        if (!(s.MinReadySeconds is >= 0 and <= 3600)) return "spec.minReadySeconds must be 0..3600";
        if (s.DeadlineSeconds is { } dl && (s.Type != WorkloadType.Batch || !(dl is >= 1 and <= 86_400))) return "spec.deadlineSeconds must be 1..86400 and only on a Batch workload";
        if (s.NodeSelector is null || s.Tolerations is null) return "spec.nodeSelector and spec.tolerations must not be null";
        if (!Enum.IsDefined(s.Type)) return "spec.type must be Service or Batch";
        if (!Enum.IsDefined(s.AntiAffinity)) return "spec.antiAffinity must be None, Node or FailureDomain";
        if (!Enum.IsDefined(s.Spread)) return "spec.spread must be None, Node or FailureDomain";
        if (s.Topology is null || s.Topology.RequiredRegions is null || s.Topology.AvoidRegions is null || s.Topology.PreferredRegions is null) return "spec.topology lists must not be null";
        if (!Enum.IsDefined(s.Topology.Spread)) return "spec.topology.spread must be None, Region or Zone";
        if (s.Topology.ToConstraints().Validate() is { } topo) return "spec.topology." + topo;
        return null;
    }
}
