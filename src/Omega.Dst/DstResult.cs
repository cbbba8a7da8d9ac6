using System.Text;

namespace Omega.Dst;

/// <summary>The outcome of one simulated run.</summary>
public sealed class DstResult
{
    internal DstResult(long seed, ulong hash, string? violation, IReadOnlyList<string> trace, long[] faults, int steps, TimeSpan simulated, bool converged)
    {
        Seed = seed;
        TraceHash = hash;
        Violation = violation;
        Trace = trace;
        FaultCounts = faults;
        Steps = steps;
        Simulated = simulated;
        Converged = converged;
    }

    /// <summary>The seed.</summary>
    public long Seed { get; }

    /// <summary>A hash of every event of the run: the same seed gives the same hash.</summary>
    public ulong TraceHash { get; }

    /// <summary>The first violated invariant (checker name and detail), or null.</summary>
    public string? Violation { get; }

    /// <summary>True when no checker failed.</summary>
    public bool Ok => Violation is null;

    /// <summary>True when the system converged after the faults stopped.</summary>
    public bool Converged { get; }

    /// <summary>The events kept (the tail, or all with <see cref="DstOptions.FullTrace"/>).</summary>
    public IReadOnlyList<string> Trace { get; }

    /// <summary>Faults injected, indexed by <see cref="DstFault"/>.</summary>
    public IReadOnlyList<long> FaultCounts { get; }

    /// <summary>Steps run (fault phase and convergence phase).</summary>
    public int Steps { get; }

    /// <summary>Scheduler decisions replayed from their records by the decision-replay checker (all reached the same choice).</summary>
    public long DecisionsReplayed { get; init; }

    /// <summary>True for a run of the wire simulation (<see cref="WireSimulation"/>).</summary>
    public bool Wire { get; init; }

    /// <summary>True for a run of the unified harness (<see cref="UnifiedSimulation"/>): the wire simulation with the control plane behind the handler.</summary>
    public bool Unified { get; init; }

    /// <summary>Unified harness: object writes (workloads, overrides) acknowledged to the operator over the wire.</summary>
    public long ObjectWritesAcknowledged { get; init; }

    /// <summary>Unified harness: watch events the operator received.</summary>
    public long WatchEvents { get; init; }

    /// <summary>Wire simulation: frames the real protocol handler processed.</summary>
    public long FramesHandled { get; init; }

    /// <summary>Wire simulation: commit replies that reached a scheduler saying claims applied.</summary>
    public long CommitsAcknowledged { get; init; }

    /// <summary>Wire simulation: binding entries agents received in Bindings frames pushed by the real dispatcher.</summary>
    public long BindingsReceived { get; init; }

    /// <summary>Simulated time elapsed.</summary>
    public TimeSpan Simulated { get; }

    /// <summary>A report: seed, hash, verdict, the replay command and the trace.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append("seed ").Append(Seed).Append(" hash ").Append(TraceHash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture))
          .Append(Ok ? " ok" : " VIOLATION: " + Violation).Append(" (").Append(Steps).Append(" steps, ")
          .Append(Simulated.TotalSeconds.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)).Append(" s simulated)").AppendLine();
        if (!Ok)
        {
            sb.Append(Unified ? "replay: omega dst --unified --seed " : Wire ? "replay: omega dst --wire --seed " : "replay: omega dst --seed ").Append(Seed).AppendLine(" --trace");
            foreach (var e in Trace) sb.Append("  ").AppendLine(e);
        }
        return sb.ToString();
    }
}
