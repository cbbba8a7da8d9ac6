using Omega.Cells;

namespace Omega.Scheduling.Pipeline;

/// <summary>
/// What filters and scorers see about the task being placed: its job (request, constraints, priority, tenant) and the
/// scheduler's tentative state for this decision. One context is reused for all tasks of a job (its equivalence class).
/// </summary>
public sealed class PlacementContext
{
    // Per-decision bookkeeping per node (issue 14, decision cost): tentative resources, the job's task count and the
    // node's failure-domain slot, in one entry of a small open-addressed table keyed by node id. An entry is live for
    // this decision only when its Stamp equals _epoch, so a new decision empties the table by one increment (no clearing;
    // the array is cleared only when the epoch wraps). A decision touches tens of nodes, so the table stays a few lines
    // in L1: a fit check or a score reads it without the hashing of a Dictionary<int, T> and without the cache miss of
    // an array indexed by node id (10k nodes × 48 B, measured slower than the dictionary it replaced). Load factor ≤ 1/2,
    // linear probing, Fibonacci hashing of the id.
    private struct NodeScratch
    {
        public int Stamp;
        public int Node;
        public int JobTasks;
        public int DomainSlot; // -1: not interned yet in this decision
        public ResourceVector Tentative;
    }

    private NodeScratch[] _nodes = new NodeScratch[64];
    private int _shift = 32 - 6;
    private int _used;
    private int _epoch;
    // Failure domains seen by this decision, interned to dense slots (0, 1, ... in order of first use), so the job's
    // per-domain task count is an array read. Equal strings get the same slot (ordinal), whether or not they are the
    // same instance. Two levels (issue 14, "dense interned domains"): a domain string has a dense id for the pipeline's
    // lifetime (_domainIds, hashed once per distinct string instance per node, not per decision), each node id remembers
    // the string instance it last had and its id (_domainOfNode: one reference compare instead of hashing the string),
    // and this decision's slot of an id is an epoch-stamped array entry (no dictionary to clear per decision).
    private struct DomainOfNode
    {
        public string? Domain;
        public int Id;
    }

    private readonly Dictionary<string, int> _domainIds = new(StringComparer.Ordinal);
    private DomainOfNode[] _domainOfNode = [];
    private int[] _slotStampOfId = new int[16];
    private int[] _slotOfId = new int[16];
    private int _slotCount;
    private int[] _jobTasksInDomainSlot = new int[16];
    // Distinct domain strings kept before the persistent ids start over (at the start of a decision): bounds the memory
    // a cell whose domain names churn could make the pipeline hold.
    private const int MaxDomainIds = 1 << 16;
    // Node ids up to this get a remembered domain; larger ones (not produced by a real cell) are only hashed.
    private const int MaxRememberedNodeId = 1 << 24;

    // Constraint-group members (PlacementGroup): live bindings read lock-free through the view, plus this decision's
    // tentative placements. Per node on first use (one seqlock copy of the node's bindings); per domain once per
    // decision, and only for jobs whose group has a domain scope (a scan of every occupied node: O(cluster), paid by the
    // few jobs that ask for it). Advisory: the cell re-checks hard anti-affinity at commit.
    private readonly Dictionary<int, int> _groupOnNode = new();
    private readonly Dictionary<string, int> _groupInDomain = new(StringComparer.Ordinal);
    // Group members per region or zone (the job's topology spread), loaded once per decision like the domains.
    private readonly Dictionary<string, int> _groupInTopology = new(StringComparer.Ordinal);
    private bool _topologyLoaded;
    private readonly List<Allocation> _scratch = new();
    // Every live group count this decision read through the view, in order (issue 18: the decision's read set).
    private readonly List<(int Node, int Members)> _groupReads = new();
    private ICellView? _view;
    private CellSnapshot _snapshot;
    private bool _domainsLoaded;

    /// <summary>The job whose tasks are being placed.</summary>
    public JobSpec Job { get; private set; } = null!;

    /// <summary>The tenant's usage when the decision started, and its quota (null = none).</summary>
    public (ResourceVector Usage, ResourceVector? Quota) Tenant { get; internal set; }

    /// <summary>Resources this decision has already tentatively placed in the tenant (for quota checks across the job's tasks).</summary>
    public ResourceVector TentativeTenantUse { get; internal set; }

    internal void Reset(JobSpec job)
    {
        Job = job;
        if (++_epoch == int.MaxValue)
        {
            Array.Clear(_nodes);
            Array.Clear(_slotStampOfId);
            _epoch = 1;
        }
        _used = 0;
        _slotCount = 0;
        if (_domainIds.Count > MaxDomainIds)
        {
            _domainIds.Clear();
            Array.Clear(_domainOfNode);
            Array.Clear(_slotStampOfId);
        }
        TentativeTenantUse = default;
        _groupOnNode.Clear();
        _groupInDomain.Clear();
        _domainsLoaded = false;
        _groupInTopology.Clear();
        _topologyLoaded = false;
        _view = null;
        _groupReads.Clear();
    }

    /// <summary>
    /// The live group-member counts this decision read through the cell view (node id, members), in the order read. The
    /// view is live, not tied to the snapshot, so a decision record keeps these counts to replay the decision exactly.
    /// </summary>
    public IReadOnlyList<(int Node, int Members)> GroupReads => _groupReads;

    internal void BeginGroup(ICellView? view, CellSnapshot snapshot)
    {
        _view = view;
        _snapshot = snapshot;
    }

    /// <summary>Members of the job's constraint group on <paramref name="node"/> (live bindings and this decision's placements).</summary>
    public int GroupMembersOn(in NodeView node)
    {
        if (Job.Group.IsNone) return 0;
        if (_groupOnNode.TryGetValue(node.Id.Value, out int n)) return n;
        n = CountLive(node.Id);
        _groupOnNode[node.Id.Value] = n;
        return n;
    }

    /// <summary>Members of the job's constraint group in failure domain <paramref name="domain"/>.</summary>
    public int GroupMembersIn(string domain)
    {
        if (Job.Group.IsNone) return 0;
        EnsureDomains();
        return _groupInDomain.TryGetValue(domain, out int n) ? n : 0;
    }

    /// <summary>True when the job's hard anti-affinity admits one more task of its group on <paramref name="node"/>.</summary>
    public bool GroupAllows(in NodeView node)
    {
        switch (Job.Group.AntiAffinity)
        {
            case PlacementScope.Node: return GroupMembersOn(node) == 0;
            case PlacementScope.FailureDomain:
                string d = node.Spec.FailureDomain;
                return d.Length == 0 ? GroupMembersOn(node) == 0 : GroupMembersIn(d) == 0;
            default: return true;
        }
    }

    /// <summary>Counts a member on a node without reading the view (the job's own earlier tasks, when there is no view).</summary>
    internal void NoteGroupMember(in NodeView node)
    {
        var spread = Job.Topology.Spread;
        if (spread != TopologySpread.None && SpreadsByTopology)
        {
            string key = spread == TopologySpread.Region ? node.Spec.Region : node.Spec.Zone;
            if (key.Length > 0) _groupInTopology[key] = GroupMembersInTopology(spread, key) + 1;
        }
        if (Job.Group.IsNone) return;
        _groupOnNode[node.Id.Value] = GroupMembersOn(node) + 1;
        if (NeedsDomains && node.Spec.FailureDomain.Length > 0) _groupInDomain[node.Spec.FailureDomain] = GroupMembersIn(node.Spec.FailureDomain) + 1;
    }

    // The topology spread counts the members of the job's group key, whatever the group's node and domain scopes: a
    // workload's replica jobs share a key (KeyShift > 0) and ask for "spread: Region" without any node or domain spread,
    // and gating this on Group.IsNone made that spread count nobody, so replicas bin-packed into one or two regions
    // (TopologySpreadTests, Omega.ControlPlane.Tests). A job with no group key at all (KeyShift 0, no scope) keeps the
    // old behaviour.
    private bool SpreadsByTopology => !Job.Group.IsNone || Job.Group.KeyShift > 0;

    /// <summary>
    /// Members of the job's constraint group in region (or zone) <paramref name="key"/>, for the topology spread: live
    /// bindings (one scan of the occupied nodes per decision, paid only by jobs asking for a spread) and this decision's placements.
    /// </summary>
    public int GroupMembersInTopology(TopologySpread spread, string key)
    {
        if (!SpreadsByTopology || spread == TopologySpread.None) return 0;
        if (!_topologyLoaded)
        {
            _topologyLoaded = true;
            if (_view is not null)
            {
                int count = _snapshot.NodeCount;
                for (int i = 0; i < count; i++)
                {
                    if (_snapshot.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.TaskCount == 0) continue;
                    string k = spread == TopologySpread.Region ? v.Spec.Region : v.Spec.Zone;
                    if (k.Length == 0) continue;
                    int members = CountLive(v.Id);
                    if (members > 0) _groupInTopology[k] = (_groupInTopology.TryGetValue(k, out int m) ? m : 0) + members;
                }
            }
        }
        return _groupInTopology.TryGetValue(key, out int n) ? n : 0;
    }

    private bool NeedsDomains => Job.Group.AntiAffinity == PlacementScope.FailureDomain || Job.Group.Spread == PlacementScope.FailureDomain;

    private int CountLive(NodeId node)
    {
        if (_view is null) return 0;
        _scratch.Clear();
        _view.CopyAllocationsOnNode(node, _scratch);
        var group = Job.Group;
        var self = Job.Id;
        int n = 0;
        for (int i = 0; i < _scratch.Count; i++)
            if (group.SameGroup(_scratch[i].Task.Job, self)) n++;
        _groupReads.Add((node.Value, n));
        return n;
    }

    private void EnsureDomains()
    {
        if (_domainsLoaded) return;
        _domainsLoaded = true;
        if (_view is null) return;
        int count = _snapshot.NodeCount;
        for (int i = 0; i < count; i++)
        {
            if (_snapshot.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.TaskCount == 0) continue;
            string d = v.Spec.FailureDomain;
            if (d.Length == 0) continue;
            int members = CountLive(v.Id);
            if (members > 0) _groupInDomain[d] = (_groupInDomain.TryGetValue(d, out int m) ? m : 0) + members;
        }
    }

    /// <summary>Resources this decision has tentatively placed on a node (not yet committed).</summary>
    public ResourceVector TentativeOn(NodeId node)
    {
        int i = Find(node.Value);
        return i >= 0 ? _nodes[i].Tentative : default;
    }

    /// <summary>How many of this job's tasks this decision (and earlier attempts' bindings) put on a node.</summary>
    public int JobTasksOn(NodeId node)
    {
        int i = Find(node.Value);
        return i >= 0 ? _nodes[i].JobTasks : 0;
    }

    // The table index of node `id`'s live entry, or -1.
    private int Find(int id)
    {
        var nodes = _nodes;
        int mask = nodes.Length - 1;
        int epoch = _epoch;
        for (int i = (int)(((uint)id * 0x9E3779B9u) >> _shift); ; i = (i + 1) & mask)
        {
            ref var e = ref nodes[i];
            if (e.Stamp != epoch) return -1;
            if (e.Node == id) return i;
        }
    }

    /// <summary>How many of this job's tasks are in a failure domain.</summary>
    public int JobTasksIn(string failureDomain)
        => _domainIds.TryGetValue(failureDomain, out int id) && _slotStampOfId[id] == _epoch ? _jobTasksInDomainSlot[_slotOfId[id]] : 0;

    /// <summary>
    /// How many of this job's tasks are in <paramref name="node"/>'s failure domain: the same value as
    /// <see cref="JobTasksIn(string)"/> of its domain, without hashing the domain string again after the node's first use
    /// in this decision.
    /// </summary>
    public int JobTasksInDomainOf(in NodeView node)
    {
        // Slot first: interning may grow the counts array, and `arr[f()]` would read the array before calling f.
        int slot = DomainSlotOf(node.Id, node.Spec.FailureDomain);
        return _jobTasksInDomainSlot[slot];
    }

    /// <summary>
    /// The dense slot of <paramref name="node"/>'s failure domain in this decision: two nodes have the same slot exactly
    /// when their domain strings are equal (ordinal). Valid until the next decision.
    /// </summary>
    internal int DomainSlotOf(NodeId node, string failureDomain) => DomainSlotOf(ref Entry(node), failureDomain);

    // The domain slot of a node whose entry the caller already holds (interning never moves node entries).
    private int DomainSlotOf(ref NodeScratch e, string failureDomain)
    {
        if (e.DomainSlot >= 0) return e.DomainSlot;
        int id = DomainIdOf(e.Node, failureDomain);
        int slot;
        if (_slotStampOfId[id] == _epoch) slot = _slotOfId[id];
        else
        {
            slot = _slotCount++;
            _slotStampOfId[id] = _epoch;
            _slotOfId[id] = slot;
            if (slot == _jobTasksInDomainSlot.Length) Array.Resize(ref _jobTasksInDomainSlot, slot * 2);
            _jobTasksInDomainSlot[slot] = 0;
        }
        return e.DomainSlot = slot;
    }

    // The pipeline-lifetime id of `failureDomain` (equal ids exactly for ordinally equal strings). A node's domain string
    // is immutable, and the remembered instance is compared by reference, so a node given a new spec with another domain
    // string is looked up again: a remembered id is never stale.
    private int DomainIdOf(int node, string failureDomain)
    {
        bool remember = (uint)node <= MaxRememberedNodeId;
        if (remember)
        {
            if (node >= _domainOfNode.Length)
                Array.Resize(ref _domainOfNode, Math.Max(node + 1, Math.Max(64, _domainOfNode.Length * 2)));
            ref var known = ref _domainOfNode[node];
            if (ReferenceEquals(known.Domain, failureDomain)) return known.Id;
        }
        if (!_domainIds.TryGetValue(failureDomain, out int id))
        {
            id = _domainIds.Count;
            _domainIds.Add(failureDomain, id);
            if (id == _slotStampOfId.Length)
            {
                Array.Resize(ref _slotStampOfId, id * 2);
                Array.Resize(ref _slotOfId, id * 2);
            }
        }
        if (remember) _domainOfNode[node] = new DomainOfNode { Domain = failureDomain, Id = id };
        return id;
    }

    // This decision's entry of a node, created on its first use in the decision.
    private ref NodeScratch Entry(NodeId node)
    {
        int id = node.Value;
        int found = Find(id);
        if (found >= 0) return ref _nodes[found];
        // Grow before inserting, so the reference returned stays valid until the next insert.
        if ((_used + 1) * 2 > _nodes.Length) Grow();
        var nodes = _nodes;
        int mask = nodes.Length - 1;
        int i = (int)(((uint)id * 0x9E3779B9u) >> _shift);
        while (nodes[i].Stamp == _epoch) i = (i + 1) & mask;
        _used++;
        ref var e = ref nodes[i];
        e.Stamp = _epoch;
        e.Node = id;
        e.JobTasks = 0;
        e.DomainSlot = -1;
        e.Tentative = default;
        return ref e;
    }

    private void Grow()
    {
        var old = _nodes;
        _nodes = new NodeScratch[old.Length * 2];
        _shift--;
        int mask = _nodes.Length - 1;
        foreach (ref readonly var e in old.AsSpan())
        {
            if (e.Stamp != _epoch) continue;
            int i = (int)(((uint)e.Node * 0x9E3779B9u) >> _shift);
            while (_nodes[i].Stamp == _epoch) i = (i + 1) & mask;
            _nodes[i] = e;
        }
    }

    /// <summary>Records a tentative placement so later tasks of the same decision see it.</summary>
    internal void Place(in NodeView node, ResourceVector request)
    {
        // One table lookup for the tentative use, the job's task count and the domain slot (issue 14, decision cost):
        // the same three updates NoteJobTask makes, without finding the entry two more times. The reference stays valid
        // across DomainSlotOf: interning grows the per-slot counts array, never the node table.
        ref var e = ref Entry(node.Id);
        e.Tentative += request;
        e.JobTasks++;
        int slot = DomainSlotOf(ref e, node.Spec.FailureDomain); // before reading the array (interning may grow it)
        _jobTasksInDomainSlot[slot]++;
        TentativeTenantUse += request;
        NoteGroupMember(node);
    }

    /// <summary>
    /// What the built-in bin-packing, domain-spread and job anti-affinity scorers read about <paramref name="node"/>, from
    /// one lookup of its decision entry instead of one per scorer: exactly <see cref="TentativeOn"/>,
    /// <see cref="JobTasksOn"/> and <see cref="JobTasksInDomainOf"/> (which creates the entry and interns the domain, as
    /// this does when <paramref name="domain"/> is set; without it the entry is only looked up, as TentativeOn does).
    /// </summary>
    internal void ScoreInputs(in NodeView node, bool domain, out ResourceVector tentative, out int jobTasksOnNode, out int jobTasksInDomain)
    {
        if (domain)
        {
            ref var e = ref Entry(node.Id);
            int slot = DomainSlotOf(ref e, node.Spec.FailureDomain);
            tentative = e.Tentative;
            jobTasksOnNode = e.JobTasks;
            jobTasksInDomain = _jobTasksInDomainSlot[slot];
            return;
        }
        int i = Find(node.Id.Value);
        tentative = i >= 0 ? _nodes[i].Tentative : default;
        jobTasksOnNode = i >= 0 ? _nodes[i].JobTasks : 0;
        jobTasksInDomain = 0;
    }

    /// <summary>Records a task of this job already bound on a node (from an earlier attempt), for spread and anti-affinity.</summary>
    internal void NoteJobTask(NodeId node, string failureDomain)
    {
        Entry(node).JobTasks++;
        int slot = DomainSlotOf(node, failureDomain); // before reading the array (interning may grow it)
        _jobTasksInDomainSlot[slot]++;
    }
}
