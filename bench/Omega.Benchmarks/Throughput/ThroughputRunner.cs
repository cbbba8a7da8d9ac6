using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using Omega.Cells;

namespace Omega.Benchmarks.Throughput;

/// <summary>
/// <c>throughput [--seconds N] [--reps R] [--nodes N] [--utilization U] [--seed S] [--striped]</c>: embedded commit throughput
/// with 1 and 2 threads and, in the same run, the raw FASTER RMW baseline; prints every repetition, then medians and the
/// engine/baseline ratios as Markdown. <c>--striped</c> adds the node-striped commit path (<c>CommitPath.Striped</c>,
/// issue 14) beside the plain lock path for the single-claim and 8-claim cases, same process, interleaved reps.
/// </summary>
/// <remarks>
/// Repetitions are interleaved (rep 1 of every case, then rep 2, ...) rather than run case by case, so that noise from
/// other work on a shared machine spreads over all cases instead of landing on one, and the ratios stay fair.
/// </remarks>
internal static class ThroughputRunner
{
    private sealed record Case(string Name, string Unit, int Threads, Func<TimeSpan, int, RunResult> Run)
    {
        public List<Rep> Results { get; } = [];
    }

    /// <summary>One repetition of a case, with how busy the rest of the machine was meanwhile.</summary>
    private readonly record struct Rep(int Index, RunResult Result, double OthersCores, double StealCores, double WaitedSeconds);

    private const string Usage =
        "throughput [--seconds N] [--reps R] [--nodes N] [--utilization U] [--seed S] [--quiet-threshold CORES] [--max-wait SECONDS] [--no-baseline] [--striped] [--concurrent] [--only 'NAME|NAME']";

    public static int Run(string[] args)
    {
        double seconds = 3, utilization = 0.5, quietThreshold = 0.3, maxWait = 10;
        int reps = 5, nodes = BenchCell.DefaultNodeCount, seed = 1;
        bool baseline = true, striped = false, concurrent = false;
        string[]? only = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--seconds": seconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--reps": reps = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--nodes": nodes = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--utilization": utilization = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--quiet-threshold": quietThreshold = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--max-wait": maxWait = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--no-baseline": baseline = false; break; // for engine-only sweeps (e.g. of --utilization)
                case "--striped": striped = true; break;        // issue 14: CommitPath.Striped beside the plain lock path
                case "--concurrent": concurrent = true; break;  // issue 14 round 12: CommitPath.Concurrent beside the plain lock path
                // Keep only the cases whose name ends with one of these ('|'-separated; the FASTER baseline always stays):
                // short focused runs, e.g. --only "plain lock path|concurrent path" for the lock and concurrent cases (not the no-spin variants).
                case "--only": only = Next().Split('|', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}; usage: {Usage}");
                    return 2;
            }
        }
        if (seconds <= 0 || reps < 1 || nodes < 8 || utilization is <= 0 or >= 1)
        {
            Console.Error.WriteLine("need --seconds > 0, --reps >= 1, --nodes >= 8, 0 < --utilization < 1");
            return 2;
        }

        var duration = TimeSpan.FromSeconds(seconds);
        Console.WriteLine($"# throughput: {reps} x {seconds.ToString(CultureInfo.InvariantCulture)} s per case, {nodes} nodes, utilization {utilization.ToString(CultureInfo.InvariantCulture)}, seed {seed}");
        Console.WriteLine($"# {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}, {Environment.ProcessorCount} logical CPUs, "
            + $"{(GCSettings.IsServerGC ? "server" : "workstation")} GC, latency mode {GCSettings.LatencyMode}");
        Console.WriteLine($"# baseline: {FasterBaseline.Describe}");
        Console.WriteLine(FormattableString.Invariant(
            $"# noise: before each case wait (at most {maxWait} s) until other processes use < {quietThreshold} cores; a rep is 'quiet' if they stayed below that while it ran"));

        using var faster = baseline ? new FasterBaseline() : null;
        var cases = new List<Case>();
        foreach (int threads in new[] { 1, 2 })
        {
            cases.Add(new Case("engine single-claim Fine (commit+release)", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s)));
            // The same loop on the pre-issue-14 path (every call takes the commit lock itself), same run, same binary.
            cases.Add(new Case("engine single-claim Fine (commit+release), plain lock path", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s, CommitPath.Lock)));
            // The plain lock path without the bounded spin before blocking (issue 14, round 8): the same-process A/B of the spin.
            cases.Add(new Case("engine single-claim Fine (commit+release), plain lock path, no spin", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s, CommitPath.Lock, commitLockSpinRounds: 0)));
            // ... and without warming the commit's cache lines before the lock (CellOptions.PrefetchOutsideLock).
            cases.Add(new Case("engine single-claim Fine (commit+release), plain lock path, no prefetch", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s, CommitPath.Lock, prefetchOutsideLock: false)));
            cases.Add(new Case("engine single-claim Coarse, snapshot+read per claim (commit+release)", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimCoarseWithSnapshot, threads, d, nodes, utilization, s)));
            cases.Add(new Case("engine 8-claim batch Incremental Fine (commit+8 releases)", "claims", threads,
                (d, s) => EngineThroughput.Run(EngineScenario.Batch8Fine, threads, d, nodes, utilization, s)));
            if (striped)
            {
                // Node stripes + sequencer, publication outside the commit lock (issue 14), against the plain lock path of
                // the same process: the single-claim pair above, and the 8-claim batch on both.
                cases.Add(new Case("engine single-claim Fine (commit+release), striped path", "claims", threads,
                    (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s, CommitPath.Striped)));
                cases.Add(new Case("engine 8-claim batch Incremental Fine (commit+8 releases), plain lock path", "claims", threads,
                    (d, s) => EngineThroughput.Run(EngineScenario.Batch8Fine, threads, d, nodes, utilization, s, CommitPath.Lock)));
                cases.Add(new Case("engine 8-claim batch Incremental Fine (commit+8 releases), striped path", "claims", threads,
                    (d, s) => EngineThroughput.Run(EngineScenario.Batch8Fine, threads, d, nodes, utilization, s, CommitPath.Striped)));
            }
            if (concurrent)
            {
                // No commit lock for eligible transactions (issue 14, round 12; docs/commit-protocol.md): node stripes, a
                // partitioned task table and a prefix watermark for the cell version. The bench cell is in-memory, keyless
                // and quota-free, so every commit and release here is eligible.
                cases.Add(new Case("engine single-claim Fine (commit+release), concurrent path", "claims", threads,
                    (d, s) => EngineThroughput.Run(EngineScenario.SingleClaimFine, threads, d, nodes, utilization, s, CommitPath.Concurrent)));
                cases.Add(new Case("engine 8-claim batch Incremental Fine (commit+8 releases), concurrent path", "claims", threads,
                    (d, s) => EngineThroughput.Run(EngineScenario.Batch8Fine, threads, d, nodes, utilization, s, CommitPath.Concurrent)));
                if (!striped)
                    cases.Add(new Case("engine 8-claim batch Incremental Fine (commit+8 releases), plain lock path", "claims", threads,
                        (d, s) => EngineThroughput.Run(EngineScenario.Batch8Fine, threads, d, nodes, utilization, s, CommitPath.Lock)));
            }
            if (faster is not null) cases.Add(new Case("FASTER RMW baseline", "RMWs", threads, (d, s) => faster.Run(threads, d, s)));
        }

        if (only is not null)
            cases.RemoveAll(c => c.Unit != "RMWs" && !Array.Exists(only, o => c.Name.EndsWith(o, StringComparison.Ordinal)));

        for (int rep = 1; rep <= reps; rep++)
        {
            foreach (var c in cases)
            {
                // Start each case from a settled heap so one case's garbage is not collected on the next one's clock.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                double waited = WaitForQuiet(quietThreshold, maxWait);
                var noise = NoiseMeter.Start();
                var r = c.Run(duration, seed + rep);
                var (others, steal) = noise.Stop();
                c.Results.Add(new Rep(rep, r, others, steal, waited));
                Console.WriteLine(FormattableString.Invariant(
                    $"rep {rep} | {c.Threads}T | {c.Name,-72} | {r.OpsPerSecond,14:N0} ops/s | {r.UnitsPerSecond,14:N0} {c.Unit}/s | rejected {r.RejectedFraction:P3} | others {others:F2} cores, steal {steal:F2} | waited {waited:F1} s"));
            }
        }

        PrintSummary(cases, reps, seconds, quietThreshold, quietOnly: false);
        PrintSummary(cases, reps, seconds, quietThreshold, quietOnly: true);
        return 0;
    }

    private static void PrintSummary(List<Case> cases, int reps, double seconds, double quietThreshold, bool quietOnly)
    {
        bool IsQuiet(Rep r) => r.OthersCores < quietThreshold;
        IEnumerable<Rep> Selected(Case c) => quietOnly ? c.Results.Where(IsQuiet) : c.Results;

        Console.WriteLine();
        Console.WriteLine(quietOnly
            ? FormattableString.Invariant($"## Medians of the quiet reps only (other processes < {quietThreshold} cores during the rep)")
            : FormattableString.Invariant($"## Medians of all {reps} reps of {seconds} s"));
        Console.WriteLine();
        Console.WriteLine("| case | threads | reps | median transactions (or RMWs)/s | median claims (or RMWs)/s | min..max claims/s | ns per op per thread | rejected | others' CPU (median cores) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var c in cases)
        {
            var sel = Selected(c).ToList();
            if (sel.Count == 0)
            {
                Console.WriteLine($"| {c.Name} | {c.Threads} | 0 | - | - | - | - | - | - |");
                continue;
            }
            double ops = Median(sel.Select(r => r.Result.OpsPerSecond));
            double units = Median(sel.Select(r => r.Result.UnitsPerSecond));
            Console.WriteLine(FormattableString.Invariant(
                $"| {c.Name} | {c.Threads} | {sel.Count} | {ops:N0} | {units:N0} | {sel.Min(r => r.Result.UnitsPerSecond):N0}..{sel.Max(r => r.Result.UnitsPerSecond):N0} | {1e9 * c.Threads / ops:N0} | {Median(sel.Select(r => r.Result.RejectedFraction)):P3} | {Median(sel.Select(r => r.OthersCores)):F2} |"));
        }

        if (!cases.Any(c => c.Unit == "RMWs")) return;
        Console.WriteLine();
        Console.WriteLine(quietOnly ? "## Ratio engine / FASTER RMW baseline, quiet reps only" : "## Ratio engine / FASTER RMW baseline, all reps");
        Console.WriteLine();
        Console.WriteLine("Ratio of medians, and the median of per-rep ratios (each engine rep divided by the FASTER rep of the same round, when both are selected).");
        Console.WriteLine();
        Console.WriteLine("| case | threads | transactions/s ÷ RMW/s | claims/s ÷ RMW/s (ratio of medians) | claims/s ÷ RMW/s (median of paired ratios) |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var c in cases.Where(c => c.Unit == "claims"))
        {
            var baseline = cases.SingleOrDefault(b => b.Unit == "RMWs" && b.Threads == c.Threads);
            if (baseline is null) continue;
            var sel = Selected(c).ToList();
            var baseSel = Selected(baseline).ToList();
            if (sel.Count == 0 || baseSel.Count == 0)
            {
                Console.WriteLine($"| {c.Name} | {c.Threads} | - | - | - |");
                continue;
            }
            double rmw = Median(baseSel.Select(r => r.Result.UnitsPerSecond));
            var paired = sel.Join(baseSel, r => r.Index, b => b.Index, (r, b) => r.Result.UnitsPerSecond / b.Result.UnitsPerSecond).ToList();
            string pairedText = paired.Count == 0 ? "-" : FormattableString.Invariant($"{Median(paired):F2} (n={paired.Count})");
            Console.WriteLine(FormattableString.Invariant(
                $"| {c.Name} | {c.Threads} | {Median(sel.Select(r => r.Result.OpsPerSecond)) / rmw:F2} | {Median(sel.Select(r => r.Result.UnitsPerSecond)) / rmw:F2} | {pairedText} |"));
        }
    }

    /// <summary>Waits until other processes use less than <paramref name="threshold"/> cores, for at most <paramref name="maxSeconds"/>.</summary>
    private static double WaitForQuiet(double threshold, double maxSeconds)
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        while (System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < maxSeconds)
        {
            double others = NoiseMeter.SampleOthers(TimeSpan.FromMilliseconds(500));
            if (double.IsNaN(others) || others < threshold) break;
        }
        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
