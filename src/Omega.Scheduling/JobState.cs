namespace Omega.Scheduling;

/// <summary>Where a job is in its life.</summary>
public enum JobPhase : byte
{
    /// <summary>Waiting in its scheduler's queue (first time or for a retry).</summary>
    Queued = 0,

    /// <summary>A worker is deciding or committing it now.</summary>
    Scheduling = 1,

    /// <summary>Every task that is not finished is bound.</summary>
    Placed = 2,

    /// <summary>Given up after the attempt limit; <see cref="JobStatus.ParkedReason"/> says why. Never silently dropped.</summary>
    Parked = 3,

    /// <summary>Every task completed.</summary>
    Completed = 4,

    /// <summary>
    /// Stopped by an operator (<see cref="SchedulingEngine.StopJob"/>): its pending tasks will not be placed and its
    /// bindings were released. Final, like <see cref="Completed"/>.
    /// </summary>
    Stopped = 5,
}

/// <summary>A task's state as the engine tracks it.</summary>
public enum TaskPhase : byte
{
    /// <summary>Not bound; waiting to be placed.</summary>
    Pending = 0,

    /// <summary>Bound to a node.</summary>
    Bound = 1,

    /// <summary>Finished (released by completion).</summary>
    Completed = 2,
}

/// <summary>A read-only view of a job's state.</summary>
/// <param name="Job">The job.</param>
/// <param name="Scheduler">The scheduler kind that owns it.</param>
/// <param name="Phase">Its phase.</param>
/// <param name="Attempts">Scheduling attempts so far (this placement round).</param>
/// <param name="Generation">Bumped each time the job goes back to the queue after being placed (for example after a preemption).</param>
/// <param name="Pending">Tasks waiting to be placed.</param>
/// <param name="Bound">Tasks bound.</param>
/// <param name="Completed">Tasks completed.</param>
/// <param name="ParkedReason">Why it is parked, if it is.</param>
public readonly record struct JobStatus(JobSpec Job, string Scheduler, JobPhase Phase, int Attempts, int Generation, int Pending, int Bound, int Completed, string? ParkedReason);

/// <summary>
/// The engine's mutable record of a submitted job. Mutations happen under the instance's lock (once per attempt or
/// per task event, never per node probed).
/// </summary>
/// <remarks>
/// Per-task state is allocated lazily, in chunks of <see cref="ChunkSize"/> tasks, the first time a task of the chunk
/// leaves its initial Pending state, and dropped when the job completes. A task in a chunk never allocated is Pending
/// with generation 0. So a job's memory is proportional to the tasks that were placed, not to the count it asked for:
/// a SubmitJob of a large count that cannot be placed costs a few hundred bytes (issue 10, defect 3: 20 frames asking
/// for 1,000,000 tasks each took a server from 0.5 GB to 8.3 GB). Rejected alternative: a dictionary per task, which
/// costs ~40 bytes per placed task against 16 here and would put a hash on the per-placement path.
/// </remarks>
public sealed class JobState
{
    /// <summary>Tasks per lazily allocated chunk of per-task state.</summary>
    internal const int ChunkSize = 1024;

    /// <summary>Jobs of at most this many tasks get their per-task state at submission rather than at first binding.</summary>
    internal const int EagerTasks = 64;

    internal readonly Lock Sync = new();
    private readonly Slot[]?[] _chunks;
    private int _pending, _bound, _completed;

    internal JobState(JobSpec spec, string scheduler, long submittedAt)
    {
        Spec = spec;
        Scheduler = scheduler;
        SubmittedAt = submittedAt;
        _chunks = new Slot[]?[(spec.TaskCount + ChunkSize - 1) / ChunkSize];
        // A small job's per-task state (at most 64 × 16 B) is allocated here, at submission, with the job's other
        // per-job objects, so that the engine step that binds its tasks allocates nothing (issue 14's budget: 0 B per
        // placement on the warm step). Large jobs keep the lazy chunks: an unplaceable million-task job stays cheap.
        if (spec.TaskCount is > 0 and <= EagerTasks) _chunks[0] = new Slot[spec.TaskCount];
        _pending = spec.TaskCount;
    }

    private struct Slot
    {
        public long Generation;
        public NodeId Node;
        public TaskPhase Phase;

        // Set when a task was preempted after its worker's commit bound it but before the worker recorded the binding
        // (the task still looked Pending): the worker must then leave it Pending instead of marking it Bound.
        public bool EvictedBeforeRecorded;
    }

    /// <summary>The job spec.</summary>
    public JobSpec Spec { get; }

    /// <summary>The owning scheduler kind.</summary>
    public string Scheduler { get; }

    internal long SubmittedAt { get; }

    /// <summary>
    /// Set (under <see cref="Sync"/>) once the job is stopped; never cleared. A worker checks it under the same lock
    /// before it marks a job Scheduling and before it records the bindings its commit made, so either the stop sees a
    /// binding recorded (and releases it) or the worker sees the stop (and releases what it just committed): no binding
    /// of a stopped job survives.
    /// </summary>
    internal bool Stopped { get; private set; }
    internal JobPhase Phase { get; set; }
    internal int Attempts { get; set; }
    internal int Generation { get; set; }
    internal string? ParkedReason { get; set; }

    /// <summary>The job's task count.</summary>
    internal int TaskCount => Spec.TaskCount;

    /// <summary>Tasks neither bound nor completed (under <see cref="Sync"/>).</summary>
    internal int PendingCount => _pending;

    /// <summary>Chunks of per-task state allocated now (tests and memory accounting).</summary>
    internal int AllocatedChunks
    {
        get
        {
            int n = 0;
            foreach (var c in _chunks) if (c is not null) n++;
            return n;
        }
    }

    internal TaskPhase PhaseOf(int task)
    {
        var c = _chunks[task / ChunkSize];
        if (c is not null) return c[task % ChunkSize].Phase;
        return _completed == Spec.TaskCount ? TaskPhase.Completed : TaskPhase.Pending;
    }

    internal long GenerationOf(int task) => _chunks[task / ChunkSize] is { } c ? c[task % ChunkSize].Generation : 0;

    internal NodeId NodeOf(int task) => _chunks[task / ChunkSize] is { } c ? c[task % ChunkSize].Node : default;

    internal bool EvictedBeforeRecorded(int task) => _chunks[task / ChunkSize] is { } c && c[task % ChunkSize].EvictedBeforeRecorded;

    /// <summary>
    /// Appends the indexes of pending tasks to <paramref name="pending"/> and the nodes of bound tasks to
    /// <paramref name="boundNodes"/> (under <see cref="Sync"/>). A chunk never allocated is all pending: no per-task reads.
    /// </summary>
    internal void CollectTasks(List<int> pending, List<NodeId> boundNodes)
    {
        if (_completed == Spec.TaskCount) return;
        for (int c = 0; c < _chunks.Length; c++)
        {
            int first = c * ChunkSize, end = Math.Min(Spec.TaskCount, first + ChunkSize);
            var chunk = _chunks[c];
            if (chunk is null)
            {
                for (int i = first; i < end; i++) pending.Add(i);
                continue;
            }
            for (int i = first; i < end; i++)
            {
                ref var s = ref chunk[i - first];
                if (s.Phase == TaskPhase.Pending) pending.Add(i);
                else if (s.Phase == TaskPhase.Bound) boundNodes.Add(s.Node);
            }
        }
    }

    /// <summary>
    /// Stops the job (under <see cref="Sync"/>): every task neither completed nor stopped leaves the counts (so Pending
    /// and Bound read 0) and its generation is cleared, so an agent's late completion report finds no binding of this
    /// engine (<see cref="SchedulingEngine.CompleteTask"/> answers NotBound); bound tasks are appended to
    /// <paramref name="bound"/> with the generation of their binding, for the caller to release in the cell. Returns the
    /// number of tasks that were pending (never placed).
    /// </summary>
    internal int Stop(List<(int Index, long Generation)> bound)
    {
        Stopped = true;
        Phase = JobPhase.Stopped;
        int pending = _pending;
        if (_completed != Spec.TaskCount)
            for (int c = 0; c < _chunks.Length; c++)
            {
                var chunk = _chunks[c];
                if (chunk is null) continue; // all pending: counted above, nothing to release
                for (int i = 0; i < chunk.Length && c * ChunkSize + i < Spec.TaskCount; i++)
                {
                    ref var slot = ref chunk[i];
                    if (slot.Phase == TaskPhase.Bound) bound.Add((c * ChunkSize + i, slot.Generation));
                }
            }
        _pending = 0;
        _bound = 0;
        // Per-task state goes, as for a completed job: a stopped job stays queryable by its counts only.
        Array.Clear(_chunks);
        return pending;
    }

    // The last (or only) chunk is sized to the tasks it holds: a 16-task job used to allocate a whole 1,024-slot chunk
    // (16 KiB) on its first binding, about 1 KB per placement on the engine step (issue 14).
    private ref Slot Touch(int task) =>
        ref (_chunks[task / ChunkSize] ??= new Slot[Math.Min(ChunkSize, Spec.TaskCount - task / ChunkSize * ChunkSize)])[task % ChunkSize];

    internal void MarkEvictedBeforeRecorded(int task, bool value)
    {
        if (!value && _chunks[task / ChunkSize] is null) return;
        Touch(task).EvictedBeforeRecorded = value;
    }

    internal void SetBound(int task, long generation, NodeId node)
    {
        ref var s = ref Touch(task);
        Count(s.Phase, -1);
        s.Phase = TaskPhase.Bound;
        s.Generation = generation;
        s.Node = node;
        _bound++;
    }

    internal void SetPending(int task)
    {
        ref var s = ref Touch(task);
        Count(s.Phase, -1);
        s.Phase = TaskPhase.Pending;
        s.Generation = 0;
        _pending++;
    }

    /// <summary>Marks a task completed; returns true when that completed the whole job (its per-task state is then dropped).</summary>
    internal bool SetCompleted(int task)
    {
        ref var s = ref Touch(task);
        Count(s.Phase, -1);
        s.Phase = TaskPhase.Completed;
        s.Generation = 0;
        _completed++;
        if (_completed != Spec.TaskCount) return false;
        // Completed jobs stay queryable for a while (CompletedJobRetention): keep their counts, not their tasks.
        Array.Clear(_chunks);
        return true;
    }

    private void Count(TaskPhase phase, int d)
    {
        if (phase == TaskPhase.Pending) _pending += d;
        else if (phase == TaskPhase.Bound) _bound += d;
        else _completed += d;
    }

    internal JobStatus Snapshot()
    {
        lock (Sync) return new JobStatus(Spec, Scheduler, Phase, Attempts, Generation, _pending, _bound, _completed, ParkedReason);
    }
}
