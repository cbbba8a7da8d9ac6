using Omega.Cells;

namespace Omega.Scheduling.Pipeline;

/// <summary>
/// Finds lower-priority tasks to evict when a task fits nowhere. Victims are chosen to minimise disruption: on each
/// candidate node the lowest-priority tasks go first (largest first among equals, so fewer are needed), and the node
/// in the best preferred region of the job (if it has region preferences), then whose victim set has the lowest top
/// priority, then the fewest victims, wins. A tenant's guaranteed quota is never
/// crossed: a victim of a protected tenant is taken only if the tenant stays at or above its guarantee afterwards.
/// The eviction is committed in the same transaction as the placement (a preemption claim), so it happens only if the
/// placement does.
/// </summary>
public sealed class PreemptionPlanner
{
    private readonly ICellView? _view;
    private readonly Func<NodeId, IReadOnlyList<Allocation>>? _allocationsOn;
    private readonly Func<TenantId, ResourceVector> _tenantUsage;
    private readonly List<Allocation> _onNode = new();
    private readonly IReadOnlyDictionary<TenantId, ResourceVector> _guarantees;
    private readonly IFilter[] _placementFilters;
    private readonly HashSet<TaskId> _chosen = new();
    private readonly Dictionary<TenantId, ResourceVector> _taken = new();
    private readonly List<Allocation> _scratch = new();

    /// <summary>
    /// Creates a planner that reads bindings and tenant usage through <paramref name="view"/> (lock-free; the way the
    /// engine's workers use it).
    /// </summary>
    /// <param name="view">The cell's read side.</param>
    /// <param name="guarantees">Protected tenants and their guaranteed resources.</param>
    /// <param name="maxCandidates">Nodes examined per preemption attempt.</param>
    public PreemptionPlanner(ICellView view, IReadOnlyDictionary<TenantId, ResourceVector>? guarantees = null, int maxCandidates = 16)
    {
        _view = view ?? throw new ArgumentNullException(nameof(view));
        _tenantUsage = t => view.GetTenantUsage(t).Usage;
        _guarantees = guarantees ?? new Dictionary<TenantId, ResourceVector>();
        MaxCandidates = maxCandidates;
        _placementFilters = PlacementFilters();
    }

    /// <summary>Creates a planner.</summary>
    /// <param name="allocationsOn">Reads the live bindings on a node (the cell's <see cref="Cell.GetAllocationsOnNode"/>).</param>
    /// <param name="tenantUsage">Reads a tenant's current usage.</param>
    /// <param name="guarantees">Protected tenants and their guaranteed resources.</param>
    /// <param name="maxCandidates">Nodes examined per preemption attempt.</param>
    public PreemptionPlanner(Func<NodeId, IReadOnlyList<Allocation>> allocationsOn, Func<TenantId, ResourceVector> tenantUsage,
        IReadOnlyDictionary<TenantId, ResourceVector>? guarantees = null, int maxCandidates = 16)
    {
        _allocationsOn = allocationsOn ?? throw new ArgumentNullException(nameof(allocationsOn));
        _tenantUsage = tenantUsage ?? throw new ArgumentNullException(nameof(tenantUsage));
        _guarantees = guarantees ?? new Dictionary<TenantId, ResourceVector>();
        MaxCandidates = maxCandidates;
        _placementFilters = PlacementFilters();
    }

    // Everything but resources: a node that fails health, labels, taints, anti-affinity or region gates (residency: a preemption must never move work out of its region) cannot host the task whatever is evicted.
    private static IFilter[] PlacementFilters() => [new NodeHealthFilter(), new RequiredLabelsFilter(), new TaintFilter(), new GroupAntiAffinityFilter(), new TopologyFilter()];

    /// <summary>The rank of a region that is not among a job's preferred regions (worse than every preferred one).</summary>
    public const int NotPreferredRank = int.MaxValue - 1;

    /// <summary>A region's rank in the job's preferred regions: 0 for the first, <see cref="NotPreferredRank"/> if absent.</summary>
    public static int RankOf(TopologyConstraints topology, string region)
    {
        ArgumentNullException.ThrowIfNull(topology);
        int r = topology.PreferenceRank(region);
        return r >= 0 ? r : NotPreferredRank;
    }

    /// <summary>Nodes examined per attempt.</summary>
    public int MaxCandidates { get; }

    /// <summary>Forgets victims chosen for the previous job.</summary>
    public void BeginJob()
    {
        _chosen.Clear();
        _taken.Clear();
    }

    /// <summary>Tries to find a node and victims for one task of <paramref name="job"/>.</summary>
    /// <param name="job">The job.</param>
    /// <param name="snapshot">The snapshot the decision reads.</param>
    /// <param name="context">The decision's tentative state.</param>
    /// <param name="rng">The decision's random source.</param>
    /// <param name="node">The node chosen.</param>
    /// <param name="victims">The tasks to preempt there.</param>
    /// <param name="rankBelow">
    /// Only nodes whose region ranks strictly better than this in the job's preferred regions (0 first; a region not in
    /// the list ranks <see cref="NotPreferredRank"/>): used to preempt for a region preference when a feasible node
    /// exists only in a worse-ranked region. The default considers every node.
    /// </param>
    public bool TryPlan(JobSpec job, CellSnapshot snapshot, PlacementContext context, Random rng, out NodeView node, out TaskId[] victims, int rankBelow = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(job);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(rng);
        node = default;
        victims = Array.Empty<TaskId>();
        int n = snapshot.NodeCount;
        if (n == 0 || job.Priority <= int.MinValue) return false;
        int bestTop = int.MaxValue, bestCount = int.MaxValue;
        List<Allocation>? bestVictims = null;
        // A region preference (issue 13) comes first: failover preempts in the next preferred region before any other.
        var topology = job.Topology;
        int bestRank = int.MaxValue;
        int examined = 0;
        int probes = Math.Min(n, MaxCandidates * 8);
        int start = rng.Next(n);
        for (int p = 0; p < probes && examined < MaxCandidates; p++)
        {
            int id = n <= MaxCandidates * 8 ? (start + p) % n : rng.Next(n);
            if (snapshot.TryGetNode(new NodeId(id), out var v) != SnapshotRead.Ok) continue;
            if (!job.PerTask.FitsWithin(v.Capacity)) continue;
            if (rankBelow != int.MaxValue && RankOf(topology, v.Spec.Region) >= rankBelow) continue;
            bool ok = true;
            for (int f = 0; f < _placementFilters.Length && ok; f++) ok = _placementFilters[f].Filter(context, v) == FilterStatus.Feasible;
            if (!ok) continue;
            examined++;
            int top;
            if (rankBelow != int.MaxValue && ResourceVector.Fits(v.Allocated + context.TentativeOn(v.Id), job.PerTask, v.Capacity))
            {
                // A better-ranked node with room as it is: no victims needed (the decision's sample missed it).
                _scratch.Clear();
                top = int.MinValue;
            }
            else if (!TryChooseVictims(job, v, context, out top)) continue;
            int rank = topology.PreferredRegions.Count == 0 ? 0 : RankOf(topology, v.Spec.Region);
            if (rank < bestRank || rank == bestRank && (top < bestTop || top == bestTop && _scratch.Count < bestCount))
            {
                bestRank = rank;
                bestTop = top;
                bestCount = _scratch.Count;
                bestVictims = new List<Allocation>(_scratch);
                node = v;
            }
        }
        if (bestVictims is null) return false;
        victims = new TaskId[bestVictims.Count];
        for (int i = 0; i < victims.Length; i++)
        {
            var a = bestVictims[i];
            victims[i] = a.Task;
            _chosen.Add(a.Task);
            _taken[a.Tenant] = (_taken.TryGetValue(a.Tenant, out var t) ? t : default) + a.Resources;
        }
        return true;
    }

    private bool TryChooseVictims(JobSpec job, in NodeView v, PlacementContext context, out int topPriority)
    {
        _scratch.Clear();
        topPriority = int.MinValue;
        var candidates = new List<Allocation>();
        IReadOnlyList<Allocation> onNode;
        if (_view is not null)
        {
            _onNode.Clear();
            _view.CopyAllocationsOnNode(v.Id, _onNode);
            onNode = _onNode;
        }
        else onNode = _allocationsOn!(v.Id);
        for (int i = 0; i < onNode.Count; i++)
        {
            var a = onNode[i];
            if (a.Priority < job.Priority && !_chosen.Contains(a.Task)) candidates.Add(a);
        }
        // Lowest priority first; among equals the largest first, so fewer victims are needed.
        candidates.Sort(static (x, y) => x.Priority != y.Priority ? x.Priority.CompareTo(y.Priority) : y.Resources.CpuMillis.CompareTo(x.Resources.CpuMillis));
        var used = v.Allocated + context.TentativeOn(v.Id);
        ResourceVector freed = default;
        var takenHere = new Dictionary<TenantId, ResourceVector>();
        foreach (var a in candidates)
        {
            if (ResourceVector.Fits(used - freed, job.PerTask, v.Capacity)) break;
            if (_guarantees.TryGetValue(a.Tenant, out var guarantee))
            {
                var already = (_taken.TryGetValue(a.Tenant, out var t1) ? t1 : default) + (takenHere.TryGetValue(a.Tenant, out var t2) ? t2 : default);
                var after = _tenantUsage(a.Tenant) - already - a.Resources;
                // Protected: the tenant must keep at least its guarantee in every dimension it is guaranteed.
                if (!guarantee.FitsWithin(ResourceVector.Max(after, default))) continue;
            }
            _scratch.Add(a);
            freed += a.Resources;
            takenHere[a.Tenant] = (takenHere.TryGetValue(a.Tenant, out var t) ? t : default) + a.Resources;
            topPriority = Math.Max(topPriority, a.Priority);
        }
        return _scratch.Count > 0 && ResourceVector.Fits(used - freed, job.PerTask, v.Capacity);
    }
}
