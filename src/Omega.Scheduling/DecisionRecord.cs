using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>What one decision did for one task.</summary>
/// <param name="TaskIndex">The task's index in its job.</param>
/// <param name="Node">The chosen node, or null when nothing feasible was found.</param>
/// <param name="NodeName">The chosen node's name.</param>
/// <param name="Score">The chosen node's combined score.</param>
/// <param name="Claim">The commit's verdict on this task's claim, or null when no claim was made.</param>
/// <param name="Victims">Tasks preempted for it, if any.</param>
public readonly record struct TaskDecision(int TaskIndex, NodeId? Node, string? NodeName, double Score, ClaimStatus? Claim, TaskId[]? Victims);

/// <summary>
/// Everything needed to reconstruct one placement decision (design.md §4): which job and generation, which scheduler and
/// token, how long it queued, which snapshot and policy, what was considered and filtered and why, the best scores, what
/// was chosen, what the commit said and why, and which retry this was.
/// </summary>
public sealed record DecisionRecord(
    JobId Job,
    int JobGeneration,
    int Attempt,
    string Scheduler,
    int Worker,
    FencingToken Token,
    TimeSpan QueueTime,
    long SnapshotVersion,
    int PolicyRevision,
    int NodesConsidered,
    int Feasible,
    IReadOnlyDictionary<FilterStatus, int> FilteredByReason,
    IReadOnlyList<(NodeId Node, double Score)> TopScores,
    IReadOnlyList<TaskDecision> Tasks,
    TransactionStatus? CommitStatus,
    long CommitVersion,
    TimeSpan DecisionTime,
    TimeSpan CommitTime,
    DateTimeOffset At,
    string Outcome)
{
    /// <summary>
    /// Tasks the decision covered but made no claim for (nothing feasible), as half-open index ranges
    /// <c>[start0, end0, start1, end1, ...]</c>; they have no entry in <see cref="Tasks"/>, so a record's size follows
    /// the claims it made, not the job's task count.
    /// </summary>
    public int[]? UnclaimedRanges { get; init; }

    /// <summary>The workload (and generation, slot) the job backs, or null for a job submitted directly.</summary>
    public JobOrigin? Origin { get; init; }

    /// <summary>The tenant's usage when the decision started (the quota state it was made against).</summary>
    public ResourceVector TenantUsage { get; init; }

    /// <summary>The tenant's hard quota when the decision started; null when none.</summary>
    public ResourceVector? TenantQuota { get; init; }

    /// <summary>
    /// Who acts next on the job: <c>agent</c> (bound: the node's agent starts it), <c>scheduler:KIND</c> (requeued: a
    /// worker of that kind retries), <c>workload-controller</c> (a workload's replica parked or bound: the controller
    /// observes it and retries a parked replica), or <c>operator</c> (a directly submitted job parked).
    /// </summary>
    public string NextOwner { get; init; } = "";

    /// <summary>
    /// What the decision read, so <see cref="DecisionReplay"/> can re-run it on a reconstruction of exactly that state: the
    /// seed of its random stream, the nodes it read as the snapshot showed them, the live group counts it read, the job.
    /// Null for records built without it (a worker never leaves it out).
    /// </summary>
    public DecisionInputs? Inputs { get; init; }

    /// <summary>Entries this record holds (what it costs in the log's budget).</summary>
    internal int Cost => Tasks.Count + (UnclaimedRanges?.Length ?? 0) / 2 + 1;

    /// <summary>This record's entry for one task, if the decision covered it.</summary>
    public TaskDecision? ForTask(int index)
    {
        foreach (var t in Tasks)
            if (t.TaskIndex == index) return t;
        if (UnclaimedRanges is { } r)
            for (int i = 0; i + 1 < r.Length; i += 2)
                if (index >= r[i] && index < r[i + 1]) return new TaskDecision(index, null, null, 0, null, null);
        return null;
    }

    /// <summary>A multi-line, human-readable explanation (what <c>omega explain</c> prints).</summary>
    public string Explain(int? taskIndex = null)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"job {Job} generation {JobGeneration}, attempt {Attempt}, scheduler {Scheduler} (worker {Worker}, token {Token})");
        if (Origin is { } o) sb.AppendLine($"  workload {o.Tenant}/{o.Workload} generation {o.Generation}, replica slot {o.Slot}");
        sb.AppendLine($"  queued {QueueTime.TotalMilliseconds:0.###} ms; decided on snapshot v{SnapshotVersion} with policy r{PolicyRevision} in {DecisionTime.TotalMilliseconds:0.###} ms");
        sb.AppendLine($"  tenant usage at decision {TenantUsage}, quota {(TenantQuota is { } q ? q.ToString() : "none")}");
        sb.AppendLine($"  nodes considered {NodesConsidered}, feasible {Feasible}");
        foreach (var (reason, count) in FilteredByReason)
            sb.AppendLine($"    filtered {count} x {reason}");
        foreach (var (node, score) in TopScores)
            sb.AppendLine($"    candidate {node} score {score:0.0}");
        if (taskIndex is { } i && ForTask(i) is { } td)
            sb.AppendLine($"  task {i}: {(td.Node is { } n ? $"chose {n} ({td.NodeName}) score {td.Score:0.0}" : "no feasible node")}{(td.Victims is { Length: > 0 } v ? $", preempting {string.Join(", ", v)}" : "")} -> {td.Claim?.ToString() ?? "no claim"}");
        sb.AppendLine($"  commit: {CommitStatus?.ToString() ?? "none"} at v{CommitVersion} in {CommitTime.TotalMilliseconds:0.###} ms; outcome: {Outcome}");
        if (taskIndex is null)
            foreach (var t in Tasks)
                sb.AppendLine($"  task {t.TaskIndex}: {(t.Node is { } n2 ? $"bind {n2} ({t.NodeName}) score {t.Score:0.0}" : "no feasible node")} -> {t.Claim?.ToString() ?? "no claim"}");
        if (NextOwner.Length > 0) sb.AppendLine($"  next owner: {NextOwner}");
        return sb.ToString();
    }
}

/// <summary>One node as a decision read it from its snapshot (and, for constraint groups, from the live view).</summary>
/// <param name="Id">The node id.</param>
/// <param name="Read">What the snapshot read returned (anything but Ok counts as a stale read).</param>
/// <param name="Spec">The node's spec as read (null unless <paramref name="Read"/> is Ok).</param>
/// <param name="Allocated">Resources allocated on it at the snapshot's version.</param>
/// <param name="Status">Its status at the snapshot's version.</param>
/// <param name="TaskCount">Bindings on it at the snapshot's version.</param>
/// <param name="GroupMembers">Live members of the job's constraint group the decision counted on it; -1 when not read.</param>
public readonly record struct DecisionNodeInput(NodeId Id, SnapshotRead Read, NodeSpec? Spec, ResourceVector Allocated, NodeStatus Status, int TaskCount, int GroupMembers);

/// <summary>
/// The inputs of one placement decision (issue 18): everything the real pipeline read, so that
/// <see cref="DecisionReplay.Replay"/> can rebuild that state and re-run the same code to the same choice.
/// </summary>
/// <param name="Seed">The seed of the decision's random stream (<see cref="DecisionRandom"/>).</param>
/// <param name="NodeCount">Node ids in the snapshot (sampling draws from 0..NodeCount-1).</param>
/// <param name="TaskRanges">The job's tasks the decision tried to place, in order, as half-open index ranges
/// <c>[start0, end0, start1, end1, ...]</c> (a record's size follows the ranges, not the job's task count).</param>
/// <param name="BoundElsewhere">Nodes holding the job's tasks bound by earlier attempts, with how many each.</param>
/// <param name="Probes">The node ids the sampling read, in order.</param>
/// <param name="Nodes">Every node the decision read (probes, group counts, earlier bindings), by id.</param>
/// <param name="GroupReads">The live group counts read through the view, in order (node id, members).</param>
/// <param name="Job">The job as submitted.</param>
/// <param name="MayPreempt">True when the decision was allowed to plan preemptions.</param>
public sealed record DecisionInputs(long Seed, int NodeCount, int[] TaskRanges, (int Node, int Tasks)[] BoundElsewhere, int[] Probes,
    DecisionNodeInput[] Nodes, (int Node, int Members)[] GroupReads, JobSpec Job, bool MayPreempt)
{
    /// <summary>The task indexes of <see cref="TaskRanges"/>, expanded, in order.</summary>
    public int[] TaskIndexes()
    {
        int n = 0;
        for (int i = 0; i + 1 < TaskRanges.Length; i += 2) n += TaskRanges[i + 1] - TaskRanges[i];
        var r = new int[n];
        int k = 0;
        for (int i = 0; i + 1 < TaskRanges.Length; i += 2)
            for (int t = TaskRanges[i]; t < TaskRanges[i + 1]; t++) r[k++] = t;
        return r;
    }

    /// <summary>Compresses task indexes into the half-open ranges of <see cref="TaskRanges"/>.</summary>
    public static int[] RangesOf(IReadOnlyList<int> indexes)
    {
        ArgumentNullException.ThrowIfNull(indexes);
        var ranges = new List<int>();
        foreach (int t in indexes)
        {
            if (ranges.Count > 0 && ranges[^1] == t) ranges[^1] = t + 1;
            else { ranges.Add(t); ranges.Add(t + 1); }
        }
        return [.. ranges];
    }
}

/// <summary>
/// Receives every decision record the <see cref="DecisionLog"/> keeps (after its sampling), for durable archiving
/// (<c>Omega.ControlPlane.DecisionArchive</c>). Called on the scheduler worker's thread, outside the log's lock: an
/// implementation must only enqueue (bounded) and return, never write to storage inline.
/// </summary>
public interface IDecisionSink
{
    /// <summary>A record was kept.</summary>
    void OnRecorded(DecisionRecord record);
}

/// <summary>
/// A bounded ring of decision records, indexed by job. Successful decisions may be sampled (1 in N) when volume demands;
/// decisions that conflicted, placed nothing or parked a job are always kept. Thread-safe; one short lock per record.
/// </summary>
public sealed class DecisionLog
{
    private readonly Lock _lock = new();
    private readonly DecisionRecord?[] _ring;
    private readonly Dictionary<JobId, DecisionRecord> _latestByJob = new();
    private readonly long _maxEntries;
    private long _next, _oldest, _entries;
    private long _seen;

    /// <summary>
    /// Creates a log keeping at most <paramref name="capacity"/> records and at most <paramref name="maxTaskEntries"/>
    /// task entries over all records (the oldest records are dropped first), so its memory has a bound whatever the
    /// size of the jobs.
    /// </summary>
    public DecisionLog(int capacity = 65_536, int sampleEvery = 1, long maxTaskEntries = 1_000_000)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sampleEvery, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTaskEntries, 1);
        _ring = new DecisionRecord?[capacity];
        SampleEvery = sampleEvery;
        _maxEntries = maxTaskEntries;
    }

    /// <summary>Task entries held now (bounded by the constructor's <c>maxTaskEntries</c>, except a single larger record).</summary>
    public long TaskEntries
    {
        get { lock (_lock) return _entries; }
    }

    /// <summary>Where kept records also go (durable archive), or null.</summary>
    public IDecisionSink? Sink { get; set; }

    /// <summary>Keep 1 in N successful decisions (1 = keep all).</summary>
    public int SampleEvery { get; }

    /// <summary>Records kept so far (including ones since overwritten).</summary>
    public long Recorded => Interlocked.Read(ref _next);

    /// <summary>True if the next successful decision would be kept; lets a worker skip building a record it would drop.</summary>
    public bool ShouldRecord(bool interesting) => interesting || SampleEvery == 1 || Interlocked.Increment(ref _seen) % SampleEvery == 0;

    /// <summary>Adds a record.</summary>
    public void Add(DecisionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        int cost = record.Cost;
        lock (_lock)
        {
            // Drop the oldest records while the ring is full or the entry budget would be exceeded (the newest record
            // is always kept, even alone above the budget: it is bounded by the job's planned claims).
            while (_oldest < _next && (_next - _oldest >= _ring.Length || _entries + cost > _maxEntries))
            {
                long slot0 = _oldest++ % _ring.Length;
                if (_ring[slot0] is { } old)
                {
                    _entries -= old.Cost;
                    if (_latestByJob.TryGetValue(old.Job, out var latest) && ReferenceEquals(latest, old)) _latestByJob.Remove(old.Job);
                    _ring[slot0] = null;
                }
            }
            _ring[_next++ % _ring.Length] = record;
            _entries += cost;
            _latestByJob[record.Job] = record;
        }
        Sink?.OnRecorded(record);
    }

    /// <summary>The latest kept record of a job.</summary>
    public DecisionRecord? ForJob(JobId job)
    {
        lock (_lock) return _latestByJob.TryGetValue(job, out var r) ? r : null;
    }

    /// <summary>The latest kept record that covered <paramref name="task"/>, searching newest first.</summary>
    public DecisionRecord? ForTask(TaskId task)
    {
        lock (_lock)
        {
            if (_latestByJob.TryGetValue(task.Job, out var r) && r.ForTask(task.Index) is not null) return r;
            long count = _next - _oldest;
            for (long i = 1; i <= count; i++)
            {
                var rec = _ring[(_next - i) % _ring.Length];
                if (rec is not null && rec.Job == task.Job && rec.ForTask(task.Index) is not null) return rec;
            }
            return null;
        }
    }
}
