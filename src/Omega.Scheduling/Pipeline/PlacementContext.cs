using Omega.Cells;

namespace Omega.Scheduling.Pipeline;

/// <summary>
/// What filters and scorers see about the task being placed: its job (request, constraints, priority, tenant) and the
/// scheduler's tentative state for this decision. One context is reused for all tasks of a job (its equivalence class).
/// </summary>
public sealed class PlacementContext
{
    private readonly Dictionary<int, ResourceVector> _tentative = new();
    private readonly Dictionary<int, int> _jobTasksOnNode = new();
    private readonly Dictionary<string, int> _jobTasksInDomain = new(StringComparer.Ordinal);

    /// <summary>The job whose tasks are being placed.</summary>
    public JobSpec Job { get; private set; } = null!;

    /// <summary>The tenant's usage when the decision started, and its quota (null = none).</summary>
    public (ResourceVector Usage, ResourceVector? Quota) Tenant { get; internal set; }

    /// <summary>Resources this decision has already tentatively placed in the tenant (for quota checks across the job's tasks).</summary>
    public ResourceVector TentativeTenantUse { get; internal set; }

    internal void Reset(JobSpec job)
    {
        Job = job;
        _tentative.Clear();
        _jobTasksOnNode.Clear();
        _jobTasksInDomain.Clear();
        TentativeTenantUse = default;
    }

    /// <summary>Resources this decision has tentatively placed on a node (not yet committed).</summary>
    public ResourceVector TentativeOn(NodeId node) => _tentative.TryGetValue(node.Value, out var v) ? v : default;

    /// <summary>How many of this job's tasks this decision (and earlier attempts' bindings) put on a node.</summary>
    public int JobTasksOn(NodeId node) => _jobTasksOnNode.TryGetValue(node.Value, out var n) ? n : 0;

    /// <summary>How many of this job's tasks are in a failure domain.</summary>
    public int JobTasksIn(string failureDomain) => _jobTasksInDomain.TryGetValue(failureDomain, out var n) ? n : 0;

    /// <summary>Records a tentative placement so later tasks of the same decision see it.</summary>
    internal void Place(in NodeView node, ResourceVector request)
    {
        _tentative[node.Id.Value] = TentativeOn(node.Id) + request;
        NoteJobTask(node.Id, node.Spec.FailureDomain);
        TentativeTenantUse += request;
    }

    /// <summary>Records a task of this job already bound on a node (from an earlier attempt), for spread and anti-affinity.</summary>
    internal void NoteJobTask(NodeId node, string failureDomain)
    {
        _jobTasksOnNode[node.Value] = JobTasksOn(node) + 1;
        _jobTasksInDomain[failureDomain] = JobTasksIn(failureDomain) + 1;
    }
}
