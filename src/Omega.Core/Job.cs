namespace Omega;

/// <summary>
/// A job: a set of identical tasks submitted together by a tenant. Gang jobs must be placed all-or-nothing.
/// </summary>
public sealed class JobSpec
{
    /// <summary>Creates a job spec.</summary>
    /// <param name="id">The job id, unique within the cell.</param>
    /// <param name="tenant">The owning tenant (quota holder).</param>
    /// <param name="priority">Higher numbers are more important; a task may preempt tasks of strictly lower priority.</param>
    /// <param name="taskCount">The number of tasks (at least 1).</param>
    /// <param name="perTask">The resources each task requests.</param>
    /// <param name="gang">True when all tasks must be placed together or not at all.</param>
    /// <param name="requiredLabels">Labels a node must carry with equal values; null means none.</param>
    /// <param name="tolerations">Taints the tasks tolerate; null means none.</param>
    /// <param name="name">A display name.</param>
    public JobSpec(JobId id, TenantId tenant, int priority, int taskCount, ResourceVector perTask, bool gang = false,
        IReadOnlyDictionary<string, string>? requiredLabels = null, IReadOnlyList<string>? tolerations = null, string? name = null)
    {
        Id = id;
        Tenant = tenant;
        Priority = priority;
        TaskCount = taskCount;
        PerTask = perTask;
        Gang = gang;
        RequiredLabels = requiredLabels ?? new Dictionary<string, string>();
        Tolerations = tolerations ?? Array.Empty<string>();
        Name = name ?? id.ToString();
    }

    /// <summary>The job id.</summary>
    public JobId Id { get; }

    /// <summary>The owning tenant.</summary>
    public TenantId Tenant { get; }

    /// <summary>The priority; higher is more important.</summary>
    public int Priority { get; }

    /// <summary>The number of tasks.</summary>
    public int TaskCount { get; }

    /// <summary>The per-task request.</summary>
    public ResourceVector PerTask { get; }

    /// <summary>True for an all-or-nothing (gang) job.</summary>
    public bool Gang { get; }

    /// <summary>Labels a node must carry.</summary>
    public IReadOnlyDictionary<string, string> RequiredLabels { get; }

    /// <summary>Taints tolerated.</summary>
    public IReadOnlyList<string> Tolerations { get; }

    /// <summary>A display name.</summary>
    public string Name { get; }

    /// <summary>
    /// The constraint group of the job's tasks: hard anti-affinity (checked by the cell at commit) and soft spread against
    /// every task of the group (see <see cref="PlacementGroup"/>). Default: none.
    /// </summary>
    public PlacementGroup Group { get; init; }

    /// <summary>Region constraints: residency and avoidance (hard), preference and spread (soft). Default: none.</summary>
    public TopologyConstraints Topology { get; init; } = TopologyConstraints.None;

    /// <summary>
    /// Where the job came from, for decision records (a workload and its generation); null for jobs submitted directly.
    /// </summary>
    public JobOrigin? Origin { get; init; }

    /// <summary>The id of task <paramref name="index"/>.</summary>
    public TaskId Task(int index) => new(Id, index);

    /// <summary>
    /// Checks only the per-task request: null when valid, otherwise a one-line reason. Invalid means a negative quantity,
    /// a quantity above <see cref="ResourceVector.MaxQuantity"/>, or nothing requested at all. Admission reports these as
    /// their own typed reason (InvalidResources), apart from other spec errors.
    /// </summary>
    public string? ResourcesProblem()
    {
        if (!PerTask.IsValidRequest) return $"per-task resources must be between 0 and {ResourceVector.MaxQuantity} in every dimension ({PerTask.CpuMillis}m cpu, {PerTask.MemoryBytes} B memory, {PerTask.Gpus} gpu, {PerTask.DiskBytes} B disk)";
        if (PerTask.IsZero) return "per-task resources must request something";
        return null;
    }

    /// <summary>
    /// Checks the spec and returns null when it is valid, otherwise a one-line reason.
    /// Expected errors are values, so submitters can reject bad input without exceptions.
    /// </summary>
    public string? Validate()
    {
        // Ids are printed and parsed as j{job}/{index} with unsigned digits (TaskId.TryParse), so a negative job id would be
        // accepted here and then be unnameable by explain and inspect.
        if (Id.Value < 0) return "job id must not be negative";
        if (TaskCount < 1) return "taskCount must be at least 1";
        if (TaskCount > 1_000_000) return "taskCount must be at most 1,000,000";
        if (ResourcesProblem() is { } resources) return resources;
        if (Tenant.Value < 0) return "tenant must not be negative";
        if (Group.Validate() is { } group) return group;
        if (Topology is null) return "topology must not be null";
        if (Topology.Validate() is { } topology) return topology;
        return null;
    }
}

/// <summary>The control-plane object a job backs, named in its decision records (docs/control-plane.md, "Decision reconstruction").</summary>
/// <param name="Tenant">The object's tenant.</param>
/// <param name="Workload">The workload's name.</param>
/// <param name="Generation">The workload generation whose reconcile submitted the job.</param>
/// <param name="Slot">The replica slot the job backs.</param>
public sealed record JobOrigin(string Tenant, string Workload, long Generation, int Slot);

/// <summary>
/// A live binding of a task to a node, with the resources it holds.
/// </summary>
/// <param name="Task">The bound task.</param>
/// <param name="Node">The node it is bound to.</param>
/// <param name="Resources">The resources the binding holds on the node.</param>
/// <param name="Tenant">The tenant charged for the resources.</param>
/// <param name="Priority">The task's priority, used to decide preemption.</param>
/// <param name="Generation">
/// The cell version at which this binding was committed. A task bound again after a release gets a strictly larger
/// generation, so agents can reject a stale binding older than the one they hold.
/// </param>
public readonly record struct Allocation(TaskId Task, NodeId Node, ResourceVector Resources, TenantId Tenant, int Priority, long Generation);
