using Omega.Cells;

namespace Omega.Simulation;

/// <summary>
/// One scheduler of the Omega paper's model: it takes one job at a time from its FIFO queue, syncs its private copy of
/// the cell, places the job's unplaced tasks by randomized first fit on that copy, and commits after its decision time
/// <c>JobTime + TaskTime × (tasks still unplaced)</c>.
/// </summary>
/// <param name="Name">Its name (also its lease identity in the cell).</param>
/// <param name="JobTime">t_job: the per-decision cost, in seconds.</param>
/// <param name="TaskTime">t_task: the cost per unplaced task, in seconds.</param>
/// <param name="Mode">Incremental (keep the claims that validate) or AllOrNothing (gang).</param>
/// <param name="Detection">Fine (conflict only if the node has no room) or Coarse (conflict if anything was placed on the node since the sync).</param>
/// <param name="Group">A group name for pooled metrics (for example "batch" for several batch schedulers); null: its own name.</param>
public sealed record SchedulerSpec(string Name, double JobTime, double TaskTime, CommitMode Mode = CommitMode.Incremental, ConflictDetection Detection = ConflictDetection.Fine, string? Group = null)
{
    /// <summary>The group its metrics are pooled in.</summary>
    public string GroupName => Group ?? Name;
}

/// <summary>
/// A synthetic job kind: exponential interarrival time, exponential task count (rounded up), exponential duration (one
/// draw per job, shared by its tasks) and fixed resources per task. Its jobs go round-robin to <see cref="Schedulers"/>.
/// </summary>
/// <param name="Name">The kind's name (for example "batch").</param>
/// <param name="MeanInterarrival">Mean seconds between two arrivals.</param>
/// <param name="MeanTasks">Mean tasks per job (the draw is rounded up, so at least one).</param>
/// <param name="MeanDuration">Mean seconds a job's tasks run once placed.</param>
/// <param name="TaskResources">Resources per task.</param>
/// <param name="Schedulers">The names of the schedulers its jobs are spread over, round-robin.</param>
public sealed record JobKindSpec(string Name, double MeanInterarrival, double MeanTasks, double MeanDuration, ResourceVector TaskResources, IReadOnlyList<string> Schedulers);

/// <summary>A job with fixed parameters: the trace's and the tests' input.</summary>
/// <param name="SubmitTime">Virtual seconds at which it arrives.</param>
/// <param name="Tasks">Its task count (at least one).</param>
/// <param name="TaskResources">Resources per task.</param>
/// <param name="Duration">Seconds its tasks run once placed; <see cref="double.PositiveInfinity"/> for tasks that never end.</param>
/// <param name="Scheduler">The name of the scheduler whose queue it joins.</param>
/// <param name="Kind">Its kind, for reporting.</param>
/// <param name="DifferentMachine">
/// The trace's different-machine constraint: no two tasks of the job on one machine. Honoured by the simulated scheduler
/// (it never picks a machine holding a task of the job) and enforced by the cell at commit (hard anti-affinity with the job
/// as the group, <see cref="PlacementGroup"/>).
/// </param>
public sealed record JobSpec(double SubmitTime, int Tasks, ResourceVector TaskResources, double Duration, string Scheduler, string Kind = "explicit", bool DifferentMachine = false);

/// <summary>
/// A prefill of long-running tasks placed at time zero, before any scheduler runs, until the cell's CPU utilization
/// reaches <see cref="TargetCpuUtilization"/> (randomized first fit straight into the cell; these tasks never end).
/// </summary>
/// <param name="TargetCpuUtilization">The CPU fraction to reach (0-1).</param>
/// <param name="TaskResources">Resources per prefilled task.</param>
public sealed record PrefillSpec(double TargetCpuUtilization, ResourceVector TaskResources);

/// <summary>The full description of one simulation run. Same config and seed, same result, on any machine.</summary>
public sealed record SimulationConfig
{
    /// <summary>The number of identical machines in the cell.</summary>
    public int Machines { get; init; } = 10_000;

    /// <summary>Each machine's capacity.</summary>
    public ResourceVector MachineCapacity { get; init; } = ResourceVector.FromCoresAndGiB(4, 16);

    /// <summary>Simulated seconds to run.</summary>
    public double Duration { get; init; } = 86_400;

    /// <summary>The seed of every random stream in the run.</summary>
    public long Seed { get; init; } = 1;

    /// <summary>The schedulers.</summary>
    public IReadOnlyList<SchedulerSpec> Schedulers { get; init; } = Array.Empty<SchedulerSpec>();

    /// <summary>Synthetic job kinds.</summary>
    public IReadOnlyList<JobKindSpec> JobKinds { get; init; } = Array.Empty<JobKindSpec>();

    /// <summary>Explicit jobs (a trace, or a test's hand-built arrivals), in any order.</summary>
    public IReadOnlyList<JobSpec> Jobs { get; init; } = Array.Empty<JobSpec>();

    /// <summary>The prefill, or null for an empty cell.</summary>
    public PrefillSpec? Prefill { get; init; }

    /// <summary>Seconds before a job with unplaced tasks rejoins the back of its queue (the paper: 1 s).</summary>
    public double RetryDelay { get; init; } = 1.0;

    /// <summary>A job is abandoned after more than this many attempts with nothing placed (the paper: 100).</summary>
    public int MaxAttemptsWithNothingPlaced { get; init; } = 100;

    /// <summary>A job is abandoned after more than this many attempts in total (the paper: 1,000).</summary>
    public int MaxAttempts { get; init; } = 1_000;

    /// <summary>Keep a record of every attempt in <see cref="SimulationResult.Attempts"/> (tests and debugging; costs memory).</summary>
    public bool RecordAttempts { get; init; }

    /// <summary>Keep one outcome per job in <see cref="SimulationResult.Jobs"/> (tests and debugging; costs memory).</summary>
    public bool RecordJobs { get; init; }

    /// <summary>Checks the config; returns null when it is valid, else one line saying what is wrong.</summary>
    public string? Validate()
    {
        if (Machines < 1) return "machines must be at least 1";
        if (!MachineCapacity.IsNonNegative || MachineCapacity.IsZero) return "machine capacity must be positive";
        if (!(Duration > 0) || double.IsInfinity(Duration)) return "duration must be positive and finite";
        if (Schedulers.Count == 0) return "at least one scheduler is needed";
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in Schedulers)
        {
            if (string.IsNullOrWhiteSpace(s.Name)) return "a scheduler has no name";
            if (!names.Add(s.Name)) return $"scheduler name '{s.Name}' is used twice";
            if (!(s.JobTime >= 0) || !(s.TaskTime >= 0) || double.IsInfinity(s.JobTime) || double.IsInfinity(s.TaskTime))
                return $"scheduler '{s.Name}': t_job and t_task must be finite and non-negative";
        }
        foreach (var k in JobKinds)
        {
            if (!(k.MeanInterarrival > 0) || !(k.MeanTasks > 0) || !(k.MeanDuration > 0)) return $"job kind '{k.Name}': means must be positive";
            if (!k.TaskResources.IsNonNegative) return $"job kind '{k.Name}': task resources must be non-negative";
            if (k.Schedulers.Count == 0) return $"job kind '{k.Name}' has no scheduler";
            foreach (var n in k.Schedulers)
                if (!names.Contains(n)) return $"job kind '{k.Name}' names unknown scheduler '{n}'";
        }
        foreach (var j in Jobs)
        {
            if (j.Tasks < 1 || !(j.SubmitTime >= 0) || !(j.Duration > 0) || !j.TaskResources.IsNonNegative) return $"job at {j.SubmitTime} s is invalid (tasks, submit time, duration or resources)";
            if (!names.Contains(j.Scheduler)) return $"a job names unknown scheduler '{j.Scheduler}'";
        }
        if (Prefill is { } p && (!(p.TargetCpuUtilization >= 0) || p.TargetCpuUtilization >= 1 || !p.TaskResources.IsNonNegative || p.TaskResources.CpuMillis <= 0))
            return "prefill: target utilization must be in [0, 1) and tasks must need some CPU";
        if (!(RetryDelay >= 0)) return "retry delay must be non-negative";
        if (MaxAttempts < 1 || MaxAttemptsWithNothingPlaced < 1) return "abandonment limits must be at least 1";
        return null;
    }
}
