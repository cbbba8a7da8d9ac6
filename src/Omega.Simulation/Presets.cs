using System.Diagnostics;
using System.Globalization;
using System.Text;
using Omega.Cells;

namespace Omega.Simulation;

/// <summary>One configuration point of a preset, with the parameters that distinguish it.</summary>
/// <param name="Preset">The preset's name.</param>
/// <param name="Config">The run's config.</param>
/// <param name="Detection">Conflict detection of both schedulers.</param>
/// <param name="Mode">Commit mode of both schedulers.</param>
/// <param name="ServiceJobTime">t_job of the service scheduler.</param>
/// <param name="BatchSchedulers">The number of batch schedulers.</param>
/// <param name="BatchRateFactor">The batch arrival-rate multiplier.</param>
public sealed record PresetPoint(string Preset, SimulationConfig Config, ConflictDetection Detection, CommitMode Mode, double ServiceJobTime, int BatchSchedulers, double BatchRateFactor);

/// <summary>A point's result and how long it took on the wall clock (reporting only; the simulation never reads a clock).</summary>
/// <param name="Point">The point.</param>
/// <param name="Result">Its metrics.</param>
/// <param name="WallSeconds">Wall-clock seconds the run took.</param>
public sealed record PresetPointResult(PresetPoint Point, SimulationResult Result, double WallSeconds);

/// <summary>Options shared by the presets, so tests and CI can run small versions.</summary>
public sealed record PresetOptions
{
    /// <summary>Simulated seconds per point (the issue: one day).</summary>
    public double Duration { get; init; } = 86_400;

    /// <summary>The seed.</summary>
    public long Seed { get; init; } = 1;

    /// <summary>Machines in the cell.</summary>
    public int Machines { get; init; } = 10_000;

    /// <summary>vary-service-tjob: the service t_job values; null for the issue's {0.1, 1, 10, 30, 100}.</summary>
    public IReadOnlyList<double>? ServiceJobTimes { get; init; }

    /// <summary>scale-batch-schedulers: the batch scheduler counts; null for {1, 2, 4, 8, 32}.</summary>
    public IReadOnlyList<int>? BatchSchedulerCounts { get; init; }

    /// <summary>scale-batch-schedulers: the batch arrival-rate multipliers; null for {1, 10, 20, 40}.</summary>
    public IReadOnlyList<double>? BatchRateFactors { get; init; }

    /// <summary>vary-service-tjob: the (detection, mode) combinations; null for all four.</summary>
    public IReadOnlyList<(ConflictDetection Detection, CommitMode Mode)>? Variants { get; init; }

    /// <summary>Explicit jobs (a trace) replacing the synthetic batch and service arrivals; null for synthetic.</summary>
    public IReadOnlyList<TraceJob>? Trace { get; init; }
}

/// <summary>The Omega paper's experiments (§5) as named presets.</summary>
public static class Presets
{
    /// <summary>The preset sweeping the service scheduler's t_job.</summary>
    public const string VaryServiceTJob = "vary-service-tjob";

    /// <summary>The preset scaling the number of batch schedulers and the batch arrival rate.</summary>
    public const string ScaleBatchSchedulers = "scale-batch-schedulers";

    /// <summary>All preset names.</summary>
    public static IReadOnlyList<string> Names { get; } = [VaryServiceTJob, ScaleBatchSchedulers];

    /// <summary>The cell: 4 CPU / 16 GB machines.</summary>
    public static ResourceVector MachineCapacity => ResourceVector.FromCoresAndGiB(4, 16);

    /// <summary>Long-running prefill tasks of 1 CPU / 4 GB to about 60 % CPU.</summary>
    public static PrefillSpec Prefill => new(0.60, ResourceVector.FromCoresAndGiB(1, 4));

    /// <summary>Batch tasks: 0.5 CPU / 1 GB.</summary>
    public static ResourceVector BatchTask => ResourceVector.FromCoresAndGiB(0.5, 1);

    /// <summary>Service tasks: 1 CPU / 4 GB.</summary>
    public static ResourceVector ServiceTask => ResourceVector.FromCoresAndGiB(1, 4);

    /// <summary>The points of a preset, in table order. Returns null for an unknown name.</summary>
    public static IReadOnlyList<PresetPoint>? Points(string preset, PresetOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var points = new List<PresetPoint>();
        switch (preset)
        {
            case VaryServiceTJob:
                var variants = options.Variants ?? [
                    (ConflictDetection.Fine, CommitMode.Incremental), (ConflictDetection.Fine, CommitMode.AllOrNothing),
                    (ConflictDetection.Coarse, CommitMode.Incremental), (ConflictDetection.Coarse, CommitMode.AllOrNothing)];
                foreach (var (detection, mode) in variants)
                    foreach (double tjob in options.ServiceJobTimes ?? [0.1, 1, 10, 30, 100])
                        points.Add(new PresetPoint(preset, Build(options, detection, mode, tjob, batchSchedulers: 1, batchRate: 1, batchDuration: 600),
                            detection, mode, tjob, 1, 1));
                return points;
            case ScaleBatchSchedulers:
                foreach (double rate in options.BatchRateFactors ?? [1, 10, 20, 40])
                    foreach (int n in options.BatchSchedulerCounts ?? [1, 2, 4, 8, 32])
                        points.Add(new PresetPoint(preset, Build(options, ConflictDetection.Fine, CommitMode.Incremental, 0.1, n, rate, batchDuration: 30),
                            ConflictDetection.Fine, CommitMode.Incremental, 0.1, n, rate));
                return points;
            default:
                return null;
        }
    }

    /// <summary>
    /// The cell and workload: batch jobs every 5 s (divided by the rate factor), 40 tasks, the given mean duration,
    /// t_job 0.1 s, t_task 5 ms; service jobs every 60 s, 20 tasks, 10,000 s, t_task 5 ms and the given t_job.
    /// </summary>
    public static SimulationConfig Build(PresetOptions options, ConflictDetection detection, CommitMode mode, double serviceJobTime,
        int batchSchedulers, double batchRate, double batchDuration)
    {
        ArgumentNullException.ThrowIfNull(options);
        var schedulers = new List<SchedulerSpec> { new("service", serviceJobTime, 0.005, mode, detection) };
        var batchNames = new List<string>();
        for (int i = 0; i < batchSchedulers; i++)
        {
            string name = batchSchedulers == 1 ? "batch" : $"batch-{i}";
            batchNames.Add(name);
            schedulers.Add(new SchedulerSpec(name, 0.1, 0.005, mode, detection, Group: "batch"));
        }
        var config = new SimulationConfig
        {
            Machines = options.Machines,
            MachineCapacity = MachineCapacity,
            Duration = options.Duration,
            Seed = options.Seed,
            Schedulers = schedulers,
            Prefill = Prefill,
        };
        if (options.Trace is { } trace)
            return config with { Jobs = TraceReader.ToJobs(trace, MachineCapacity, batchNames, "service") };
        return config with
        {
            JobKinds =
            [
                new JobKindSpec("batch", 5.0 / batchRate, 40, batchDuration, BatchTask, batchNames),
                new JobKindSpec("service", 60, 20, 10_000, ServiceTask, ["service"]),
            ],
        };
    }

    /// <summary>
    /// Runs points on up to <paramref name="parallelism"/> threads (each run is single-threaded and independent, so the
    /// numbers do not depend on the parallelism). Results come back in point order; <paramref name="progress"/> is called
    /// as each point finishes (from worker threads, one call at a time).
    /// </summary>
    public static IReadOnlyList<PresetPointResult> Run(IReadOnlyList<PresetPoint> points, int parallelism, Action<PresetPointResult>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(points);
        var results = new PresetPointResult[points.Count];
        var gate = new object();
        // Longest points first (high batch rates and many batch schedulers place the most tasks), handed out one at a
        // time (no range partitioning), so the tail of the run stays parallel.
        var order = Enumerable.Range(0, points.Count).OrderByDescending(i => points[i].BatchRateFactor)
            .ThenByDescending(i => points[i].BatchSchedulers).ThenByDescending(i => points[i].ServiceJobTime).ToArray();
        var source = System.Collections.Concurrent.Partitioner.Create(order, System.Collections.Concurrent.EnumerablePartitionerOptions.NoBuffering);
        Parallel.ForEach(source, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism) }, i =>
        {
            var sw = Stopwatch.StartNew();
            var r = Simulator.Run(points[i].Config);
            var pr = new PresetPointResult(points[i], r, sw.Elapsed.TotalSeconds);
            results[i] = pr;
            if (progress is not null)
                lock (gate) progress(pr);
        });
        return results;
    }

    /// <summary>Formats a preset's results as a Markdown table.</summary>
    public static string Table(string preset, IReadOnlyList<PresetPointResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        if (preset == VaryServiceTJob)
        {
            sb.AppendLine("| detection | mode | t_job(service) s | service busyness | service conflict fraction | batch busyness | batch conflict fraction | service wait first mean / p90 s | service wait placed mean / p90 s | batch wait placed mean / p90 s | abandoned service / batch | unfinished service / batch | mean CPU util | wall s |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in results)
            {
                var s = r.Result.Group("service");
                var b = r.Result.Group("batch");
                sb.AppendLine(c, $"| {r.Point.Detection} | {r.Point.Mode} | {r.Point.ServiceJobTime:0.###} | {s.MeanBusyness:0.000} | {Fraction(s.ConflictFraction)} | {b.MeanBusyness:0.000} | {Fraction(b.ConflictFraction)} | {s.WaitFirstAttemptMean:0.0} / {s.WaitFirstAttemptP90:0.0} | {s.WaitFullyPlacedMean:0.0} / {s.WaitFullyPlacedP90:0.0} | {b.WaitFullyPlacedMean:0.0} / {b.WaitFullyPlacedP90:0.0} | {s.JobsAbandoned} / {b.JobsAbandoned} | {s.JobsUnfinished} / {b.JobsUnfinished} | {r.Result.MeanCpuUtilization:0.000} | {r.WallSeconds:0.0} |");
            }
        }
        else
        {
            sb.AppendLine("| batch schedulers | batch rate x | batch busyness (mean per scheduler) | batch busyness (max) | batch conflict fraction | service busyness | service conflict fraction | batch wait first mean / p90 s | batch wait placed mean / p90 s | batch jobs submitted | abandoned batch | unfinished batch | mean CPU util | wall s |");
            sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in results)
            {
                var s = r.Result.Group("service");
                var b = r.Result.Group("batch");
                sb.AppendLine(c, $"| {r.Point.BatchSchedulers} | {r.Point.BatchRateFactor:0.##} | {b.MeanBusyness:0.000} | {b.MaxBusyness:0.000} | {Fraction(b.ConflictFraction)} | {s.MeanBusyness:0.000} | {Fraction(s.ConflictFraction)} | {b.WaitFirstAttemptMean:0.0} / {b.WaitFirstAttemptP90:0.0} | {b.WaitFullyPlacedMean:0.0} / {b.WaitFullyPlacedP90:0.0} | {b.JobsSubmitted} | {b.JobsAbandoned} | {b.JobsUnfinished} | {r.Result.MeanCpuUtilization:0.000} | {r.WallSeconds:0.0} |");
            }
        }
        return sb.ToString();
    }

    private static string Fraction(double f) => double.IsPositiveInfinity(f) ? "inf" : f.ToString("0.0000", CultureInfo.InvariantCulture);
}
