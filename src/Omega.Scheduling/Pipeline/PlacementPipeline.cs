using System.Runtime.CompilerServices;
using Omega.Cells;

namespace Omega.Scheduling.Pipeline;

/// <summary>Options for sampling-based selection.</summary>
public sealed class SamplingOptions
{
    /// <summary>
    /// Feasible candidates to collect before choosing (power-of-k choices). The cost of a decision depends on this, not on
    /// the cell size. Default 8.
    /// </summary>
    public int FeasibleFloor { get; set; } = 8;

    /// <summary>Upper bound on candidates kept for one job (its tasks share the pool: the job is one equivalence class).</summary>
    public int MaxPool { get; set; } = 256;

    /// <summary>Probes per wanted candidate before giving up on a mostly-full cell. Default 16.</summary>
    public int ProbesPerCandidate { get; set; } = 16;

    /// <summary>Minimum probes before a job is declared unplaceable on this snapshot. Default 128.</summary>
    public int MinProbes { get; set; } = 128;
}

/// <summary>A task the pipeline placed (tentatively): the claim to commit.</summary>
/// <param name="TaskIndex">The task's index in its job.</param>
/// <param name="Node">The chosen node as seen in the snapshot.</param>
/// <param name="Score">Its combined score.</param>
/// <param name="Victims">Lower-priority tasks to preempt, or null.</param>
public readonly record struct PlannedClaim(int TaskIndex, NodeView Node, double Score, TaskId[]? Victims);

/// <summary>What the pipeline saw while planning one job, for decision records.</summary>
public sealed class PlanStats
{
    /// <summary>Distinct nodes read from the snapshot (a node probed twice counts once).</summary>
    public int NodesConsidered { get; internal set; }

    /// <summary>The revision of the policy the plan used.</summary>
    public int PolicyRevision { get; internal set; }

    /// <summary>Feasible candidates found.</summary>
    public int Feasible { get; internal set; }

    /// <summary>Rejections by filter reason, indexed by <see cref="FilterStatus"/>.</summary>
    public int[] FilteredByReason { get; } = new int[Enum.GetValues<FilterStatus>().Length];

    /// <summary>The best scores seen for the job's first task: (node, score), best first.</summary>
    public List<(NodeId Node, double Score)> TopScores { get; } = new(3);

    /// <summary>Tasks that found no feasible node (and no preemption).</summary>
    public int Unplaceable { get; internal set; }

    /// <summary>Claims that preempt other tasks.</summary>
    public int Preemptions { get; internal set; }

    /// <summary>
    /// Tasks whose best feasible node was outside the job's first preferred region, so preemption in a better-ranked
    /// region was (or, with preemption allowed, would have been) tried.
    /// </summary>
    public int PreferenceFallbacks { get; internal set; }

    internal void Reset()
    {
        NodesConsidered = 0;
        Feasible = 0;
        Unplaceable = 0;
        Preemptions = 0;
        PreferenceFallbacks = 0;
        Array.Clear(FilteredByReason);
        TopScores.Clear();
    }

    /// <summary>The most common rejection reason, or <see cref="FilterStatus.Feasible"/> if none.</summary>
    public FilterStatus DominantRejection
    {
        get
        {
            int best = 0;
            for (int i = 1; i < FilteredByReason.Length; i++)
                if (FilteredByReason[i] > FilteredByReason[best] || best == 0 && FilteredByReason[i] > 0) best = i;
            return (FilterStatus)best;
        }
    }
}

/// <summary>
/// The placement pipeline: sample nodes from a snapshot, run the filters, score the feasible ones, and choose. A job's
/// tasks are identical (same request and constraints), so they form one equivalence class: the job samples one
/// candidate pool and each task picks the best candidate that still fits after the tasks before it (tracked as
/// tentative placements). One pipeline instance per worker; not thread-safe.
/// </summary>
public sealed class PlacementPipeline
{
    private readonly PolicySource _source;
    private CompiledPolicy _policy;
    private IFilter[] _filters;
    private IScorer[] _scorers;
    private double[] _weights;
    private SamplingOptions _sampling;
    private readonly PlacementContext _context = new();
    private NodeView[] _pool = new NodeView[64];
    private int _poolCount;
    // Node ids read by the last plan, in order: a decision record's read set (issue 18, decision replay). A reused list,
    // one Add per node read: no allocation once warm.
    private readonly List<int> _probed = new();
    // Nodes already probed by this decision: a node's stamp equals _seenEpoch when it was seen (an epoch-stamped array
    // instead of a HashSet<int>: no hashing, no clearing per decision; cleared only when the epoch wraps).
    private int[] _seenStamp = new int[1024];
    private int _seenEpoch;
    // Per-pool-entry score cache (issue 14, "score each sampled node once per job"): _scoreValid[c] says _score[c] is
    // what ScoreNode(_pool[c]) returns now. Only used when every scorer is a built-in whose inputs are the node itself,
    // its failure domain, zone or region (_cacheScores); a placement invalidates exactly the pool entries sharing one of
    // those with the placed node, so a cached score is always the value a fresh ScoreNode would compute (a test compares).
    private double[] _score = new double[64];
    private bool[] _scoreValid = new bool[64];
    private bool _cacheScores;
    // Per-pool-entry state read by every task's pass over the pool (issue 14, decision cost): the node's free room, that
    // is its capacity minus its allocation minus this decision's tentative placements on it (kept up to date by PlaceAt),
    // and its interned failure-domain slot (score invalidation compares integers). Pool entries are distinct nodes.
    // The fit check `Fits(used, request, capacity)` is `request >= 0 && request <= capacity - used`; keeping
    // `capacity - used` itself (one vector per candidate instead of two, and one subtraction per placement instead of one
    // per candidate and task) gives the same bits, because 64-bit integer addition and subtraction are exact (wrapping
    // arithmetic is associative), so `capacity - (used + r)` equals `(capacity - used) - r`.
    private ResourceVector[] _poolFree = new ResourceVector[64];
    private int[] _poolDomain = new int[64];
    // FillPoolSampled's batch: the ids drawn, and each node's snapshot read.
    private readonly int[] _batchIds = new int[32];
    private readonly NodeView[] _batchViews = new NodeView[32];
    private readonly SnapshotRead[] _batchReads = new SnapshotRead[32];
    private long _touch;
    // The policy's filters and scorers by built-in kind (Other for a plugin of another type): the default pipeline is
    // dispatched by a switch to direct, inlinable calls on the sealed built-in types instead of interface calls.
    private PluginKind[] _filterKinds = [];
    private PluginKind[] _scorerKinds = [];
    // This plan's filters: the policy's, minus the built-ins that cannot reject any node for this job (no required
    // labels, no tenant quota, no group anti-affinity, no region gate), in policy order (issue 14, "hoist per-job work out
    // of the per-node loop"). Skipping a filter that returns Feasible for every node changes no outcome and no rejection
    // count: the first rejecting filter is the same. Sized with the policy; filled by each Plan without allocating.
    private IFilter[] _planFilters = [];
    private PluginKind[] _planFilterKinds = [];
    private int _planFilterCount;
    // Whether the policy has the domain-spread scorer: ScoreNode then interns the node's domain when it reads its inputs.
    private bool _scoresReadDomain;
    // The default policy's scorer order (bin-packing, domain spread, job anti-affinity, group spread, topology), and, per
    // plan, whether the last two are constant for the job (no group spread, no topology preference or spread: both score
    // 100 everywhere). Then ScoreNode is straight-line code over the three node-local terms plus two precomputed
    // constant terms (weight × 100, the same product the loop would form), summed in the same order: the same bits.
    private bool _defaultScorerShape;
    private bool _planStraightScore;
    private double _planGroupTerm;
    private double _planTopologyTerm;
    private int _scanStart;
    private int _scanStride = 1;
    private int _distinct;

    /// <summary>Creates a pipeline with a fixed policy from filters, weighted scorers and sampling options.</summary>
    public PlacementPipeline(IReadOnlyList<IFilter> filters, IReadOnlyList<(IScorer Scorer, double Weight)> scorers, SamplingOptions? sampling = null, int policyRevision = 0)
        : this(new PolicySource(new CompiledPolicy(policyRevision, filters, scorers, sampling)))
    {
    }

    /// <summary>
    /// Creates a pipeline that reads the active policy from <paramref name="source"/> once per <see cref="Plan"/>: a
    /// promotion or rollback takes effect at the next decision, never in the middle of one.
    /// </summary>
    public PlacementPipeline(PolicySource source)
    {
        _source = source ?? throw new ArgumentNullException(nameof(source));
        _policy = source.Current;
        _filters = _policy.Filters;
        _scorers = _policy.Scorers;
        _weights = _policy.Weights;
        _sampling = _policy.Sampling;
        _cacheScores = AllScorersCacheable(_scorers);
        (_filterKinds, _scorerKinds) = Kinds(_filters, _scorers);
        SizePlanArrays();
    }

    // The per-plan filter arrays and scorer flags follow the policy (called when the policy changes, never per plan).
    private void SizePlanArrays()
    {
        _planFilters = new IFilter[_filters.Length];
        _planFilterKinds = new PluginKind[_filters.Length];
        _scoresReadDomain = Array.IndexOf(_scorerKinds, PluginKind.DomainSpread) >= 0;
        _defaultScorerShape = _scorers.Length == 5 && _weights.Length == 5 && _scorerKinds.AsSpan().SequenceEqual(
            [PluginKind.BinPacking, PluginKind.DomainSpread, PluginKind.JobAntiAffinity, PluginKind.GroupSpread, PluginKind.TopologyScorer]);
    }

    // Per plan: whether the straight-line scoring applies to this job (see _defaultScorerShape).
    private void SelectPlanScoring(JobSpec job)
    {
        // GroupSpreadScorer returns 100 when the group asks for no spread; TopologyScorer returns 100 without a region
        // preference and without a topology spread (both read nothing else in those cases).
        _planStraightScore = _defaultScorerShape && job.Group.Spread == PlacementScope.None
            && job.Topology.PreferredRegions.Count == 0 && job.Topology.Spread == TopologySpread.None;
        if (!_planStraightScore) return;
        double x = 100;
        _planGroupTerm = _weights[3] * x;
        _planTopologyTerm = _weights[4] * x;
    }

    // Keeps the filters that can reject a node for this job (see _planFilters). Tenant and job are this plan's.
    private void SelectPlanFilters(JobSpec job, bool hasQuota)
    {
        int n = 0;
        var filters = _filters;
        var kinds = _filterKinds;
        for (int f = 0; f < filters.Length && f < kinds.Length; f++)
        {
            bool neverRejects = kinds[f] switch
            {
                PluginKind.RequiredLabels => job.RequiredLabels.Count == 0,
                PluginKind.TenantQuota => !hasQuota,
                PluginKind.GroupAntiAffinity => job.Group.AntiAffinity == PlacementScope.None,
                PluginKind.TopologyFilter => job.Topology.IsNone,
                _ => false,
            };
            if (neverRejects) continue;
            _planFilters[n] = filters[f];
            _planFilterKinds[n] = kinds[f];
            n++;
        }
        _planFilterCount = n;
    }

    private enum PluginKind : byte
    {
        Other,
        NodeHealth,
        ResourceFit,
        RequiredLabels,
        Taint,
        TenantQuota,
        GroupAntiAffinity,
        TopologyFilter,
        BinPacking,
        DomainSpread,
        JobAntiAffinity,
        GroupSpread,
        TopologyScorer,
    }

    private static (PluginKind[] Filters, PluginKind[] Scorers) Kinds(IFilter[] filters, IScorer[] scorers)
    {
        var f = new PluginKind[filters.Length];
        for (int i = 0; i < f.Length; i++)
            f[i] = filters[i] switch
            {
                NodeHealthFilter => PluginKind.NodeHealth,
                ResourceFitFilter => PluginKind.ResourceFit,
                RequiredLabelsFilter => PluginKind.RequiredLabels,
                TaintFilter => PluginKind.Taint,
                TenantQuotaFilter => PluginKind.TenantQuota,
                GroupAntiAffinityFilter => PluginKind.GroupAntiAffinity,
                TopologyFilter => PluginKind.TopologyFilter,
                _ => PluginKind.Other,
            };
        var s = new PluginKind[scorers.Length];
        for (int i = 0; i < s.Length; i++)
            s[i] = scorers[i] switch
            {
                BinPackingScorer => PluginKind.BinPacking,
                FailureDomainSpreadScorer => PluginKind.DomainSpread,
                JobAntiAffinityScorer => PluginKind.JobAntiAffinity,
                GroupSpreadScorer => PluginKind.GroupSpread,
                TopologyScorer => PluginKind.TopologyScorer,
                _ => PluginKind.Other,
            };
        return (f, s);
    }

    /// <summary>
    /// Whether a decision may reuse a node's score across the tasks of a job until a placement that can change it (default
    /// true). The result is identical either way (tests compare); false re-scores every candidate for every task.
    /// </summary>
    public bool ScoreCaching { get; set; } = true;

    // The built-in scorers read only the node, the tentative state on it, and per-domain / per-zone / per-region counts.
    private static bool AllScorersCacheable(IScorer[] scorers)
    {
        foreach (var s in scorers)
            if (s is not (BinPackingScorer or FailureDomainSpreadScorer or JobAntiAffinityScorer or GroupSpreadScorer or TopologyScorer)) return false;
        return true;
    }

    /// <summary>
    /// The default pipeline: health, fit, labels, taints, quota, group anti-affinity; bin-packing (weight 1), spread (0.5),
    /// job anti-affinity (0.5), group spread (1). Policy revision 0 (the built-in policy).
    /// </summary>
    public static PlacementPipeline CreateDefault(SamplingOptions? sampling = null)
    {
        var d = CompiledPolicy.Default;
        return sampling is null ? new PlacementPipeline(new PolicySource(d))
            : new PlacementPipeline(new PolicySource(new CompiledPolicy(d.Revision, d.Filters, Pair(d), sampling)));
    }

    private static (IScorer, double)[] Pair(CompiledPolicy p)
    {
        var r = new (IScorer, double)[p.Scorers.Length];
        for (int i = 0; i < r.Length; i++) r[i] = (p.Scorers[i], p.Weights[i]);
        return r;
    }

    /// <summary>The revision of the policy the last (or current) <see cref="Plan"/> used; recorded in decision records.</summary>
    public int PolicyRevision => _policy.Revision;

    /// <summary>The policy the last (or current) <see cref="Plan"/> used.</summary>
    public CompiledPolicy Policy => _policy;

    /// <summary>The filters of the last plan's policy, in order.</summary>
    public IReadOnlyList<IFilter> Filters => _filters;

    /// <summary>The scorers of the last plan's policy.</summary>
    public IReadOnlyList<IScorer> Scorers => _scorers;

    /// <summary>
    /// The node ids the last <see cref="Plan"/> read from its snapshot while sampling, in the order it read them (a
    /// random probe that hit a node already seen is not listed again). Valid until the next plan; decision records copy
    /// it so <see cref="DecisionReplay"/> can rebuild exactly what the decision read.
    /// </summary>
    public IReadOnlyList<int> ProbedNodes => _probed;

    /// <summary>The context of the job being planned (valid during and right after <see cref="Plan"/>).</summary>
    public PlacementContext Context => _context;

    /// <summary>Reads the active policy for the next decision (one volatile read; the object is immutable).</summary>
    private void LoadPolicy()
    {
        var p = _source.Current;
        if (ReferenceEquals(p, _policy)) return;
        _policy = p;
        _filters = p.Filters;
        _scorers = p.Scorers;
        _weights = p.Weights;
        _sampling = p.Sampling;
        _cacheScores = AllScorersCacheable(p.Scorers);
        (_filterKinds, _scorerKinds) = Kinds(_filters, _scorers);
        SizePlanArrays();
    }

    /// <summary>
    /// Plans placements for the given tasks of <paramref name="job"/> on <paramref name="snapshot"/>. Appends one
    /// <see cref="PlannedClaim"/> per placed task to <paramref name="output"/>; tasks for which nothing feasible was found are
    /// left out (and counted in <paramref name="stats"/>). <paramref name="boundElsewhere"/> lists nodes holding this job's
    /// already-bound tasks, so spread and anti-affinity account for them.
    /// </summary>
    public void Plan(JobSpec job, ReadOnlySpan<int> taskIndexes, CellSnapshot snapshot, (ResourceVector Usage, ResourceVector? Quota) tenant,
        ReadOnlySpan<NodeId> boundElsewhere, Random rng, List<PlannedClaim> output, PlanStats stats, PreemptionPlanner? preemption = null, ICellView? view = null)
    {
        ArgumentNullException.ThrowIfNull(job);
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(stats);
        stats.Reset();
        _probed.Clear();
        LoadPolicy();
        stats.PolicyRevision = _policy.Revision;
        _context.Reset(job);
        _context.Tenant = tenant;
        SelectPlanFilters(job, tenant.Quota.HasValue);
        SelectPlanScoring(job);
        _context.BeginGroup(view, snapshot);
        for (int i = 0; i < boundElsewhere.Length; i++)
            if (snapshot.TryGetNode(boundElsewhere[i], out var bv) == SnapshotRead.Ok)
            {
                _context.NoteJobTask(bv.Id, bv.Spec.FailureDomain);
                // Without a view the live bindings are unknown: count the job's own earlier tasks as group members.
                if (view is null) _context.NoteGroupMember(bv);
            }

        int n = snapshot.NodeCount;
        if (n == 0)
        {
            stats.Unplaceable = taskIndexes.Length;
            return;
        }
        int wanted = Math.Min(_sampling.MaxPool, _sampling.FeasibleFloor + taskIndexes.Length / 4);
        // A region preference is only as good as the sample: with 8 candidates over 3 regions, 4 % of decisions would see no
        // node of the preferred one. Jobs that state a preference (few: critical services) sample four times more.
        if (job.Topology.PreferredRegions.Count > 0) wanted = Math.Min(_sampling.MaxPool, wanted * 4);
        int probeBudget = Math.Max(_sampling.MinProbes, wanted * _sampling.ProbesPerCandidate);
        _poolCount = 0;
        if (++_seenEpoch == int.MaxValue) { Array.Clear(_seenStamp); _seenEpoch = 1; }
        if (_seenStamp.Length < n) Array.Resize(ref _seenStamp, Math.Max(n, _seenStamp.Length * 2));
        _distinct = 0;
        bool cache = _cacheScores && ScoreCaching;
        int probes = 0;
        FillPool(snapshot, rng, wanted, ref probes, probeBudget, stats);

        bool ranked = job.Topology.PreferredRegions.Count > 0;
        bool groupHard = job.Group.AntiAffinity != PlacementScope.None;
        var perTask = job.PerTask;
        for (int t = 0; t < taskIndexes.Length; t++)
        {
            int best = -1;
            double bestScore = double.NegativeInfinity;
            for (int attempt = 0; attempt < 2 && best < 0; attempt++)
            {
                // The quota check does not depend on the node: once per task, not once per candidate (same outcome: a
                // refused quota skips every candidate).
                bool quotaFits = tenant.Quota is not { } q || ResourceVector.Fits(tenant.Usage + _context.TentativeTenantUse, perTask, q);
                // The pool's arrays as spans of the pool's length, read once per pass: the loop bound is the fit array's
                // length (its bounds check goes) and the fields are not reloaded after each call (ScoreNode cannot
                // resize them; only Consider, which runs in FillPool below, outside this loop, does).
                int poolCount = quotaFits ? _poolCount : 0;
                // A negative request never fits (ResourceVector.Fits): checked once here instead of per candidate.
                if (!perTask.IsNonNegative) poolCount = 0;
                var free = _poolFree.AsSpan(0, poolCount);
                var pool = _pool.AsSpan(0, free.Length);
                var scores = _score.AsSpan(0, poolCount);
                var valid = _scoreValid.AsSpan(0, poolCount);
                for (int c = 0; c < free.Length; c++)
                {
                    // Earlier tasks of this job may have used the node up: re-check fit against tentative state.
                    if (!perTask.FitsWithin(free[c])) continue;
                    ref readonly NodeView v = ref pool[c];
                    // ... and the job's own tasks may now be members of its group there (hard anti-affinity).
                    if (groupHard && !_context.GroupAllows(v)) continue;
                    double s;
                    if (!cache) s = ScoreNode(v);
                    else if (valid[c]) s = scores[c];
                    else { s = ScoreNode(v); scores[c] = s; valid[c] = true; }
                    if (t == 0) RecordTop(stats, v.Id, s);
                    if (s > bestScore) { bestScore = s; best = c; }
                }
                // Pool exhausted by this job's own tasks: sample more before giving up.
                if (best < 0 && attempt == 0 && probes < probeBudget) FillPool(snapshot, rng, _poolCount + wanted, ref probes, probeBudget, stats);
            }
            if (best >= 0)
            {
                var node = _pool[best];
                // A region preference is worth preempting strictly lower-priority work for (docs/control-plane.md, region
                // loss): when the only feasible nodes are in a worse-ranked region than one where lower priorities could
                // make room, preempt there. Otherwise a failover region whose headroom was taken by best-effort work sends
                // a critical service's replicas into a third region, and no region reaches the serving count the
                // recovery objective needs (seen in the region-loss drill: 3 + 3 across two regions). Only jobs that state
                // a preference pay for the extra planning, and only when the choice missed their best region.
                if (ranked && PreemptionPlanner.RankOf(job.Topology, node.Spec.Region) is var bestRank && bestRank > 0)
                {
                    stats.PreferenceFallbacks++;
                    // The planner scans wider than the sample: it may also find a better-ranked node with room and no
                    // victims (the sample missed it); that is a plain placement.
                    if (preemption is not null && TryPlanByRank(preemption, job, snapshot, rng, bestRank, out var better, out var displaced))
                    {
                        int betterIndex = IndexInPool(better.Id);
                        PlaceAt(betterIndex, better, job.PerTask);
                        if (cache) InvalidateScores(betterIndex, better);
                        output.Add(new PlannedClaim(taskIndexes[t], better, 0, displaced.Length > 0 ? displaced : null));
                        if (displaced.Length > 0) stats.Preemptions++;
                        continue;
                    }
                }
                PlaceAt(best, node, job.PerTask);
                if (cache) InvalidateScores(best, node);
                output.Add(new PlannedClaim(taskIndexes[t], node, bestScore, null));
                continue;
            }
            // No feasible node at all: a job with a region preference preempts in its preferred regions first, best rank
            // first. The planner examines a bounded number of candidates and would otherwise take the first ones its scan
            // meets, whatever their region: in the partition-mode drill (nodes lost one lease at a time, so the filler
            // requeued from the first ones took the spare room before the critical replicas of the later ones came back)
            // a critical service went 3 + 3 into its failover region and a third one, and no region reached 4 serving.
            if (preemption is not null && ranked && TryPlanByRank(preemption, job, snapshot, rng, PreemptionPlanner.NotPreferredRank, out var ranknode, out var rankvictims))
            {
                _context.Place(ranknode, job.PerTask);
                if (cache) InvalidateScores(IndexInPool(ranknode.Id), ranknode);
                output.Add(new PlannedClaim(taskIndexes[t], ranknode, 0, rankvictims.Length > 0 ? rankvictims : null));
                if (rankvictims.Length > 0) stats.Preemptions++;
                continue;
            }
            if (preemption is not null && preemption.TryPlan(job, snapshot, _context, rng, out var pnode, out var victims))
            {
                int pindex = IndexInPool(pnode.Id);
                PlaceAt(pindex, pnode, job.PerTask);
                if (cache) InvalidateScores(pindex, pnode);
                output.Add(new PlannedClaim(taskIndexes[t], pnode, 0, victims));
                stats.Preemptions++;
                continue;
            }
            stats.Unplaceable++;
        }
        // Distinct nodes read, not probes: a random probe that hit a node already seen is not another node considered.
        stats.NodesConsidered = _distinct;
        stats.Feasible = _poolCount;
    }

    // Preemption for a region preference, one rank at a time (only nodes of rank 0, then ranks below 2, ...) up to ranks
    // below worstRankExclusive: the planner's candidate cap then cannot fill up with a worse-ranked region's nodes while a
    // better-ranked one has victims. At most one planner scan per preferred region, only for jobs that state a preference
    // and missed their best region.
    private bool TryPlanByRank(PreemptionPlanner preemption, JobSpec job, CellSnapshot snapshot, Random rng, int worstRankExclusive, out NodeView node, out TaskId[] victims)
    {
        int last = Math.Min(worstRankExclusive, job.Topology.PreferredRegions.Count);
        for (int below = 1; below <= last; below++)
            if (preemption.TryPlan(job, snapshot, _context, rng, out node, out victims, rankBelow: below)) return true;
        node = default;
        victims = Array.Empty<TaskId>();
        return false;
    }

    private void FillPool(CellSnapshot snapshot, Random rng, int wanted, ref int probes, int probeBudget, PlanStats stats)
    {
        int n = snapshot.NodeCount;
        // Probe distinct nodes at random; with a small cell fall back to a full scan so no feasible node is missed.
        int budget = Math.Min(probeBudget, n);
        if (probes == 0)
        {
            _scanStart = rng.Next(n);
            // Node ids are handed out in registration order, so a region's nodes sit in one id range, and a contiguous scan
            // that stops at the pool size sees one or two regions only: a region preference or spread would be decided by
            // where the scan started. Jobs asking for topology scan with a stride coprime to n instead (still every node
            // exactly once, but spread over the id space); others keep the contiguous scan.
            _scanStride = _context.Job.Topology.PreferredRegions.Count > 0 || _context.Job.Topology.Spread != TopologySpread.None ? CoprimeStride(n) : 1;
        }
        if (n > probeBudget)
        {
            FillPoolSampled(snapshot, rng, wanted, ref probes, budget, stats);
            return;
        }
        while (_poolCount < wanted && probes < budget)
        {
            int id = (int)((_scanStart + (long)probes * _scanStride) % n); // small cell: scan every node once from a random start
            probes++;
            _distinct++;
            _probed.Add(id);
            if (snapshot.TryGetNode(new NodeId(id), out var v) != SnapshotRead.Ok)
            {
                stats.FilteredByReason[(int)FilterStatus.SnapshotStale]++;
                continue;
            }
            Consider(v, stats);
        }
    }

    // Random sampling of a large cell, in batches whose node reads overlap (issue 14, decision cost). Each probe of a
    // 10k-node cell misses the cache twice in a chain (the node's ring entry, then its spec), and one at a time those
    // misses were most of a decision. The loop below draws exactly the ids the one-at-a-time loop would draw, in the same
    // order: a batch holds k = min(wanted − pool, budget − probes) draws, and that loop would certainly run k more
    // iterations (each adds at most one node to the pool and uses one probe). It reads all k nodes first (independent
    // loads, overlapped by the CPU), touches their specs (the second miss, overlapped too), then runs the unchanged
    // per-probe logic in order: seen check, read set, statistics, filters. So the random stream, the read set and the
    // pool are those of the one-at-a-time loop (DecisionGoldenTests pins them), and only the memory waits overlap.
    // Reading a node a little earlier within the decision is harmless: the snapshot is fixed, and a ring entry
    // overwritten meanwhile reads as stale either way.
    private void FillPoolSampled(CellSnapshot snapshot, Random rng, int wanted, ref int probes, int budget, PlanStats stats)
    {
        int n = snapshot.NodeCount;
        var ids = _batchIds;
        var views = _batchViews;
        var reads = _batchReads;
        while (_poolCount < wanted && probes < budget)
        {
            int k = Math.Min(Math.Min(wanted - _poolCount, budget - probes), ids.Length);
            // The worker's stream is a DecisionRandom (sealed): a direct, inlinable call instead of a virtual one per
            // draw. The same method runs either way, so the ids are the same.
            if (rng is DecisionRandom drng)
                for (int i = 0; i < k; i++) ids[i] = drng.Next(n);
            else
                for (int i = 0; i < k; i++) ids[i] = rng.Next(n);
            for (int i = 0; i < k; i++) reads[i] = snapshot.TryGetNode(new NodeId(ids[i]), out views[i]);
            long touch = 0;
            for (int i = 0; i < k; i++)
                if (reads[i] == SnapshotRead.Ok) touch += views[i].Spec.Capacity.CpuMillis;
            _touch = touch;
            for (int i = 0; i < k; i++)
            {
                int id = ids[i];
                if (_seenStamp[id] == _seenEpoch) { probes++; continue; }
                _seenStamp[id] = _seenEpoch;
                probes++;
                _distinct++;
                _probed.Add(id);
                if (reads[i] != SnapshotRead.Ok)
                {
                    stats.FilteredByReason[(int)FilterStatus.SnapshotStale]++;
                    continue;
                }
                Consider(views[i], stats);
            }
        }
    }

    // Filters a read node and adds it to the pool when feasible.
    private void Consider(in NodeView v, PlanStats stats)
    {
        var status = RunFilters(v);
        if (status != FilterStatus.Feasible)
        {
            stats.FilteredByReason[(int)status]++;
            return;
        }
        if (_poolCount == _pool.Length)
        {
            Array.Resize(ref _pool, _pool.Length * 2);
            Array.Resize(ref _score, _pool.Length);
            Array.Resize(ref _scoreValid, _pool.Length);
            Array.Resize(ref _poolFree, _pool.Length);
            Array.Resize(ref _poolDomain, _pool.Length);
        }
        _scoreValid[_poolCount] = false;
        // A node placed on earlier in this decision (by preemption, outside the pool) enters with its tentative use.
        _poolFree[_poolCount] = v.Capacity - (v.Allocated + _context.TentativeOn(v.Id));
        _poolDomain[_poolCount] = _context.DomainSlotOf(v.Id, v.Spec.FailureDomain);
        _pool[_poolCount++] = v;
    }

    // The largest stride not above n/φ that shares no factor with n: (start + k·stride) mod n visits every node once.
    private static int CoprimeStride(int n)
    {
        if (n <= 2) return 1;
        for (int s = Math.Max(1, (int)(n * 0.618)); s > 1; s--)
        {
            int a = n, b = s;
            while (b != 0) (a, b) = (b, a % b);
            if (a == 1) return s;
        }
        return 1;
    }

    // A placement on `placed` changes the tentative state of that node and the job / group counts of its failure domain,
    // zone and region: every pool entry sharing one of them is re-scored; the others' scores cannot have changed.
    // `placedIndex` is the placed node's pool index, or -1 when it is not in the pool: pool entries are distinct nodes, so
    // "entry c is the placed node" is "c == placedIndex", an integer compare instead of reading each entry's id.
    private void InvalidateScores(int placedIndex, in NodeView placed)
    {
        var spec = placed.Spec;
        // The topology scorer reads group counts per zone or region only for a spread; a region preference reads the
        // node's own region, which no placement changes. Domains compare by their interned slot (equal slot = equal
        // string), so this is an integer compare per pool entry, not a string compare.
        var spread = _context.Job.Topology.Spread;
        int domain = _context.DomainSlotOf(placed.Id, spec.FailureDomain);
        var valid = _scoreValid.AsSpan(0, _poolCount);
        var domains = _poolDomain.AsSpan(0, valid.Length);
        if (spread == TopologySpread.None)
        {
            // The common case: no string compare can apply, so the pass reads two small arrays and no node entry.
            for (int c = 0; c < valid.Length; c++)
                if (domains[c] == domain || c == placedIndex) valid[c] = false;
            return;
        }
        var pool = _pool.AsSpan(0, valid.Length);
        for (int c = 0; c < valid.Length; c++)
        {
            if (!valid[c]) continue;
            var other = pool[c].Spec;
            if (domains[c] == domain
                || c == placedIndex
                || spread == TopologySpread.Zone && string.Equals(other.Zone, spec.Zone, StringComparison.Ordinal)
                || spread == TopologySpread.Region && string.Equals(other.Region, spec.Region, StringComparison.Ordinal))
                valid[c] = false;
        }
    }

    // Records a placement in the context and in the placed node's pool entry (index -1: not in the pool).
    private void PlaceAt(int poolIndex, in NodeView node, ResourceVector request)
    {
        _context.Place(node, request);
        if (poolIndex >= 0) _poolFree[poolIndex] -= request;
    }

    private int IndexInPool(NodeId node)
    {
        for (int c = 0; c < _poolCount; c++)
            if (_pool[c].Id == node) return c;
        return -1;
    }

    private FilterStatus RunFilters(in NodeView v)
    {
        var filters = _planFilters.AsSpan(0, _planFilterCount);
        var kinds = _planFilterKinds.AsSpan(0, filters.Length);
        for (int f = 0; f < filters.Length; f++)
        {
            var filter = filters[f];
            // The built-ins are sealed: Unsafe.As after the kind check gives a direct call the JIT can inline.
            var s = kinds[f] switch
            {
                PluginKind.NodeHealth => Unsafe.As<NodeHealthFilter>(filter).Filter(_context, v),
                PluginKind.ResourceFit => Unsafe.As<ResourceFitFilter>(filter).Filter(_context, v),
                PluginKind.RequiredLabels => Unsafe.As<RequiredLabelsFilter>(filter).Filter(_context, v),
                PluginKind.Taint => Unsafe.As<TaintFilter>(filter).Filter(_context, v),
                PluginKind.TenantQuota => Unsafe.As<TenantQuotaFilter>(filter).Filter(_context, v),
                PluginKind.GroupAntiAffinity => Unsafe.As<GroupAntiAffinityFilter>(filter).Filter(_context, v),
                PluginKind.TopologyFilter => Unsafe.As<TopologyFilter>(filter).Filter(_context, v),
                _ => filter.Filter(_context, v),
            };
            if (s != FilterStatus.Feasible) return s;
        }
        return FilterStatus.Feasible;
    }

    // The weighted sum in policy order, each term exactly what the scorer returns (the same operations in the same
    // order as the interface calls, so the sum is bit-identical; DecisionGoldenTests pins it).
    // The node-local built-ins (bin-packing, domain spread, job anti-affinity) take their inputs from one lookup of the
    // node's decision entry (PlacementContext.ScoreInputs) and compute with the scorers' own arithmetic (their static Of
    // methods), instead of one lookup per scorer.
    private double ScoreNode(in NodeView v)
    {
        if (_planStraightScore)
        {
            // Term by term what the loop below computes for the default policy, in the same order (see _planStraightScore).
            var w = _weights;
            _context.ScoreInputs(v, true, out var tentativeUse, out int tasksOnNode, out int tasksInDomain);
            double sum = 0;
            sum += w[0] * BinPackingScorer.Of(v.Allocated + tentativeUse + _context.Job.PerTask, v.Capacity);
            sum += w[1] * FailureDomainSpreadScorer.Of(tasksInDomain);
            sum += w[2] * JobAntiAffinityScorer.Of(tasksOnNode);
            sum += _planGroupTerm;
            sum += _planTopologyTerm;
            return sum;
        }
        var scorers = _scorers;
        var kinds = _scorerKinds;
        var weights = _weights;
        bool haveInputs = false;
        ResourceVector tentative = default;
        int onNode = 0, inDomain = 0;
        double s = 0;
        for (int i = 0; i < scorers.Length && i < kinds.Length; i++)
        {
            var scorer = scorers[i];
            var kind = kinds[i];
            if (!haveInputs && kind is PluginKind.BinPacking or PluginKind.DomainSpread or PluginKind.JobAntiAffinity)
            {
                _context.ScoreInputs(v, _scoresReadDomain, out tentative, out onNode, out inDomain);
                haveInputs = true;
            }
            double x = kind switch
            {
                PluginKind.BinPacking => BinPackingScorer.Of(v.Allocated + tentative + _context.Job.PerTask, v.Capacity),
                PluginKind.DomainSpread => FailureDomainSpreadScorer.Of(inDomain),
                PluginKind.JobAntiAffinity => JobAntiAffinityScorer.Of(onNode),
                PluginKind.GroupSpread => Unsafe.As<GroupSpreadScorer>(scorer).Score(_context, v),
                PluginKind.TopologyScorer => Unsafe.As<TopologyScorer>(scorer).Score(_context, v),
                _ => scorer.Score(_context, v),
            };
            s += weights[i] * x;
        }
        return s;
    }

    private static void RecordTop(PlanStats stats, NodeId node, double score)
    {
        var top = stats.TopScores;
        int i = top.Count;
        while (i > 0 && top[i - 1].Score < score) i--;
        if (i >= 3) return;
        top.Insert(i, (node, score));
        if (top.Count > 3) top.RemoveAt(3);
    }
}
