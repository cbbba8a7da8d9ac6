using System.Diagnostics;
using System.Diagnostics.Metrics;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling;

/// <summary>
/// Scheduler metrics on the <c>Omega.Scheduling</c> meter: attempts, placements, conflicts by reason and scheduler,
/// retries, parked jobs, preemptions, queue depth and age, decision and commit latency, and busyness as the Omega paper
/// defines it (time deciding / wall time, split into useful and wasted — wasted being decisions whose commit conflicted).
/// Per-job counting only; nothing here runs per node probed.
/// </summary>
public sealed class SchedulingMetrics : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Omega.Scheduling";

    private static readonly string[] ClaimNames = Enum.GetNames<Omega.ClaimStatus>();
    private readonly Meter _meter;
    private readonly Counter<long> _attempts, _placements, _conflicts, _retries, _parked, _preemptions, _unplaceable, _transactions, _rejected;
    private readonly Histogram<double> _decision, _commit, _placed;

    internal SchedulingMetrics(SchedulingEngine engine, IMeterFactory? meterFactory = null)
    {
        _meter = Omega.Cells.CellCounters.CreateMeter(MeterName, engine.View.Name, meterFactory);
        _attempts = _meter.CreateCounter<long>("omega.sched.attempts", "{attempt}", "Scheduling attempts (one per job per decision)");
        _placements = _meter.CreateCounter<long>("omega.sched.placements", "{task}", "Tasks bound");
        _conflicts = _meter.CreateCounter<long>("omega.sched.conflicts", "{claim}", "Claims rejected at commit, by reason");
        _retries = _meter.CreateCounter<long>("omega.sched.retries", "{attempt}", "Jobs requeued for another attempt");
        _parked = _meter.CreateCounter<long>("omega.sched.parked", "{job}", "Jobs parked after the attempt limit");
        _preemptions = _meter.CreateCounter<long>("omega.sched.preemptions", "{task}", "Tasks preempted");
        _rejected = _meter.CreateCounter<long>("omega.sched.admission.rejected", "{job}", "Jobs refused at submission, by reason (EnqueueStatus)");
        _unplaceable = _meter.CreateCounter<long>("omega.sched.unplaceable", "{task}", "Tasks for which a decision found no feasible node");
        _decision = _meter.CreateHistogram("omega.sched.decision.duration", "s", "Time to decide one job (snapshot to claims)", tags: null, advice: Omega.Cells.LatencyBuckets.Advice);
        _commit = _meter.CreateHistogram("omega.sched.commit.duration", "s", "Time to commit one transaction", tags: null, advice: Omega.Cells.LatencyBuckets.Advice);
        _transactions = _meter.CreateCounter<long>("omega.sched.transactions", "{transaction}",
            "Transactions committed by scheduler and outcome (clean: no claim conflicted; conflicted: at least one did). The Omega paper's conflict fraction is conflicted / clean");
        // Both outcomes of every scheduler start at zero, so the series exist from the first scrape: Prometheus's rate()
        // cannot see the increase that creates a series, so a counter that appears only at its first conflict would hide
        // the first burst from the conflict-rate alert (docs/ops/alerts.yml). Zero is the true count until then.
        foreach (var kind in engine.Kinds)
        {
            _transactions.Add(0, new KeyValuePair<string, object?>("scheduler", kind), new KeyValuePair<string, object?>("outcome", "clean"));
            _transactions.Add(0, new KeyValuePair<string, object?>("scheduler", kind), new KeyValuePair<string, object?>("outcome", "conflicted"));
        }
        _placed = _meter.CreateHistogram("omega.sched.job.placement.duration", "s", "Time from a job's submission until all its tasks are bound", tags: null, advice: Omega.Cells.LatencyBuckets.Advice);
        // A level that rises and falls and sums meaningfully across schedulers: an UpDownCounter (OpenTelemetry semantic conventions).
        _meter.CreateObservableUpDownCounter("omega.sched.queue.depth", () => engine.ObserveQueueDepths(), "{job}", "Queued jobs by scheduler and band");
        _meter.CreateObservableGauge("omega.sched.queue.oldest_age", () => engine.ObserveQueueAges(), "s", "Age of the oldest ready job by scheduler and band");
        _meter.CreateObservableGauge("omega.sched.busyness", () => engine.ObserveBusyness(), "1", "Fraction of wall time deciding, by scheduler and useful/wasted");
        _meter.CreateObservableCounter("omega.sched.worker.time", () => engine.ObserveWorkerTimes(), "s",
            "Seconds each worker spent deciding, committing, in the rest of its steps (queue hand-off, bookkeeping) and idle, by scheduler, worker and state");
    }

    internal void Attempt(string scheduler, double decisionSeconds, double commitSeconds, int placed, int unplaceable)
    {
        var tag = new KeyValuePair<string, object?>("scheduler", scheduler);
        _attempts.Add(1, tag);
        if (placed > 0) _placements.Add(placed, tag);
        if (unplaceable > 0) _unplaceable.Add(unplaceable, tag);
        _decision.Record(decisionSeconds, tag);
        if (commitSeconds > 0) _commit.Record(commitSeconds, tag);
    }

    internal void Transaction(string scheduler, bool conflicted)
        => _transactions.Add(1, new KeyValuePair<string, object?>("scheduler", scheduler), new KeyValuePair<string, object?>("outcome", conflicted ? "conflicted" : "clean"));

    internal void JobPlaced(string scheduler, double secondsSinceSubmit) => _placed.Record(secondsSinceSubmit, new KeyValuePair<string, object?>("scheduler", scheduler));

    internal void Conflict(string scheduler, Omega.ClaimStatus reason)
        => _conflicts.Add(1, new KeyValuePair<string, object?>("scheduler", scheduler), new KeyValuePair<string, object?>("reason", ClaimNames[(int)reason]));

    internal void Rejected(EnqueueStatus reason) => _rejected.Add(1, new KeyValuePair<string, object?>("reason", reason.ToString()));

    internal void Retry(string scheduler) => _retries.Add(1, new KeyValuePair<string, object?>("scheduler", scheduler));

    internal void Parked(string scheduler, FilterStatus reason)
        => _parked.Add(1, new KeyValuePair<string, object?>("scheduler", scheduler), new KeyValuePair<string, object?>("reason", reason.ToString()));

    internal void Preempted(string scheduler, int count) => _preemptions.Add(count, new KeyValuePair<string, object?>("scheduler", scheduler));

    internal static double Seconds(long startTimestamp, long endTimestamp) => (endTimestamp - startTimestamp) / (double)Stopwatch.Frequency;

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
