using Omega.Cells;

namespace Omega.Simulation;

/// <summary>The Omega paper's metrics for one scheduler over one run.</summary>
public sealed record SchedulerMetrics
{
    /// <summary>The scheduler's name.</summary>
    public required string Name { get; init; }

    /// <summary>Its spec.</summary>
    public required SchedulerSpec Spec { get; init; }

    /// <summary>Virtual seconds spent deciding (useful and wasted), counted up to the end of the run.</summary>
    public double DecisionSeconds { get; init; }

    /// <summary>Busyness: <see cref="DecisionSeconds"/> / simulated time.</summary>
    public double Busyness { get; init; }

    /// <summary>Attempts: decisions started (one job taken from the queue, synced, placed, committed).</summary>
    public long Attempts { get; init; }

    /// <summary>Attempts whose private placement found no room for any task, so there was nothing to commit.</summary>
    public long AttemptsWithNoPlacement { get; init; }

    /// <summary>Transactions committed to the cell (attempts with at least one claim).</summary>
    public long Transactions { get; init; }

    /// <summary>Transactions in which at least one claim conflicted.</summary>
    public long ConflictedTransactions { get; init; }

    /// <summary>Transactions in which no claim conflicted.</summary>
    public long CleanTransactions { get; init; }

    /// <summary>The paper's conflict fraction: conflicted / clean transactions (it can exceed 1; 0 when there is no clean one).</summary>
    public double ConflictFraction => CleanTransactions == 0 ? (ConflictedTransactions == 0 ? 0 : double.PositiveInfinity) : (double)ConflictedTransactions / CleanTransactions;

    /// <summary>Claims applied.</summary>
    public long ClaimsApplied { get; init; }

    /// <summary>Claims rejected with a conflict (or aborted with their gang).</summary>
    public long ClaimsRejected { get; init; }

    /// <summary>Jobs routed to this scheduler that arrived within the run.</summary>
    public long JobsSubmitted { get; init; }

    /// <summary>Jobs all of whose tasks were placed.</summary>
    public long JobsFullyPlaced { get; init; }

    /// <summary>Jobs abandoned (more than 100 attempts with nothing placed, or more than 1,000 in total).</summary>
    public long JobsAbandoned { get; init; }

    /// <summary>Jobs neither fully placed nor abandoned at the end of the run (queued, being decided or waiting to retry).</summary>
    public long JobsUnfinished { get; init; }

    /// <summary>Mean seconds from submission to the first attempt, over jobs that had one.</summary>
    public double WaitFirstAttemptMean { get; init; }

    /// <summary>90th percentile (nearest rank) of seconds from submission to the first attempt.</summary>
    public double WaitFirstAttemptP90 { get; init; }

    /// <summary>Mean seconds from submission until fully placed, over fully placed jobs.</summary>
    public double WaitFullyPlacedMean { get; init; }

    /// <summary>90th percentile (nearest rank) of seconds from submission until fully placed.</summary>
    public double WaitFullyPlacedP90 { get; init; }

    /// <summary>Rejections by claim status (conflict reasons from the real commit path).</summary>
    public required IReadOnlyDictionary<ClaimStatus, long> RejectionsByReason { get; init; }
}

/// <summary>Metrics pooled over the schedulers of one group (for example all batch schedulers).</summary>
public sealed record GroupMetrics
{
    /// <summary>The group's name.</summary>
    public required string Name { get; init; }

    /// <summary>Schedulers in the group.</summary>
    public int Schedulers { get; init; }

    /// <summary>Mean busyness of the group's schedulers (the paper's per-scheduler busyness).</summary>
    public double MeanBusyness { get; init; }

    /// <summary>The busiest scheduler's busyness.</summary>
    public double MaxBusyness { get; init; }

    /// <summary>Transactions with any conflict, summed over the group.</summary>
    public long ConflictedTransactions { get; init; }

    /// <summary>Transactions without conflict, summed over the group.</summary>
    public long CleanTransactions { get; init; }

    /// <summary>Conflicted / clean transactions over the group (0 when there is no transaction; infinity when none was clean).</summary>
    public double ConflictFraction => CleanTransactions == 0 ? (ConflictedTransactions == 0 ? 0 : double.PositiveInfinity) : (double)ConflictedTransactions / CleanTransactions;

    /// <summary>Jobs submitted to the group.</summary>
    public long JobsSubmitted { get; init; }

    /// <summary>Jobs fully placed.</summary>
    public long JobsFullyPlaced { get; init; }

    /// <summary>Jobs abandoned.</summary>
    public long JobsAbandoned { get; init; }

    /// <summary>Jobs unfinished at the end.</summary>
    public long JobsUnfinished { get; init; }

    /// <summary>Mean wait until the first attempt, over the group's jobs.</summary>
    public double WaitFirstAttemptMean { get; init; }

    /// <summary>90th percentile wait until the first attempt, over the group's jobs.</summary>
    public double WaitFirstAttemptP90 { get; init; }

    /// <summary>Mean wait until fully placed.</summary>
    public double WaitFullyPlacedMean { get; init; }

    /// <summary>90th percentile wait until fully placed.</summary>
    public double WaitFullyPlacedP90 { get; init; }
}

/// <summary>One attempt (decision) of one scheduler on one job, when <see cref="SimulationConfig.RecordAttempts"/> is on.</summary>
/// <param name="Scheduler">The scheduler.</param>
/// <param name="Job">The job's number (arrival order, from zero).</param>
/// <param name="Attempt">The job's attempt number, from one.</param>
/// <param name="Start">Virtual time of the sync (decision start).</param>
/// <param name="DecisionTime">t_job + t_task × unplaced tasks at the start.</param>
/// <param name="UnplacedAtStart">Tasks unplaced at the start.</param>
/// <param name="Claims">Claims the private placement produced (0: nothing to commit).</param>
/// <param name="Applied">Claims the commit applied.</param>
/// <param name="Status">The transaction status (<see cref="TransactionStatus.InvalidTransaction"/> is never reported: with no claims there is no transaction, see <paramref name="Claims"/>).</param>
/// <param name="FirstRejection">The first rejected claim's reason, or <see cref="ClaimStatus.Applied"/> when none was rejected.</param>
public readonly record struct AttemptRecord(string Scheduler, long Job, int Attempt, double Start, double DecisionTime, int UnplacedAtStart, int Claims, int Applied, TransactionStatus Status, ClaimStatus FirstRejection);

/// <summary>How a job ended.</summary>
public enum JobOutcome : byte
{
    /// <summary>Still queued, being decided or waiting to retry when the run ended.</summary>
    Unfinished = 0,

    /// <summary>All its tasks were placed.</summary>
    FullyPlaced = 1,

    /// <summary>Abandoned: more than 100 attempts with nothing placed.</summary>
    AbandonedNothingPlaced = 2,

    /// <summary>Abandoned: more than 1,000 attempts in total.</summary>
    AbandonedTooManyAttempts = 3,
}

/// <summary>One job's record, when <see cref="SimulationConfig.RecordJobs"/> is on.</summary>
/// <param name="Job">The job's number (arrival order, from zero).</param>
/// <param name="Kind">Its kind.</param>
/// <param name="Scheduler">Its scheduler.</param>
/// <param name="Submit">Arrival time.</param>
/// <param name="FirstAttempt">Start of its first attempt, or NaN.</param>
/// <param name="FullyPlaced">Time its last task was placed, or NaN.</param>
/// <param name="Attempts">Attempts made.</param>
/// <param name="Tasks">Its task count.</param>
/// <param name="Placed">Tasks placed.</param>
/// <param name="Outcome">How it ended.</param>
public readonly record struct JobRecord(long Job, string Kind, string Scheduler, double Submit, double FirstAttempt, double FullyPlaced, int Attempts, int Tasks, int Placed, JobOutcome Outcome);

/// <summary>The outcome of a run: per-scheduler metrics and cell-wide figures.</summary>
public sealed record SimulationResult
{
    /// <summary>The config that produced it.</summary>
    public required SimulationConfig Config { get; init; }

    /// <summary>Metrics per scheduler, in config order.</summary>
    public required IReadOnlyList<SchedulerMetrics> Schedulers { get; init; }

    /// <summary>Metrics pooled per scheduler group, in order of first appearance.</summary>
    public required IReadOnlyList<GroupMetrics> Groups { get; init; }

    /// <summary>The group named <paramref name="name"/>.</summary>
    public GroupMetrics Group(string name)
    {
        foreach (var g in Groups)
            if (string.Equals(g.Name, name, StringComparison.Ordinal)) return g;
        throw new KeyNotFoundException(name);
    }

    /// <summary>Tasks placed by the prefill.</summary>
    public long PrefilledTasks { get; init; }

    /// <summary>CPU utilization right after the prefill.</summary>
    public double PrefillCpuUtilization { get; init; }

    /// <summary>Time-averaged CPU utilization over the run.</summary>
    public double MeanCpuUtilization { get; init; }

    /// <summary>CPU utilization at the end of the run.</summary>
    public double FinalCpuUtilization { get; init; }

    /// <summary>Events processed.</summary>
    public long Events { get; init; }

    /// <summary>Invariant violations the cell's audit found at the end (empty when healthy).</summary>
    public required IReadOnlyList<string> AuditProblems { get; init; }

    /// <summary>Every attempt, when recorded.</summary>
    public IReadOnlyList<AttemptRecord> Attempts { get; init; } = Array.Empty<AttemptRecord>();

    /// <summary>Every job, when recorded.</summary>
    public IReadOnlyList<JobRecord> Jobs { get; init; } = Array.Empty<JobRecord>();

    /// <summary>The metrics of the scheduler named <paramref name="name"/>.</summary>
    public SchedulerMetrics this[string name]
    {
        get
        {
            foreach (var s in Schedulers)
                if (string.Equals(s.Name, name, StringComparison.Ordinal)) return s;
            throw new KeyNotFoundException(name);
        }
    }
}
