using Omega.Cells;

namespace Omega.Scheduling.Pipeline;

/// <summary>
/// A feasibility filter: a pure function of the task's context and one node as seen in the snapshot.
/// Filters run on every sampled node, so they must not allocate or lock.
/// </summary>
public interface IFilter
{
    /// <summary>A short name for decision records and docs.</summary>
    string Name { get; }

    /// <summary>Returns <see cref="FilterStatus.Feasible"/> or the reason the node is rejected.</summary>
    FilterStatus Filter(PlacementContext context, in NodeView node);
}

/// <summary>
/// A scorer: rates a feasible node for the task; higher is better. Scores are combined as a weighted sum, each scorer
/// returning a value in [0, 100] so that weights mean what they say.
/// </summary>
public interface IScorer
{
    /// <summary>A short name for decision records and docs.</summary>
    string Name { get; }

    /// <summary>The score in [0, 100].</summary>
    double Score(PlacementContext context, in NodeView node);
}

/// <summary>The node is schedulable (not draining, fenced, down or removed).</summary>
public sealed class NodeHealthFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "node-health";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
        => node.IsSchedulable ? FilterStatus.Feasible : FilterStatus.NodeUnschedulable;
}

/// <summary>The task's request fits in the node's free resources minus this decision's tentative placements.</summary>
public sealed class ResourceFitFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "resource-fit";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
        => ResourceVector.Fits(node.Allocated + context.TentativeOn(node.Id), context.Job.PerTask, node.Capacity)
            ? FilterStatus.Feasible : FilterStatus.InsufficientResources;
}

/// <summary>The node carries every label the job requires, with the same value.</summary>
public sealed class RequiredLabelsFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "required-labels";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
    {
        var required = context.Job.RequiredLabels;
        if (required.Count == 0) return FilterStatus.Feasible;
        var labels = node.Spec.Labels;
        foreach (var kv in required)
            if (!labels.TryGetValue(kv.Key, out var value) || !string.Equals(value, kv.Value, StringComparison.Ordinal))
                return FilterStatus.LabelMismatch;
        return FilterStatus.Feasible;
    }
}

/// <summary>The job tolerates every taint on the node.</summary>
public sealed class TaintFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "taints";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
    {
        var taints = node.Spec.Taints;
        if (taints.Count == 0) return FilterStatus.Feasible;
        var tolerated = context.Job.Tolerations;
        for (int i = 0; i < taints.Count; i++)
        {
            bool ok = false;
            for (int j = 0; j < tolerated.Count && !ok; j++) ok = string.Equals(taints[i], tolerated[j], StringComparison.Ordinal);
            if (!ok) return FilterStatus.TaintNotTolerated;
        }
        return FilterStatus.Feasible;
    }
}

/// <summary>
/// The tenant's quota admits one more task on top of its usage at decision start and this decision's tentative placements.
/// This is an early, advisory check so a decision does not waste a commit; the cell enforces the quota at commit, so two
/// workers cannot jointly exceed it.
/// </summary>
public sealed class TenantQuotaFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "tenant-quota";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
    {
        var (usage, quota) = context.Tenant;
        if (quota is not { } q) return FilterStatus.Feasible;
        return ResourceVector.Fits(usage + context.TentativeTenantUse, context.Job.PerTask, q) ? FilterStatus.Feasible : FilterStatus.QuotaExceeded;
    }
}

/// <summary>
/// Bin-packing: prefers nodes that will be fuller after the placement (dominant share of CPU and memory), leaving
/// whole nodes free for large tasks.
/// </summary>
public sealed class BinPackingScorer : IScorer
{
    /// <inheritdoc />
    public string Name => "bin-packing";

    /// <inheritdoc />
    public double Score(PlacementContext context, in NodeView node)
        => Of(node.Allocated + context.TentativeOn(node.Id) + context.Job.PerTask, node.Capacity);

    // The score of a node whose use after the placement is `after`. The pipeline's one-lookup scoring path calls this
    // too, so both paths run the same arithmetic and give bit-identical scores.
    internal static double Of(ResourceVector after, ResourceVector cap)
    {
        double cpu = cap.CpuMillis > 0 ? (double)after.CpuMillis / cap.CpuMillis : 1;
        double mem = cap.MemoryBytes > 0 ? (double)after.MemoryBytes / cap.MemoryBytes : 1;
        return 100 * Math.Clamp(Math.Max(cpu, mem), 0, 1);
    }
}

/// <summary>Spread: prefers failure domains holding fewer of this job's tasks.</summary>
public sealed class FailureDomainSpreadScorer : IScorer
{
    /// <inheritdoc />
    public string Name => "domain-spread";

    /// <inheritdoc />
    public double Score(PlacementContext context, in NodeView node)
        => Of(context.JobTasksInDomainOf(node));

    // Shared with the pipeline's one-lookup scoring path (same arithmetic, same bits).
    internal static double Of(int jobTasksInDomain) => 100.0 / (1 + jobTasksInDomain);
}

/// <summary>Anti-affinity: prefers nodes holding none of this job's own tasks.</summary>
public sealed class JobAntiAffinityScorer : IScorer
{
    /// <inheritdoc />
    public string Name => "job-anti-affinity";

    /// <inheritdoc />
    public double Score(PlacementContext context, in NodeView node)
        => Of(context.JobTasksOn(node.Id));

    // Shared with the pipeline's one-lookup scoring path (same arithmetic, same bits).
    internal static double Of(int jobTasksOnNode) => jobTasksOnNode == 0 ? 100 : 100.0 / (2 + jobTasksOnNode);
}

/// <summary>
/// Hard anti-affinity: rejects a node holding a member of the job's constraint group (node scope), or a node whose failure
/// domain holds one (domain scope), counting the live bindings and this decision's own tentative placements. Advisory
/// like every filter: the cell re-checks at commit (<see cref="ClaimStatus.AntiAffinityViolated"/>), which is what makes the
/// constraint hold under concurrent schedulers.
/// </summary>
public sealed class GroupAntiAffinityFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "group-anti-affinity";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
        => context.GroupAllows(node) ? FilterStatus.Feasible : FilterStatus.AntiAffinity;
}

/// <summary>
/// Spread over a constraint group: prefers nodes (node scope) or failure domains (domain scope) holding fewer members of
/// the job's group. Neutral (the same score everywhere) for a job that asks for no spread.
/// </summary>
public sealed class GroupSpreadScorer : IScorer
{
    /// <inheritdoc />
    public string Name => "group-spread";

    /// <inheritdoc />
    public double Score(PlacementContext context, in NodeView node)
    {
        var group = context.Job.Group;
        return group.Spread switch
        {
            PlacementScope.Node => 100.0 / (1 + context.GroupMembersOn(node)),
            PlacementScope.FailureDomain => 100.0 / (1 + (node.Spec.FailureDomain.Length == 0 ? context.GroupMembersOn(node) : context.GroupMembersIn(node.Spec.FailureDomain))),
            _ => 100,
        };
    }
}

/// <summary>
/// Region hard gates (issue 13): data residency (<see cref="TopologyConstraints.RequiredRegions"/>) and avoided regions.
/// Exact on a snapshot because a node's region never changes (docs/control-plane.md, "Topology").
/// </summary>
public sealed class TopologyFilter : IFilter
{
    /// <inheritdoc />
    public string Name => "topology";

    /// <inheritdoc />
    public FilterStatus Filter(PlacementContext context, in NodeView node)
    {
        var t = context.Job.Topology;
        if (t.IsNone) return FilterStatus.Feasible;
        string region = node.Spec.Region;
        if (!t.ResidencyAllows(region)) return FilterStatus.ResidencyViolation;
        if (t.Avoids(region)) return FilterStatus.RegionAvoided;
        return FilterStatus.Feasible;
    }
}

/// <summary>
/// Region preference and topology spread (soft): a node in the job's first preferred region scores 100, the second 50,
/// the third 33, ...; other regions 0. With a spread, regions (or zones) holding fewer members of the job's constraint
/// group score higher. Neutral (100 everywhere) for a job without topology preferences, so it never reorders other jobs.
/// </summary>
public sealed class TopologyScorer : IScorer
{
    /// <inheritdoc />
    public string Name => "topology";

    /// <inheritdoc />
    public double Score(PlacementContext context, in NodeView node)
    {
        var t = context.Job.Topology;
        if (t.PreferredRegions.Count == 0 && t.Spread == TopologySpread.None) return 100;
        double s = 0;
        int parts = 0;
        if (t.PreferredRegions.Count > 0)
        {
            int rank = t.PreferenceRank(node.Spec.Region);
            s += rank < 0 ? 0 : 100.0 / (1 + rank);
            parts++;
        }
        if (t.Spread != TopologySpread.None)
        {
            string key = t.Spread == TopologySpread.Region ? node.Spec.Region : node.Spec.Zone;
            s += key.Length == 0 ? 0 : 100.0 / (1 + context.GroupMembersInTopology(t.Spread, key));
            parts++;
        }
        return s / parts;
    }
}
