using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>
/// Runs scheduler kinds side by side on one cell, as in the Omega paper: each kind has its own queue, workers, policy,
/// commit mode and detection, and each worker its own lease and fencing token. Jobs are submitted to a kind; workers place
/// them through optimistic commits and retry on conflict; jobs that cannot be placed are parked with a reason.
/// </summary>
/// <remarks>
/// No hidden threads: the engine does nothing until a caller either drives <see cref="SchedulerWorker.Step"/> itself or
/// calls <see cref="Start"/>, which starts one dedicated thread per worker; <see cref="DisposeAsync"/> stops and joins them.
/// </remarks>
public sealed class SchedulingEngine : IAsyncDisposable, IDisposable
{
    private readonly Dictionary<string, (SchedulerKindOptions Options, JobQueue Queue, List<SchedulerWorker> Workers)> _kinds = new(StringComparer.Ordinal);
    private readonly List<SchedulerWorker> _workers = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<JobId, JobState> _jobs = new();
    // Completed jobs in completion order, so the oldest can be forgotten: without a bound, a long-running engine would
    // keep every job it ever ran. Failed or parked jobs are kept until completed (an operator still needs to see them).
    private readonly System.Collections.Concurrent.ConcurrentQueue<JobId> _completed = new();
    private readonly int _completedRetention;
    private readonly string _defaultKind;
    private readonly List<string> _kindNames = new();
    // Queued-task budgets (docs/protocol.md, "Budgets"): tasks of held jobs that are neither bound nor completed,
    // in total and per tenant. Updated once per submit, per attempt and per preempted task, never per placement probe.
    private readonly int _maxTasksPerJob;
    private readonly long _maxQueuedTasks, _maxQueuedTasksPerTenant;
    private long _queuedTasks;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<TenantId, StrongBox<long>> _queuedByTenant = new();
    private CancellationTokenSource? _stop;
    private Thread[]? _threads;

    private readonly Cell? _cell;

    /// <summary>Creates an engine over <paramref name="cell"/>, which serves as both its view and its committer.</summary>
    public SchedulingEngine(Cell cell, SchedulingOptions options)
        : this(cell ?? throw new ArgumentNullException(nameof(cell)), cell, options)
    {
        _cell = cell;
    }

    /// <summary>
    /// Creates an engine over <paramref name="cell"/> (its view, and <see cref="Cell"/> for hosts and controllers) whose
    /// changes go through <paramref name="committer"/>, an interposed committer: the deterministic simulation's model of
    /// the network between a scheduler and the cell (timeouts after a commit, retries), or a recording double.
    /// </summary>
    public SchedulingEngine(Cell cell, ICellCommitter committer, SchedulingOptions options)
        : this((ICellView)(cell ?? throw new ArgumentNullException(nameof(cell))), committer, options)
    {
        _cell = cell;
    }

    /// <summary>
    /// Creates an engine that reads the cell only through <paramref name="view"/> and changes it only through
    /// <paramref name="committer"/> (docs/architecture.md, "The seam"): a test double, the simulator or a replicated
    /// store plug in here. Such an engine has no <see cref="Cell"/>.
    /// </summary>
    public SchedulingEngine(ICellView view, ICellCommitter committer, SchedulingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        View = view ?? throw new ArgumentNullException(nameof(view));
        Committer = committer ?? throw new ArgumentNullException(nameof(committer));
        if (options.Kinds.Count == 0) throw new ArgumentException("at least one scheduler kind is required", nameof(options));
        Time = options.Time;
        Guarantees = new Dictionary<TenantId, ResourceVector>(options.Guarantees);
        Policy = options.Policy;
        Decisions = new DecisionLog(options.DecisionLogCapacity, options.DecisionSampleEvery, options.DecisionLogTaskEntries) { Sink = options.DecisionSink };
        Seed = options.Seed ?? Random.Shared.Next();
        _completedRetention = Math.Max(0, options.CompletedJobRetention);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxTasksPerJob, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxQueuedTasks, options.MaxTasksPerJob);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxQueuedTasksPerTenant, options.MaxTasksPerJob);
        _maxTasksPerJob = options.MaxTasksPerJob;
        _maxQueuedTasks = options.MaxQueuedTasks;
        _maxQueuedTasksPerTenant = options.MaxQueuedTasksPerTenant;
        _defaultKind = options.Kinds[0].Name;
        int w = 0;
        foreach (var k in options.Kinds)
        {
            if (k.Workers < 1) throw new ArgumentException($"kind {k.Name}: at least one worker", nameof(options));
            var queue = new JobQueue(k.QueueCapacity, Time);
            var list = new List<SchedulerWorker>(k.Workers);
            for (int i = 0; i < k.Workers; i++)
            {
                var worker = new SchedulerWorker(this, k, queue, i, Seed + w++);
                list.Add(worker);
                _workers.Add(worker);
            }
            if (!_kinds.TryAdd(k.Name, (k, queue, list))) throw new ArgumentException($"duplicate scheduler kind {k.Name}", nameof(options));
            _kindNames.Add(k.Name);
        }
        Metrics = new SchedulingMetrics(this, options.MeterFactory);
    }

    /// <summary>
    /// The cell, for hosts that built the engine over one (<see cref="SchedulingEngine(Cell, SchedulingOptions)"/>).
    /// The engine itself never uses it: it reads through <see cref="View"/> and writes through <see cref="Committer"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The engine was built over an <see cref="ICellView"/> and an <see cref="ICellCommitter"/>.</exception>
    public Cell Cell => _cell ?? throw new InvalidOperationException("this engine was built over an ICellView and an ICellCommitter, not a Cell");

    /// <summary>What the engine reads: snapshots, tenant usage, bindings on a node (lock-free).</summary>
    public ICellView View { get; }

    /// <summary>What the engine changes the cell through: commits, releases, leases, quotas.</summary>
    public ICellCommitter Committer { get; }

    /// <summary>The clock.</summary>
    public TimeProvider Time { get; }

    /// <summary>The workers' base random seed (worker i of all kinds uses seed + i).</summary>
    public int Seed { get; }

    /// <summary>Every worker of every kind.</summary>
    public IReadOnlyList<SchedulerWorker> Workers => _workers;

    /// <summary>The decision records.</summary>
    public DecisionLog Decisions { get; }

    /// <summary>The metrics.</summary>
    public SchedulingMetrics Metrics { get; }

    internal IReadOnlyDictionary<TenantId, ResourceVector> Guarantees { get; }

    /// <summary>The policy source workers read (<see cref="SchedulingOptions.Policy"/>), or null for fixed pipelines.</summary>
    public PolicySource? Policy { get; }

    /// <summary>
    /// Submits a job to scheduler kind <paramref name="scheduler"/> (default: the first kind). Admission checks, each with
    /// its typed status: the request is a valid vector (<see cref="EnqueueStatus.InvalidResources"/>), the rest of the
    /// spec (<see cref="EnqueueStatus.InvalidJob"/>), the tenant exists (<see cref="EnqueueStatus.UnknownTenant"/>), some
    /// node could hold one task (<see cref="EnqueueStatus.RequestExceedsLargestNode"/>), the kind exists, the id is new,
    /// the queue has room. Never throws for bad input.
    /// </summary>
    public EnqueueResult Submit(JobSpec job, string? scheduler = null)
    {
        var r = SubmitCore(job, scheduler);
        if (!r.Accepted) Metrics.Rejected(r.Status);
        return r;
    }

    private EnqueueResult SubmitCore(JobSpec job, string? scheduler)
    {
        ArgumentNullException.ThrowIfNull(job);
        if (job.ResourcesProblem() is { } resources) return new EnqueueResult(EnqueueStatus.InvalidResources, resources);
        if (job.Validate() is { } reason) return new EnqueueResult(EnqueueStatus.InvalidJob, reason);
        if (!View.TenantExists(job.Tenant)) return new EnqueueResult(EnqueueStatus.UnknownTenant, $"no tenant {job.Tenant} in the cell");
        if (View.LargestNodeCapacity is { } largest && !job.PerTask.FitsWithin(largest))
            return new EnqueueResult(EnqueueStatus.RequestExceedsLargestNode, $"per-task request {job.PerTask} exceeds the largest node capacity {largest} in some dimension");
        // Budgets before anything is built for the job.
        if (job.TaskCount > _maxTasksPerJob)
            return new EnqueueResult(EnqueueStatus.JobTooLarge, $"job {job.Id} asks for {job.TaskCount} tasks; the tasks-per-job budget is {_maxTasksPerJob}");
        var kindName = scheduler ?? _defaultKind;
        if (!_kinds.TryGetValue(kindName, out var kind)) return new EnqueueResult(EnqueueStatus.UnknownScheduler, $"no scheduler kind '{kindName}'");
        if (TryTakeQueued(job.Tenant, job.TaskCount) is { } over) return new EnqueueResult(EnqueueStatus.ResourceExhausted, over);
        var state = new JobState(job, kindName, Time.GetTimestamp());
        if (!_jobs.TryAdd(job.Id, state))
        {
            QueuedTasksChanged(job.Tenant, -job.TaskCount);
            return new EnqueueResult(EnqueueStatus.DuplicateJob, $"job {job.Id} already submitted");
        }
        var s = kind.Queue.Enqueue(state);
        if (s != EnqueueStatus.Accepted)
        {
            _jobs.TryRemove(job.Id, out _);
            QueuedTasksChanged(job.Tenant, -job.TaskCount);
            return new EnqueueResult(s, $"queue of '{kindName}' is full ({kind.Queue.Capacity} jobs)");
        }
        return new EnqueueResult(EnqueueStatus.Accepted);
    }

    /// <summary>The tasks-per-job budget (<see cref="SchedulingOptions.MaxTasksPerJob"/>).</summary>
    public int MaxTasksPerJob => _maxTasksPerJob;

    /// <summary>Tasks of held jobs that are neither bound nor completed (queued, being scheduled or parked), over all tenants.</summary>
    public long QueuedTasks => Interlocked.Read(ref _queuedTasks);

    /// <summary>Queued tasks of one tenant (see <see cref="QueuedTasks"/>).</summary>
    public long QueuedTasksOf(TenantId tenant) => _queuedByTenant.TryGetValue(tenant, out var b) ? Interlocked.Read(ref b.Value) : 0;

    // Takes n tasks from the total and the tenant's budget, or nothing and returns why. Add-then-check-then-undo keeps
    // the bound exact under concurrent submitters (a racing submitter may be refused spuriously, never admitted over).
    private string? TryTakeQueued(TenantId tenant, int n)
    {
        if (Interlocked.Add(ref _queuedTasks, n) > _maxQueuedTasks)
        {
            Interlocked.Add(ref _queuedTasks, -n);
            return $"the engine's queued-task budget ({_maxQueuedTasks}) is spent; retry when queued tasks were placed";
        }
        var box = _queuedByTenant.GetOrAdd(tenant, static _ => new StrongBox<long>());
        if (Interlocked.Add(ref box.Value, n) > _maxQueuedTasksPerTenant)
        {
            Interlocked.Add(ref box.Value, -n);
            Interlocked.Add(ref _queuedTasks, -n);
            return $"tenant {tenant.Value}'s queued-task budget ({_maxQueuedTasksPerTenant}) is spent; retry when its queued tasks were placed";
        }
        return null;
    }

    /// <summary>Moves the queued-task counts (negative when tasks were bound, positive when bound tasks went back to pending).</summary>
    internal void QueuedTasksChanged(TenantId tenant, int delta)
    {
        Interlocked.Add(ref _queuedTasks, delta);
        var box = _queuedByTenant.GetOrAdd(tenant, static _ => new StrongBox<long>());
        Interlocked.Add(ref box.Value, delta);
    }

    /// <summary>Reads a job's state.</summary>
    public bool TryGetJob(JobId id, out JobStatus status)
    {
        if (_jobs.TryGetValue(id, out var s)) { status = s.Snapshot(); return true; }
        status = default;
        return false;
    }

    /// <summary>Jobs the engine knows (queued, scheduling, placed, parked, and recently completed).</summary>
    public int JobCount => _jobs.Count;

    /// <summary>
    /// Up to <paramref name="limit"/> job states, in no particular order (an O(jobs) control-plane read for inspection,
    /// never on the scheduling path).
    /// </summary>
    public IReadOnlyList<JobStatus> ListJobs(int limit)
    {
        var list = new List<JobStatus>(Math.Min(Math.Max(0, limit), 1024));
        foreach (var (_, s) in _jobs)
        {
            if (list.Count >= limit) break;
            list.Add(s.Snapshot());
        }
        return list;
    }

    /// <summary>
    /// Called with a job's id after its state changed in a way a watcher cares about: it was placed, parked, requeued
    /// with more tasks bound, preempted, completed or stopped (once per scheduling attempt at most, never per node
    /// probed). Runs on the thread that made the change (a worker's, or the caller of <see cref="CompleteTask"/>,
    /// <see cref="StopJob"/>, <see cref="RequeueReleased"/>): it must be quick and must not call back into the engine's
    /// scheduling. The server sets it to push job events (docs/protocol.md, WatchJob); null: nobody listens.
    /// </summary>
    public Action<JobId>? JobChanged { get; set; }

    internal void Changed(JobId id) => JobChanged?.Invoke(id);

    /// <summary>
    /// Stops a job (<c>omega job stop</c>): its pending tasks are not placed (a queued job is dropped when a worker next
    /// takes it), its bindings are released in the cell (each by its generation, so only this engine's own), and it
    /// ends in <see cref="JobPhase.Stopped"/>. A worker deciding the job right now releases whatever its commit bound
    /// (see <see cref="JobState.Stopped"/>). Idempotent: stopping a stopped job answers <see cref="StopJobStatus.AlreadyStopped"/>
    /// and changes nothing, so a retry after a timeout is safe. A job a workload owns (<see cref="JobSpec.Origin"/>) is
    /// refused: its controller would submit it again; scale or delete the workload instead.
    /// </summary>
    public StopJobResult StopJob(JobId id)
    {
        if (!_jobs.TryGetValue(id, out var job)) return new StopJobResult(StopJobStatus.NotFound, 0, 0);
        if (job.Spec.Origin is not null) return new StopJobResult(StopJobStatus.OwnedByWorkload, 0, 0);
        var bound = new List<(int Index, long Generation)>();
        int pending;
        lock (job.Sync)
        {
            if (job.Phase == JobPhase.Completed) return new StopJobResult(StopJobStatus.AlreadyCompleted, 0, 0);
            if (job.Stopped) return new StopJobResult(StopJobStatus.AlreadyStopped, 0, 0);
            pending = job.Stop(bound);
        }
        // Queued-task budgets: the pending tasks will never be placed.
        if (pending > 0) QueuedTasksChanged(job.Spec.Tenant, -pending);
        int released = 0;
        foreach (var (index, generation) in bound)
            if (Committer.Release(job.Spec.Task(index), generation) == ReleaseStatus.Released) released++;
        ForgetOldCompleted(id);
        Changed(id);
        return new StopJobResult(StopJobStatus.Stopped, pending, released);
    }

    /// <summary>Releases what a worker's commit bound for a job that was stopped meanwhile (the worker's side of the race).</summary>
    internal void ReleaseForStopped(JobSpec spec, List<int> tasks, long generation)
    {
        foreach (int t in tasks) Committer.Release(spec.Task(t), generation);
    }

    /// <summary>The decision record that last covered a task, for <c>omega explain</c>.</summary>
    public DecisionRecord? Explain(TaskId task) => Decisions.ForTask(task);

    /// <summary>
    /// Reports a task finished: releases its binding (only the binding this engine made, by generation) and marks it
    /// completed. A job whose tasks are all completed is completed.
    /// </summary>
    public ReleaseStatus CompleteTask(TaskId task)
    {
        if (!_jobs.TryGetValue(task.Job, out var job) || (uint)task.Index >= (uint)job.TaskCount) return Committer.Release(task);
        long generation;
        lock (job.Sync) generation = job.GenerationOf(task.Index);
        // Generation 0: this engine holds no binding for the task (pending, completed, or its bind not yet recorded).
        // Release(task, 0) would free whatever binding the task has, which is not this engine's to free.
        if (generation == 0) return ReleaseStatus.NotBound;
        var r = Committer.Release(task, generation);
        if (r == ReleaseStatus.Released)
        {
            bool all;
            lock (job.Sync)
            {
                all = job.SetCompleted(task.Index);
                if (all) job.Phase = JobPhase.Completed;
            }
            if (all)
            {
                ForgetOldCompleted(task.Job);
                Changed(task.Job);
            }
        }
        return r;
    }

    private void ForgetOldCompleted(JobId justCompleted)
    {
        _completed.Enqueue(justCompleted);
        // Racing completers may each evict one; the bound is approximate by at most the number of racing threads.
        while (_completed.Count > _completedRetention && _completed.TryDequeue(out var old))
            _jobs.TryRemove(old, out _);
    }

    /// <summary>Sets a tenant's hard quota (enforced by the cell at commit); the tenant must exist.</summary>
    public TenantOpStatus SetTenantQuota(TenantId tenant, ResourceVector? quota) => Committer.SetTenantQuota(tenant, quota);

    /// <summary>
    /// Runs every worker's <see cref="SchedulerWorker.Step"/> in turn until no worker has a ready job or
    /// <paramref name="maxSteps"/> is reached. Deterministic for a seed when used single-threaded. Returns the steps that did work.
    /// </summary>
    public int RunUntilIdle(int maxSteps = int.MaxValue)
    {
        int steps = 0;
        bool any = true;
        while (any && steps < maxSteps)
        {
            any = false;
            foreach (var w in _workers)
            {
                if (steps >= maxSteps) break;
                var o = w.Step();
                if (o is StepOutcome.Idle or StepOutcome.LeaseLost) continue;
                any = true;
                steps++;
            }
        }
        return steps;
    }

    /// <summary>Starts one dedicated thread per worker. Call <see cref="DisposeAsync"/> (or <see cref="Dispose"/>) to stop them.</summary>
    public void Start()
    {
        if (_threads is not null) throw new InvalidOperationException("already started");
        _stop = new CancellationTokenSource();
        var token = _stop.Token;
        _threads = new Thread[_workers.Count];
        for (int i = 0; i < _workers.Count; i++)
        {
            var w = _workers[i];
            _threads[i] = new Thread(() => Loop(w, token)) { IsBackground = true, Name = $"omega-{w.Kind}-{w.Index}" };
            _threads[i].Start();
        }
    }

    private static void Loop(SchedulerWorker worker, CancellationToken stop)
    {
        worker.MarkRunning();
        int idle = 0;
        while (!stop.IsCancellationRequested)
        {
            var o = worker.Step();
            if (o is StepOutcome.Idle or StepOutcome.LeaseLost)
            {
                // Back off while idle: spin briefly, then yield, then sleep, so an idle engine costs no CPU. The back-off
                // is idle time of the worker (WorkerTimes): a job submitted meanwhile waits up to ~1 ms for it.
                long b0 = System.Diagnostics.Stopwatch.GetTimestamp();
                if (++idle < 50) Thread.SpinWait(20);
                else if (idle < 100) Thread.Yield();
                else stop.WaitHandle.WaitOne(1);
                worker.AddIdle(System.Diagnostics.Stopwatch.GetTimestamp() - b0);
            }
            else idle = 0;
        }
    }

    /// <summary>
    /// Where each worker of a scheduler kind spent its wall time (deciding, committing, the rest of its steps, idle), in
    /// worker order; empty for an unknown kind. Also exported as the <c>omega.sched.worker.time</c> metric.
    /// </summary>
    public IReadOnlyList<WorkerTimes> GetWorkerTimes(string kind)
    {
        if (!_kinds.TryGetValue(kind, out var k)) return Array.Empty<WorkerTimes>();
        var times = new WorkerTimes[k.Workers.Count];
        for (int i = 0; i < times.Length; i++) times[i] = k.Workers[i].Times;
        return times;
    }

    internal IEnumerable<Measurement<double>> ObserveWorkerTimes()
    {
        foreach (var (name, k) in _kinds)
            foreach (var w in k.Workers)
            {
                var t = w.Times;
                var scheduler = new KeyValuePair<string, object?>("scheduler", name);
                var worker = new KeyValuePair<string, object?>("worker", w.Index);
                yield return new Measurement<double>(t.DecidingSeconds, scheduler, worker, new KeyValuePair<string, object?>("state", "deciding"));
                yield return new Measurement<double>(t.CommittingSeconds, scheduler, worker, new KeyValuePair<string, object?>("state", "committing"));
                yield return new Measurement<double>(t.OtherSeconds, scheduler, worker, new KeyValuePair<string, object?>("state", "other"));
                yield return new Measurement<double>(t.IdleSeconds, scheduler, worker, new KeyValuePair<string, object?>("state", "idle"));
            }
    }

    /// <summary>
    /// Re-queues tasks whose bindings were released from outside the engine (their node was declared lost and the
    /// caller already released them in the cell): each goes back to pending and its job is queued again, so the task is
    /// bound anew at a higher generation. Tasks the engine does not know, or does not hold as bound, are ignored, and so
    /// are tasks whose binding the cell still holds at the generation the engine recorded.
    /// </summary>
    /// <remarks>
    /// Why the cell is asked again: a caller decides from what it read earlier, and a worker may have bound and recorded
    /// the task in between (a controller reads "not bound" from the cell, the worker commits and records the task as bound,
    /// the controller then finds the job placed and calls this). Re-queuing a live binding sent the task back to pending,
    /// and every retry met <see cref="ClaimStatus.TaskAlreadyBound"/> until the job was parked (seen in a region drill:
    /// 10 refusals, one job's <c>MaxAttempts</c>). Checking the cell after the engine's own record closes that: a
    /// binding released from outside is gone from its node's list before the caller calls here, and one made by a worker
    /// is in the list (at the recorded generation) before the worker records it. The read is lock-free.
    /// </remarks>
    public void RequeueReleased(IReadOnlyList<TaskId> tasks)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        if (tasks.Count == 0) return;
        List<TaskId>? released = null;
        List<Allocation>? onNode = null;
        foreach (var t in tasks)
        {
            if (!_jobs.TryGetValue(t.Job, out var job) || (uint)t.Index >= (uint)job.TaskCount) continue;
            NodeId node;
            long generation;
            lock (job.Sync)
            {
                if (job.PhaseOf(t.Index) != TaskPhase.Bound) continue;
                node = job.NodeOf(t.Index);
                generation = job.GenerationOf(t.Index);
            }
            if (StillBound(t, node, generation, onNode ??= [])) continue;
            (released ??= []).Add(t);
        }
        if (released is not null) OnPreempted([.. released]);
    }

    // True when the cell lists the task on the node at exactly the generation the engine recorded (the binding the
    // engine made is still live). Allocates only on this rare path.
    private bool StillBound(TaskId task, NodeId node, long generation, List<Allocation> scratch)
    {
        scratch.Clear();
        View.CopyAllocationsOnNode(node, scratch);
        foreach (var a in scratch)
            if (a.Task == task) return a.Generation == generation;
        return false;
    }

    /// <summary>Re-queues jobs whose tasks were preempted, with a new job generation.</summary>
    internal void OnPreempted(TaskId[] victims)
    {
        foreach (var v in victims)
        {
            if (!_jobs.TryGetValue(v.Job, out var job) || (uint)v.Index >= (uint)job.TaskCount) continue;
            bool enqueue = false;
            lock (job.Sync)
            {
                var phase = job.PhaseOf(v.Index);
                if (phase != TaskPhase.Bound)
                {
                    // The victim's own worker committed this binding and has not recorded it yet: tell it the binding is gone.
                    if (phase == TaskPhase.Pending && job.Phase == JobPhase.Scheduling)
                    {
                        job.MarkEvictedBeforeRecorded(v.Index, true);
                        job.Generation++;
                    }
                    continue;
                }
                job.SetPending(v.Index);
                job.Generation++;
                if (job.Phase is JobPhase.Placed or JobPhase.Parked)
                {
                    job.Phase = JobPhase.Queued;
                    job.Attempts = 0;
                    job.ParkedReason = null;
                    enqueue = true;
                }
                // A job being scheduled right now sees the pending task when its worker re-checks, and requeues itself.
            }
            QueuedTasksChanged(job.Spec.Tenant, 1);
            Changed(job.Spec.Id);
            if (enqueue && _kinds[job.Scheduler].Queue.Enqueue(job) != EnqueueStatus.Accepted)
            {
                // Never silently dropped: a victim whose queue is full is parked with the reason.
                lock (job.Sync)
                {
                    job.Phase = JobPhase.Parked;
                    job.ParkedReason = $"task {v} preempted, and the queue of '{job.Scheduler}' was full when requeueing the job";
                }
            }
        }
    }

    internal IEnumerable<Measurement<long>> ObserveQueueDepths()
    {
        foreach (var (name, k) in _kinds)
        {
            var (ready, delayed) = k.Queue.Depths();
            for (int b = 0; b < ready.Length; b++)
                yield return new Measurement<long>(ready[b], new KeyValuePair<string, object?>("scheduler", name), new KeyValuePair<string, object?>("band", b));
            yield return new Measurement<long>(delayed, new KeyValuePair<string, object?>("scheduler", name), new KeyValuePair<string, object?>("band", "delayed"));
        }
    }

    internal IEnumerable<Measurement<double>> ObserveQueueAges()
    {
        foreach (var (name, k) in _kinds)
        {
            var ages = k.Queue.OldestAgeByBand();
            for (int b = 0; b < ages.Length; b++)
                yield return new Measurement<double>(ages[b].TotalSeconds, new KeyValuePair<string, object?>("scheduler", name), new KeyValuePair<string, object?>("band", b));
        }
    }

    internal IEnumerable<Measurement<double>> ObserveBusyness()
    {
        foreach (var (name, k) in _kinds)
        {
            var (useful, wasted) = Busyness(name);
            yield return new Measurement<double>(useful, new KeyValuePair<string, object?>("scheduler", name), new KeyValuePair<string, object?>("kind", "useful"));
            yield return new Measurement<double>(wasted, new KeyValuePair<string, object?>("scheduler", name), new KeyValuePair<string, object?>("kind", "wasted"));
        }
    }

    /// <summary>Busyness of a scheduler kind, averaged over its workers: (useful, wasted) fractions of wall time spent deciding.</summary>
    public (double Useful, double Wasted) Busyness(string kind)
    {
        if (!_kinds.TryGetValue(kind, out var k)) return (0, 0);
        double useful = 0, wasted = 0, wall = 0;
        foreach (var w in k.Workers) { useful += w.UsefulSeconds; wasted += w.WastedSeconds; wall += w.WallSeconds; }
        return wall <= 0 ? (0, 0) : (useful / wall, wasted / wall);
    }

    /// <summary>Totals of a scheduler kind over its workers: tasks bound, and transactions without and with a conflict.</summary>
    public (long Placements, long CleanTransactions, long ConflictedTransactions) Totals(string kind)
    {
        if (!_kinds.TryGetValue(kind, out var k)) return default;
        long p = 0, clean = 0, conflicted = 0;
        foreach (var w in k.Workers) { p += w.Placements; clean += w.CleanTransactions; conflicted += w.ConflictedTransactions; }
        return (p, clean, conflicted);
    }

    /// <summary>Age of the oldest ready job of a scheduler kind, over all priority bands (zero when none is ready).</summary>
    public TimeSpan OldestQueuedAge(string kind)
    {
        if (!_kinds.TryGetValue(kind, out var k)) return TimeSpan.Zero;
        var oldest = TimeSpan.Zero;
        foreach (var age in k.Queue.OldestAgeByBand()) if (age > oldest) oldest = age;
        return oldest;
    }

    /// <summary>The scheduler kinds' names, in configuration order.</summary>
    public IReadOnlyList<string> Kinds => _kindNames;

    /// <summary>Queue depth of a scheduler kind (ready and delayed).</summary>
    public int QueueDepth(string kind) => _kinds.TryGetValue(kind, out var k) ? k.Queue.Count : 0;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_stop is not null)
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            foreach (var t in _threads!) t.Join();
            _stop.Dispose();
            _stop = null;
        }
        foreach (var w in _workers)
            if (w.Lease.Token.Value != 0) Committer.ReleaseLease(w.Lease);
        Metrics.Dispose();
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

/// <summary>What <see cref="SchedulingEngine.StopJob"/> did.</summary>
public enum StopJobStatus : byte
{
    /// <summary>Stopped now.</summary>
    Stopped = 0,

    /// <summary>It had been stopped before; nothing changed.</summary>
    AlreadyStopped = 1,

    /// <summary>Every task had completed; nothing changed.</summary>
    AlreadyCompleted = 2,

    /// <summary>The engine does not know the job (never submitted here, or completed and forgotten).</summary>
    NotFound = 3,

    /// <summary>A workload owns the job: its controller would submit it again. Scale or delete the workload.</summary>
    OwnedByWorkload = 4,
}

/// <summary>The answer of <see cref="SchedulingEngine.StopJob"/>.</summary>
/// <param name="Status">What happened.</param>
/// <param name="Dequeued">Tasks that were pending and now will never be placed.</param>
/// <param name="Released">Bindings released in the cell.</param>
public readonly record struct StopJobResult(StopJobStatus Status, int Dequeued, int Released);
