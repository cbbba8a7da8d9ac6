using System.Globalization;
using System.Text;
using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>One task's choice in a decision (recorded or replayed).</summary>
/// <param name="TaskIndex">The task's index in its job.</param>
/// <param name="Node">The chosen node id, or null when no feasible node was found.</param>
/// <param name="NodeName">The chosen node's name.</param>
/// <param name="Score">Its combined score.</param>
public readonly record struct DecisionChoice(int TaskIndex, NodeId? Node, string? NodeName, double Score);

/// <summary>
/// What a placement decision chose and why, in a form both a recorded decision and its replay produce, so they can be
/// compared field by field (<see cref="Differences"/>): the policy revision, each task's node and score, the nodes
/// considered and feasible, and the rejections by filter reason.
/// </summary>
public sealed class DecisionFacts
{
    /// <summary>Creates the facts of a decision.</summary>
    public DecisionFacts(int policyRevision, IReadOnlyList<DecisionChoice> choices, int nodesConsidered, int feasible, IReadOnlyDictionary<string, int> filtered)
    {
        PolicyRevision = policyRevision;
        Choices = choices ?? throw new ArgumentNullException(nameof(choices));
        NodesConsidered = nodesConsidered;
        Feasible = feasible;
        Filtered = filtered ?? throw new ArgumentNullException(nameof(filtered));
    }

    /// <summary>The policy revision the decision used.</summary>
    public int PolicyRevision { get; }

    /// <summary>Each task's choice, in task order (tasks with no feasible node have a null node).</summary>
    public IReadOnlyList<DecisionChoice> Choices { get; }

    /// <summary>Distinct nodes read.</summary>
    public int NodesConsidered { get; }

    /// <summary>Feasible candidates found.</summary>
    public int Feasible { get; }

    /// <summary>Rejections by filter reason (the <see cref="FilterStatus"/> name).</summary>
    public IReadOnlyDictionary<string, int> Filtered { get; }

    /// <summary>The facts of a record the scheduler kept.</summary>
    public static DecisionFacts From(DecisionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var filtered = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (reason, count) in record.FilteredByReason) filtered[reason.ToString()] = count;
        var choices = new List<DecisionChoice>();
        var indexes = record.Inputs?.TaskIndexes();
        if (indexes is not null)
            foreach (int i in indexes)
            {
                var t = record.ForTask(i);
                choices.Add(t is { Node: { } n } td ? new DecisionChoice(i, n, td.NodeName, td.Score) : new DecisionChoice(i, null, null, 0));
            }
        else
            foreach (var t in record.Tasks) choices.Add(new DecisionChoice(t.TaskIndex, t.Node, t.NodeName, t.Score));
        return new DecisionFacts(record.PolicyRevision, choices, record.NodesConsidered, record.Feasible, filtered);
    }

    /// <summary>
    /// How <paramref name="replayed"/> differs from these (recorded) facts, one line each; empty when the replay reached the
    /// same choice for the same reasons. Scores are compared exactly: the same code on the same inputs computes the same
    /// doubles.
    /// </summary>
    public IReadOnlyList<string> Differences(DecisionFacts replayed)
    {
        ArgumentNullException.ThrowIfNull(replayed);
        var d = new List<string>();
        if (replayed.PolicyRevision != PolicyRevision)
            d.Add(string.Create(CultureInfo.InvariantCulture, $"policy: recorded r{PolicyRevision}, replayed under r{replayed.PolicyRevision}"));
        int n = Math.Max(Choices.Count, replayed.Choices.Count);
        for (int i = 0; i < n; i++)
        {
            DecisionChoice? a = i < Choices.Count ? Choices[i] : null, b = i < replayed.Choices.Count ? replayed.Choices[i] : null;
            if (a == b) continue;
            d.Add($"task {(a ?? b)!.Value.TaskIndex}: recorded {Describe(a)}, replayed {Describe(b)}");
        }
        if (NodesConsidered != replayed.NodesConsidered) d.Add(string.Create(CultureInfo.InvariantCulture, $"nodes considered: recorded {NodesConsidered}, replayed {replayed.NodesConsidered}"));
        if (Feasible != replayed.Feasible) d.Add(string.Create(CultureInfo.InvariantCulture, $"feasible: recorded {Feasible}, replayed {replayed.Feasible}"));
        var reasons = new SortedSet<string>(Filtered.Keys, StringComparer.Ordinal);
        reasons.UnionWith(replayed.Filtered.Keys);
        foreach (var r in reasons)
        {
            int x = Filtered.TryGetValue(r, out int p) ? p : 0, y = replayed.Filtered.TryGetValue(r, out int q) ? q : 0;
            if (x != y) d.Add(string.Create(CultureInfo.InvariantCulture, $"filtered {r}: recorded {x}, replayed {y}"));
        }
        return d;
    }

    private static string Describe(DecisionChoice? c) => c switch
    {
        null => "nothing",
        { Node: { } n } x => string.Create(CultureInfo.InvariantCulture, $"{n} ({x.NodeName}) score {x.Score:R}"),
        _ => "no feasible node",
    };

    /// <summary>One line per choice, then the counts.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"policy r{PolicyRevision}; nodes considered {NodesConsidered}, feasible {Feasible}");
        foreach (var (r, c) in Filtered) sb.Append(CultureInfo.InvariantCulture, $"; filtered {c} x {r}");
        foreach (var c in Choices) sb.Append("; task ").Append(c.TaskIndex).Append(" -> ").Append(Describe(c));
        return sb.ToString();
    }
}

/// <summary>The result of <see cref="DecisionReplay.Replay"/>: what the real pipeline chose on the reconstructed state.</summary>
public sealed class DecisionReplayOutcome
{
    internal DecisionReplayOutcome(DecisionFacts facts, int[] probes, IReadOnlyList<string> notes, long snapshotVersion, bool preemptionNotReplayed)
    {
        PreemptionNotReplayed = preemptionNotReplayed;
        Facts = facts;
        Probes = probes;
        Notes = notes;
        ReconstructedVersion = snapshotVersion;
    }

    /// <summary>The replayed decision's choices and reasons.</summary>
    public DecisionFacts Facts { get; }

    /// <summary>The node ids the replay read while sampling, in order.</summary>
    public IReadOnlyList<int> Probes { get; }

    /// <summary>
    /// What the replay could not reproduce exactly or what it read differently (a node the original never read, a
    /// preemption the original may have planned); empty for a faithful replay.
    /// </summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>
    /// True when a task found no feasible node, or a feasible node only outside the job's first preferred region, and the
    /// job could preempt: the original then asked the preemption planner,
    /// which reads the live cell's victims and is not replayed. If the planner found victims the recorded choice names a
    /// node the replay cannot reach, and the comparison shows it; if it found none, the choice is the same.
    /// </summary>
    public bool PreemptionNotReplayed { get; }

    /// <summary>The version of the reconstructed cell the replay planned on (not the original's: a private cell).</summary>
    public long ReconstructedVersion { get; }
}

/// <summary>
/// Re-runs one recorded placement decision (issue 18, "decision replay from the log"; docs/testing.md): rebuilds, in a
/// private <see cref="Cell"/>, exactly the nodes the decision read (spec, allocated resources and status at the snapshot
/// version it read), answers the live group-count reads it made with the recorded counts, and runs the real
/// <see cref="PlacementPipeline"/> with the given policy and the decision's random stream (<see cref="DecisionRandom"/>
/// at its recorded seed). With the recorded policy revision the replay must reach the recorded choice; with another one
/// it shows what the policy change would have chosen.
/// </summary>
/// <remarks>
/// Nodes the decision did not read are rebuilt as down placeholders without bindings: the sampling draws node ids, so
/// the reconstruction keeps every id, but their state never influenced the decision. If a replay reads one (its probe
/// sequence leaves the recorded one), the replay says so in <see cref="DecisionReplayOutcome.Notes"/>: the inputs do not
/// describe that decision. Preemption planning reads the live cell's victims and is not replayed
/// (<see cref="DecisionReplayOutcome.PreemptionNotReplayed"/>).
/// </remarks>
public static class DecisionReplay
{
    /// <summary>Replays <paramref name="inputs"/> under <paramref name="policy"/> with the recorded tenant usage and quota.</summary>
    public static DecisionReplayOutcome Replay(DecisionInputs inputs, CompiledPolicy policy, ResourceVector tenantUsage, ResourceVector? tenantQuota)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(policy);
        var notes = new List<string>();
        var byId = new Dictionary<int, DecisionNodeInput>();
        foreach (var n in inputs.Nodes) byId[n.Id.Value] = n;
        using var cell = new Cell(new CellOptions { Name = "decision-replay" });
        for (int id = 0; id < inputs.NodeCount; id++)
        {
            var spec = byId.TryGetValue(id, out var rn) && rn.Spec is { } s ? s : new NodeSpec(string.Create(CultureInfo.InvariantCulture, $"~unread-{id}"), new ResourceVector(1, 1));
            var st = cell.AddNode(spec, out var nid);
            if (st != NodeOpStatus.Ok || nid.Value != id)
                throw new InvalidOperationException($"cannot rebuild node {id} ({spec.Name}): {st}");
        }
        var lease = cell.AcquireLease("replay", TimeSpan.FromDays(365)).Lease;
        var tx = new Transaction(lease);
        foreach (var n in inputs.Nodes)
        {
            if (n.Read != SnapshotRead.Ok || n.Allocated.IsZero) continue;
            // One binding holding what the node had allocated: filters and scorers read the node's sums, not its tasks.
            tx.Add(new Claim(new TaskId(new JobId(1), n.Id.Value), n.Id, n.Allocated, 0));
        }
        if (tx.Count > 0)
        {
            var r = cell.Commit(tx);
            if (r.AppliedCount != tx.Count) notes.Add($"could not rebuild every node's allocation ({r.Status}): a node was over its capacity");
        }
        for (int id = 0; id < inputs.NodeCount; id++)
        {
            if (!byId.TryGetValue(id, out var n)) { cell.SetNodeStatus(new NodeId(id), NodeStatus.Down); continue; }
            if (n.Read != SnapshotRead.Ok) { cell.RemoveNode(n.Id, out _); continue; }
            if (n.Status != NodeStatus.Schedulable) cell.SetNodeStatus(n.Id, n.Status);
            if (n.TaskCount > 0 && n.Allocated.IsZero) notes.Add($"node {n.Id} had {n.TaskCount} binding(s) holding nothing; rebuilt without them");
        }
        var view = new ReplayView(cell, inputs.GroupReads, tenantUsage, tenantQuota) { Job = inputs.Job.Id };
        var pipeline = new PlacementPipeline(new PolicySource(policy));
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        var snapshot = cell.Snapshot();
        var taskIndexes = inputs.TaskIndexes();
        var boundElsewhere = new List<NodeId>();
        foreach (var (node, tasks) in inputs.BoundElsewhere)
            for (int i = 0; i < tasks; i++) boundElsewhere.Add(new NodeId(node));
        pipeline.Plan(inputs.Job, taskIndexes, snapshot, (tenantUsage, tenantQuota), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(boundElsewhere),
            new DecisionRandom(inputs.Seed), planned, stats, null, view);

        var probes = new int[pipeline.ProbedNodes.Count];
        for (int i = 0; i < probes.Length; i++) probes[i] = pipeline.ProbedNodes[i];
        for (int i = 0; i < probes.Length; i++)
        {
            if (i < inputs.Probes.Length && probes[i] == inputs.Probes[i]) continue;
            notes.Add(i < inputs.Probes.Length
                ? $"the replay's sampling left the recorded one at probe {i}: it read node {probes[i]}, the decision read node {inputs.Probes[i]}"
                : $"the replay read more nodes than the decision (probe {i}: node {probes[i]})");
            break;
        }
        if (probes.Length < inputs.Probes.Length && probes.AsSpan().SequenceEqual(inputs.Probes.AsSpan(0, probes.Length)))
            notes.Add($"the replay read {probes.Length} nodes, the decision {inputs.Probes.Length}");

        var byTask = new Dictionary<int, PlannedClaim>();
        foreach (var p in planned) byTask[p.TaskIndex] = p;
        var choices = new List<DecisionChoice>(taskIndexes.Length);
        foreach (int t in taskIndexes)
            choices.Add(byTask.TryGetValue(t, out var p) ? new DecisionChoice(t, p.Node.Id, p.Node.Spec.Name, p.Score) : new DecisionChoice(t, null, null, 0));
        var filtered = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 1; i < stats.FilteredByReason.Length; i++)
            if (stats.FilteredByReason[i] > 0) filtered[((FilterStatus)i).ToString()] = stats.FilteredByReason[i];
        return new DecisionReplayOutcome(new DecisionFacts(stats.PolicyRevision, choices, stats.NodesConsidered, stats.Feasible, filtered), probes, notes, snapshot.Version,
            inputs.MayPreempt && (stats.Unplaceable > 0 || stats.PreferenceFallbacks > 0));
    }

    /// <summary>
    /// The reconstructed cell as the pipeline's view: snapshots come from it; group-count reads are answered with the
    /// counts the decision read (in order per node; the view was live, so a node read twice may have changed between).
    /// </summary>
    private sealed class ReplayView : ICellView
    {
        private readonly Cell _cell;
        private readonly Dictionary<int, Queue<int>> _members = new();
        private readonly Dictionary<int, int> _last = new();
        private readonly ResourceVector _usage;
        private readonly ResourceVector? _quota;

        public ReplayView(Cell cell, (int Node, int Members)[] reads, ResourceVector usage, ResourceVector? quota)
        {
            _cell = cell;
            _usage = usage;
            _quota = quota;
            foreach (var (node, members) in reads)
            {
                if (!_members.TryGetValue(node, out var q)) _members[node] = q = new Queue<int>();
                q.Enqueue(members);
            }
        }

        public string Name => _cell.Name;

        public CellSnapshot Snapshot() => _cell.Snapshot();

        public bool TenantExists(TenantId tenant) => true;

        public ResourceVector? LargestNodeCapacity => _cell.LargestNodeCapacity;

        public (ResourceVector Usage, ResourceVector? Quota) GetTenantUsage(TenantId tenant) => (_usage, _quota);

        public int CopyAllocationsOnNode(NodeId id, List<Allocation> into)
        {
            // Only the count matters to the pipeline (members of the job's group): answer with that many bindings of other
            // tasks of the decision's own job, which are in its group whatever the group's key shift.
            int n = 0;
            if (_members.TryGetValue(id.Value, out var q) && q.Count > 0) { n = q.Dequeue(); _last[id.Value] = n; }
            else if (_last.TryGetValue(id.Value, out int last)) n = last;
            for (int i = 0; i < n; i++) into.Add(new Allocation(new TaskId(Job, 1_000_000 + i), id, default, default, 0, 1));
            return n;
        }

        public JobId Job { get; init; }
    }
}
