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
public sealed class JobState
{
    internal readonly Lock Sync = new();
    internal readonly TaskPhase[] Tasks;
    internal readonly long[] Generations;
    internal readonly NodeId[] Nodes;

    /// <summary>
    /// Set when a task was preempted after its worker's commit bound it but before the worker recorded the binding
    /// (the task still looked Pending): the worker must then leave it Pending instead of marking it Bound.
    /// </summary>
    internal readonly bool[] EvictedBeforeRecorded;

    internal JobState(JobSpec spec, string scheduler, long submittedAt)
    {
        Spec = spec;
        Scheduler = scheduler;
        SubmittedAt = submittedAt;
        Tasks = new TaskPhase[spec.TaskCount];
        Generations = new long[spec.TaskCount];
        Nodes = new NodeId[spec.TaskCount];
        EvictedBeforeRecorded = new bool[spec.TaskCount];
    }

    /// <summary>The job spec.</summary>
    public JobSpec Spec { get; }

    /// <summary>The owning scheduler kind.</summary>
    public string Scheduler { get; }

    internal long SubmittedAt { get; }
    internal JobPhase Phase { get; set; }
    internal int Attempts { get; set; }
    internal int Generation { get; set; }
    internal string? ParkedReason { get; set; }

    internal JobStatus Snapshot()
    {
        lock (Sync)
        {
            int pending = 0, bound = 0, completed = 0;
            foreach (var t in Tasks)
            {
                if (t == TaskPhase.Pending) pending++;
                else if (t == TaskPhase.Bound) bound++;
                else completed++;
            }
            return new JobStatus(Spec, Scheduler, Phase, Attempts, Generation, pending, bound, completed, ParkedReason);
        }
    }
}
