using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Omega.Agent;
using Omega.ControlPlane;
using Omega.CrashHost;
using Omega.Protocol;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 13 runbook drills against a real <c>omega serve</c> with real agent fleets (<c>omega agents</c> child
/// processes): a region lost, its critical workload failing over into a region with a recovery budget until the budget
/// is exhausted, every alert rule's metric in the scrape and <c>OmegaRecoveryBudgetExhausted</c> firing on the scraped
/// series, and <c>omega doctor</c> flagging the budget until the replicas went home; then zone avoidance observed on
/// placements, the autoscaler pause on the pool's condition, repair approval under the mass-silence brake, and a revoked
/// break-glass credential. The actions are CLI child processes; waiting for the server's state uses the wire client.
/// </summary>
public sealed partial class OperationsTests
{
    private static readonly Regex NodeLine = new(@"^(\S+) (n\d+) (\S+) .* region=(\S*) zone=(\S*)$", RegexOptions.CultureInvariant);
    private static readonly Regex AllocationLine = new(@"^(\S+) (n\d+) .* priority=(-?\d+) ", RegexOptions.CultureInvariant);

    private sealed record Placed(string Task, string Node, string Region, string Zone, int Priority);

    // Every live binding with its node's name, region and zone (Inspect Nodes joined to Inspect Allocations).
    private static async Task<List<Placed>> PlacementsAsync(ControlClient c)
    {
        var (_, nodes) = await c.InspectAsync(InspectTarget.Nodes, 10_000);
        var byId = new Dictionary<string, (string Name, string Region, string Zone)>(StringComparer.Ordinal);
        foreach (var l in nodes)
            if (NodeLine.Match(l) is { Success: true } m) byId[m.Groups[2].Value] = (m.Groups[1].Value, m.Groups[4].Value, m.Groups[5].Value);
        var (_, allocations) = await c.InspectAsync(InspectTarget.Allocations, 10_000);
        var list = new List<Placed>();
        foreach (var l in allocations)
            if (AllocationLine.Match(l) is { Success: true } m && byId.TryGetValue(m.Groups[2].Value, out var n))
                list.Add(new Placed(m.Groups[1].Value, n.Name, n.Region, n.Zone, int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)));
        return list;
    }

    private static async Task<T> UntilAsync<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan within, Func<T, string> what)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var v = await read();
            if (done(v)) return v;
            if (sw.Elapsed > within) Assert.Fail($"not within {within}: {what(v)}");
            await Task.Delay(200);
        }
    }

    // omega apply reads each object and writes it back at that resourceVersion: a controller's status write in between
    // makes it exit 6 (ObjectConflict), and an operator runs it again (docs/cli.md).
    private static async Task ApplyAsync(string ep, string token, string file)
    {
        OmegaProcess.Result r;
        int tries = 0;
        do r = await Omega(ep, token, "apply", "-f", file);
        while (r.ExitCode == 6 && ++tries < 5);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
    }

    private static string Show(IEnumerable<Placed> p) => string.Join("; ", p.Select(x => $"{x.Task}@{x.Node}({x.Region}/{x.Zone}) p{x.Priority}"));

    private static Task<ControlClient> ClientAsync(IPEndPoint ep, string token) => ControlClient.ConnectAsync(ep, null, "ops-drill", token);

    private static async Task<T?> ObjectAsync<T>(ControlClient c, string kind, string name) where T : ApiObject
        => (await c.ListAsync(kind, null, null, 500)).Items.OfType<T>().FirstOrDefault(o => o.Metadata.Name == name);

    // The rule metrics a scrape must carry: every omega_* name in docs/ops/alerts.yml.
    private static void AssertRuleMetricsIn(string scrape, params string[] except)
    {
        var rules = File.ReadAllText(RepoFile("docs/ops/alerts.yml"));
        foreach (var metric in Regex.Matches(rules, @"\bomega_[a-z_]+").Select(m => m.Value).Distinct())
            if (!except.Contains(metric)) Assert.True(Regex.IsMatch(scrape, $"(?m)^{metric}[{{ ]"), $"{metric} is not in a real scrape:\n{scrape}");
    }

    private static long SumOf(string scrape, string metric, string labelMatch)
        => Regex.Matches(scrape, $"(?m)^{metric}\\{{([^}}]*)\\}} (\\S+)(?: \\d+)?\\r?$").Where(m => m.Groups[1].Value.Contains(labelMatch, StringComparison.Ordinal))
            .Sum(m => (long)double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));

    [Fact]
    public async Task Region_loss_exhausts_a_recovery_budget_whose_alert_fires_on_the_scraped_series_and_doctor_flags_it_until_the_replicas_went_home()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-ops-rb-" + Guid.NewGuid().ToString("N"));
        int metricsPort = OmegaChild.FreePort();
        try
        {
            // A 5 s node lease: agents heartbeat every 1.7 s, so the lifecycle tracks them (a node is tracked from its
            // first heartbeat) soon after they register.
            using var serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90), "--metrics-port", metricsPort.ToString(CultureInfo.InvariantCulture), "--node-lease", "5");
            string ep = serve.EndPoint.ToString();
            string tokenFile = Path.Combine(data, "admin.token");
            string admin = File.ReadAllText(tokenFile).Trim();

            // An idle server already exports every rule metric but the budget gauge (no budget yet): the transaction and
            // eviction counters start at zero, so rate() sees their first increase.
            string idle = await ScrapeAsync(metricsPort);
            AssertRuleMetricsIn(idle, "omega_recovery_budget_exhausted");
            Assert.Matches(@"(?m)^omega_lifecycle_evictions_total\{[^}]*reason=""region_lost""[^}]*\} 0( \d+)?\r?$", idle);
            Assert.Matches(@"(?m)^omega_sched_transactions_total\{[^}]*outcome=""conflicted""[^}]*\} 0( \d+)?\r?$", idle);

            // us-east (3 nodes, the workload's home) and eu-west (4 nodes, with a recovery budget of 2 cores).
            string[] Fleet(string region, string prefix, int count) => ["agents", "--connect", ep, "--insecure", "--token-file", tokenFile, "--count", count.ToString(CultureInfo.InvariantCulture),
                "--cores", "4", "--memory-gib", "16", "--region", region, "--name-prefix", prefix, "--seconds", "300", "--seed", "13"];
            var east = new OmegaChild(Fleet("us-east", "use", 3));
            try
            {
                using var west = new OmegaChild(Fleet("eu-west", "euw", 4));
                await east.WaitForAsync("registered", Timeout);
                await west.WaitForAsync("registered", Timeout);
                string manifest = Path.Combine(data, "risk.yaml");
                File.WriteAllText(manifest, """
                    apiVersion: omega/v1
                    kind: RecoveryBudget
                    metadata:
                      name: eu-west-reserve
                    spec:
                      region: eu-west
                      capacity: { cpuMillis: 2000 }
                      minPriority: 1000
                    ---
                    apiVersion: omega/v1
                    kind: Workload
                    metadata:
                      name: risk-api
                      tenant: default
                    spec:
                      replicas: 2
                      priority: 1000
                      resources: { cpuMillis: 1000, memoryBytes: 1073741824 }
                      topology: { preferredRegions: [us-east, eu-west] }
                    """);
                await ApplyAsync(ep, admin, manifest);

                await using var c = await ClientAsync(serve.EndPoint, admin);
                var home = await UntilAsync(() => PlacementsAsync(c), p => p.Count(x => x.Priority == 1000) == 2, Timeout, Show);
                Assert.All(home.Where(x => x.Priority == 1000), x => Assert.Equal("us-east", x.Region));
                var fresh = await UntilAsync(() => ObjectAsync<RecoveryBudget>(c, RecoveryBudget.KindName, "eu-west-reserve"), b => b?.Status.Allocated.CpuMillis == 2000, Timeout, b => $"{b?.Status.Allocated.CpuMillis}");
                Assert.Equal((0, false), (fresh!.Status.Consumers, fresh.Status.Exhausted));
                string before = await ScrapeAsync(metricsPort);
                Assert.Matches(@"(?m)^omega_recovery_budget_exhausted\{[^}]*region=""eu-west""[^}]*\} 0( \d+)?\r?$", before);
                var doctor = await Omega(ep, admin, "doctor");
                Assert.True(doctor.ExitCode == 0, doctor.Stdout + doctor.Stderr);
                Assert.Contains("recovery budgets still borrowed: 0", doctor.Stdout, StringComparison.Ordinal);

                // us-east is lost (its agents killed): the regional signal fences it, risk-api fails over into eu-west and
                // consumes the whole budget.
                await UntilAsync(() => c.InspectAsync(InspectTarget.Liveness, 100), l => l.Lines[0].Contains(" tracked=7 ", StringComparison.Ordinal), Timeout, l => l.Lines[0]);
                await east.KillAsync();
                await UntilAsync(() => PlacementsAsync(c), p => p.Count(x => x.Priority == 1000 && x.Region == "eu-west") == 2, Timeout, Show);
                var exhausted = await UntilAsync(() => ObjectAsync<RecoveryBudget>(c, RecoveryBudget.KindName, "eu-west-reserve"), b => b?.Status.Exhausted == true, Timeout,
                    b => $"consumers {b?.Status.Consumers} consumed {b?.Status.Consumed.CpuMillis}");
                Assert.Equal((2, 2000L), (exhausted!.Status.Consumers, exhausted.Status.Consumed.CpuMillis));

                // The scrape now carries every rule metric, the budget gauge at 1 for eu-west, the region's 3 evictions
                // (region_lost) and the commits made.
                // (The workload controller may re-place replicas of the suspect region before its nodes are declared lost:
                // wait for both.)
                string scrape = await UntilAsync(() => ScrapeAsync(metricsPort),
                    s => Regex.IsMatch(s, @"(?m)^omega_recovery_budget_exhausted\{[^}]*region=""eu-west""[^}]*\} 1( \d+)?\r?$")
                        && SumOf(s, "omega_lifecycle_evictions_total", "reason=\"region_lost\"") == 3, Timeout,
                    s => string.Join('\n', s.Split('\n').Where(l => l.StartsWith("omega_lifecycle_evictions_total", StringComparison.Ordinal) || l.StartsWith("omega_recovery", StringComparison.Ordinal))));
                AssertRuleMetricsIn(scrape);
                Assert.True(SumOf(scrape, "omega_sched_transactions_total", "outcome=") >= 4, scrape); // 2 placements, 2 failovers
                await PromtoolBudgetAlertAsync(data, before, scrape);

                // Post-incident cleanup: doctor names the borrowed budget (exit 3) while the failover replicas sit in
                // eu-west; us-east comes back, a rollout moves risk-api home, and doctor is clean again.
                doctor = await Omega(ep, admin, "doctor");
                Assert.Equal(3, doctor.ExitCode);
                Assert.Contains("recovery budgets still borrowed: 1", doctor.Stdout, StringComparison.Ordinal);
                Assert.Contains("recoverybudget/eu-west-reserve eu-west: 2 failover replica(s) consume cpu=2000m", doctor.Stdout, StringComparison.Ordinal);
                Assert.Contains("(EXHAUSTED)", doctor.Stdout, StringComparison.Ordinal);
                var json = await Omega(ep, admin, "doctor", "-o", "json");
                Assert.Equal(3, json.ExitCode);
                Assert.Matches(@"""borrowedRecoveryBudgets"":\s*\[\s*\{\s*""name"":\s*""eu-west-reserve"",\s*""region"":\s*""eu-west"",\s*""consumers"":\s*2", json.Stdout);

                east.Dispose();
                // us-east comes back on new nodes (the old ones keep their agent credentials until revoked).
                east = new OmegaChild(Fleet("us-east", "use2", 3));
                await east.WaitForAsync("registered", Timeout);
                string workload = File.ReadAllText(manifest);
                workload = workload[workload.IndexOf("kind: Workload", StringComparison.Ordinal)..];
                File.WriteAllText(manifest, "apiVersion: omega/v1\n" + workload.Replace("cpuMillis: 1000,", "cpuMillis: 900,", StringComparison.Ordinal));
                await ApplyAsync(ep, admin, manifest);
                await UntilAsync(() => PlacementsAsync(c), p => p.Count(x => x.Priority == 1000) == 2 && p.Where(x => x.Priority == 1000).All(x => x.Region == "us-east"), Timeout, Show);
                await UntilAsync(() => ObjectAsync<RecoveryBudget>(c, RecoveryBudget.KindName, "eu-west-reserve"), b => b?.Status.Consumers == 0, Timeout, b => $"consumers {b?.Status.Consumers}");
                doctor = await Omega(ep, admin, "doctor");
                Assert.True(doctor.ExitCode == 0, doctor.Stdout + doctor.Stderr);
                Assert.Contains("recovery budgets still borrowed: 0", doctor.Stdout, StringComparison.Ordinal);
            }
            finally
            {
                east.Dispose();
            }
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task Runbook_drills_on_real_agents_zone_avoided_then_used_again_autoscaler_paused_repair_approved_under_the_brake_and_break_glass_revoked()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-ops-drill-" + Guid.NewGuid().ToString("N"));
        ServeProcess? serve = null;
        try
        {
            // A 5 s node lease so the repair drill at the end sees its nodes go silent soon.
            serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90), "--node-lease", "5");
            string ep = serve.EndPoint.ToString();
            string tokenFile = Path.Combine(data, "admin.token");
            string admin = File.ReadAllText(tokenFile).Trim();
            // 4 nodes of 4 cores: euw-000000 and -000002 in zone eu-west-a (domain eu-west-rack-0), the others in eu-west-b.
            var agents = new OmegaChild("agents", "--connect", ep, "--insecure", "--token-file", tokenFile, "--count", "4", "--cores", "4", "--memory-gib", "16",
                "--region", "eu-west", "--zones", "2", "--racks", "2", "--name-prefix", "euw", "--seconds", "300", "--seed", "13");
            try
            {
                var bg = await Omega(ep, admin, "break-glass", "--name", "oncall", "--reason", "incident 8", "--ttl", "30m");
                Assert.True(bg.ExitCode == 0, bg.Stdout + bg.Stderr);
                string glass = bg.Stdout.Trim();
                string glassId = Regex.Match(bg.Stderr, @"credential ([0-9a-f]{16})").Groups[1].Value;
                Assert.Matches("^[0-9a-f]{16}$", glassId);
                await agents.WaitForAsync("registered", Timeout);
                await using var c1 = await ClientAsync(serve.EndPoint, admin);
                var c = c1;

                // Zone avoidance and an autoscaler pause, applied with the break-glass credential.
                string overrides = Path.Combine(data, "overrides.yaml");
                File.WriteAllText(overrides, """
                    apiVersion: omega/v1
                    kind: Override
                    metadata: { name: avoid-a }
                    spec: { type: ZoneAvoid, target: eu-west-a, ttlSeconds: 600, reason: "incident 8, eu-west-a flaps" }
                    ---
                    apiVersion: omega/v1
                    kind: NodePool
                    metadata: { name: general }
                    spec: { nodeCapacity: { cpuMillis: 8000, memoryBytes: 34359738368 }, maxNodes: 4 }
                    ---
                    apiVersion: omega/v1
                    kind: Override
                    metadata: { name: pause-general }
                    spec: { type: AutoscalerPause, target: general, ttlSeconds: 600, reason: "incident 8, do not scale" }
                    """);
                await ApplyAsync(ep, glass, overrides);
                await UntilAsync(() => ObjectAsync<Override>(c, Override.KindName, "avoid-a"), o => o?.Status.Nodes == 2, Timeout, o => $"{o?.Status.Phase} nodes {o?.Status.Nodes}");

                // Four 1.5-core replicas spread over failure domains: zone b holds exactly four, and none goes to zone a;
                // a fifth finds no room in b and is not placed in a while the override lives.
                string web = Path.Combine(data, "web.yaml");
                string Web(int replicas) => $"apiVersion: omega/v1\nkind: Workload\nmetadata: {{ name: web, tenant: default }}\nspec: {{ replicas: {replicas}, priority: 5, spread: FailureDomain, resources: {{ cpuMillis: 1500, memoryBytes: 1073741824 }} }}\n";
                File.WriteAllText(web, Web(4));
                await ApplyAsync(ep, glass, web);
                var placed = await UntilAsync(() => PlacementsAsync(c), p => p.Count(x => x.Priority == 5) == 4, Timeout, Show);
                Assert.All(placed.Where(x => x.Priority == 5), x => Assert.Equal("eu-west-b", x.Zone));
                var describedWeb = await Omega(ep, glass, "describe", "workload", "web", "--tenant", "default");
                Assert.Contains("override/avoid-a: ZoneAvoid eu-west-a", describedWeb.Stdout, StringComparison.Ordinal);
                File.WriteAllText(web, Web(5));
                await ApplyAsync(ep, glass, web);
                await UntilAsync(async () => (Workload?)await c.GetAsync(new ObjectKey(Workload.KindName, "default", "web")), w => w?.Status.Desired == 5, Timeout, w => $"desired {w?.Status.Desired}");
                await Task.Delay(1500);
                placed = await PlacementsAsync(c);
                Assert.True(placed.Count(x => x.Priority == 5) == 4 && placed.Where(x => x.Priority == 5).All(x => x.Zone == "eu-west-b"), Show(placed));

                // The zone-avoid TTL is cut to 1 s: the sweep reverts it (the taint goes), and the pending fifth replica,
                // plus a sixth, can only go to zone a.
                File.WriteAllText(overrides, "apiVersion: omega/v1\nkind: Override\nmetadata: { name: avoid-a }\nspec: { type: ZoneAvoid, target: eu-west-a, ttlSeconds: 1, reason: \"incident 8, eu-west-a stable\" }\n");
                await ApplyAsync(ep, glass, overrides);
                await UntilAsync(() => ObjectAsync<Override>(c, Override.KindName, "avoid-a"), o => o?.Status.Phase == Override.PhaseExpired, Timeout, o => $"{o?.Status.Phase}");
                File.WriteAllText(web, Web(6));
                await ApplyAsync(ep, glass, web);
                placed = await UntilAsync(() => PlacementsAsync(c), p => p.Any(x => x.Priority == 5 && x.Zone == "eu-west-a"), Timeout, Show);

                // The served autoscaler (a step every 10 s) writes the pause on the pool: Paused=True with the override and
                // its author; the pool has no node.
                var pool = await UntilAsync(() => ObjectAsync<NodePool>(c, NodePool.KindName, "general"),
                    p => p?.Status.Conditions.Any(x => x.Type == "Paused" && x.Status == ConditionStatus.True) == true, TimeSpan.FromSeconds(25),
                    p => string.Join("; ", p?.Status.Conditions.Select(x => $"{x.Type}={x.Status} {x.Reason} {x.Message}") ?? []));
                Assert.Contains(pool!.Status.Conditions, x => x.Type == "Paused" && x.Message.Contains("override/pause-general by operator:oncall", StringComparison.Ordinal));
                Assert.Equal(0, pool.Status.Nodes);
                var described = await Omega(ep, glass, "describe", "nodepool", "general");
                Assert.Contains("override/pause-general: AutoscalerPause general", described.Stdout, StringComparison.Ordinal);
                Assert.Contains("Paused", described.Stdout, StringComparison.Ordinal);

                // Repair approval: the whole cell goes silent (every agent dies) while the control plane restarts, so every
                // node's lease, restarted together with the server, ends at the same instant and the mass-silence brake
                // holds all four back. (Without the restart the leases end spread over a heartbeat interval, and the first
                // one or two nodes to expire are evicted before the brake engages.) A ConfirmLost override approves the
                // repair of one domain, whose nodes alone are declared lost, recorded with the override and its author.
                await agents.KillAsync();
                await serve.KillAsync();
                serve.Dispose();
                serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90), "--node-lease", "5");
                ep = serve.EndPoint.ToString();
                await using var c2 = await ClientAsync(serve.EndPoint, admin);
                c = c2;
                await UntilAsync(() => c.InspectAsync(InspectTarget.Liveness, 100), l => l.Lines[0].Contains("brake=engaged held_back=4", StringComparison.Ordinal), Timeout, l => string.Join('\n', l.Lines));
                string repair = Path.Combine(data, "repair.yaml");
                File.WriteAllText(repair, "apiVersion: omega/v1\nkind: Override\nmetadata: { name: rack0-lost }\nspec: { type: ConfirmLost, target: eu-west-rack-0, ttlSeconds: 600, reason: \"incident 8, rack-0 PDU dead\" }\n");
                await ApplyAsync(ep, glass, repair);
                await UntilAsync(() => c.InspectAsync(InspectTarget.Liveness, 100), l => l.Lines[1].Contains("domain_confirmed_lost=2", StringComparison.Ordinal), Timeout, l => string.Join('\n', l.Lines));
                var liveness = await Omega(ep, glass, "inspect", "Liveness");
                Assert.True(liveness.ExitCode == 0, liveness.Stdout + liveness.Stderr);
                Assert.Matches(@"domain-lost eu-west-rack-0 by=override/rack0-lost by operator:oncall\S* at=.*reason=incident 8, rack-0 PDU dead", liveness.Stdout);
                Assert.Contains("brake=engaged held_back=2", liveness.Stdout, StringComparison.Ordinal);
                foreach (var n in new[] { "euw-000000", "euw-000002" }) Assert.Matches($@"node {n} n\d+ lost domain=eu-west-rack-0 status=Fenced", liveness.Stdout);
                foreach (var n in new[] { "euw-000001", "euw-000003" }) Assert.Matches($@"node {n} n\d+ suspect domain=eu-west-rack-1 status=Down", liveness.Stdout);

                // Break-glass ends early: revoked, its next request is refused with a typed error; the audit holds its
                // reads as well as its writes.
                var revoke = await Omega(ep, admin, "token", "revoke", glassId);
                Assert.True(revoke.ExitCode == 0, revoke.Stdout + revoke.Stderr);
                var refused = await Omega(ep, glass, "get", "overrides");
                Assert.Equal(1, refused.ExitCode);
                Assert.Contains("CredentialRevoked", refused.Stderr, StringComparison.Ordinal);
                var audit = await Omega(ep, admin, "audit", "--limit", "200");
                Assert.True(audit.ExitCode == 0, audit.Stderr);
                var lines = audit.Stdout.Split('\n');
                Assert.Contains(lines, l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("Inspect", StringComparison.Ordinal) && l.Contains("allowed (break-glass)", StringComparison.Ordinal));
                Assert.Contains(lines, l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("ListObjects", StringComparison.Ordinal) && l.Contains("allowed (break-glass)", StringComparison.Ordinal));
                Assert.Contains(lines, l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("CreateObject Override/rack0-lost: ok", StringComparison.Ordinal));
                Assert.Contains(lines, l => l.Contains(glassId, StringComparison.Ordinal) && l.Contains("Revoke", StringComparison.OrdinalIgnoreCase));

            }
            finally
            {
                agents.Dispose();
            }
        }
        finally
        {
            serve?.Dispose();
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    // promtool evaluates OmegaRecoveryBudgetExhausted on the gauge's series exactly as scraped (every label the exporter
    // wrote): silent on the pre-incident scrape, firing for eu-west on the one after the failover.
    private static async Task PromtoolBudgetAlertAsync(string dir, string before, string after)
    {
        static string Series(string scrape)
        {
            var lines = Regex.Matches(scrape, @"(?m)^(omega_recovery_budget_exhausted\{[^}]*\}) (\S+)(?: \d+)?\r?$").Select(m =>
                $"      - series: '{m.Groups[1].Value}'\n        values: '{m.Groups[2].Value}x10'").ToList();
            Assert.NotEmpty(lines);
            return string.Join('\n', lines);
        }
        string test = Path.Combine(dir, "budget.test.yml");
        File.WriteAllText(test, $"""
            rule_files:
              - {RepoFile("docs/ops/alerts.yml")}
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
            {Series(before)}
                alert_rule_test:
                  - eval_time: 5m
                    alertname: OmegaRecoveryBudgetExhausted
                    exp_alerts: []
              - interval: 1m
                input_series:
            {Series(after)}
                alert_rule_test:
                  - eval_time: 5m
                    alertname: OmegaRecoveryBudgetExhausted
                    exp_alerts:
                      - exp_labels: {"{"} severity: page, region: eu-west {"}"}
                        exp_annotations:
                          summary: "Recovery budget of region eu-west is exhausted: critical failover may not fit"
                          runbook: docs/operations.md#recovery-override
            """);
        var fired = await RunAsync("promtool", "test", "rules", test);
        Assert.True(fired.Code == 0, fired.Output + "\n" + File.ReadAllText(test));
    }
}
