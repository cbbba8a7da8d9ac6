using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using HdrHistogram;
using Omega.Scheduling;

namespace Omega.Cli.Load;

/// <summary>Per-scheduler counters the recorder keeps from the engine's meter.</summary>
internal sealed class SchedulerTally
{
    public long Placements, Clean, Conflicted, Attempts;

    /// <summary>Submit-to-fully-placed latency, in microseconds.</summary>
    public readonly LongConcurrentHistogram PlacementLatency = new(1, 3_600_000_000, 3);

    /// <summary>The Omega paper's conflict fraction (§5): transactions with a conflict ÷ transactions without.</summary>
    public double ConflictFraction => Fraction(Volatile.Read(ref Clean), Volatile.Read(ref Conflicted));

    /// <summary>Conflicted ÷ clean transactions; 0 when there is no clean one (nothing to compare against yet).</summary>
    public static double Fraction(long clean, long conflicted) => clean == 0 ? 0 : (double)conflicted / clean;
}

/// <summary>
/// Listens to the <c>Omega.Scheduling</c> meter — the same instruments <c>dotnet-counters</c> and OpenTelemetry read — and
/// keeps totals per scheduler plus latency histograms (HdrHistogram, concurrent recording: workers record from their own
/// threads without a shared lock).
/// </summary>
internal sealed class LoadRecorder : IDisposable
{
    private readonly MeterListener _listener = new();

    public ConcurrentDictionary<string, SchedulerTally> Schedulers { get; } = new(StringComparer.Ordinal);

    /// <summary>Commit latency of scheduler transactions, microseconds.</summary>
    public LongConcurrentHistogram Commit { get; } = new(1, 60_000_000, 3);

    /// <summary>Decision latency per job attempt, microseconds.</summary>
    public LongConcurrentHistogram Decision { get; } = new(1, 60_000_000, 3);

    public LoadRecorder()
    {
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == SchedulingMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.Start();
    }

    private SchedulerTally Tally(ReadOnlySpan<KeyValuePair<string, object?>> tags, out string? outcome)
    {
        string scheduler = "?";
        outcome = null;
        foreach (var t in tags)
        {
            if (t.Key == "scheduler" && t.Value is string s) scheduler = s;
            else if (t.Key == "outcome" && t.Value is string o) outcome = o;
        }
        return Schedulers.GetOrAdd(scheduler, _ => new SchedulerTally());
    }

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "omega.sched.placements": Interlocked.Add(ref Tally(tags, out _).Placements, value); break;
            case "omega.sched.attempts": Interlocked.Add(ref Tally(tags, out _).Attempts, value); break;
            case "omega.sched.transactions":
                var t = Tally(tags, out var outcome);
                if (outcome == "conflicted") Interlocked.Add(ref t.Conflicted, value);
                else Interlocked.Add(ref t.Clean, value);
                break;
        }
    }

    private void OnDouble(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        long us = Math.Max(1, (long)(value * 1e6));
        switch (instrument.Name)
        {
            case "omega.sched.commit.duration": Commit.RecordValue(Math.Min(us, Commit.HighestTrackableValue)); break;
            case "omega.sched.decision.duration": Decision.RecordValue(Math.Min(us, Decision.HighestTrackableValue)); break;
            case "omega.sched.job.placement.duration":
                var h = Tally(tags, out _).PlacementLatency;
                h.RecordValue(Math.Min(us, h.HighestTrackableValue));
                break;
        }
    }

    /// <summary>
    /// The conflict fraction of each scheduler since the previous call with the same <paramref name="last"/> (which it
    /// updates): the per-second figure of the live views and the reports' time series.
    /// </summary>
    public Dictionary<string, double> IntervalConflictFractions(Dictionary<string, (long Clean, long Conflicted)> last)
    {
        var fractions = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (name, t) in Schedulers)
        {
            long clean = Volatile.Read(ref t.Clean), conflicted = Volatile.Read(ref t.Conflicted);
            last.TryGetValue(name, out var before);
            fractions[name] = SchedulerTally.Fraction(clean - before.Clean, conflicted - before.Conflicted);
            last[name] = (clean, conflicted);
        }
        return fractions;
    }

    public long TotalPlacements
    {
        get
        {
            long n = 0;
            foreach (var t in Schedulers.Values) n += Volatile.Read(ref t.Placements);
            return n;
        }
    }

    public void Dispose() => _listener.Dispose();
}
