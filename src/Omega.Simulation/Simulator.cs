using Omega.Cells;

namespace Omega.Simulation;

/// <summary>
/// The discrete-event simulator: the Omega paper's scheduler model (EuroSys 2013, §4-5, as its released simulator
/// defines it) running in virtual time over a real <see cref="Cell"/>. Every placement decision is committed with the
/// real <see cref="Cell.Commit"/>, so conflicts come from the production conflict checks, not from a model of them.
/// </summary>
/// <remarks>
/// <para>Determinism: one thread, one event queue ordered by (virtual time, scheduling order), random draws from
/// <see cref="SimRandom"/> streams derived from the seed, no wall clock and no iteration over hash-ordered collections.
/// The same config gives the same result on any machine.</para>
/// <para>A run is independent of other runs: several may execute in parallel on different threads.</para>
/// </remarks>
public sealed class Simulator : IDisposable
{
    private readonly SimulationConfig _config;
    private readonly VirtualClock _clock = new();
    private readonly Cell _cell;
    // The simulated schedulers see the cell only through the seam (docs/architecture.md, "The seam"): they read through
    // the view and change it through the committer, like the scheduling engine. Setup (machines) and audits use _cell.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1859", Justification = "the seam is the point: the simulated schedulers use only what a replicated store would also serve")]
    private readonly ICellView _view;
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1859", Justification = "see _view")]
    private readonly ICellCommitter _committer;
    private readonly EventQueue _events = new();
    private readonly SchedulerState[] _schedulers;
    private readonly Dictionary<string, int> _schedulerIndex = new(StringComparer.Ordinal);

    // Synthetic kinds: their random streams and round-robin cursors.
    private readonly SimRandom[] _kindRng;
    private readonly int[][] _kindTargets;
    private readonly int[] _kindCursor;
    private readonly JobSpec[] _explicitJobs;

    // The private copy's overlay: resources this decision has already claimed per machine (reset after each decision).
    private readonly ResourceVector[] _extra;
    private readonly int[] _extraTouched;
    private readonly bool[] _extraMarked;
    private int _extraTouchedCount;

    private readonly List<AttemptRecord>? _attempts;
    private readonly List<SimJob>? _jobs;
    private long _nextJob;
    private long _eventCount;
    private long _cpuAllocated;
    private double _cpuIntegral;
    private double _lastTime;
    private readonly double _totalCpu;

    /// <summary>Prepares a run. Throws <see cref="ArgumentException"/> if <see cref="SimulationConfig.Validate"/> reports a problem.</summary>
    public Simulator(SimulationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Validate() is { } problem) throw new ArgumentException(problem, nameof(config));
        _config = config;
        _cell = new Cell(new CellOptions
        {
            Name = "sim",
            Time = _clock,
            InitialNodeCapacity = config.Machines,
            // Transactions carry no idempotency key here; keep the index minimal.
            IdempotencyRetention = 1,
        });
        _view = _cell;
        _committer = _cell;
        for (int i = 0; i < config.Machines; i++)
            _cell.AddNode(new NodeSpec($"m{i}", config.MachineCapacity));
        _totalCpu = (double)config.MachineCapacity.CpuMillis * config.Machines;

        // Leases outlive the run: the simulation has no failures to fence.
        var leaseLength = TimeSpan.FromSeconds(config.Duration * 2 + 3600);
        _schedulers = new SchedulerState[config.Schedulers.Count];
        for (int i = 0; i < _schedulers.Length; i++)
        {
            var spec = config.Schedulers[i];
            var lease = _committer.AcquireLease(spec.Name, leaseLength).Lease;
            _schedulers[i] = new SchedulerState(i, spec, lease, new SimRandom(config.Seed, 1000 + i), config.Machines);
            _schedulerIndex.Add(spec.Name, i);
        }

        _kindRng = new SimRandom[config.JobKinds.Count];
        _kindTargets = new int[config.JobKinds.Count][];
        _kindCursor = new int[config.JobKinds.Count];
        for (int k = 0; k < _kindRng.Length; k++)
        {
            _kindRng[k] = new SimRandom(config.Seed, 2000 + k);
            var names = config.JobKinds[k].Schedulers;
            _kindTargets[k] = new int[names.Count];
            for (int j = 0; j < names.Count; j++) _kindTargets[k][j] = _schedulerIndex[names[j]];
        }

        // Explicit jobs in submit order; a stable sort keeps the given order for equal times.
        _explicitJobs = [.. config.Jobs.OrderBy(j => j.SubmitTime)];
        _extra = new ResourceVector[config.Machines];
        _extraTouched = new int[config.Machines];
        _extraMarked = new bool[config.Machines];
        if (config.RecordAttempts) _attempts = new List<AttemptRecord>();
        if (config.RecordJobs) _jobs = new List<SimJob>();
    }

    /// <summary>Runs a config to completion and returns its metrics.</summary>
    public static SimulationResult Run(SimulationConfig config)
    {
        using var sim = new Simulator(config);
        return sim.Run();
    }

    /// <summary>Releases the cell (its metric instruments).</summary>
    public void Dispose() => _cell.Dispose();

    /// <summary>Runs the simulation to the configured duration. Call once.</summary>
    public SimulationResult Run()
    {
        var (prefilled, prefillUtil) = Prefill();

        for (int k = 0; k < _kindRng.Length; k++)
            _events.Schedule(_kindRng[k].Exponential(_config.JobKinds[k].MeanInterarrival), EventKind.SyntheticArrival, k);
        if (_explicitJobs.Length > 0) _events.Schedule(_explicitJobs[0].SubmitTime, EventKind.ExplicitArrival, 0);

        double end = _config.Duration;
        while (_events.Count > 0 && _events.PeekTime <= end)
        {
            var e = _events.Pop();
            Advance(e.Time);
            _eventCount++;
            switch (e.Kind)
            {
                case EventKind.SyntheticArrival: OnSyntheticArrival(e.Index, e.Time); break;
                case EventKind.ExplicitArrival: OnExplicitArrival(e.Index, e.Time); break;
                case EventKind.DecisionDone: OnDecisionDone(_schedulers[e.Index], e.Time); break;
                case EventKind.Requeue: Enqueue((SimJob)e.Ref!, e.Time); break;
                case EventKind.Completion: OnCompletion((CompletionBatch)e.Ref!); break;
            }
        }
        Advance(end);

        var metrics = new SchedulerMetrics[_schedulers.Length];
        for (int i = 0; i < _schedulers.Length; i++) metrics[i] = Summarize(_schedulers[i], end);
        var audit = _cell.Audit();
        return new SimulationResult
        {
            Config = _config,
            Schedulers = metrics,
            Groups = SummarizeGroups(end),
            PrefilledTasks = prefilled,
            PrefillCpuUtilization = prefillUtil,
            MeanCpuUtilization = _cpuIntegral / end / _totalCpu,
            FinalCpuUtilization = _cpuAllocated / _totalCpu,
            Events = _eventCount,
            AuditProblems = audit,
            Attempts = _attempts ?? (IReadOnlyList<AttemptRecord>)Array.Empty<AttemptRecord>(),
            Jobs = _jobs is null ? Array.Empty<JobRecord>() : _jobs.ConvertAll(ToRecord),
        };
    }

    private void Advance(double t)
    {
        _cpuIntegral += _cpuAllocated * (t - _lastTime);
        _lastTime = t;
        _clock.Now = t;
    }

    // ------------------------------------------------------------------ prefill

    private (long Tasks, double Utilization) Prefill()
    {
        if (_config.Prefill is not { } p || p.TargetCpuUtilization <= 0) return (0, 0);
        long target = (long)(p.TargetCpuUtilization * _totalCpu / p.TaskResources.CpuMillis);
        var lease = _committer.AcquireLease("prefill", TimeSpan.FromDays(1)).Lease;
        var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine, initialCapacity: 1024);
        var rng = new SimRandom(_config.Seed, 1);
        var pool = new int[_config.Machines];
        for (int i = 0; i < pool.Length; i++) pool[i] = i;
        long placed = 0;
        var job = new JobId(-1);
        while (placed < target)
        {
            int want = (int)Math.Min(1024, target - placed);
            tx.Reset(lease, CommitMode.Incremental, ConflictDetection.Fine);
            var snapshot = _view.Snapshot();
            int found = 0;
            int remaining = pool.Length;
            while (found < want && remaining > 0)
            {
                int node = PickFit(snapshot, rng, pool, ref remaining, p.TaskResources, out _);
                if (node < 0) break;
                tx.Add(new Claim(new TaskId(job, (int)(placed + found)), new NodeId(node), p.TaskResources, 0));
                found++;
            }
            ResetOverlay();
            if (found == 0) break;
            var r = _committer.Commit(tx);
            placed += r.AppliedCount;
            _cpuAllocated += r.AppliedCount * p.TaskResources.CpuMillis;
            if (r.AppliedCount == 0) break;
        }
        _committer.ReleaseLease(lease);
        return (placed, _cpuAllocated / _totalCpu);
    }

    // ------------------------------------------------------------------ arrivals and queues

    private void OnSyntheticArrival(int kind, double now)
    {
        var spec = _config.JobKinds[kind];
        var rng = _kindRng[kind];
        // Draw order is fixed (tasks, duration, next interarrival) so a kind's stream never depends on other kinds.
        int tasks = (int)Math.Min(int.MaxValue / 2, Math.Ceiling(rng.Exponential(spec.MeanTasks)));
        if (tasks < 1) tasks = 1;
        double duration = rng.Exponential(spec.MeanDuration);
        var targets = _kindTargets[kind];
        int target = targets[_kindCursor[kind]];
        _kindCursor[kind] = (_kindCursor[kind] + 1) % targets.Length;
        Submit(spec.Name, target, tasks, spec.TaskResources, duration, now);
        _events.Schedule(now + rng.Exponential(spec.MeanInterarrival), EventKind.SyntheticArrival, kind);
    }

    private void OnExplicitArrival(int index, double now)
    {
        var j = _explicitJobs[index];
        Submit(j.Kind, _schedulerIndex[j.Scheduler], j.Tasks, j.TaskResources, j.Duration, now);
        if (index + 1 < _explicitJobs.Length) _events.Schedule(_explicitJobs[index + 1].SubmitTime, EventKind.ExplicitArrival, index + 1);
    }

    private void Submit(string kind, int scheduler, int tasks, ResourceVector resources, double duration, double now)
    {
        var job = new SimJob
        {
            Number = _nextJob++,
            Kind = kind,
            Scheduler = scheduler,
            Submit = now,
            TaskResources = resources,
            Duration = duration,
        };
        job.InitTasks(tasks);
        _jobs?.Add(job);
        _schedulers[scheduler].JobsSubmitted++;
        Enqueue(job, now);
    }

    private void Enqueue(SimJob job, double now)
    {
        var s = _schedulers[job.Scheduler];
        s.Queue.Enqueue(job);
        if (s.Current is null) StartDecision(s, now);
    }

    // ------------------------------------------------------------------ decisions

    /// <summary>Takes the next job, syncs, places on the private copy and schedules the commit after the decision time.</summary>
    private void StartDecision(SchedulerState s, double now)
    {
        var job = s.Queue.Dequeue();
        job.Attempts++;
        s.Attempts++;
        if (job.Attempts == 1)
        {
            job.FirstAttempt = now;
            s.WaitFirst.Add(now - job.Submit);
        }
        int unplaced = job.UnplacedCount;
        double decision = s.Spec.JobTime + s.Spec.TaskTime * unplaced;
        s.Current = job;
        s.CurrentStart = now;
        s.CurrentDecisionTime = decision;
        s.CurrentUnplacedAtStart = unplaced;
        s.DecisionSeconds += Math.Min(decision, _config.Duration - now);

        // Sync: the private copy is the snapshot at decision start. Placement reads it now (in virtual time nothing else
        // happens at this instant), and the commit happens when the decision time has passed.
        var snapshot = _view.Snapshot();
        var tx = s.Tx;
        tx.Reset(s.Lease, s.Spec.Mode, s.Spec.Detection);
        var pool = s.Pool;
        int remaining = pool.Length;
        var req = job.TaskResources;
        var jobId = new JobId(job.Number);
        for (int i = 0; i < unplaced && remaining > 0; i++)
        {
            int node = PickFit(snapshot, s.Rng, pool, ref remaining, req, out long version);
            if (node < 0) break;
            tx.Add(new Claim(new TaskId(jobId, job.Unplaced[i]), new NodeId(node), req, version));
        }
        ResetOverlay();
        // A gang that does not fit on the private copy is not submitted: committing part of it would break the gang.
        if (s.Spec.Mode == CommitMode.AllOrNothing && tx.Count < unplaced) tx.Reset(s.Lease, s.Spec.Mode, s.Spec.Detection);
        _events.Schedule(now + decision, EventKind.DecisionDone, s.Index);
    }

    /// <summary>
    /// Randomized first fit on the private copy (snapshot plus this decision's own claims): draw random candidates;
    /// a machine with room takes the task and stays a candidate, one without room leaves the candidate range.
    /// Returns the machine, or -1 when no candidate is left.
    /// </summary>
    private int PickFit(in CellSnapshot snapshot, SimRandom rng, int[] pool, ref int remaining, ResourceVector req, out long version)
    {
        // All machines share one capacity (the config's), so the spec object is not dereferenced per candidate.
        var capacity = _config.MachineCapacity;
        while (remaining > 0)
        {
            int k = rng.NextInt(remaining);
            int node = pool[k];
            if (snapshot.TryGetNode(new NodeId(node), out var view) == SnapshotRead.Ok && view.IsSchedulable
                && ResourceVector.Fits(view.Allocated + _extra[node], req, capacity))
            {
                version = view.Version;
                if (!_extraMarked[node])
                {
                    _extraMarked[node] = true;
                    _extraTouched[_extraTouchedCount++] = node;
                }
                _extra[node] += req;
                return node;
            }
            pool[k] = pool[remaining - 1];
            pool[remaining - 1] = node;
            remaining--;
        }
        version = 0;
        return -1;
    }

    private void ResetOverlay()
    {
        for (int i = 0; i < _extraTouchedCount; i++)
        {
            int node = _extraTouched[i];
            _extra[node] = default;
            _extraMarked[node] = false;
        }
        _extraTouchedCount = 0;
    }

    /// <summary>The decision time has passed: commit through the real cell, account, and retry, finish or abandon the job.</summary>
    private void OnDecisionDone(SchedulerState s, double now)
    {
        var job = s.Current!;
        var tx = s.Tx;
        int claims = tx.Count;
        int applied = 0;
        var status = TransactionStatus.Rejected;
        var firstRejection = ClaimStatus.Applied;
        if (claims == 0)
        {
            s.AttemptsWithNoPlacement++;
        }
        else
        {
            var result = _committer.Commit(tx);
            status = result.Status;
            applied = result.AppliedCount;
            s.Transactions++;
            if (status == TransactionStatus.Committed) s.Clean++;
            else s.Conflicted++;
            var statuses = result.ClaimStatuses.Span;
            var txClaims = tx.Claims;
            TaskId[]? done = applied > 0 && !double.IsPositiveInfinity(job.Duration) ? new TaskId[applied] : null;
            int d = 0;
            for (int i = 0; i < claims; i++)
            {
                var cs = statuses[i];
                if (cs == ClaimStatus.Applied)
                {
                    if (done is not null) done[d++] = txClaims[i].Task;
                    continue;
                }
                if (firstRejection == ClaimStatus.Applied && cs != ClaimStatus.Aborted && cs != ClaimStatus.NotEvaluated) firstRejection = cs;
                s.Rejections[(int)cs]++;
            }
            s.ClaimsApplied += applied;
            s.ClaimsRejected += claims - applied;
            if (applied > 0)
            {
                _cpuAllocated += applied * job.TaskResources.CpuMillis;
                job.Placed += applied;
                RemovePlaced(job, statuses, claims);
                if (done is not null) _events.Schedule(now + job.Duration, EventKind.Completion, 0, new CompletionBatch(done, job.TaskResources.CpuMillis));
            }
        }
        _attempts?.Add(new AttemptRecord(s.Spec.Name, job.Number, job.Attempts, s.CurrentStart, s.CurrentDecisionTime, s.CurrentUnplacedAtStart,
            claims, applied, status, firstRejection));

        if (job.UnplacedCount == 0)
        {
            job.FullyPlaced = now;
            job.Outcome = JobOutcome.FullyPlaced;
            s.JobsPlaced++;
            s.WaitPlaced.Add(now - job.Submit);
        }
        else if (job.Placed == 0 && job.Attempts > _config.MaxAttemptsWithNothingPlaced)
        {
            job.Outcome = JobOutcome.AbandonedNothingPlaced;
            s.JobsAbandoned++;
        }
        else if (job.Attempts > _config.MaxAttempts)
        {
            job.Outcome = JobOutcome.AbandonedTooManyAttempts;
            s.JobsAbandoned++;
        }
        else
        {
            _events.Schedule(now + _config.RetryDelay, EventKind.Requeue, 0, job);
        }

        s.Current = null;
        if (s.Queue.Count > 0) StartDecision(s, now);
    }

    /// <summary>Drops the applied claims' tasks from the job's unplaced list; claims were built from its first entries, in order.</summary>
    private static void RemovePlaced(SimJob job, ReadOnlySpan<ClaimStatus> statuses, int claims)
    {
        int w = 0;
        for (int i = 0; i < job.UnplacedCount; i++)
        {
            if (i < claims && statuses[i] == ClaimStatus.Applied) continue;
            job.Unplaced[w++] = job.Unplaced[i];
        }
        job.UnplacedCount = w;
    }

    private void OnCompletion(CompletionBatch batch)
    {
        // Releases do not change a node's version in Omega.Cell, which is the paper's coarse rule: completions are not conflicts.
        var tasks = batch.Tasks;
        for (int i = 0; i < tasks.Length; i++) _committer.Release(tasks[i]);
        _cpuAllocated -= tasks.Length * batch.CpuEach;
    }

    // ------------------------------------------------------------------ results

    private static SchedulerMetrics Summarize(SchedulerState s, double end)
    {
        var reasons = new SortedDictionary<ClaimStatus, long>();
        for (int i = 0; i < s.Rejections.Length; i++)
            if (s.Rejections[i] > 0) reasons[(ClaimStatus)i] = s.Rejections[i];
        return new SchedulerMetrics
        {
            Name = s.Spec.Name,
            Spec = s.Spec,
            DecisionSeconds = s.DecisionSeconds,
            Busyness = s.DecisionSeconds / end,
            Attempts = s.Attempts,
            AttemptsWithNoPlacement = s.AttemptsWithNoPlacement,
            Transactions = s.Transactions,
            ConflictedTransactions = s.Conflicted,
            CleanTransactions = s.Clean,
            ClaimsApplied = s.ClaimsApplied,
            ClaimsRejected = s.ClaimsRejected,
            JobsSubmitted = s.JobsSubmitted,
            JobsFullyPlaced = s.JobsPlaced,
            JobsAbandoned = s.JobsAbandoned,
            JobsUnfinished = s.JobsSubmitted - s.JobsPlaced - s.JobsAbandoned,
            WaitFirstAttemptMean = Stats.Mean(s.WaitFirst),
            WaitFirstAttemptP90 = Stats.Percentile(s.WaitFirst, 0.9),
            WaitFullyPlacedMean = Stats.Mean(s.WaitPlaced),
            WaitFullyPlacedP90 = Stats.Percentile(s.WaitPlaced, 0.9),
            RejectionsByReason = reasons,
        };
    }

    private List<GroupMetrics> SummarizeGroups(double end)
    {
        var groups = new List<GroupMetrics>();
        var seen = new List<string>();
        foreach (var s in _schedulers)
        {
            string name = s.Spec.GroupName;
            if (seen.Contains(name)) continue;
            seen.Add(name);
            int count = 0;
            double busy = 0, maxBusy = 0;
            long conflicted = 0, clean = 0, submitted = 0, placed = 0, abandoned = 0;
            var waitFirst = new List<double>();
            var waitPlaced = new List<double>();
            foreach (var m in _schedulers)
            {
                if (!string.Equals(m.Spec.GroupName, name, StringComparison.Ordinal)) continue;
                count++;
                double b = m.DecisionSeconds / end;
                busy += b;
                maxBusy = Math.Max(maxBusy, b);
                conflicted += m.Conflicted;
                clean += m.Clean;
                submitted += m.JobsSubmitted;
                placed += m.JobsPlaced;
                abandoned += m.JobsAbandoned;
                waitFirst.AddRange(m.WaitFirst);
                waitPlaced.AddRange(m.WaitPlaced);
            }
            groups.Add(new GroupMetrics
            {
                Name = name,
                Schedulers = count,
                MeanBusyness = busy / count,
                MaxBusyness = maxBusy,
                ConflictedTransactions = conflicted,
                CleanTransactions = clean,
                JobsSubmitted = submitted,
                JobsFullyPlaced = placed,
                JobsAbandoned = abandoned,
                JobsUnfinished = submitted - placed - abandoned,
                WaitFirstAttemptMean = Stats.Mean(waitFirst),
                WaitFirstAttemptP90 = Stats.Percentile(waitFirst, 0.9),
                WaitFullyPlacedMean = Stats.Mean(waitPlaced),
                WaitFullyPlacedP90 = Stats.Percentile(waitPlaced, 0.9),
            });
        }
        return groups;
    }

    private JobRecord ToRecord(SimJob j)
        => new(j.Number, j.Kind, _schedulers[j.Scheduler].Spec.Name, j.Submit, j.FirstAttempt, j.FullyPlaced, j.Attempts, j.Tasks, j.Placed, j.Outcome);
}

/// <summary>Summary statistics used in results.</summary>
public static class Stats
{
    /// <summary>The arithmetic mean, or 0 for no values.</summary>
    public static double Mean(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) return 0;
        double sum = 0;
        for (int i = 0; i < values.Count; i++) sum += values[i];
        return sum / values.Count;
    }

    /// <summary>The nearest-rank percentile (<paramref name="p"/> in (0, 1]), or 0 for no values.</summary>
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) return 0;
        var sorted = new double[values.Count];
        for (int i = 0; i < sorted.Length; i++) sorted[i] = values[i];
        Array.Sort(sorted);
        int rank = (int)Math.Ceiling(p * sorted.Length);
        return sorted[Math.Clamp(rank, 1, sorted.Length) - 1];
    }
}
