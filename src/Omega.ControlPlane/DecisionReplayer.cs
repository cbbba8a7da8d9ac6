using System.Globalization;
using System.Text;
using Omega.Cells;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;

namespace Omega.ControlPlane;

/// <summary>Resources in a decision record (the four dimensions of a <see cref="ResourceVector"/>).</summary>
public sealed class DecisionResources
{
    /// <summary>Milli-CPUs.</summary>
    public long Cpu { get; set; }

    /// <summary>Memory bytes.</summary>
    public long Memory { get; set; }

    /// <summary>GPUs.</summary>
    public long Gpus { get; set; }

    /// <summary>Disk bytes.</summary>
    public long Disk { get; set; }

    /// <summary>As a vector.</summary>
    public ResourceVector ToVector() => new(Cpu, Memory, Gpus, Disk);

    /// <summary>From a vector.</summary>
    public static DecisionResources From(ResourceVector v) => new() { Cpu = v.CpuMillis, Memory = v.MemoryBytes, Gpus = v.Gpus, Disk = v.DiskBytes };
}

/// <summary>A node as a kept decision read it (see <see cref="DecisionNodeInput"/>).</summary>
public sealed class DecisionNodeRecord
{
    /// <summary>The node id.</summary>
    public int Id { get; set; }

    /// <summary>The snapshot read's result (<see cref="SnapshotRead"/> as a number; 0 = Ok).</summary>
    public int Read { get; set; }

    /// <summary>The node's name.</summary>
    public string Name { get; set; } = "";

    /// <summary>Its capacity.</summary>
    public DecisionResources Capacity { get; set; } = new();

    /// <summary>Its failure domain.</summary>
    public string FailureDomain { get; set; } = "";

    /// <summary>Its labels.</summary>
    public Dictionary<string, string> Labels { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Its taints.</summary>
    public List<string> Taints { get; set; } = new();

    /// <summary>Resources allocated on it at the snapshot version.</summary>
    public DecisionResources Allocated { get; set; } = new();

    /// <summary>Its status (<see cref="NodeStatus"/> as a number).</summary>
    public int Status { get; set; }

    /// <summary>Bindings on it at the snapshot version.</summary>
    public int TaskCount { get; set; }

    /// <summary>Live members of the job's constraint group counted on it; -1 when not read.</summary>
    public int GroupMembers { get; set; } = -1;
}

/// <summary>The job of a kept decision, as the pipeline read it.</summary>
public sealed class DecisionJobRecord
{
    /// <summary>The job id.</summary>
    public long Id { get; set; }

    /// <summary>The tenant's dense id.</summary>
    public int Tenant { get; set; }

    /// <summary>Priority.</summary>
    public int Priority { get; set; }

    /// <summary>Tasks in the job.</summary>
    public int TaskCount { get; set; }

    /// <summary>Per-task request.</summary>
    public DecisionResources PerTask { get; set; } = new();

    /// <summary>All-or-nothing.</summary>
    public bool Gang { get; set; }

    /// <summary>Required node labels.</summary>
    public Dictionary<string, string> RequiredLabels { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Tolerated taints.</summary>
    public List<string> Tolerations { get; set; } = new();

    /// <summary>Display name.</summary>
    public string Name { get; set; } = "";

    /// <summary>Constraint group: key shift.</summary>
    public int GroupKeyShift { get; set; }

    /// <summary>Constraint group: anti-affinity scope (<see cref="PlacementScope"/> as a number).</summary>
    public int GroupAntiAffinity { get; set; }

    /// <summary>Constraint group: spread scope.</summary>
    public int GroupSpread { get; set; }

    /// <summary>Topology: required regions.</summary>
    public List<string> RequiredRegions { get; set; } = new();

    /// <summary>Topology: avoided regions.</summary>
    public List<string> AvoidRegions { get; set; } = new();

    /// <summary>Topology: preferred regions, best first.</summary>
    public List<string> PreferredRegions { get; set; } = new();

    /// <summary>Topology spread (<see cref="TopologySpread"/> as a number).</summary>
    public int TopologySpread { get; set; }
}

/// <summary>The inputs of a kept decision (issue 18; <see cref="DecisionInputs"/>): what it needs to be replayed.</summary>
public sealed class DecisionInputsRecord
{
    /// <summary>The seed of the decision's random stream.</summary>
    public long Seed { get; set; }

    /// <summary>Node ids in the snapshot.</summary>
    public int NodeCount { get; set; }

    /// <summary>Tasks the decision tried to place, in order, as half-open ranges [start0, end0, start1, end1, ...].</summary>
    public List<int> TaskRanges { get; set; } = new();

    /// <summary>Nodes holding the job's tasks bound earlier: node ids.</summary>
    public List<int> BoundNodes { get; set; } = new();

    /// <summary>Nodes holding the job's tasks bound earlier: how many on each (parallel to <see cref="BoundNodes"/>).</summary>
    public List<int> BoundTasks { get; set; } = new();

    /// <summary>Node ids the sampling read, in order.</summary>
    public List<int> Probes { get; set; } = new();

    /// <summary>Every node the decision read.</summary>
    public List<DecisionNodeRecord> Nodes { get; set; } = new();

    /// <summary>Live group counts read, in order: node ids.</summary>
    public List<int> GroupReadNodes { get; set; } = new();

    /// <summary>Live group counts read, in order: the counts.</summary>
    public List<int> GroupReadMembers { get; set; } = new();

    /// <summary>The job.</summary>
    public DecisionJobRecord Job { get; set; } = new();

    /// <summary>Whether the decision could plan preemptions.</summary>
    public bool MayPreempt { get; set; }

    /// <summary>The tenant's usage at decision time.</summary>
    public DecisionResources TenantUsage { get; set; } = new();

    /// <summary>The tenant's hard quota at decision time; null when none.</summary>
    public DecisionResources? TenantQuota { get; set; }

    /// <summary>Encodes a record's inputs.</summary>
    public static DecisionInputsRecord From(DecisionInputs i, ResourceVector usage, ResourceVector? quota)
    {
        ArgumentNullException.ThrowIfNull(i);
        var r = new DecisionInputsRecord
        {
            Seed = i.Seed, NodeCount = i.NodeCount, TaskRanges = [.. i.TaskRanges], Probes = [.. i.Probes], MayPreempt = i.MayPreempt,
            TenantUsage = DecisionResources.From(usage), TenantQuota = quota is { } q ? DecisionResources.From(q) : null,
        };
        foreach (var (node, tasks) in i.BoundElsewhere) { r.BoundNodes.Add(node); r.BoundTasks.Add(tasks); }
        foreach (var (node, members) in i.GroupReads) { r.GroupReadNodes.Add(node); r.GroupReadMembers.Add(members); }
        foreach (var n in i.Nodes)
        {
            var nr = new DecisionNodeRecord
            {
                Id = n.Id.Value, Read = (int)n.Read, Allocated = DecisionResources.From(n.Allocated), Status = (int)n.Status, TaskCount = n.TaskCount,
                GroupMembers = n.GroupMembers,
            };
            if (n.Spec is { } s)
            {
                nr.Name = s.Name;
                nr.Capacity = DecisionResources.From(s.Capacity);
                nr.FailureDomain = s.FailureDomain;
                foreach (var (k, v) in s.Labels) nr.Labels[k] = v;
                nr.Taints.AddRange(s.Taints);
            }
            r.Nodes.Add(nr);
        }
        var j = i.Job;
        r.Job = new DecisionJobRecord
        {
            Id = j.Id.Value, Tenant = j.Tenant.Value, Priority = j.Priority, TaskCount = j.TaskCount, PerTask = DecisionResources.From(j.PerTask), Gang = j.Gang,
            Tolerations = [.. j.Tolerations], Name = j.Name, GroupKeyShift = j.Group.KeyShift, GroupAntiAffinity = (int)j.Group.AntiAffinity,
            GroupSpread = (int)j.Group.Spread, RequiredRegions = [.. j.Topology.RequiredRegions], AvoidRegions = [.. j.Topology.AvoidRegions],
            PreferredRegions = [.. j.Topology.PreferredRegions], TopologySpread = (int)j.Topology.Spread,
        };
        foreach (var (k, v) in j.RequiredLabels) r.Job.RequiredLabels[k] = v;
        return r;
    }

    /// <summary>Decodes into the scheduler's inputs.</summary>
    public DecisionInputs ToInputs()
    {
        var nodes = new DecisionNodeInput[Nodes.Count];
        for (int k = 0; k < nodes.Length; k++)
        {
            var n = Nodes[k];
            var read = (SnapshotRead)n.Read;
            var spec = read == SnapshotRead.Ok ? new NodeSpec(n.Name, n.Capacity.ToVector(), n.FailureDomain, new Dictionary<string, string>(n.Labels, StringComparer.Ordinal), [.. n.Taints]) : null;
            nodes[k] = new DecisionNodeInput(new NodeId(n.Id), read, spec, n.Allocated.ToVector(), (NodeStatus)n.Status, n.TaskCount, n.GroupMembers);
        }
        var reads = new (int, int)[Math.Min(GroupReadNodes.Count, GroupReadMembers.Count)];
        for (int k = 0; k < reads.Length; k++) reads[k] = (GroupReadNodes[k], GroupReadMembers[k]);
        var bound = new (int, int)[Math.Min(BoundNodes.Count, BoundTasks.Count)];
        for (int k = 0; k < bound.Length; k++) bound[k] = (BoundNodes[k], BoundTasks[k]);
        var jr = Job;
        var job = new JobSpec(new JobId(jr.Id), new TenantId(jr.Tenant), jr.Priority, jr.TaskCount, jr.PerTask.ToVector(), jr.Gang,
            new Dictionary<string, string>(jr.RequiredLabels, StringComparer.Ordinal), [.. jr.Tolerations], jr.Name)
        {
            Group = new PlacementGroup((byte)jr.GroupKeyShift, (PlacementScope)jr.GroupAntiAffinity, (PlacementScope)jr.GroupSpread),
            Topology = new TopologyConstraints(jr.RequiredRegions, jr.AvoidRegions, jr.PreferredRegions, (TopologySpread)jr.TopologySpread),
        };
        return new DecisionInputs(Seed, NodeCount, [.. TaskRanges], bound, [.. Probes], nodes, reads, job, MayPreempt);
    }
}

/// <summary>One task's recorded choice.</summary>
public sealed class DecisionChoiceRecord
{
    /// <summary>The task index.</summary>
    public int Task { get; set; }

    /// <summary>The chosen node id; -1 when no feasible node was found.</summary>
    public int Node { get; set; } = -1;

    /// <summary>The chosen node's name.</summary>
    public string NodeName { get; set; } = "";

    /// <summary>Its combined score (exact: JSON keeps a double's shortest round-trip form).</summary>
    public double Score { get; set; }
}

/// <summary>The result of replaying one kept decision (<see cref="DecisionReplayer"/>).</summary>
public sealed class DecisionReplayReport
{
    internal DecisionReplayReport(Decision decision, int revision, DecisionFacts recorded, DecisionReplayOutcome? outcome, IReadOnlyList<string> differences, string? problem)
    {
        Decision = decision;
        ReplayedRevision = revision;
        Recorded = recorded;
        Outcome = outcome;
        Differences = differences;
        Problem = problem;
    }

    /// <summary>The kept record.</summary>
    public Decision Decision { get; }

    /// <summary>The policy revision the replay ran under.</summary>
    public int ReplayedRevision { get; }

    /// <summary>What the record says the decision chose and why.</summary>
    public DecisionFacts Recorded { get; }

    /// <summary>What the real pipeline chose on the reconstruction; null when it could not run (<see cref="Problem"/>).</summary>
    public DecisionReplayOutcome? Outcome { get; }

    /// <summary>How the replay differs from the record, one line each (empty: the same choice for the same reasons).</summary>
    public IReadOnlyList<string> Differences { get; }

    /// <summary>Why the replay could not run (no inputs kept, a revision gone), or null.</summary>
    public string? Problem { get; }

    /// <summary>True when the replay ran, reached the recorded choice for the same reasons, and read what the decision read.</summary>
    public bool Same => Problem is null && Differences.Count == 0 && Outcome is { Notes.Count: 0 };

    /// <summary>The report as <c>omega replay decision</c> prints it.</summary>
    public override string ToString()
    {
        var s = Decision.Spec;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"decision {Decision.Metadata.Tenant}/{Decision.Metadata.Name}: workload {s.Workload} generation {s.WorkloadGeneration} slot {s.Slot}, job {s.Job} attempt {s.Attempt}").AppendLine();
        sb.Append(CultureInfo.InvariantCulture, $"  read snapshot v{s.SnapshotVersion} with policy r{s.PolicyRevision}; tenant usage {s.TenantUsage}, quota {(s.TenantQuota.Length == 0 ? "none" : s.TenantQuota)}; outcome {s.Outcome}, commit {(s.CommitStatus.Length == 0 ? "none" : s.CommitStatus)}").AppendLine();
        if (s.Inputs is { } i)
            sb.Append(CultureInfo.InvariantCulture, $"  inputs: seed {i.Seed}, {i.NodeCount} node ids, {i.Nodes.Count} read ({string.Join(" ", i.Probes)} sampled), task ranges [{string.Join(",", i.TaskRanges)})").AppendLine();
        sb.Append("  recorded: ").AppendLine(Recorded.ToString());
        if (Problem is not null)
        {
            sb.Append("  cannot replay: ").AppendLine(Problem);
            return sb.ToString();
        }
        sb.Append("  replayed: ").AppendLine(Outcome!.Facts.ToString());
        foreach (var n in Outcome.Notes) sb.Append("  note: ").AppendLine(n);
        if (Outcome.PreemptionNotReplayed) sb.AppendLine("  note: a task found no feasible node and the job could preempt; the preemption planner (live victims) is not replayed");
        if (Differences.Count == 0 && Outcome.Notes.Count == 0)
            sb.Append(CultureInfo.InvariantCulture, $"SAME: the scheduler's code on the reconstructed state under policy r{ReplayedRevision} reaches the recorded choice for the same reasons").AppendLine();
        else
        {
            sb.Append(CultureInfo.InvariantCulture, $"DIFFERENT under policy r{ReplayedRevision}:").AppendLine();
            foreach (var d in Differences) sb.Append("  - ").AppendLine(d);
        }
        return sb.ToString();
    }
}

/// <summary>
/// Replays kept decisions from the object store (issue 18, "decision replay from the log"; docs/testing.md): finds a
/// <see cref="Decision"/> record, compiles the policy revision it used from the revision objects
/// (<see cref="PolicyRevisions"/> keeps each revision immutable as <c>default.rN</c>), and re-runs the real placement
/// pipeline on the reconstructed state with <see cref="DecisionReplay"/>. Works on a live store or on a data directory
/// opened after the server stopped (<c>omega replay decision</c>).
/// </summary>
public sealed class DecisionReplayer
{
    private readonly ObjectStore _store;
    private readonly string _policy;

    /// <summary>Creates a replayer over <paramref name="store"/> for scheduler policy <paramref name="policy"/>.</summary>
    public DecisionReplayer(ObjectStore store, string policy = PolicyRevisions.DefaultPolicy)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _policy = policy;
    }

    /// <summary>Every kept decision record, oldest first.</summary>
    public IReadOnlyList<Decision> All()
    {
        var result = new List<Decision>();
        string? after = null;
        while (true)
        {
            var page = _store.List(new ObjectFilter(Decision.KindName), 1000, after);
            foreach (var o in page.Items) if (o is Decision d) result.Add(d);
            if (page.Continue is null) break;
            after = page.Continue;
        }
        result.Sort(static (a, b) => a.Metadata.ResourceVersion.CompareTo(b.Metadata.ResourceVersion));
        return result;
    }

    /// <summary>
    /// Finds a record by id: <c>TENANT/NAME</c> or a bare <c>NAME</c> (searched in every tenant; the first by
    /// resourceVersion if several tenants hold one of that name).
    /// </summary>
    public Decision? Find(string id)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        int slash = id.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0) return _store.Get(new ObjectKey(Decision.KindName, id[..slash], id[(slash + 1)..])).Object as Decision;
        foreach (var d in All()) if (d.Metadata.Name == id) return d;
        return null;
    }

    /// <summary>The compiled policy of <paramref name="revision"/> (0: the built-in policy), or null when it is gone.</summary>
    public CompiledPolicy? PolicyAt(int revision)
    {
        if (revision == 0) return CompiledPolicy.Default;
        var obj = _store.Get<SchedulerPolicy>("", string.Create(CultureInfo.InvariantCulture, $"{_policy}.r{revision}"));
        if (obj is null) return null;
        var settings = obj.Spec.ToSettings();
        return settings.Validate() is null ? settings.Compile(revision) : null;
    }

    /// <summary>
    /// Replays <paramref name="decision"/> under the revision it recorded, or under <paramref name="policyRevision"/> to
    /// see what another policy would have chosen on the same state.
    /// </summary>
    public DecisionReplayReport Replay(Decision decision, int? policyRevision = null)
    {
        ArgumentNullException.ThrowIfNull(decision);
        var s = decision.Spec;
        var recorded = RecordedFacts(s);
        int revision = policyRevision ?? s.PolicyRevision;
        if (s.Inputs is null) return new DecisionReplayReport(decision, revision, recorded, null, [], "the record keeps no inputs (written by a release before decision replay)");
        if (PolicyAt(revision) is not { } policy) return new DecisionReplayReport(decision, revision, recorded, null, [], $"policy revision {revision} is not in the store");
        var inputs = s.Inputs.ToInputs();
        var outcome = DecisionReplay.Replay(inputs, policy, s.Inputs.TenantUsage.ToVector(), s.Inputs.TenantQuota?.ToVector());
        return new DecisionReplayReport(decision, revision, recorded, outcome, recorded.Differences(outcome.Facts), null);
    }

    /// <summary>The recorded facts of a kept record.</summary>
    public static DecisionFacts RecordedFacts(DecisionSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var choices = new List<DecisionChoice>();
        var byTask = new Dictionary<int, DecisionChoiceRecord>();
        foreach (var c in spec.Choices) byTask[c.Task] = c;
        if (spec.Inputs is { } i)
            foreach (int t in i.ToInputs().TaskIndexes())
                choices.Add(byTask.TryGetValue(t, out var c) && c.Node >= 0 ? new DecisionChoice(t, new NodeId(c.Node), c.NodeName, c.Score) : new DecisionChoice(t, null, null, 0));
        else
            foreach (var c in spec.Choices) choices.Add(c.Node >= 0 ? new DecisionChoice(c.Task, new NodeId(c.Node), c.NodeName, c.Score) : new DecisionChoice(c.Task, null, null, 0));
        return new DecisionFacts(spec.PolicyRevision, choices, spec.NodesConsidered, spec.Feasible, spec.Filtered);
    }
}
