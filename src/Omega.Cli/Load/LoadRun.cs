using System.Diagnostics;
using Omega.Cells;
using Omega.Scheduling;

namespace Omega.Cli.Load;

/// <summary>What a load run is asked to do.</summary>
internal sealed record LoadOptions(
    int Nodes, double Seconds, int BatchWorkers, int ServiceWorkers, ConflictDetection BatchDetection, ConflictDetection ServiceDetection,
    double Load, int Seed, string CommandLine)
{
    /// <summary>
    /// Run until the workload is exhausted and every submitted job is placed or parked, instead of for <see cref="Seconds"/>
    /// (a trace replay without an explicit --seconds; <see cref="Seconds"/> is then only the progress estimate).
    /// </summary>
    public bool UntilEnd { get; init; }
}

/// <summary>One second of a run, for the live view, the report's time series and its charts.</summary>
internal sealed record LoadSample(double T, double PlacementsPerSecond, IReadOnlyDictionary<string, double> ConflictFraction, int QueueDepth, double CpuUtilization, int LiveBindings);

/// <summary>What a run measured.</summary>
internal sealed record LoadSummary(
    LoadOptions Options, string Workload, double Seconds, long Submitted, long Rejected, long Placements, long Completed, long JobsPlaced, long JobsParked,
    IReadOnlyList<SchedulerSummary> Schedulers, LatencySummary Commit, LatencySummary Decision, double CpuUtilization, int LiveBindings,
    IReadOnlyList<LoadSample> Samples, IReadOnlyList<string> AuditProblems)
{
    public double PlacementsPerSecond => Placements / Seconds;
}

/// <summary>Per scheduler kind: placements, the conflict fraction, busyness and job placement latency.</summary>
internal sealed record SchedulerSummary(string Name, int Workers, string Policy, long Placements, long CleanTransactions, long ConflictedTransactions,
    double ConflictFraction, double BusyUseful, double BusyWasted, LatencySummary PlacementLatency);

/// <summary>Latency percentiles in microseconds, and the distribution at <see cref="CurvePercentiles"/> for charts.</summary>
internal sealed record LatencySummary(long Count, double P50, double P99, double P999, double Max, IReadOnlyList<double> Curve)
{
    public static readonly double[] CurvePercentiles = [10, 25, 50, 75, 90, 95, 99, 99.5, 99.9];

    public static LatencySummary From(HdrHistogram.HistogramBase h) => h.TotalCount == 0
        ? new LatencySummary(0, double.NaN, double.NaN, double.NaN, double.NaN, CurvePercentiles.Select(_ => double.NaN).ToArray())
        : new LatencySummary(h.TotalCount, h.GetValueAtPercentile(50), h.GetValueAtPercentile(99), h.GetValueAtPercentile(99.9), h.GetValueAtPercentile(100),
            CurvePercentiles.Select(p => (double)h.GetValueAtPercentile(p)).ToArray());
}

/// <summary>
/// The embedded load run: a cell of identical nodes, the scheduling engine with a fast batch kind and a careful service
/// kind (Omega paper §4), a workload submitted in real time, and task completions after each job's duration. Samples
/// once a second. All threads are the engine's workers plus the caller's thread, which drives arrivals and completions.
/// </summary>
internal static class LoadRun
{
    public static readonly ResourceVector NodeShape = ResourceVector.FromCoresAndGiB(32, 128);

    /// <summary>The default Omega-paper style mix, scaled by <paramref name="load"/> (1 = about 20,000 task arrivals/s).</summary>
    public static IReadOnlyList<JobKind> DefaultMix(double load) =>
    [
        new JobKind("batch", 0.002 / load, 40, 10, ResourceVector.FromCoresAndGiB(0.5, 1), Priority: 1),
        new JobKind("service", 0.05 / load, 20, 60, ResourceVector.FromCoresAndGiB(1, 4), Priority: 9),
    ];

    public static LoadSummary Run(LoadOptions o, IWorkload workload, Action<LoadSample> onSample, CancellationToken cancel)
    {
        using var cell = new Cell(new CellOptions { Name = "loadgen", InitialNodeCapacity = o.Nodes });
        for (int i = 0; i < o.Nodes; i++)
            cell.AddNode(new NodeSpec($"node-{i:D6}", NodeShape, failureDomain: $"rack-{i / 40}"));

        var options = new SchedulingOptions { Seed = o.Seed, DecisionSampleEvery = 16 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = o.BatchWorkers, Detection = o.BatchDetection, QueueCapacity = 1_000_000 });
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = o.ServiceWorkers, Detection = o.ServiceDetection, QueueCapacity = 100_000 });
        using var recorder = new LoadRecorder();
        var engine = new SchedulingEngine(cell, options);
        var tracker = new CompletionTracker(engine);
        var samples = new List<LoadSample>();

        long submitted = 0, rejected = 0, nextJobId = 1;
        var clock = Stopwatch.StartNew();
        engine.Start();
        try
        {
            bool have = workload.TryNext(out var next);
            double nextSample = 1, lastPlacements = 0;
            var lastTally = new Dictionary<string, (long Clean, long Conflicted)>(StringComparer.Ordinal);
            while (!cancel.IsCancellationRequested)
            {
                double now = clock.Elapsed.TotalSeconds;
                if (o.UntilEnd ? !have && tracker.Waiting == 0 : now >= o.Seconds) break;
                // Arrivals that are due (a burst is submitted at once: the generator never falls behind silently).
                while (have && next.At <= now)
                {
                    var spec = new JobSpec(new JobId(nextJobId++), new TenantId(next.Tenant), next.Priority, next.Tasks, next.PerTask, next.Gang);
                    var r = engine.Submit(spec, next.Scheduler);
                    if (r.Accepted) { submitted++; tracker.Track(spec, next.Duration); }
                    else rejected++;
                    have = workload.TryNext(out next);
                }
                tracker.Tick(now);
                if (now >= nextSample)
                {
                    long p = recorder.TotalPlacements;
                    var fractions = recorder.IntervalConflictFractions(lastTally);
                    var (util, live) = Utilization(cell);
                    var sample = new LoadSample(now, (p - lastPlacements) / (now - (nextSample - 1)), fractions,
                        engine.QueueDepth("batch") + engine.QueueDepth("service"), util, live);
                    samples.Add(sample);
                    onSample(sample);
                    lastPlacements = p;
                    nextSample += 1;
                }
                double wait = Math.Min(have ? next.At : double.MaxValue, Math.Min(nextSample, o.UntilEnd ? double.MaxValue : o.Seconds)) - clock.Elapsed.TotalSeconds;
                // The driver's own pacing: at most 5 ms so completions stay timely; the engine itself has no timers.
                if (wait > 0) Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(5, wait * 1000)));
            }
        }
        finally
        {
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        double seconds = clock.Elapsed.TotalSeconds;

        var schedulers = new List<SchedulerSummary>();
        foreach (var k in options.Kinds)
        {
            var t = recorder.Schedulers.GetValueOrDefault(k.Name) ?? new SchedulerTally();
            var (useful, wasted) = engine.Busyness(k.Name);
            schedulers.Add(new SchedulerSummary(k.Name, k.Workers, $"{k.Mode}+{k.Detection}", t.Placements, t.Clean, t.Conflicted, t.ConflictFraction,
                useful, wasted, LatencySummary.From(t.PlacementLatency)));
        }
        var (u, l) = Utilization(cell);
        var audit = cell.Audit();
        var summary = new LoadSummary(o, workload.Describe, seconds, submitted, rejected, recorder.TotalPlacements, tracker.CompletedTasks,
            tracker.JobsPlaced, tracker.JobsParked, schedulers, LatencySummary.From(recorder.Commit), LatencySummary.From(recorder.Decision),
            u, l, samples, audit);
        engine.Dispose();
        return summary;
    }

    /// <summary>CPU utilization and live bindings from a snapshot (an O(nodes) read, once a second).</summary>
    internal static (double Cpu, int Live) Utilization(Cell cell)
    {
        var snap = cell.Snapshot();
        double used = 0, cap = 0;
        int live = 0;
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok) continue;
            used += v.Allocated.CpuMillis;
            cap += v.Capacity.CpuMillis;
            live += v.TaskCount;
        }
        return (cap == 0 ? 0 : used / cap, live);
    }

    /// <summary>
    /// Completes each job's tasks once they have run for the job's duration, counted from when the job was fully placed
    /// (the workload model's task runtime). Watches the jobs it submitted; polls their state, never per placement.
    /// </summary>
    private sealed class CompletionTracker(SchedulingEngine engine)
    {
        private List<(JobSpec Job, double Duration)> _waiting = new();
        private List<(JobSpec Job, double Duration)> _swap = new();
        private readonly PriorityQueue<JobSpec, double> _running = new();
        private double _lastScan;

        public long CompletedTasks { get; private set; }

        public long JobsPlaced { get; private set; }

        public long JobsParked { get; private set; }

        /// <summary>Submitted jobs neither placed nor parked yet.</summary>
        public int Waiting => _waiting.Count;

        public void Track(JobSpec job, double duration) => _waiting.Add((job, duration));

        public void Tick(double now)
        {
            if (now - _lastScan >= 0.02)
            {
                _lastScan = now;
                _swap.Clear();
                foreach (var w in _waiting)
                {
                    if (!engine.TryGetJob(w.Job.Id, out var s)) continue;
                    if (s.Phase == JobPhase.Placed) { JobsPlaced++; _running.Enqueue(w.Job, now + w.Duration); }
                    else if (s.Phase == JobPhase.Parked) JobsParked++;
                    else _swap.Add(w);
                }
                (_waiting, _swap) = (_swap, _waiting);
            }
            while (_running.TryPeek(out var job, out double due) && due <= now)
            {
                _running.Dequeue();
                for (int i = 0; i < job.TaskCount; i++)
                    if (engine.CompleteTask(job.Task(i)) == ReleaseStatus.Released) CompletedTasks++;
            }
        }
    }
}
