using Omega.Cells;

namespace Omega.Simulation.Tests;

/// <summary>Small hand-built cells and schedulers for the model-rule tests.</summary>
internal static class TestWorlds
{
    public static ResourceVector Cpu(double cores) => ResourceVector.FromCoresAndGiB(cores, 0);

    public static SimulationConfig Cell(int machines, double cores, double duration, params SchedulerSpec[] schedulers) => new()
    {
        Machines = machines,
        MachineCapacity = ResourceVector.FromCoresAndGiB(cores, 16),
        Duration = duration,
        Seed = 7,
        Schedulers = schedulers,
        RecordAttempts = true,
        RecordJobs = true,
    };

    public static JobSpec Job(double at, int tasks, double cores, string scheduler, double duration = double.PositiveInfinity)
        => new(at, tasks, Cpu(cores), duration, scheduler);

    public static AttemptRecord[] AttemptsOf(SimulationResult r, string scheduler)
        => r.Attempts.Where(a => a.Scheduler == scheduler).ToArray();

    /// <summary>A fingerprint of every reported number, exact to the bit ("R" format).</summary>
    public static string Fingerprint(SimulationResult r)
    {
        var c = System.Globalization.CultureInfo.InvariantCulture;
        var parts = new List<string>
        {
            r.PrefilledTasks.ToString(c), r.MeanCpuUtilization.ToString("R", c), r.FinalCpuUtilization.ToString("R", c), r.Events.ToString(c),
        };
        foreach (var s in r.Schedulers)
        {
            parts.Add(string.Join(",", s.Name, s.DecisionSeconds.ToString("R", c), s.Attempts, s.AttemptsWithNoPlacement, s.Transactions, s.ConflictedTransactions,
                s.CleanTransactions, s.ClaimsApplied, s.ClaimsRejected, s.JobsSubmitted, s.JobsFullyPlaced, s.JobsAbandoned,
                s.WaitFirstAttemptMean.ToString("R", c), s.WaitFirstAttemptP90.ToString("R", c), s.WaitFullyPlacedMean.ToString("R", c), s.WaitFullyPlacedP90.ToString("R", c),
                string.Join(";", s.RejectionsByReason.Select(kv => $"{kv.Key}={kv.Value}"))));
        }
        return string.Join("|", parts);
    }
}
