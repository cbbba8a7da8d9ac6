namespace Omega.Simulation;

/// <summary>A job inside a run: what is left to place and its timeline.</summary>
internal sealed class SimJob
{
    public long Number;
    public string Kind = "";
    public int Scheduler;
    public double Submit;
    public double FirstAttempt = double.NaN;
    public double FullyPlaced = double.NaN;
    public int Tasks;
    public ResourceVector TaskResources;
    public double Duration;
    public int Attempts;
    public int Placed;
    public JobOutcome Outcome;

    // The trace's different-machine constraint, and the machines holding the job's placed tasks (only for such jobs).
    public bool DifferentMachine;
    public HashSet<int>? Machines;

    // Indexes of the tasks not yet placed; the first UnplacedCount entries are live.
    public int[] Unplaced = Array.Empty<int>();
    public int UnplacedCount;

    public void InitTasks(int tasks)
    {
        Tasks = tasks;
        Unplaced = new int[tasks];
        for (int i = 0; i < tasks; i++) Unplaced[i] = i;
        UnplacedCount = tasks;
    }
}

/// <summary>The tasks one commit placed, released together when their (shared) duration ends.</summary>
internal sealed class CompletionBatch(TaskId[] tasks, long cpuEach)
{
    public TaskId[] Tasks { get; } = tasks;

    public long CpuEach { get; } = cpuEach;
}
