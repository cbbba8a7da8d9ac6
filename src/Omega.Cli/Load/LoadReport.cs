using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Omega.Reporting;

namespace Omega.Cli.Load;

/// <summary>
/// Writes a load run's report folder: README.md (command, machine, configuration, figures, time series) and
/// samples.csv (one row per second), in the layout perf-reports/ uses.
/// </summary>
/// <summary>The same-run FASTER RMW baseline.</summary>
internal sealed record BaselineFigures(string Describe, double Rmw1, double Rmw2);

internal static class LoadReport
{
    public static string Write(string directory, LoadSummary s, BaselineFigures? baseline = null)
    {
        Directory.CreateDirectory(directory);
        var ci = CultureInfo.InvariantCulture;
        var schedulers = s.Schedulers.Select(k => k.Name).ToArray();

        var csv = new StringBuilder();
        csv.Append("t_seconds,placements_per_second,queue_depth,cpu_utilization,live_bindings");
        foreach (var k in schedulers) csv.Append(ci, $",conflict_fraction_{k}");
        csv.AppendLine();
        foreach (var x in s.Samples)
        {
            csv.Append(ci, $"{x.T:0.###},{x.PlacementsPerSecond:0},{x.QueueDepth},{x.CpuUtilization:0.####},{x.LiveBindings}");
            foreach (var k in schedulers) csv.Append(ci, $",{x.ConflictFraction.GetValueOrDefault(k):0.######}");
            csv.AppendLine();
        }
        File.WriteAllText(Path.Combine(directory, "samples.csv"), csv.ToString());

        WriteCharts(directory, s, schedulers);

        var md = new StringBuilder();
        md.AppendLine(ci, $"# omega loadgen — {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine("## Command");
        md.AppendLine();
        md.AppendLine("```bash");
        md.AppendLine(s.Options.CommandLine);
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine("## Machine");
        md.AppendLine();
        md.AppendLine(ci, $"{Environment.ProcessorCount} logical cores, {MemoryGiB():0.#} GiB memory, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}; load average at the end {LoadAverage()}.");
        md.AppendLine();
        md.AppendLine("## Configuration");
        md.AppendLine();
        md.AppendLine(ci, $"* cell: {s.Options.Nodes:N0} nodes of {LoadRun.NodeShape}, embedded engine (in-process)");
        foreach (var k in s.Schedulers) md.AppendLine(ci, $"* scheduler `{k.Name}`: {k.Workers} workers, {k.Policy}");
        md.AppendLine(ci, $"* workload: {s.Workload}");
        md.AppendLine(ci, $"* run: {s.Seconds:0.0} s, seed {s.Options.Seed}");
        md.AppendLine();
        md.AppendLine("## Figures");
        md.AppendLine();
        md.AppendLine("| figure | value |");
        md.AppendLine("|---|---:|");
        md.AppendLine(ci, $"| placements/s | {s.PlacementsPerSecond:N0} |");
        md.AppendLine(ci, $"| placements | {s.Placements:N0} |");
        md.AppendLine(ci, $"| jobs submitted / placed / parked / rejected | {s.Submitted:N0} / {s.JobsPlaced:N0} / {s.JobsParked:N0} / {s.Rejected:N0} |");
        md.AppendLine(ci, $"| tasks completed | {s.Completed:N0} |");
        md.AppendLine(ci, $"| commit latency p50 / p99 / p99.9 (µs) | {s.Commit.P50:N0} / {s.Commit.P99:N0} / {s.Commit.P999:N0} |");
        md.AppendLine(ci, $"| decision latency p50 / p99 (µs per job attempt) | {s.Decision.P50:N0} / {s.Decision.P99:N0} |");
        md.AppendLine(ci, $"| CPU utilization at the end | {s.CpuUtilization:P1} |");
        md.AppendLine(ci, $"| invariants | {(s.AuditProblems.Count == 0 ? "ok" : "VIOLATED: " + string.Join("; ", s.AuditProblems.Take(3)))} |");
        md.AppendLine();
        md.AppendLine("| scheduler | workers | policy | placements | conflict fraction | conflicted / clean transactions | busyness (useful + wasted) | job placement latency p50 / p99 (µs) |");
        md.AppendLine("|---|---:|---|---:|---:|---:|---:|---:|");
        foreach (var k in s.Schedulers)
            md.AppendLine(ci, $"| {k.Name} | {k.Workers} | {k.Policy} | {k.Placements:N0} | {k.ConflictFraction:0.0000} | {k.ConflictedTransactions:N0} / {k.CleanTransactions:N0} | {k.BusyUseful:P1} + {k.BusyWasted:P1} | {k.PlacementLatency.P50:N0} / {k.PlacementLatency.P99:N0} |");
        md.AppendLine();
        if (baseline is not null)
        {
            md.AppendLine("## Same-run baseline");
            md.AppendLine();
            md.AppendLine(ci, $"Measured in the same process right after the run: {baseline.Describe}.");
            md.AppendLine();
            md.AppendLine("| baseline | threads | RMW/s | placements/s ÷ RMW/s |");
            md.AppendLine("|---|---:|---:|---:|");
            md.AppendLine(ci, $"| FASTER RMW | 1 | {baseline.Rmw1:N0} | {s.PlacementsPerSecond / baseline.Rmw1:0.000} |");
            md.AppendLine(ci, $"| FASTER RMW | 2 | {baseline.Rmw2:N0} | {s.PlacementsPerSecond / baseline.Rmw2:0.000} |");
            md.AppendLine();
            md.AppendLine("The workload is paced (arrivals in real time), so placements/s measures the offered load the engine kept up with, not its ceiling, unless the queue grew during the run (see the queue column of samples.csv).");
            md.AppendLine();
        }
        md.AppendLine("Conflict fraction is the Omega paper's (§5): transactions with at least one conflicted claim ÷ transactions with none.");
        md.AppendLine("Busyness is the fraction of wall time the scheduler's workers spent deciding, split into useful and wasted (decisions whose commit conflicted).");
        md.AppendLine();
        md.AppendLine("## Charts");
        md.AppendLine();
        md.AppendLine("![placements per second over time](throughput.png)");
        md.AppendLine();
        md.AppendLine("![latency distribution](latency.png)");
        md.AppendLine();
        md.AppendLine("![conflict fraction per scheduler over time](conflicts.png)");
        md.AppendLine();
        md.AppendLine("## Time series");
        md.AppendLine();
        md.AppendLine("One row per second in [samples.csv](samples.csv).");
        File.WriteAllText(Path.Combine(directory, "README.md"), md.ToString());
        return Path.GetFullPath(directory);
    }

    private static void WriteCharts(string directory, LoadSummary s, string[] schedulers)
    {
        var t = s.Samples.Select(x => x.T).ToArray();
        Charts.WriteLineChart(Path.Combine(directory, "throughput.png"), "Placements per second", "time (s)", "placements/s",
            [new Series("placements/s", t, s.Samples.Select(x => x.PlacementsPerSecond).ToArray())]);
        Charts.WriteLineChart(Path.Combine(directory, "conflicts.png"), "Conflict fraction per scheduler (per second)", "time (s)", "conflicted / clean transactions",
            schedulers.Select(k => new Series(k, t, s.Samples.Select(x => x.ConflictFraction.GetValueOrDefault(k)).ToArray())).ToArray());
        var pct = LatencySummary.CurvePercentiles;
        var lines = new List<Series> { new(Run.RunCommand.LatencyLegend("commit", s.Commit), pct, s.Commit.Curve.Select(v => v / 1000).ToArray()) };
        foreach (var k in s.Schedulers)
            lines.Add(new Series(Run.RunCommand.LatencyLegend($"{k.Name}: submit to placed", k.PlacementLatency), pct, k.PlacementLatency.Curve.Select(v => v / 1000).ToArray()));
        // Log scale: commits take microseconds, job placement milliseconds to seconds (see omega run's chart).
        Charts.WriteLineChart(Path.Combine(directory, "latency.png"), "Latency distribution", "percentile", "milliseconds", lines, logY: true);
    }

    private static double MemoryGiB() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024);

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }
}
