using System.CommandLine;
using System.Globalization;
using Omega.Cells;
using Spectre.Console;

namespace Omega.Cli.Load;

/// <summary>
/// <c>omega loadgen</c>: drives an Omega-paper style batch/service workload through the embedded engine, shows live
/// progress, prints a summary table and optionally writes a report folder.
/// </summary>
internal static class LoadgenCommand
{
    public static Command Create()
    {
        var nodes = new Option<int>("--nodes") { Description = "Nodes in the cell (32 cores / 128 GiB each).", DefaultValueFactory = _ => 10_000 };
        var seconds = new Option<double?>("--seconds") { Description = "How long to run (default 30 s; with --trace, to the end of the trace unless given)." };
        var batchWorkers = new Option<int>("--batch-workers") { Description = "Workers of the batch scheduler kind.", DefaultValueFactory = _ => 2 };
        var serviceWorkers = new Option<int>("--service-workers") { Description = "Workers of the service scheduler kind.", DefaultValueFactory = _ => 1 };
        var batchDetection = new Option<ConflictDetection>("--batch-detection") { Description = "Conflict detection of the batch kind: Fine or Coarse.", DefaultValueFactory = _ => ConflictDetection.Fine };
        var serviceDetection = new Option<ConflictDetection>("--service-detection") { Description = "Conflict detection of the service kind.", DefaultValueFactory = _ => ConflictDetection.Fine };
        var load = new Option<double>("--load") { Description = "Arrival-rate multiplier of the default mix (1 = about 20,000 task arrivals/s).", DefaultValueFactory = _ => 1 };
        var seed = new Option<int?>("--seed") { Description = "Random seed of the workload and the workers (printed; default: random)." };
        var report = new Option<string?>("--report") { Description = "Write a report folder (README.md with the figures, samples.csv) to this directory." };
        var plain = new Option<bool>("--plain") { Description = "Plain progress lines even on a terminal." };
        var trace = new Option<string?>("--trace") { Description = "Replay a job trace CSV (the format of ../shared/traces) instead of the synthetic mix." };
        var speedup = new Option<double>("--speedup") { Description = "With --trace: replay this many times faster than recorded.", DefaultValueFactory = _ => 100 };
        var connect = new Option<string?>("--connect") { Description = "Submit the workload to a running server (HOST:PORT or ADDRESS:PORT) over TCP instead of an embedded engine; run omega agents against it too." };
        var firstJob = new Option<long>("--first-job-id") { Description = "With --connect: the first job id to submit (ids must be new to the server).", DefaultValueFactory = _ => 1 };
        var output = Run.Output.Option();
        var metricsPort = new Option<int?>("--metrics-port") { Description = "Serve Prometheus metrics at http://localhost:PORT/metrics while running (opt-in)." };
        var cmd = new Command("loadgen", "Drive an Omega-paper style batch/service workload through the embedded engine and report throughput, latency and conflicts.")
        {
            nodes, seconds, batchWorkers, serviceWorkers, batchDetection, serviceDetection, load, seed, report, plain, metricsPort, trace, speedup, connect, firstJob, output,
        };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction(async (r, cancel) =>
        {
            if (!Run.Output.TryParse("loadgen", r.GetValue(output), out var format)) return 2;
            if (Run.Output.IsDocument(format) && r.GetValue(connect) is not null)
            {
                // The remote run's summary is the server's view of its jobs; it has no document form yet (docs/cli.md).
                Console.Error.WriteLine("omega loadgen: -o json|yaml is for the embedded run; with --connect use omega stats -o json");
                return 2;
            }
            string? error =
                r.GetValue(nodes) is < 1 or > 1_000_000 ? "--nodes must be between 1 and 1,000,000" :
                r.GetValue(seconds) is <= 0 or > 86_400 ? "--seconds must be positive and at most 86400" :
                r.GetValue(batchWorkers) is < 1 or > 256 ? "--batch-workers must be between 1 and 256" :
                r.GetValue(serviceWorkers) is < 1 or > 256 ? "--service-workers must be between 1 and 256" :
                r.GetValue(load) is <= 0 or > 1000 ? "--load must be positive and at most 1000" :
                r.GetValue(metricsPort) is < 1 or > 65535 ? "--metrics-port must be between 1 and 65535" :
                r.GetValue(speedup) is <= 0 or > 1_000_000 ? "--speedup must be positive and at most 1,000,000" : null;
            if (error is not null)
            {
                Console.Error.WriteLine($"omega loadgen: {error}");
                return 2;
            }
            int s = r.GetValue(seed) ?? Random.Shared.Next();
            var o = new LoadOptions(r.GetValue(nodes), r.GetValue(seconds) ?? 30, r.GetValue(batchWorkers), r.GetValue(serviceWorkers),
                r.GetValue(batchDetection), r.GetValue(serviceDetection), r.GetValue(load), s, "omega " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)));
            IWorkload workload;
            if (r.GetValue(trace) is { } path)
            {
                if (!File.Exists(path))
                {
                    Console.Error.WriteLine($"omega loadgen: trace file not found: {path}");
                    return 2;
                }
                if (!Omega.Simulation.TraceReader.TryReadFile(path, out var jobs, out var traceError))
                {
                    Console.Error.WriteLine($"omega loadgen: {path}: {traceError}");
                    return 2;
                }
                workload = new TraceWorkload(path, jobs, r.GetValue(speedup), LoadRun.NodeShape);
                // A replay is not silently cut at a default duration: without an explicit --seconds it runs to the end.
                if (r.GetValue(seconds) is null) o = o with { Seconds = Math.Max(1, workload.Span ?? 30), UntilEnd = true };
            }
            else workload = new SyntheticWorkload(LoadRun.DefaultMix(o.Load), s);
            if (r.GetValue(connect) is { } remote)
            {
                if (!Omega.Transport.FrameClient.TryParseEndPoint(remote, out var endpoint))
                {
                    Console.Error.WriteLine($"omega loadgen: --connect must be HOST:PORT or ADDRESS:PORT, not '{remote}'");
                    return 2;
                }
                if (!tls.TryResolve(r, out var transport, out var tlsError) || !tls.TryResolveToken(r, out var token, out tlsError))
                {
                    Console.Error.WriteLine($"omega loadgen: {tlsError}");
                    return 2;
                }
                return await RemoteLoadRun.RunAsync(endpoint!, transport, token, o.Seconds, o.UntilEnd, workload, s, r.GetValue(firstJob), cancel).ConfigureAwait(false);
            }
            if (!MetricsExport.TryStartPrometheus("loadgen", r.GetValue(metricsPort), out var metrics)) return 1;
            using var exporter = metrics;
            return Execute(o, workload, r.GetValue(report), r.GetValue(plain), format);
        });
        return cmd;
    }

    internal static int Execute(LoadOptions o, IWorkload workload, string? reportDir, bool plain, Run.OutputFormat format = Run.OutputFormat.Text)
    {
        var console = AnsiConsole.Console;
        // -o json|yaml: stdout is the summary document alone; the progress lines go to stderr (plain, never the live bar).
        bool document = format is Run.OutputFormat.Json or Run.OutputFormat.Yaml;
        var progress = document ? Console.Error : Console.Out;
        bool live = !document && !plain && !Console.IsOutputRedirected && console.Profile.Capabilities.Interactive;
        // Redirected output has no terminal width; Spectre would wrap the summary at 80 columns.
        if (Console.IsOutputRedirected) console.Profile.Width = 140;
        progress.WriteLine(FormattableString.Invariant(
            $"omega loadgen: embedded engine, {o.Nodes:N0} nodes, batch {o.BatchWorkers} workers ({o.BatchDetection}), service {o.ServiceWorkers} ({o.ServiceDetection}), {(o.UntilEnd ? "until the trace ends" : FormattableString.Invariant($"{o.Seconds:0.#} s"))}, seed {o.Seed}"));
        progress.WriteLine($"  workload: {workload.Describe}");
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };

        LoadSummary summary;
        if (live)
        {
            LoadSummary? result = null;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var bar = ctx.AddTask("starting", maxValue: o.Seconds);
                    result = LoadRun.Run(o, workload, sample =>
                    {
                        bar.Value = Math.Min(o.Seconds, sample.T);
                        bar.Description = Line(sample, markup: true);
                    }, cancel.Token);
                    bar.Value = o.Seconds;
                });
            summary = result!;
        }
        else
        {
            summary = LoadRun.Run(o, workload, sample => progress.WriteLine("  " + Line(sample, markup: false)), cancel.Token);
        }

        if (document) Run.Output.Print(SummaryDocument(summary, workload.Remaining), format);
        else PrintSummary(console, summary);
        if (workload.Remaining is > 0)
            progress.WriteLine(FormattableString.Invariant(
                $"trace replay cut at --seconds {o.Seconds:0.#}: {workload.Remaining:N0} trace jobs were not submitted (omit --seconds to replay to the end)"));
        if (reportDir is not null)
        {
            // The same-run baseline of design.md §7: raw FASTER RMW/s on this machine, measured right after the run.
            progress.WriteLine("measuring the same-run baseline (raw FASTER RMW, 1 and 2 threads, 3 s each)...");
            using var faster = new Omega.Storage.Baseline.FasterRmwBaseline();
            var baseline = new BaselineFigures(Omega.Storage.Baseline.FasterRmwBaseline.Describe,
                faster.Run(1, TimeSpan.FromSeconds(3), o.Seed), faster.Run(2, TimeSpan.FromSeconds(3), o.Seed));
            progress.WriteLine(FormattableString.Invariant(
                $"baseline: {baseline.Rmw1:N0} RMW/s (1 thread), {baseline.Rmw2:N0} RMW/s (2 threads); placements/s ÷ 2-thread RMW/s = {summary.PlacementsPerSecond / baseline.Rmw2:0.000}"));
            string path = LoadReport.Write(reportDir, summary, baseline);
            progress.WriteLine($"report written to {path}");
        }
        return summary.AuditProblems.Count == 0 ? 0 : 3;
    }

    /// <summary>The summary as a document (<c>-o json|yaml</c>): latencies in microseconds, fractions as numbers 0-1.</summary>
    private static byte[] SummaryDocument(LoadSummary s, long? remaining) => Run.Output.Document("LoadgenSummary", w =>
    {
        static void Latency(System.Text.Json.Utf8JsonWriter w, string name, LatencySummary l)
        {
            w.WriteStartObject(name);
            w.WriteNumber("count", l.Count);
            // An empty histogram has no percentiles: null, not NaN (which JSON cannot carry).
            foreach (var (key, v) in new[] { ("p50Micros", l.P50), ("p99Micros", l.P99), ("p999Micros", l.P999), ("maxMicros", l.Max) })
                if (double.IsFinite(v)) w.WriteNumber(key, v); else w.WriteNull(key);
            w.WriteEndObject();
        }
        w.WriteNumber("seed", s.Options.Seed);
        w.WriteNumber("nodes", s.Options.Nodes);
        w.WriteString("workload", s.Workload);
        w.WriteNumber("seconds", s.Seconds);
        w.WriteNumber("placements", s.Placements);
        w.WriteNumber("placementsPerSecond", s.PlacementsPerSecond);
        w.WriteNumber("jobsSubmitted", s.Submitted);
        w.WriteNumber("jobsRejected", s.Rejected);
        w.WriteNumber("jobsPlaced", s.JobsPlaced);
        w.WriteNumber("jobsParked", s.JobsParked);
        w.WriteNumber("tasksCompleted", s.Completed);
        if (remaining is { } left) w.WriteNumber("traceJobsNotSubmitted", left);
        Latency(w, "commitLatency", s.Commit);
        Latency(w, "decisionLatency", s.Decision);
        w.WriteStartArray("schedulers");
        foreach (var k in s.Schedulers)
        {
            w.WriteStartObject();
            w.WriteString("name", k.Name);
            w.WriteNumber("workers", k.Workers);
            w.WriteString("policy", k.Policy);
            w.WriteNumber("placements", k.Placements);
            w.WriteNumber("cleanTransactions", k.CleanTransactions);
            w.WriteNumber("conflictedTransactions", k.ConflictedTransactions);
            w.WriteNumber("conflictFraction", double.IsFinite(k.ConflictFraction) ? k.ConflictFraction : 0);
            w.WriteNumber("busyUseful", k.BusyUseful);
            w.WriteNumber("busyWasted", k.BusyWasted);
            Latency(w, "jobPlacementLatency", k.PlacementLatency);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("cpuUtilization", s.CpuUtilization);
        w.WriteNumber("liveBindings", s.LiveBindings);
        w.WriteBoolean("invariantsOk", s.AuditProblems.Count == 0);
        w.WriteStartArray("auditProblems");
        foreach (var p in s.AuditProblems) w.WriteStringValue(p);
        w.WriteEndArray();
    });

    private static string Line(LoadSample s, bool markup)
    {
        string conflicts = string.Join(' ', s.ConflictFraction.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => FormattableString.Invariant($"{p.Key} {p.Value:0.000}")));
        string text = FormattableString.Invariant(
            $"t={s.T,5:0.0}s placements/s={s.PlacementsPerSecond,10:N0} queue={s.QueueDepth,7:N0} cpu={s.CpuUtilization,6:P1} conflict fraction: {conflicts}");
        return markup ? Markup.Escape(text) : text;
    }

    private static void PrintSummary(IAnsiConsole console, LoadSummary s)
    {
        var t = new Table().Title("omega loadgen summary").AddColumn("figure").AddColumn(new TableColumn("value").RightAligned()).AddColumn("note");
        string Us(double v) => double.IsNaN(v) ? "-" : v >= 10_000 ? FormattableString.Invariant($"{v / 1000:N1} ms") : FormattableString.Invariant($"{v:N0} µs");
        t.AddRow("placements/s", FormattableString.Invariant($"{s.PlacementsPerSecond:N0}"), FormattableString.Invariant($"{s.Placements:N0} placements in {s.Seconds:0.0} s"));
        t.AddRow("jobs submitted / placed / parked", FormattableString.Invariant($"{s.Submitted:N0} / {s.JobsPlaced:N0} / {s.JobsParked:N0}"), s.Rejected > 0 ? $"{s.Rejected:N0} rejected by full queues" : "");
        t.AddRow("tasks completed", FormattableString.Invariant($"{s.Completed:N0}"), "");
        t.AddRow("commit latency p50 / p99 / p99.9", $"{Us(s.Commit.P50)} / {Us(s.Commit.P99)} / {Us(s.Commit.P999)}", FormattableString.Invariant($"{s.Commit.Count:N0} transactions"));
        t.AddRow("decision latency p50 / p99", $"{Us(s.Decision.P50)} / {Us(s.Decision.P99)}", "per job attempt");
        foreach (var k in s.Schedulers)
        {
            t.AddRow(Markup.Escape($"[{k.Name}] placements"), FormattableString.Invariant($"{k.Placements:N0}"), Markup.Escape($"{k.Workers} workers, {k.Policy}"));
            t.AddRow(Markup.Escape($"[{k.Name}] conflict fraction"), FormattableString.Invariant($"{k.ConflictFraction:0.0000}"),
                FormattableString.Invariant($"{k.ConflictedTransactions:N0} conflicted / {k.CleanTransactions:N0} clean transactions (Omega paper §5)"));
            t.AddRow(Markup.Escape($"[{k.Name}] busyness"), FormattableString.Invariant($"{k.BusyUseful + k.BusyWasted:P1}"), FormattableString.Invariant($"useful {k.BusyUseful:P1}, wasted {k.BusyWasted:P1}"));
            t.AddRow(Markup.Escape($"[{k.Name}] job placement latency p50 / p99"), $"{Us(k.PlacementLatency.P50)} / {Us(k.PlacementLatency.P99)}", "submit to fully placed");
        }
        t.AddRow("cpu utilization", FormattableString.Invariant($"{s.CpuUtilization:P1}"), FormattableString.Invariant($"{s.LiveBindings:N0} live bindings"));
        t.AddRow("invariants", s.AuditProblems.Count == 0 ? "ok" : "VIOLATED",
            Markup.Escape(s.AuditProblems.Count == 0 ? "no node over capacity, no task bound twice" : string.Join("; ", s.AuditProblems.Take(3))));
        console.Write(t);
    }
}
