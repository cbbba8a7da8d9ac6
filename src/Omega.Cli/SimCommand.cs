using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Omega.Cells;
using Omega.Reporting;
using Omega.Simulation;

namespace Omega.Cli;

/// <summary><c>omega sim</c>: the Omega paper's experiments in virtual time over the real commit code.</summary>
internal static class SimCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "vary-service-tjob, scale-batch-schedulers or all.", DefaultValueFactory = _ => "all" };
        var hours = new Option<double>("--hours") { Description = "Simulated hours per configuration point (the paper: 24).", DefaultValueFactory = _ => 24 };
        var seed = new Option<long>("--seed") { Description = "Random seed; the same seed gives the same numbers on any machine.", DefaultValueFactory = _ => 1 };
        var machines = new Option<int>("--machines") { Description = "Machines in the cell (4 CPU / 16 GB each).", DefaultValueFactory = _ => 10_000 };
        var tjobs = new Option<string?>("--service-tjob") { Description = "vary-service-tjob: comma-separated t_job(service) values in seconds (default 0.1,1,10,30,100)." };
        var variants = new Option<string?>("--variants") { Description = "vary-service-tjob: comma-separated Detection/Mode pairs, e.g. Fine/Incremental,Coarse/AllOrNothing (default all four)." };
        var counts = new Option<string?>("--batch-schedulers") { Description = "scale-batch-schedulers: comma-separated batch scheduler counts (default 1,2,4,8,32)." };
        var rates = new Option<string?>("--batch-rates") { Description = "scale-batch-schedulers: comma-separated batch arrival-rate factors (default 1,10,20,40)." };
        var trace = new Option<string?>("--trace") { Description = "A job trace CSV (format of shared/traces/google2011-jobs-a.csv) replacing the synthetic arrivals." };
        var outDir = new Option<string>("--out") { Description = "Report folder; each preset writes OUT/<preset>/README.md and PNG charts.", DefaultValueFactory = _ => "sim-report" };
        var parallel = new Option<int>("--parallel") { Description = "Configuration points run at once (each run is single-threaded).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var noCharts = new Option<bool>("--no-charts") { Description = "Skip the PNG charts." };
        var cmd = new Command("sim", "Run the Omega paper's scheduler experiments in virtual time over the real cell/commit code; prints a table per preset and writes a report.")
        {
            preset, hours, seed, machines, tjobs, variants, counts, rates, trace, outDir, parallel, noCharts,
        };
        cmd.SetAction(r =>
        {
            string p = r.GetValue(preset) ?? "all";
            IReadOnlyList<double>? tj = null, rt = null;
            IReadOnlyList<int>? ns = null;
            IReadOnlyList<(ConflictDetection, CommitMode)>? vs = null;
            string? error =
                p != "all" && !Presets.Names.Contains(p) ? $"--preset must be one of: {string.Join(", ", Presets.Names)}, all" :
                r.GetValue(hours) is <= 0 or > 24 * 365 || double.IsNaN(r.GetValue(hours)) ? "--hours must be positive and at most 8760" :
                r.GetValue(machines) is < 1 or > 1_000_000 ? "--machines must be between 1 and 1,000,000" :
                r.GetValue(parallel) is < 1 or > 256 ? "--parallel must be between 1 and 256" :
                !TryList(r.GetValue(tjobs), v => v > 0 && v <= 86_400, out tj) ? "--service-tjob must be comma-separated positive seconds (at most 86400)" :
                !TryList(r.GetValue(rates), v => v > 0 && v <= 1000, out rt) ? "--batch-rates must be comma-separated positive factors (at most 1000)" :
                !TryIntList(r.GetValue(counts), out ns) ? "--batch-schedulers must be comma-separated counts between 1 and 1024" :
                !TryVariants(r.GetValue(variants), out vs) ? "--variants must be comma-separated Detection/Mode pairs (Fine|Coarse)/(Incremental|AllOrNothing)" :
                null;
            IReadOnlyList<TraceJob>? traceJobs = null;
            if (error is null && r.GetValue(trace) is { } tracePath)
            {
                if (!File.Exists(tracePath)) error = $"--trace: no such file: {tracePath}";
                else if (!TraceReader.TryReadFile(tracePath, out traceJobs, out var te)) error = $"--trace {tracePath}: {te}";
            }
            if (error is not null)
            {
                Console.Error.WriteLine($"omega sim: {error}");
                return 2;
            }
            var options = new PresetOptions
            {
                Duration = r.GetValue(hours) * 3600,
                Seed = r.GetValue(seed),
                Machines = r.GetValue(machines),
                ServiceJobTimes = tj,
                BatchSchedulerCounts = ns,
                BatchRateFactors = rt,
                Variants = vs,
                Trace = traceJobs,
            };
            var names = p == "all" ? Presets.Names : [p];
            int status = 0;
            foreach (var name in names)
                status = Math.Max(status, RunPreset(name, options, r.GetValue(outDir)!, r.GetValue(parallel), !r.GetValue(noCharts), args: Environment.GetCommandLineArgs(), r.GetValue(trace)));
            return status;
        });
        return cmd;
    }

    private static int RunPreset(string name, PresetOptions options, string outRoot, int parallel, bool charts, string[] args, string? tracePath)
    {
        var points = Presets.Points(name, options)!;
        Console.WriteLine($"omega sim {name}: {points.Count} points, {options.Machines:N0} machines, {options.Duration / 3600:0.##} simulated h each, seed {options.Seed}{(tracePath is null ? "" : $", trace {tracePath}")}, {parallel} at once");
        string loadBefore = LoadAverage();
        var sw = Stopwatch.StartNew();
        var results = Presets.Run(points, parallel, pr =>
            Console.WriteLine(string.Create(C, $"  done {Describe(pr.Point)} in {pr.WallSeconds:0.0} s ({pr.Result.Events:N0} events)")));
        double wall = sw.Elapsed.TotalSeconds;
        string loadAfter = LoadAverage();
        string table = Presets.Table(name, results);
        Console.WriteLine();
        Console.Write(table);
        Console.WriteLine(string.Create(C, $"{name}: {points.Count} points in {wall:0.0} s wall"));

        int status = 0;
        foreach (var r in results)
            if (r.Result.AuditProblems.Count > 0)
            {
                Console.Error.WriteLine($"omega sim: cell audit failed after {Describe(r.Point)}: {r.Result.AuditProblems[0]}");
                status = 3;
            }

        string dir = Path.Combine(outRoot, name);
        Directory.CreateDirectory(dir);
        var chartFiles = charts ? WriteCharts(name, results, dir) : [];
        File.WriteAllText(Path.Combine(dir, "README.md"), Readme(name, options, results, table, wall, loadBefore, loadAfter, chartFiles, args, parallel, tracePath));
        Console.WriteLine($"report: {Path.Combine(dir, "README.md")}");
        return status;
    }

    private static string Describe(PresetPoint p) => p.Preset == Presets.VaryServiceTJob
        ? string.Create(C, $"{p.Detection}/{p.Mode} t_job(service)={p.ServiceJobTime}s")
        : string.Create(C, $"{p.BatchSchedulers} batch schedulers x{p.BatchRateFactor} rate");

    private static List<string> WriteCharts(string name, IReadOnlyList<PresetPointResult> results, string dir)
    {
        var files = new List<string>();
        void Chart(string file, string title, string x, string y, List<Series> series, bool logX)
        {
            Charts.WriteLineChart(Path.Combine(dir, file), title, x, y, series, logX);
            files.Add(file);
        }
        if (name == Presets.VaryServiceTJob)
        {
            var groups = results.GroupBy(r => (r.Point.Detection, r.Point.Mode)).ToList();
            List<Series> S(Func<PresetPointResult, double> f) => groups.Select(g => new Series($"{g.Key.Detection} + {g.Key.Mode}",
                g.Select(r => r.Point.ServiceJobTime).ToList(), g.Select(f).ToList())).ToList();
            Chart("service-conflict-fraction.png", "Service scheduler conflict fraction vs t_job(service)", "t_job(service) [s]", "conflict fraction", S(r => r.Result.Group("service").ConflictFraction), true);
            Chart("service-busyness.png", "Service scheduler busyness vs t_job(service)", "t_job(service) [s]", "busyness", S(r => r.Result.Group("service").MeanBusyness), true);
            Chart("service-wait-placed.png", "Service job wait until fully placed (mean)", "t_job(service) [s]", "seconds", S(r => r.Result.Group("service").WaitFullyPlacedMean), true);
        }
        else
        {
            var groups = results.GroupBy(r => r.Point.BatchRateFactor).ToList();
            List<Series> S(Func<PresetPointResult, double> f) => groups.Select(g => new Series(string.Create(C, $"batch rate x{g.Key}"),
                g.Select(r => (double)r.Point.BatchSchedulers).ToList(), g.Select(f).ToList())).ToList();
            Chart("batch-busyness.png", "Per-batch-scheduler busyness vs number of batch schedulers", "batch schedulers", "busyness (mean per scheduler)", S(r => r.Result.Group("batch").MeanBusyness), true);
            Chart("batch-conflict-fraction.png", "Batch conflict fraction vs number of batch schedulers", "batch schedulers", "conflict fraction", S(r => r.Result.Group("batch").ConflictFraction), true);
            Chart("batch-wait-placed.png", "Batch job wait until fully placed (mean)", "batch schedulers", "seconds", S(r => r.Result.Group("batch").WaitFullyPlacedMean), true);
        }
        return files;
    }

    private static string Readme(string name, PresetOptions o, IReadOnlyList<PresetPointResult> results, string table, double wall,
        string loadBefore, string loadAfter, List<string> charts, string[] args, int parallel, string? tracePath)
    {
        var sb = new StringBuilder();
        sb.AppendLine(C, $"# omega sim: {name}");
        sb.AppendLine();
        sb.AppendLine("Generated by `omega sim`; see docs/simulation.md for the model and how it maps to the engine.");
        sb.AppendLine();
        sb.AppendLine("## Command");
        sb.AppendLine();
        sb.AppendLine("```bash");
        sb.AppendLine(C, $"omega {string.Join(' ', args.Skip(1))}");
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine("## Machine");
        sb.AppendLine();
        sb.AppendLine(C, $"- nproc {Environment.ProcessorCount}, memory {MemoryTotal()}, {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}");
        sb.AppendLine(C, $"- load average before / after: {loadBefore} / {loadAfter} (the machine is shared with other builds)");
        sb.AppendLine(C, $"- {results.Count} points, {parallel} at once, {wall:0.0} s wall in total; slowest point {results.Max(r => r.WallSeconds):0.0} s");
        sb.AppendLine();
        sb.AppendLine("## Setup");
        sb.AppendLine();
        sb.AppendLine(C, $"- {o.Machines:N0} machines of 4 CPU / 16 GB, prefilled to about 60 % CPU with never-ending 1 CPU / 4 GB tasks; {o.Duration / 3600:0.##} simulated hours per point; seed {o.Seed}.");
        if (tracePath is not null)
            sb.AppendLine(C, $"- workload: trace `{tracePath}` (priority 9-11 to the service scheduler, the rest round-robin to the batch schedulers; requests scaled to the machine size).");
        else if (name == Presets.VaryServiceTJob)
            sb.AppendLine("- batch: a job every 5 s, 40 tasks, 600 s, 0.5 CPU / 1 GB per task, t_job 0.1 s, t_task 5 ms. Service: a job every 60 s, 20 tasks, 10,000 s, 1 CPU / 4 GB, t_task 5 ms, t_job as in the table. All means of exponential draws; both schedulers use the row's detection and mode.");
        else
            sb.AppendLine("- Fine + Incremental. Batch: a job every 5 s / rate factor, 40 tasks, 30 s, 0.5 CPU / 1 GB, t_job 0.1 s, t_task 5 ms, spread round-robin over the batch schedulers. Service: a job every 60 s, 20 tasks, 10,000 s, 1 CPU / 4 GB, t_job 0.1 s, t_task 5 ms.");
        sb.AppendLine("- Busyness = decision time / simulated time. Conflict fraction = transactions with any conflict / transactions with none. Waits: submission to first attempt and to fully placed (mean / p90, nearest rank). Batch busyness is the mean over the batch schedulers.");
        sb.AppendLine();
        sb.AppendLine("## Results");
        sb.AppendLine();
        sb.Append(table);
        sb.AppendLine();
        foreach (var c in charts) sb.AppendLine(C, $"![{c}]({c})");
        return sb.ToString();
    }

    private static string LoadAverage()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return $"{parts[0]} {parts[1]} {parts[2]}";
        }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }

    private static string MemoryTotal()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                {
                    long kb = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], C);
                    return string.Create(C, $"{kb / 1024.0 / 1024.0:0.0} GiB");
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "n/a";
    }

    private static bool TryList(string? text, Func<double, bool> valid, out IReadOnlyList<double>? values)
    {
        values = null;
        if (text is null) return true;
        var list = new List<double>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!double.TryParse(part, NumberStyles.Float, C, out double v) || !valid(v)) return false;
            list.Add(v);
        }
        values = list;
        return list.Count > 0;
    }

    private static bool TryIntList(string? text, out IReadOnlyList<int>? values)
    {
        values = null;
        if (text is null) return true;
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, C, out int v) || v is < 1 or > 1024) return false;
            list.Add(v);
        }
        values = list;
        return list.Count > 0;
    }

    private static bool TryVariants(string? text, out IReadOnlyList<(ConflictDetection, CommitMode)>? values)
    {
        values = null;
        if (text is null) return true;
        var list = new List<(ConflictDetection, CommitMode)>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var pair = part.Split('/');
            if (pair.Length != 2 || !Enum.TryParse<ConflictDetection>(pair[0], true, out var d) || !Enum.TryParse<CommitMode>(pair[1], true, out var m)
                || !Enum.IsDefined(d) || !Enum.IsDefined(m)) return false;
            list.Add((d, m));
        }
        values = list;
        return list.Count > 0;
    }
}
