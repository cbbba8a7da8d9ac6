using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Omega.Hosting;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 17 through the real command (every step a child process): a Prometheus scrape of <c>omega serve</c> under load
/// (every meter, latencies spread over buckets, service.name, and the Grafana dashboard's queries), and the CLI as a
/// script uses it (<c>-o json</c> parsed here, exit codes of <c>submit --wait</c>, the environment variables).
/// </summary>
public sealed partial class OperatorExperienceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task A_scrape_under_load_has_every_meter_latencies_over_several_buckets_and_every_dashboard_query_names_a_scraped_metric()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-scrape-" + Guid.NewGuid().ToString("N"));
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        int metricsPort = OmegaChild.FreePort();
        try
        {
            // Secure by default (TLS, credentials) and durable: the Storage and Auth meters only count on such a server.
            using var serve = OmegaChild.Serve(endpoint, "--data", data, "--metrics-port", metricsPort.ToString(CultureInfo.InvariantCulture));
            await serve.WaitForAsync("listening on", Timeout);
            string pin = ServeTests.PinOf(serve.Output), token = Path.Combine(data, "admin.token");
            using var agents = new OmegaChild("agents", "--connect", endpoint, "--pin", pin, "--token-file", token, "--count", "10", "--seconds", "60", "--seed", "17");
            await agents.WaitForAsync("10 registered", Timeout);
            var load = await OmegaProcess.RunAsync(Timeout, "loadgen", "--connect", endpoint, "--pin", pin, "--token-file", token,
                "--seconds", "3", "--load", "0.02", "--seed", "17", "--plain");
            Assert.True(load.ExitCode == 0, load.Stdout + load.Stderr);

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            string scrape = await http.GetStringAsync(new Uri($"http://localhost:{metricsPort}/metrics"));

            // Every meter Omega publishes, and the runtime's, is exported (the node-lifecycle meter was missing before).
            foreach (var meter in OmegaTelemetry.MeterNames.Concat(OmegaTelemetry.RuntimeMeterNames))
                Assert.True(scrape.Contains($"otel_scope_name=\"{meter}\"", StringComparison.Ordinal), $"meter {meter} missing from the scrape:\n{scrape}");
            Assert.Matches("target_info\\{[^}]*service_name=\"omega\"", scrape);
            // Each Omega meter is tagged with its cell, so two engines in one process stay apart.
            Assert.Contains("otel_scope_name=\"Omega.Server.Lifecycle\",otel_scope_cell=\"default\"", scrape, StringComparison.Ordinal);

            // Latency observations fall into several buckets (with OpenTelemetry's millisecond defaults every commit, in
            // seconds, sat in the first one).
            foreach (var histogram in new[] { "omega_sched_commit_duration_seconds", "omega_sched_decision_duration_seconds", "omega_sched_job_placement_duration_seconds" })
            {
                var buckets = BucketCounts(scrape, histogram);
                int used = buckets.Values.Max(series => series.Count(n => n > 0));
                Assert.True(used >= 3, $"{histogram}: observations in {used} bucket(s) only:\n{string.Join('\n', scrape.Split('\n').Where(l => l.StartsWith(histogram + "_bucket", StringComparison.Ordinal)))}");
            }

            // The Grafana dashboard: every query names at least one metric, and every metric it names is in this scrape.
            var scraped = new HashSet<string>(StringComparer.Ordinal);
            foreach (var line in scrape.Split('\n'))
                if (line.Length > 0 && line[0] != '#') scraped.Add(MetricName().Match(line).Value);
            var queries = DashboardQueries();
            Assert.True(queries.Count >= 20, $"only {queries.Count} queries in the dashboard");
            foreach (var q in queries)
            {
                var names = QueryMetric().Matches(q).Select(m => m.Value).ToList();
                Assert.True(names.Count > 0, $"the query names no metric: {q}");
                foreach (var n in names) Assert.True(scraped.Contains(n), $"the dashboard query '{q}' names {n}, which the scrape does not have");
            }
            Assert.Equal(0, await serve.StopAsync(Timeout));
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    /// <summary>Per series of a histogram: the observations in each bucket (the cumulative counts differenced).</summary>
    private static Dictionary<string, List<double>> BucketCounts(string scrape, string histogram)
    {
        var series = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        foreach (var line in scrape.Split('\n'))
        {
            if (!line.StartsWith(histogram + "_bucket{", StringComparison.Ordinal)) continue;
            int space = line.LastIndexOf(' ');
            string labels = Regex.Replace(line[..space], ",?le=\"[^\"]*\"", "");
            double cumulative = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
            if (!series.TryGetValue(labels, out var list)) series[labels] = list = [];
            list.Add(cumulative);
        }
        Assert.True(series.Count > 0, $"no {histogram} buckets in the scrape");
        foreach (var list in series.Values)
            for (int i = list.Count - 1; i > 0; i--) list[i] -= list[i - 1];
        return series;
    }

    /// <summary>Every PromQL query of docs/grafana/omega.json: panel targets' <c>expr</c> and template variables' queries.</summary>
    private static List<string> DashboardQueries()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", "grafana", "omega.json")));
        var found = new List<string>();
        Walk(doc.RootElement, found);
        return found;

        static void Walk(JsonElement e, List<string> found)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name is "expr" && p.Value.ValueKind == JsonValueKind.String) found.Add(p.Value.GetString()!);
                    else if (p.Name is "query" && p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("query", out var q)) found.Add(q.GetString()!);
                    else Walk(p.Value, found);
                }
            }
            else if (e.ValueKind == JsonValueKind.Array)
                foreach (var item in e.EnumerateArray()) Walk(item, found);
        }
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Omega.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Omega.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*")]
    private static partial Regex MetricName();

    // A metric in a query: Omega's, the runtime's, or target_info (label names and functions are not metrics).
    [GeneratedRegex(@"\b(?:omega|dotnet)_[a-z0-9_]+\b|\btarget_info\b")]
    private static partial Regex QueryMetric();

    [Fact]
    public async Task Scripts_parse_json_from_submit_explain_inspect_stats_and_drain_and_submit_wait_exits_7_when_a_job_parks_and_8_on_timeout()
    {
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        // TLS and credentials on (the defaults); every client below finds the server, verifies it and authenticates from
        // the environment alone: OMEGA_ADDR, OMEGA_PIN (the short spelling) and OMEGA_TOKEN_FILE.
        using var serve = OmegaChild.Serve(endpoint, "--in-memory");
        await serve.WaitForAsync("listening on", Timeout);
        string pin = ServeTests.PinOf(serve.Output), token = ServeTests.TokenFileOf(serve.Output);
        var env = new[] { ("OMEGA_ADDR", endpoint), ("OMEGA_PIN", pin), ("OMEGA_TOKEN_FILE", token) };
        using var agents = new OmegaChild("agents", "--connect", endpoint, "--pin", pin, "--token-file", token, "--count", "3", "--seconds", "120", "--seed", "5");
        await agents.WaitForAsync("3 registered", Timeout);

        // submit --wait -o json: one document, read by a JSON parser; the job is placed (exit 0).
        var submit = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "submit", "--job", "1", "--tasks", "2", "--wait", "-o", "json");
        Assert.True(submit.ExitCode == 0, submit.Stdout + submit.Stderr);
        using (var doc = JsonDocument.Parse(submit.Stdout))
        {
            Assert.Equal("SubmitResult", doc.RootElement.GetProperty("kind").GetString());
            Assert.Equal("placed", doc.RootElement.GetProperty("phase").GetString());
            Assert.Equal(2, doc.RootElement.GetProperty("bound").GetInt32());
        }

        // explain -o json is the server's decision-record document (protocol version 3), not a parse of the text.
        var explain = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "explain", "j1/0", "-o", "json");
        Assert.True(explain.ExitCode == 0, explain.Stdout + explain.Stderr);
        string chosen;
        using (var doc = JsonDocument.Parse(explain.Stdout))
        {
            var r = doc.RootElement;
            Assert.Equal("DecisionRecord", r.GetProperty("kind").GetString());
            Assert.Equal("j1/0", r.GetProperty("task").GetString());
            Assert.Equal(3, r.GetProperty("nodesConsidered").GetInt32());
            Assert.Equal("Applied", r.GetProperty("taskDecision").GetProperty("claim").GetString());
            chosen = r.GetProperty("taskDecision").GetProperty("nodeName").GetString()!;
            Assert.StartsWith("agent-", chosen, StringComparison.Ordinal);
        }

        // stats -o json: the cell and each scheduler kind, as fields.
        var stats = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "stats", "-o", "json");
        Assert.True(stats.ExitCode == 0, stats.Stdout + stats.Stderr);
        using (var doc = JsonDocument.Parse(stats.Stdout))
        {
            Assert.Equal(3, doc.RootElement.GetProperty("cell").GetProperty("nodes").GetInt32());
            var batch = doc.RootElement.GetProperty("schedulers").EnumerateArray().Single(s => s.GetProperty("name").GetString() == "batch");
            Assert.Equal(2, batch.GetProperty("placements").GetInt64());
            Assert.False(doc.RootElement.GetProperty("lifecycle").GetProperty("brakeEngaged").GetBoolean());
        }
        var yaml = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "stats", "-o", "yaml");
        Assert.True(yaml.ExitCode == 0, yaml.Stdout + yaml.Stderr);
        Assert.Contains("kind: Stats", yaml.Stdout, StringComparison.Ordinal);

        // inspect -o json carries the listing's lines; drain -o json the operation's result.
        var nodes = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "inspect", "Nodes", "-o", "json");
        Assert.True(nodes.ExitCode == 0, nodes.Stdout + nodes.Stderr);
        using (var doc = JsonDocument.Parse(nodes.Stdout))
            Assert.Equal(3, doc.RootElement.GetProperty("total").GetInt32());
        var drain = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "drain", chosen, "-o", "json");
        Assert.True(drain.ExitCode == 0, drain.Stdout + drain.Stderr);
        using (var doc = JsonDocument.Parse(drain.Stdout))
        {
            Assert.Equal("Ok", doc.RootElement.GetProperty("status").GetString());
            Assert.Equal(chosen, doc.RootElement.GetProperty("target").GetString());
        }

        // A job no node can take (its selector matches none) parks after its attempts: --wait exits 7 with the reason;
        // with a timeout shorter than that, 8.
        var timedOut = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "submit", "--job", "2", "--selector", "zone=nowhere", "--wait", "--timeout", "0.3");
        Assert.True(timedOut.ExitCode == 8, timedOut.Stdout + timedOut.Stderr);
        Assert.Contains("not settled after", timedOut.Stderr, StringComparison.Ordinal);
        var parked = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "submit", "--job", "3", "--selector", "zone=nowhere", "--wait", "-o", "json");
        Assert.True(parked.ExitCode == 7, parked.Stdout + parked.Stderr);
        Assert.Contains("j3 parked", parked.Stderr, StringComparison.Ordinal);
        using (var doc = JsonDocument.Parse(parked.Stdout))
        {
            Assert.Equal("parked", doc.RootElement.GetProperty("phase").GetString());
            Assert.Contains("LabelMismatch", doc.RootElement.GetProperty("parkedReason").GetString(), StringComparison.Ordinal);
        }

        // An unknown format is a usage error before anything is sent.
        var bad = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "stats", "-o", "xml");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("-o must be json, yaml or wide", bad.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, await serve.StopAsync(Timeout));
    }
}
