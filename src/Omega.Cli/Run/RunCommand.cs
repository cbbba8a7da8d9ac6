using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Omega.Cli.Fleet;
using Omega.Cli.Load;
using Omega.Hosting;
using Omega.Scheduling;
using Omega.Storage;
using Spectre.Console;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega run</c>, Omega's main job on its embedded default: an engine whose cell is durable in FASTER (a default
/// directory), the TCP server on loopback, a simulated agent fleet connecting to it over real sockets, and an
/// Omega-paper batch/service workload, for a bounded time. It prints what a scheduler's user wants to see: placements/s,
/// bind latency (commit to agent), the conflict fraction and busyness per scheduler, utilization and an invariant audit.
/// </summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var agents = new Option<int>("--agents") { Description = "Simulated node agents (one TCP connection and one node each).", DefaultValueFactory = _ => 1_000 };
        var seconds = new Option<double>("--seconds") { Description = "How long to drive the workload.", DefaultValueFactory = _ => 30 };
        var load = new Option<double>("--load") { Description = "Arrival-rate multiplier of the default mix (1 = about 20,000 task arrivals/s).", DefaultValueFactory = _ => 0.1 };
        var batchWorkers = new Option<int>("--batch-workers") { Description = "Workers of the batch scheduler kind.", DefaultValueFactory = _ => 2 };
        var serviceWorkers = new Option<int>("--service-workers") { Description = "Workers of the service scheduler kind.", DefaultValueFactory = _ => 1 };
        var data = new Option<string?>("--data") { Description = "Data directory of this run's cell (default: the user's local data folder, omega/run). It is emptied first: the run starts from a fresh cell." };
        var seed = new Option<int?>("--seed") { Description = "Random seed (printed; default: random)." };
        var report = new Option<string?>("--report") { Description = "Write a report folder (README.md, samples.csv, PNG charts incl. the bind latency distribution) to this directory." };
        var noAuth = new Option<bool>("--no-auth") { Description = "Agents connect without credentials (default: each agent joins with a bounded-use join token and gets its own credential)." };
        var insecure = new Option<bool>("--insecure") { Description = "Plaintext instead of TLS between the server and its agents (default: TLS 1.3 with a throwaway self-signed certificate)." };
        var http = new Option<string?>("--http") { Description = "Serve the live web dashboard on ADDRESS:PORT (HTTPS with the run's certificate unless --insecure; sign in with the admin token). docs/dashboard.md." };
        var cmd = new Command("run", "Omega's main job: a FASTER-durable engine, the TCP server, a simulated agent fleet over loopback and an Omega-paper workload.")
        {
            agents, seconds, load, batchWorkers, serviceWorkers, data, seed, report, insecure, noAuth, http,
        };
        cmd.SetAction(async (r, cancel) =>
        {
            string? error =
                r.GetValue(agents) is < 1 or > 20_000 ? "--agents must be between 1 and 20,000" :
                r.GetValue(seconds) is <= 0 or > 86_400 ? "--seconds must be positive and at most 86400" :
                r.GetValue(load) is <= 0 or > 1000 ? "--load must be positive and at most 1000" :
                r.GetValue(batchWorkers) is < 1 or > 256 ? "--batch-workers must be between 1 and 256" :
                r.GetValue(serviceWorkers) is < 1 or > 256 ? "--service-workers must be between 1 and 256" :
                r.GetValue(http) is { } h && !System.Net.IPEndPoint.TryParse(h, out _) ? $"--http must be ADDRESS:PORT, not '{h}'" : null;
            if (error is not null)
            {
                Console.Error.WriteLine($"omega run: {error}");
                return 2;
            }
            string dir = r.GetValue(data) ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "omega", "run");
            int s = r.GetValue(seed) ?? Random.Shared.Next();
            return await RunAsync(r.GetValue(agents), r.GetValue(seconds), r.GetValue(load), r.GetValue(batchWorkers), r.GetValue(serviceWorkers), dir, s, r.GetValue(report), !r.GetValue(insecure), !r.GetValue(noAuth), cancel, r.GetValue(http))
                .ConfigureAwait(false);
        });
        return cmd;
    }

    private static async Task<int> RunAsync(int agentCount, double seconds, double load, int batchWorkers, int serviceWorkers, string dir, int seed, string? reportDir, bool tls, bool auth, CancellationToken cancel, string? http = null)
    {
        var ci = CultureInfo.InvariantCulture;
        Console.WriteLine(FormattableString.Invariant(
            $"omega run: {agentCount:N0} agents over loopback TCP{(tls ? " with TLS 1.3" : " (plaintext)")}, batch {batchWorkers} workers + service {serviceWorkers}, load {load}, {seconds:0.#} s, seed {seed}"));
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
        {
            // Only ever empty a directory that is an Omega store: a mistyped --data must not delete someone's files.
            if (!Directory.Exists(Path.Combine(dir, "journal")) || !File.Exists(Path.Combine(dir, "LOCK")))
            {
                Console.Error.WriteLine($"omega run: {dir} is not empty and is not an Omega data directory; choose another --data");
                return 2;
            }
            // Never empty a store another process has open (an omega serve on the same --data): its LOCK says so.
            try
            {
                using (new FileStream(Path.Combine(dir, "LOCK"), FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { }
            }
            catch (IOException)
            {
                Console.Error.WriteLine($"omega run: the data directory {dir} is in use by another process (its LOCK is held); stop it or choose another --data");
                return 1;
            }
            Directory.Delete(dir, recursive: true);
        }
        Console.WriteLine($"  data: {dir} (FASTER journal, store and checkpoints; emptied at start)");

        var totalClock = Stopwatch.StartNew();
        // The store, the engine and the server (durable-gated on the store) are composed by Omega.Hosting; the workers
        // start only once the agents have registered (below), so the first jobs see the whole fleet.
        using var host = CliHost.Build(o =>
        {
            o.CellName = "omega-run";
            o.DataDirectory = dir;
            o.Storage.Cell.InitialNodeCapacity = agentCount;
            o.Listen = "127.0.0.1:0";
            o.Seed = seed;
            o.DecisionSampleEvery = 16;
            o.BatchWorkers = batchWorkers;
            o.ServiceWorkers = serviceWorkers;
            o.StartScheduling = false;
            // TLS by default: a throwaway self-signed certificate in the run's data directory (emptied above, so a new
            // one each run); the agents verify the server by that certificate file, as a real fleet would by its CA.
            o.Tls.Mode = tls ? OmegaTlsMode.SelfSigned : OmegaTlsMode.Plaintext;
            // Credentials by default: the admin token lands in the run's data directory like serve's.
            o.Authentication = auth;
            // --- control plane (issue 12): the tenants of the run's workloads ---
            foreach (var t in RunWorkloads.Tenants) o.Tenants.Add(t);
            // --- end control plane ---
            o.Dashboard.Listen = http;
        });
        try
        {
            await host.StartAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (StorageLockedException e)
        {
            Console.Error.WriteLine($"omega run: {e.Message}; stop it or choose another --data");
            return 1;
        }
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        var store = runtime.Store;
        var engine = runtime.Engine;
        var server = runtime.Server;
        SchedulerKindOptions[] kindOptions = [new() { Name = "batch", Workers = batchWorkers }, new() { Name = "service", Workers = serviceWorkers }];
        using var recorder = new LoadRecorder();
        var probe = new BindLatencyProbe();
        store.Cell.AddBindingListener(probe);
        var durations = new System.Collections.Concurrent.ConcurrentDictionary<JobId, double>();
        var agentTransport = new Omega.Transport.TransportOptions
        {
            ClientTls = runtime.TlsCertificatePath is { } certFile ? new Omega.Transport.TlsClientOptions { TrustedAuthorities = Omega.Transport.TlsCertificates.LoadAuthorities(certFile) } : null,
        };
        if (runtime.IsTls) Console.WriteLine($"  tls: TLS 1.3, self-signed certificate {runtime.TlsCertificatePath} (pin sha256:{runtime.TlsCertificatePin}); every agent verifies it");
        else ServeCommand.PrintTransportSecurity("omega run", runtime);
        if (runtime.DashboardAddress is { } dashboardAt) Console.WriteLine($"  dashboard: {dashboardAt}");
        // Every agent gets its own node-scoped credential: one join token with exactly as many uses as agents, valid for
        // the registration window only; each agent joins once and reconnects with its own credential (issue 11: one
        // credential shared by the fleet is not acceptable).
        string? joinToken = null;
        if (runtime.IsAuthenticated)
        {
            joinToken = server.Auth.CreateCredential(Omega.Protocol.CredentialRole.Join, "omega-run-fleet", ttl: TimeSpan.FromMinutes(15), uses: agentCount, createdBy: "omega run");
            Console.WriteLine($"  auth: on; {agentCount:N0} agents join with a {agentCount:N0}-use join token (15 min) and each receives its own node credential; admin token {runtime.AdminTokenPath}");
        }
        else ServeCommand.PrintAuthentication("omega run", runtime);
        var fleet = new AgentFleet(new FleetOptions(server.EndPoint, agentCount, LoadRun.NodeShape, Math.Max(1, agentCount / 40), 10, seed, Transport: agentTransport, JoinToken: joinToken))
        {
            // Workload replicas are services: they run until stopped (control plane, issue 12).
            DurationOf = job => durations.TryGetValue(job, out var d) ? d : RunWorkloads.IsReplica(job) ? double.PositiveInfinity : null,
            OnRunBinding = probe.Arrived,
        };
        int exit;
        try
        {
            Console.WriteLine($"  server: {server.EndPoint}; registering {agentCount:N0} agents...");
            await fleet.StartAsync(cancel).ConfigureAwait(false);
            Console.WriteLine(FormattableString.Invariant($"  {fleet.Connected:N0} agents registered in {totalClock.Elapsed.TotalSeconds:0.0} s; cell holds {store.Cell.NodeCount:N0} nodes"));
            engine.Start();

            var workload = new SyntheticWorkload(LoadRun.DefaultMix(load), seed);
            Console.WriteLine($"  workload: {workload.Describe}");
            // --- control plane (issue 12): service Workloads through the runtime's ObjectStore, scaled during the run ---
            var workloads = new RunWorkloads(runtime.Objects, agentCount, seconds);
            await workloads.CreateAsync(cancel).ConfigureAwait(false);
            Console.WriteLine("  control plane: workloads frontend/web, frontend/api, search/index (services) created; the workload controller reconciles them");
            // --- end control plane ---
            var clock = Stopwatch.StartNew();
            long submitted = 0, nextJob = 1, lastPlacements = 0, lastReceived = 0;
            var samples = new List<(double T, double Placements, double Delivered, Dictionary<string, double> Conflicts)>();
            var lastTally = new Dictionary<string, (long Clean, long Conflicted)>(StringComparer.Ordinal);
            double nextSample = 1;
            bool have = workload.TryNext(out var next);
            while (!cancel.IsCancellationRequested && clock.Elapsed.TotalSeconds < seconds)
            {
                double now = clock.Elapsed.TotalSeconds;
                while (have && next.At <= now)
                {
                    var spec = new JobSpec(new JobId(nextJob++), new TenantId(next.Tenant), next.Priority, next.Tasks, next.PerTask, next.Gang);
                    durations[spec.Id] = next.Duration;
                    if (engine.Submit(spec, next.Scheduler).Accepted) submitted++;
                    have = workload.TryNext(out next);
                }
                if (now >= nextSample)
                {
                    // --- control plane (issue 12): scale changes due, then the live line below ---
                    foreach (var line in await workloads.StepAsync(now, cancel).ConfigureAwait(false)) Console.WriteLine(line);
                    // --- end control plane ---
                    long p = recorder.TotalPlacements, rcv = fleet.Received;
                    Console.WriteLine(FormattableString.Invariant(
                        $"  t={now,5:0.0}s  placements/s={p - lastPlacements,9:N0}  bindings delivered/s={rcv - lastReceived,9:N0}  durable v{store.DurableVersion:N0} of v{store.Cell.Version:N0}  queue={engine.QueueDepth("batch") + engine.QueueDepth("service"):N0}"));
                    var fractions = recorder.IntervalConflictFractions(lastTally);
                    samples.Add((now, p - lastPlacements, rcv - lastReceived, fractions));
                    lastPlacements = p;
                    lastReceived = rcv;
                    nextSample += 1;
                    Console.WriteLine(workloads.LiveLine(now)); // control plane (issue 12)
                }
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Clamp(((have ? next.At : nextSample) - clock.Elapsed.TotalSeconds) * 1000, 0, 5)), CancellationToken.None).ConfigureAwait(false);
            }
            double elapsed = clock.Elapsed.TotalSeconds;
            // Busyness is read ONCE, here, at the end of the measured run, and both the terminal table and the report
            // print this reading. A worker's busyness is its deciding time over its wall time since start, and the wall
            // time keeps growing after the run: the table used to read it after the bind path settled (up to 5 s more)
            // and the report after the same-run FASTER baseline (3 s more), so the two disagreed and both understated.
            var busyness = new Dictionary<string, (double Useful, double Wasted)>(StringComparer.Ordinal);
            foreach (var k in kindOptions) busyness[k.Name] = engine.Busyness(k.Name);
            // --- control plane (issue 12): the workloads' table is read while the controller and engine still run ---
            var workloadTable = workloads.Table(store.Cell);
            // --- end control plane ---
            await engine.DisposeAsync().ConfigureAwait(false);
            // Let the bind path deliver what was committed before the end (bounded wait).
            var settle = Stopwatch.StartNew();
            while (fleet.Received < recorder.TotalPlacements && settle.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20, CancellationToken.None).ConfigureAwait(false);

            var bind = LatencySummary.From(probe.Latency);
            var commit = LatencySummary.From(recorder.Commit);
            var (util, live) = LoadRun.Utilization(store.Cell);
            var audit = store.Cell.Audit();
            string Ms(double us) => double.IsNaN(us) ? "-" : (us / 1000).ToString("0.00", ci) + " ms";

            var t = new Table().Title("omega run").AddColumn("figure").AddColumn(new TableColumn("value").RightAligned()).AddColumn("note");
            t.AddRow("placements/s", FormattableString.Invariant($"{recorder.TotalPlacements / elapsed:N0}"), FormattableString.Invariant($"{recorder.TotalPlacements:N0} placements in {elapsed:0.0} s, {submitted:N0} jobs submitted"));
            t.AddRow("bindings delivered to agents", FormattableString.Invariant($"{fleet.Received:N0}"), FormattableString.Invariant($"over loopback TCP{(tls ? " + TLS" : "")}, after durability; {fleet.Completed:N0} tasks completed by agents"));
            t.AddRow("bind latency p50 / p99 / p99.9", $"{Ms(bind.P50)} / {Ms(bind.P99)} / {Ms(bind.P999)}", "commit to agent (includes the FASTER group commit)");
            t.AddRow("commit latency p50 / p99", $"{Ms(commit.P50)} / {Ms(commit.P99)}", "in-memory commit of a scheduler transaction");
            foreach (var k in kindOptions)
            {
                var tally = recorder.Schedulers.GetValueOrDefault(k.Name) ?? new SchedulerTally();
                var (useful, wasted) = busyness[k.Name];
                t.AddRow(Markup.Escape($"[{k.Name}] conflict fraction"), FormattableString.Invariant($"{tally.ConflictFraction:0.0000}"),
                    FormattableString.Invariant($"{tally.Conflicted:N0} conflicted / {tally.Clean:N0} clean transactions; busyness {useful + wasted:P1} ({wasted:P1} wasted)"));
            }
            t.AddRow("cpu utilization", FormattableString.Invariant($"{util:P1}"), FormattableString.Invariant($"{live:N0} live bindings on {agentCount:N0} nodes"));
            t.AddRow("durability", FormattableString.Invariant($"v{store.DurableVersion:N0}"), FormattableString.Invariant($"of cell v{store.Cell.Version:N0} durable in {dir}"));
            t.AddRow("invariants", audit.Count == 0 ? "ok" : "VIOLATED",
                Markup.Escape(audit.Count == 0 ? "no node over capacity, no task bound twice" : string.Join("; ", audit.Take(3))));
            if (Console.IsOutputRedirected) AnsiConsole.Console.Profile.Width = 140;
            AnsiConsole.Write(t);
            AnsiConsole.Write(workloadTable); // control plane (issue 12)
            exit = audit.Count == 0 ? 0 : 3;
            if (reportDir is not null)
            {
                Console.WriteLine("measuring the same-run baseline (raw FASTER RMW, 2 threads, 3 s)...");
                double rmw;
                using (var faster = new Omega.Storage.Baseline.FasterRmwBaseline()) rmw = faster.Run(2, TimeSpan.FromSeconds(3), seed);
                var kinds = kindOptions.Select(k =>
                {
                    var tally = recorder.Schedulers.GetValueOrDefault(k.Name) ?? new SchedulerTally();
                    var (useful, wasted) = busyness[k.Name];
                    return (k.Name, k.Workers, tally.Clean, tally.Conflicted, tally.ConflictFraction, useful, wasted);
                }).ToList();
                Directory.CreateDirectory(reportDir);
                var tt = samples.Select(x => x.T).ToArray();
                Omega.Reporting.Charts.WriteLineChart(Path.Combine(reportDir, "throughput.png"), "Placements and bindings delivered per second", "time (s)", "per second",
                    [new("placements/s", tt, samples.Select(x => x.Placements).ToArray()), new("bindings delivered to agents/s", tt, samples.Select(x => x.Delivered).ToArray())]);
                var pct = LatencySummary.CurvePercentiles;
                // Log scale: the bind latency's tail (the FASTER group commit) is 100-1000x its median, and the in-memory
                // commit is microseconds; on a linear axis p10-p95 of both sat flat at 0.
                Omega.Reporting.Charts.WriteLineChart(Path.Combine(reportDir, "latency.png"), "Latency distribution", "percentile", "milliseconds",
                    [new(LatencyLegend("bind: commit to agent", bind), pct, bind.Curve.Select(v => v / 1000).ToArray()),
                     new(LatencyLegend("commit (in memory)", commit), pct, commit.Curve.Select(v => v / 1000).ToArray())], logY: true);
                Omega.Reporting.Charts.WriteLineChart(Path.Combine(reportDir, "conflicts.png"), "Conflict fraction per scheduler (per second)", "time (s)", "conflicted / clean transactions",
                    kinds.Select(k => new Omega.Reporting.Series(k.Name, tt, samples.Select(x => x.Conflicts.GetValueOrDefault(k.Name)).ToArray())).ToArray());
                var md = new System.Text.StringBuilder();
                md.AppendLine(ci, $"# omega run — {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC").AppendLine();
                md.AppendLine("## Command").AppendLine().AppendLine("```bash").AppendLine("omega " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1))).AppendLine("```").AppendLine();
                md.AppendLine("## Machine").AppendLine();
                md.AppendLine(ci, $"{Environment.ProcessorCount} logical cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024):0.#} GiB, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}.").AppendLine();
                md.AppendLine("## Configuration").AppendLine();
                md.AppendLine(ci, $"FASTER-durable cell in `{dir}`; TCP server on loopback ({(tls ? "TLS 1.3, self-signed certificate verified by every agent" : "plaintext")}); {agentCount:N0} simulated agents (one connection each) of {LoadRun.NodeShape}; workload: {workload.Describe}; {elapsed:0.0} s; seed {seed}.").AppendLine();
                md.AppendLine("## Figures").AppendLine().AppendLine("| figure | value |").AppendLine("|---|---:|");
                md.AppendLine(ci, $"| placements/s | {recorder.TotalPlacements / elapsed:N0} |");
                md.AppendLine(ci, $"| bindings delivered to agents | {fleet.Received:N0} |");
                md.AppendLine(ci, $"| bind latency p50 / p99 / p99.9 (commit to agent, ms) | {bind.P50 / 1000:0.00} / {bind.P99 / 1000:0.00} / {bind.P999 / 1000:0.00} |");
                md.AppendLine(ci, $"| commit latency p50 / p99 (ms) | {commit.P50 / 1000:0.00} / {commit.P99 / 1000:0.00} |");
                foreach (var k in kinds)
                    md.AppendLine(ci, $"| [{k.Name}] conflict fraction ({k.Workers} workers) | {k.ConflictFraction:0.0000} ({k.Conflicted:N0} / {k.Clean:N0}); busyness {k.useful + k.wasted:P1} |");
                md.AppendLine(ci, $"| CPU utilization | {util:P1} |");
                md.AppendLine(ci, $"| invariants | {(audit.Count == 0 ? "ok" : "VIOLATED")} |").AppendLine();
                md.AppendLine("## Same-run baseline").AppendLine();
                md.AppendLine(ci, $"Raw FASTER RMW on 2 threads right after the run: {rmw:N0}/s; placements/s ÷ RMW/s = {recorder.TotalPlacements / elapsed / rmw:0.000}. The workload is paced, so placements/s is the offered load the engine kept up with. For the bind path against Redis see perf-reports/2026-12-01-bind-path.").AppendLine();
                md.AppendLine("## Charts").AppendLine().AppendLine("![throughput](throughput.png)").AppendLine().AppendLine("![latency](latency.png)").AppendLine().AppendLine("![conflicts](conflicts.png)");
                File.WriteAllText(Path.Combine(reportDir, "README.md"), md.ToString());
                Console.WriteLine($"report written to {Path.GetFullPath(reportDir)}");
            }
        }
        finally
        {
            await fleet.DisposeAsync().ConfigureAwait(false);
            store.Cell.RemoveBindingListener(probe);
            // Stops the server, then the engine, then checkpoints and closes the store (Omega.Hosting).
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        return exit;
    }

    /// <summary>A latency line's legend: its name with its p50 and p99, so the chart is readable without the table.</summary>
    internal static string LatencyLegend(string name, LatencySummary s)
        => double.IsNaN(s.P50) ? name : string.Create(CultureInfo.InvariantCulture, $"{name} (p50 {s.P50 / 1000:0.###} ms, p99 {s.P99 / 1000:0.###} ms)");
}
