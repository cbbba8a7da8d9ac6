using Omega.Cells;

namespace Omega.Simulation;

/// <summary>One simulated scheduler's state: its queue, lease, reusable transaction, random stream and counters.</summary>
internal sealed class SchedulerState
{
    public SchedulerState(int index, SchedulerSpec spec, SchedulerLease lease, SimRandom rng, int machines)
    {
        Index = index;
        Spec = spec;
        Lease = lease;
        Rng = rng;
        Tx = new Transaction(lease, spec.Mode, spec.Detection, initialCapacity: 64);
        Pool = new int[machines];
        for (int i = 0; i < machines; i++) Pool[i] = i;
    }

    public int Index { get; }

    public SchedulerSpec Spec { get; }

    public SchedulerLease Lease { get; }

    public SimRandom Rng { get; }

    public Transaction Tx { get; }

    /// <summary>Candidate machines for randomized first fit; a miss moves the machine past the live range for this decision.</summary>
    public int[] Pool { get; }

    public Queue<SimJob> Queue { get; } = new();

    public SimJob? Current;
    public double CurrentStart;
    public double CurrentDecisionTime;
    public int CurrentUnplacedAtStart;

    // Metrics.
    public double DecisionSeconds;
    public long Attempts, AttemptsWithNoPlacement, Transactions, Conflicted, Clean, ClaimsApplied, ClaimsRejected;
    public long JobsSubmitted, JobsPlaced, JobsAbandoned;
    public readonly long[] Rejections = new long[32];
    public readonly List<double> WaitFirst = new();
    public readonly List<double> WaitPlaced = new();
}
