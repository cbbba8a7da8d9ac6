using System.Diagnostics;
using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>What one call to <see cref="SchedulerWorker.Step"/> did.</summary>
public enum StepOutcome : byte
{
    /// <summary>No job was ready.</summary>
    Idle = 0,

    /// <summary>The job is fully placed.</summary>
    Placed = 1,

    /// <summary>Some tasks are still unplaced; the job was requeued for another attempt.</summary>
    Requeued = 2,

    /// <summary>The job reached its attempt limit and was parked with its reason.</summary>
    Parked = 3,

    /// <summary>The worker's lease was lost; it re-acquired one and requeued the job without counting the attempt.</summary>
    LeaseLost = 4,

    /// <summary>The job was stopped (<see cref="SchedulingEngine.StopJob"/>): dropped from the queue, and whatever this attempt bound was released.</summary>
    Stopped = 5,
}

/// <summary>
/// Where one scheduler worker's wall time went (<see cref="SchedulerWorker.Times"/>, <see cref="SchedulingEngine.GetWorkerTimes"/>).
/// Deciding + committing + other + idle is at most the wall time; the remainder is the engine loop between steps.
/// </summary>
/// <param name="Kind">The scheduler kind.</param>
/// <param name="Index">The worker's index within its kind.</param>
/// <param name="WallSeconds">Seconds since the worker's thread started (or since creation when Step is driven by a caller).</param>
/// <param name="DecidingSeconds">Snapshot to claims (busyness, useful and wasted).</param>
/// <param name="CommittingSeconds">The commit call, including any wait for the cell's commit lock.</param>
/// <param name="OtherSeconds">The rest of the steps that took a job: dequeue, job bookkeeping, metrics, decision records, requeue.</param>
/// <param name="IdleSeconds">Steps that found no ready job, and the back-off after them.</param>
/// <param name="Steps">Steps that took a job.</param>
/// <param name="IdleSteps">Steps that found no ready job.</param>
public readonly record struct WorkerTimes(string Kind, int Index, double WallSeconds, double DecidingSeconds, double CommittingSeconds,
    double OtherSeconds, double IdleSeconds, long Steps, long IdleSteps);

/// <summary>
/// One scheduler worker: takes a job from its kind's queue, snapshots the cell, runs the pipeline, commits one
/// transaction, and requeues, parks or finishes the job. <see cref="Step"/> does one job synchronously (tests, embedding
/// in a caller's own loop); <see cref="SchedulingEngine.Start"/> runs workers on dedicated threads.
/// </summary>
public sealed class SchedulerWorker
{
    private readonly SchedulingEngine _engine;
    private readonly SchedulerKindOptions _kind;
    private readonly JobQueue _queue;
    private readonly PlacementPipeline _pipeline;
    private readonly PreemptionPlanner? _preemption;
    private readonly Random _rng;
    // The decision's own stream, reseeded from _rng before every decision: its seed goes into the decision record, so
    // the decision can be replayed from the log (issue 18). One instance per worker, reseeded in place.
    private readonly DecisionRandom _decisionRng = new(0);
    private readonly List<PlannedClaim> _planned = new();
    private readonly PlanStats _stats = new();
    private readonly List<int> _unplaced = new();
    private readonly List<NodeId> _boundNodes = new();
    private readonly string _leaseName;
    private SchedulerLease _lease;
    private Transaction? _tx;

    // Busyness (Omega paper §4): ticks spent deciding, split by whether the resulting commit conflicted.
    private long _usefulTicks, _wastedTicks, _placements, _cleanTransactions, _conflictedTransactions;
    // Where the rest of the wall time goes (issue 14: two workers were busy deciding only 23 % of the time): committing,
    // the rest of a step that took a job (queue hand-off, job bookkeeping, metrics, decision records), and idle (a step
    // that found no ready job, plus the engine loop's back-off after it). Single writer: the thread running Step (the
    // engine runs each worker on one thread; a caller driving Step itself must not call it concurrently), so plain
    // adds published with Volatile.Write instead of interlocked ones; readers see monotonic values.
    private long _commitTicks, _stepTicks, _idleTicks, _steps, _idleSteps;
    private long _startedAt = Stopwatch.GetTimestamp();

    internal SchedulerWorker(SchedulingEngine engine, SchedulerKindOptions kind, JobQueue queue, int index, int seed)
    {
        _engine = engine;
        _kind = kind;
        _queue = queue;
        Index = index;
        // A policy source on the engine's options (SchedulerPolicy revisions) overrides the kind's fixed pipeline.
        _pipeline = engine.Policy is { } policy ? new PlacementPipeline(policy) : kind.Pipeline();
        _rng = new Random(seed);
        _leaseName = $"{kind.Name}/{index}";
        if (kind.Preemption)
            _preemption = new PreemptionPlanner(engine.View, engine.Guarantees);
    }

    /// <summary>The scheduler kind.</summary>
    public string Kind => _kind.Name;

    /// <summary>The worker's index within its kind.</summary>
    public int Index { get; }

    /// <summary>The worker's current lease (its fencing token).</summary>
    public SchedulerLease Lease => _lease;

    /// <summary>Seconds spent deciding on attempts whose commit had no conflict.</summary>
    /// <summary>Tasks this worker bound.</summary>
    public long Placements => Interlocked.Read(ref _placements);

    /// <summary>Transactions this worker committed with no conflicted claim.</summary>
    public long CleanTransactions => Interlocked.Read(ref _cleanTransactions);

    /// <summary>Transactions this worker committed with at least one conflicted claim.</summary>
    public long ConflictedTransactions => Interlocked.Read(ref _conflictedTransactions);

    /// <summary>Seconds spent deciding on attempts whose commit did not conflict.</summary>
    public double UsefulSeconds => Interlocked.Read(ref _usefulTicks) / (double)Stopwatch.Frequency;

    /// <summary>Seconds spent deciding on attempts whose commit conflicted (work thrown away).</summary>
    public double WastedSeconds => Interlocked.Read(ref _wastedTicks) / (double)Stopwatch.Frequency;

    /// <summary>
    /// Seconds since the worker's thread started (<see cref="SchedulingEngine.Start"/>), or since the worker was created
    /// when a caller drives <see cref="Step"/> itself. Time spent submitting a backlog before Start is not wall time of
    /// the worker (it used to be, which understated busyness).
    /// </summary>
    public double WallSeconds => (Stopwatch.GetTimestamp() - Volatile.Read(ref _startedAt)) / (double)Stopwatch.Frequency;

    /// <summary>
    /// Where this worker's wall time went: deciding, committing, the rest of its steps, and idle. A worker whose
    /// deciding and committing add up to little of its wall time while it is not idle is slowed by the hand-off around
    /// them (queue, job bookkeeping, metrics, records); one that is idle has no ready job.
    /// </summary>
    public WorkerTimes Times
    {
        get
        {
            double f = Stopwatch.Frequency;
            long decide = Interlocked.Read(ref _usefulTicks) + Interlocked.Read(ref _wastedTicks);
            long commit = Volatile.Read(ref _commitTicks), step = Volatile.Read(ref _stepTicks);
            return new WorkerTimes(Kind, Index, WallSeconds, decide / f, commit / f, Math.Max(0, step - decide - commit) / f,
                Volatile.Read(ref _idleTicks) / f, Volatile.Read(ref _steps), Volatile.Read(ref _idleSteps));
        }
    }

    // The engine's thread loop calls this once before its first step: wall time starts here.
    internal void MarkRunning() => Volatile.Write(ref _startedAt, Stopwatch.GetTimestamp());

    // The engine's thread loop: ticks spent backing off after an idle step.
    internal void AddIdle(long ticks) => Volatile.Write(ref _idleTicks, _idleTicks + ticks);

    /// <summary>Schedules at most one job. Returns what happened.</summary>
    public StepOutcome Step()
    {
        long s0 = Stopwatch.GetTimestamp();
        var outcome = StepCore();
        long ticks = Stopwatch.GetTimestamp() - s0;
        if (outcome is StepOutcome.Idle)
        {
            Volatile.Write(ref _idleTicks, _idleTicks + ticks);
            Volatile.Write(ref _idleSteps, _idleSteps + 1);
        }
        else
        {
            Volatile.Write(ref _stepTicks, _stepTicks + ticks);
            Volatile.Write(ref _steps, _steps + 1);
        }
        return outcome;
    }

    private StepOutcome StepCore()
    {
        if (!_queue.TryDequeue(out var job, out var waited)) return StepOutcome.Idle;
        if (!EnsureLease())
        {
            _queue.Enqueue(job);
            return StepOutcome.LeaseLost;
        }

        var spec = job.Spec;
        int attempt, generation;
        _unplaced.Clear();
        _boundNodes.Clear();
        lock (job.Sync)
        {
            // A stopped job stays in the queue until a worker takes it (the queue has no removal); drop it here.
            if (job.Stopped) return StepOutcome.Stopped;
            job.Phase = JobPhase.Scheduling;
            attempt = ++job.Attempts;
            generation = job.Generation;
            job.CollectTasks(_unplaced, _boundNodes);
        }
        if (_unplaced.Count == 0) return Finish(job, StepOutcome.Placed, null);

        long t0 = Stopwatch.GetTimestamp();
        // Both reads are lock-free (ICellView): a worker never waits for a committer while it decides.
        var snapshot = _engine.View.Snapshot();
        var tenant = _engine.View.GetTenantUsage(spec.Tenant);
        _planned.Clear();
        _preemption?.BeginJob();
        // The policy's priority rules decide preemption; read from the policy the pipeline will use for this decision.
        bool mayPreempt = _preemption is not null && (_engine.Policy?.Current ?? _pipeline.Policy).MayPreempt(spec.Priority);
        long decisionSeed = _rng.NextInt64();
        _decisionRng.Reseed(decisionSeed);
        _pipeline.Plan(spec, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_unplaced), snapshot, tenant,
            System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_boundNodes), _decisionRng, _planned, _stats, mayPreempt ? _preemption : null, _engine.View);
        long t1 = Stopwatch.GetTimestamp();

        CommitResult result = default;
        bool committed = _planned.Count > 0;
        bool conflicted = false;
        var mode = spec.Gang ? CommitMode.AllOrNothing : _kind.Mode;
        if (spec.Gang && _stats.Unplaceable > 0) committed = false; // a gang that cannot be fully placed commits nothing
        if (committed)
        {
            _tx ??= new Transaction(_lease, mode, _kind.Detection, _planned.Count);
            // No idempotency key: in-process commits return synchronously, so there is no timeout to retry after.
            _tx.Reset(_lease, mode, _kind.Detection);
            // By reference: a PlannedClaim is 88 bytes, and the list's enumerator and indexer copy it per read.
            foreach (ref readonly var p in System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_planned))
                _tx.Add(new Claim(spec.Task(p.TaskIndex), p.Node.Id, spec.PerTask, p.Node.Version, spec.Tenant, spec.Priority, p.Victims, Group: spec.Group));
            result = _engine.Committer.Commit(_tx);
        }
        long t2 = Stopwatch.GetTimestamp();
        if (committed) Volatile.Write(ref _commitTicks, _commitTicks + (t2 - t1));

        if (committed && result.Status.IsFencingFailure())
        {
            // Our lease lapsed between the check and the commit; nothing was applied. Not the job's fault: retry it.
            _lease = default;
            lock (job.Sync) { job.Attempts--; job.Phase = JobPhase.Queued; }
            _queue.Enqueue(job);
            return StepOutcome.LeaseLost;
        }

        int placed = 0;
        ClaimStatus firstConflict = ClaimStatus.Applied;
        List<int>? stoppedMeanwhile = null;
        if (committed)
        {
            var statuses = result.ClaimStatuses.Span;
            var planned = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_planned);
            lock (job.Sync)
            {
                if (job.Stopped)
                {
                    // Stopped between our snapshot and here: StopJob did not see these bindings (they were not
                    // recorded), so they are ours to release. Allocates, but only on this rare path.
                    stoppedMeanwhile = new List<int>();
                    for (int i = 0; i < planned.Length; i++)
                        if (statuses[i] == ClaimStatus.Applied) stoppedMeanwhile.Add(planned[i].TaskIndex);
                }
                else for (int i = 0; i < planned.Length; i++)
                {
                    var s = statuses[i];
                    if (s == ClaimStatus.Applied)
                    {
                        int ti = planned[i].TaskIndex;
                        if (job.EvictedBeforeRecorded(ti))
                        {
                            // Preempted by another worker between our commit and this line: the binding is already gone.
                            job.MarkEvictedBeforeRecorded(ti, false);
                            continue;
                        }
                        job.SetBound(ti, result.Generation, planned[i].Node.Id);
                        placed++;
                    }
                    else if (s is not ClaimStatus.Aborted and not ClaimStatus.NotEvaluated)
                    {
                        conflicted = true;
                        if (firstConflict == ClaimStatus.Applied) firstConflict = s;
                        _engine.Metrics.Conflict(_kind.Name, s);
                    }
                }
            }
            for (int i = 0; i < planned.Length; i++)
                if (statuses[i] == ClaimStatus.Applied && planned[i].Victims is { Length: > 0 } victims)
                {
                    _engine.OnPreempted(victims);
                    _engine.Metrics.Preempted(_kind.Name, victims.Length);
                }
        }
        if (stoppedMeanwhile is not null)
        {
            _engine.ReleaseForStopped(spec, stoppedMeanwhile, result.Generation);
            Interlocked.Increment(ref _cleanTransactions);
            Interlocked.Add(ref _usefulTicks, t1 - t0);
            return StepOutcome.Stopped;
        }
        // Queued-task budgets: one update per attempt, not per placement.
        if (placed > 0) _engine.QueuedTasksChanged(spec.Tenant, -placed);
        if (committed)
        {
            _engine.Metrics.Transaction(_kind.Name, conflicted);
            Interlocked.Increment(ref conflicted ? ref _conflictedTransactions : ref _cleanTransactions);
            if (placed > 0) Interlocked.Add(ref _placements, placed);
        }
        if (conflicted) Interlocked.Add(ref _wastedTicks, t1 - t0);
        else Interlocked.Add(ref _usefulTicks, t1 - t0);
        _engine.Metrics.Attempt(_kind.Name, SchedulingMetrics.Seconds(t0, t1), committed ? SchedulingMetrics.Seconds(t1, t2) : 0, placed, _stats.Unplaceable);

        // Decide the job's fate.
        StepOutcome outcome;
        string? parkReason = null;
        int stillPending;
        lock (job.Sync)
        {
            stillPending = job.PendingCount;
        }
        if (stillPending == 0) outcome = StepOutcome.Placed;
        else if (attempt >= _kind.MaxAttempts)
        {
            outcome = StepOutcome.Parked;
            parkReason = ParkReason(attempt, stillPending, firstConflict);
        }
        else outcome = StepOutcome.Requeued;

        bool interesting = conflicted || outcome != StepOutcome.Placed || _stats.Unplaceable > 0;
        if (_engine.Decisions.ShouldRecord(interesting))
            _engine.Decisions.Add(BuildRecord(spec, generation, attempt, waited, snapshot.Version, committed ? result : (CommitResult?)null,
                t0, t1, t2, outcome, parkReason, firstConflict, tenant) with { Inputs = CaptureInputs(spec, snapshot, decisionSeed, mayPreempt) });

        if (outcome == StepOutcome.Requeued)
        {
            // Conflicts mean our snapshot was stale: retry at once on a fresh one. Nothing feasible: back off exponentially.
            long notBefore = 0;
            if (!conflicted)
            {
                var backoff = TimeSpan.FromTicks(Math.Min(_kind.MaxBackoff.Ticks, _kind.Backoff.Ticks << Math.Min(attempt - 1, 20)));
                notBefore = _engine.Time.GetTimestamp() + (long)(backoff.TotalSeconds * _engine.Time.TimestampFrequency);
            }
            lock (job.Sync)
            {
                // Stopped while this attempt ran (after its commit was recorded: StopJob released those bindings).
                if (job.Stopped) return StepOutcome.Stopped;
                job.Phase = JobPhase.Queued;
            }
            if (placed > 0) _engine.Changed(spec.Id);
            _engine.Metrics.Retry(_kind.Name);
            if (_queue.Enqueue(job, notBefore) != EnqueueStatus.Accepted)
            {
                outcome = StepOutcome.Parked;
                parkReason = "queue full on retry";
            }
            else return outcome;
        }
        return Finish(job, outcome, parkReason);
    }

    private StepOutcome Finish(JobState job, StepOutcome outcome, string? parkReason)
    {
        bool requeue = false;
        lock (job.Sync)
        {
            if (job.Stopped) return StepOutcome.Stopped;
            // A task preempted while this worker held the job (after it counted pending tasks) is Pending again, and
            // OnPreempted left the requeue to us: a job with pending tasks must not be marked Placed.
            if (outcome == StepOutcome.Placed && job.PendingCount > 0)
            {
                job.Phase = JobPhase.Queued;
                requeue = true;
            }
            else if (outcome == StepOutcome.Parked)
            {
                job.Phase = JobPhase.Parked;
                job.ParkedReason = parkReason;
            }
            else job.Phase = JobPhase.Placed;
        }
        if (!requeue) _engine.Changed(job.Spec.Id);
        if (outcome == StepOutcome.Placed && !requeue)
            _engine.Metrics.JobPlaced(_kind.Name, (_engine.Time.GetTimestamp() - job.SubmittedAt) / (double)_engine.Time.TimestampFrequency);
        if (requeue)
        {
            _engine.Metrics.Retry(_kind.Name);
            if (_queue.Enqueue(job) == EnqueueStatus.Accepted) return StepOutcome.Requeued;
            return Finish(job, StepOutcome.Parked, "queue full on retry after a preemption");
        }
        if (outcome == StepOutcome.Parked) _engine.Metrics.Parked(_kind.Name, _stats.DominantRejection);
        return outcome;
    }

    private string ParkReason(int attempts, int pending, ClaimStatus lastConflict)
    {
        var dominant = _stats.DominantRejection;
        string why = _stats.Unplaceable > 0
            ? $"no feasible node for {_stats.Unplaceable} task(s) on the last attempt: {_stats.FilteredByReason[(int)dominant]} of {_stats.NodesConsidered} nodes considered rejected for {dominant}"
            : lastConflict != ClaimStatus.Applied ? $"commit conflicts, last: {lastConflict}" : "gang could not be placed whole";
        return $"{pending} task(s) unplaced after {attempts} attempts; {why}";
    }

    private DecisionRecord BuildRecord(JobSpec spec, int generation, int attempt, TimeSpan waited, long snapshotVersion, CommitResult? result,
        long t0, long t1, long t2, StepOutcome outcome, string? parkReason, ClaimStatus firstConflict, (ResourceVector Usage, ResourceVector? Quota) tenant)
    {
        var filtered = new Dictionary<FilterStatus, int>();
        for (int i = 1; i < _stats.FilteredByReason.Length; i++)
            if (_stats.FilteredByReason[i] > 0) filtered[(FilterStatus)i] = _stats.FilteredByReason[i];
        // One entry per planned task; the tasks the attempt covered without a claim are kept as ranges of indexes, not
        // one entry each: an unplaceable job of 100,000 tasks would otherwise cost ~5 MB per attempt in the log.
        var tasks = new List<TaskDecision>(_planned.Count);
        ReadOnlySpan<ClaimStatus> statuses = result is { } r ? r.ClaimStatuses.Span : default;
        var plannedIndex = new HashSet<int>(_planned.Count);
        for (int i = 0; i < _planned.Count; i++)
        {
            var p = _planned[i];
            plannedIndex.Add(p.TaskIndex);
            tasks.Add(new TaskDecision(p.TaskIndex, p.Node.Id, p.Node.Spec.Name, p.Score, result is null ? null : statuses[i], p.Victims));
        }
        var ranges = new List<int>();
        foreach (int ti in _unplaced)
        {
            if (plannedIndex.Contains(ti)) continue;
            if (ranges.Count > 0 && ranges[^1] == ti) ranges[^1] = ti + 1;
            else { ranges.Add(ti); ranges.Add(ti + 1); }
        }
        string text = outcome switch
        {
            StepOutcome.Placed => "placed",
            StepOutcome.Parked => $"parked: {parkReason}",
            _ => firstConflict != ClaimStatus.Applied ? $"requeued after conflict {firstConflict}" : "requeued: not all tasks placed",
        };
        string next = outcome switch
        {
            StepOutcome.Requeued => $"scheduler:{_kind.Name}",
            StepOutcome.Parked => spec.Origin is null ? "operator" : "workload-controller",
            _ => spec.Origin is null ? "agent" : "workload-controller (agent reports started and ready)",
        };
        return new DecisionRecord(spec.Id, generation, attempt, _kind.Name, Index, _lease.Token, waited, snapshotVersion, _stats.PolicyRevision,
            _stats.NodesConsidered, _stats.Feasible, filtered, _stats.TopScores.ToArray(), tasks, result?.Status, result?.CellVersion ?? snapshotVersion,
            TimeSpan.FromSeconds(SchedulingMetrics.Seconds(t0, t1)), TimeSpan.FromSeconds(SchedulingMetrics.Seconds(t1, t2)), _engine.Time.GetUtcNow(), text)
        {
            UnclaimedRanges = ranges.Count == 0 ? null : ranges.ToArray(),
            Origin = spec.Origin,
            TenantUsage = tenant.Usage,
            TenantQuota = tenant.Quota,
            NextOwner = next,
        };
    }

    // The decision's read set, captured only for records that are kept: each node it read, re-read from the same snapshot
    // (a snapshot is immutable at its version, so this is what the pipeline saw), plus the live group counts it read.
    private DecisionInputs CaptureInputs(JobSpec spec, CellSnapshot snapshot, long seed, bool mayPreempt)
    {
        var probes = new int[_pipeline.ProbedNodes.Count];
        for (int i = 0; i < probes.Length; i++) probes[i] = _pipeline.ProbedNodes[i];
        var groupReads = new (int Node, int Members)[_pipeline.Context.GroupReads.Count];
        for (int i = 0; i < groupReads.Length; i++) groupReads[i] = _pipeline.Context.GroupReads[i];
        var ids = new SortedSet<int>(probes);
        var members = new Dictionary<int, int>();
        foreach (var (node, count) in groupReads)
        {
            ids.Add(node);
            members.TryAdd(node, count);
        }
        var bound = new SortedDictionary<int, int>();
        foreach (var b in _boundNodes)
        {
            ids.Add(b.Value);
            bound[b.Value] = bound.TryGetValue(b.Value, out int c) ? c + 1 : 1;
        }
        var boundCounts = new (int Node, int Tasks)[bound.Count];
        int bi = 0;
        foreach (var (node, count) in bound) boundCounts[bi++] = (node, count);
        var nodes = new DecisionNodeInput[ids.Count];
        int k = 0;
        foreach (int id in ids)
        {
            var read = snapshot.TryGetNode(new NodeId(id), out var v);
            nodes[k++] = read == SnapshotRead.Ok
                ? new DecisionNodeInput(v.Id, read, v.Spec, v.Allocated, v.Status, v.TaskCount, members.TryGetValue(id, out int m) ? m : -1)
                : new DecisionNodeInput(new NodeId(id), read, null, default, NodeStatus.Removed, 0, members.TryGetValue(id, out int m2) ? m2 : -1);
        }
        return new DecisionInputs(seed, snapshot.NodeCount, DecisionInputs.RangesOf(_unplaced), boundCounts, probes, nodes, groupReads, spec, mayPreempt);
    }

    private bool EnsureLease()
    {
        var now = _engine.Time.GetUtcNow();
        if (_lease.Token.Value != 0 && _lease.ExpiresAt - now > _kind.LeaseDuration / 2) return true;
        if (_lease.Token.Value != 0)
        {
            var renewed = _engine.Committer.RenewLease(_lease, _kind.LeaseDuration);
            if (renewed.Succeeded) { _lease = renewed.Lease; return true; }
        }
        var acquired = _engine.Committer.AcquireLease(_leaseName, _kind.LeaseDuration);
        if (!acquired.Succeeded) return false;
        _lease = acquired.Lease;
        return true;
    }
}
