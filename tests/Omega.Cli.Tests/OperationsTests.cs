using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Omega.CrashHost;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 13, items 4 and 8 through the real CLI and a real <c>omega serve</c>: the runbooks of docs/operations.md
/// (break-glass, an override applied, observed in describe and doctor, expired and reverted), the audit of both, and
/// the alert rules of docs/ops/alerts.yml against a real scrape (promtool from Debian's prometheus package).
/// </summary>
public sealed partial class OperationsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private static string RepoFile(string relative)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Omega.sln"))) dir = dir.Parent;
        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), relative);
    }

    private static async Task<string> ScrapeAsync(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return await http.GetStringAsync($"http://localhost:{port}/metrics");
    }

    private static async Task<OmegaProcess.Result> Omega(string ep, string token, params string[] args)
        => await OmegaProcess.RunAsync(Timeout, [.. args, "--connect", ep, "--insecure", "--token", token]);

    [Fact]
    public async Task Runbooks_break_glass_then_an_override_applied_described_flagged_by_doctor_expired_and_audited_and_its_alert_fires_on_a_real_scrape()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-ops-" + Guid.NewGuid().ToString("N"));
        int metricsPort = OmegaChild.FreePort();
        try
        {
            using var serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90), "--metrics-port", metricsPort.ToString(CultureInfo.InvariantCulture));
            string ep = serve.EndPoint.ToString();
            string admin = File.ReadAllText(Path.Combine(data, "admin.token")).Trim();

            // Runbook "break-glass": unbounded requests are refused; a bounded one is issued.
            var tooLong = await Omega(ep, admin, "break-glass", "--name", "oncall", "--reason", "incident 7", "--ttl", "5h");
            Assert.Equal(1, tooLong.ExitCode);
            Assert.Contains("BreakGlassUnbounded", tooLong.Stderr, StringComparison.Ordinal);
            var bg = await Omega(ep, admin, "break-glass", "--name", "oncall", "--reason", "incident 7", "--ttl", "30m");
            Assert.True(bg.ExitCode == 0, bg.Stdout + bg.Stderr);
            string glass = bg.Stdout.Trim();

            // Runbook "zone avoidance" and "autoscaler pause": overrides applied with the break-glass credential.
            string manifest = Path.Combine(data, "overrides.yaml");
            File.WriteAllText(manifest, """
                apiVersion: omega/v1
                kind: Override
                metadata:
                  name: avoid-za
                spec:
                  type: ZoneAvoid
                  target: za
                  ttlSeconds: 600
                  reason: incident 7, za power
                  author: someone-else
                ---
                apiVersion: omega/v1
                kind: NodePool
                metadata:
                  name: general
                spec:
                  nodeCapacity: { cpuMillis: 4000, memoryBytes: 17179869184 }
                  maxNodes: 4
                ---
                apiVersion: omega/v1
                kind: Override
                metadata:
                  name: pause-general
                spec:
                  type: AutoscalerPause
                  target: general
                  ttlSeconds: 600
                  reason: incident 7, readiness low
                ---
                apiVersion: omega/v1
                kind: Workload
                metadata:
                  name: risk-api
                  tenant: default
                spec:
                  replicas: 2
                  resources: { cpuMillis: 500, memoryBytes: 1073741824 }
                ---
                apiVersion: omega/v1
                kind: Override
                metadata:
                  name: recover-eu
                spec:
                  type: RecoveryOverride
                  target: eu-central
                  ttlSeconds: 600
                  reason: incident 7, risk-api failover
                ---
                apiVersion: omega/v1
                kind: Override
                metadata:
                  name: default-quota
                spec:
                  type: EmergencyQuota
                  target: default
                  ttlSeconds: 600
                  reason: incident 7, failover replicas
                  extra: { cpuMillis: 64000 }
                """);
            var apply = await Omega(ep, glass, "apply", "-f", manifest);
            Assert.True(apply.ExitCode == 0, apply.Stdout + apply.Stderr);

            // A submitter cannot write an override (cluster-scoped: operators with override or break-glass only).
            var sub = await Omega(ep, admin, "token", "create", "--role", "submitter", "--tenant", "default");
            Assert.True(sub.ExitCode == 0, sub.Stderr);
            string own = Path.Combine(data, "own.yaml");
            File.WriteAllText(own, "apiVersion: omega/v1\nkind: Override\nmetadata: { name: mine }\nspec: { type: EmergencyQuota, target: default, ttlSeconds: 60, reason: more please, extra: { cpuMillis: 1000 } }\n");
            var denied = await Omega(ep, sub.Stdout.Trim(), "apply", "-f", own);
            Assert.Equal(1, denied.ExitCode);
            Assert.Contains("PermissionDenied", denied.Stderr, StringComparison.Ordinal);

            var describe = await Omega(ep, glass, "describe", "override", "avoid-za");
            Assert.True(describe.ExitCode == 0, describe.Stdout + describe.Stderr);
            Assert.Contains("oncall", describe.Stdout, StringComparison.Ordinal);            // the principal, not what the manifest claimed
            Assert.DoesNotContain("someone-else", describe.Stdout, StringComparison.Ordinal);
            var pool = await Omega(ep, glass, "describe", "nodepool", "general");
            Assert.Contains("override/pause-general: AutoscalerPause general", pool.Stdout, StringComparison.Ordinal);

            // Runbook "recovery override": both overrides are shown on the workload they affect.
            var workload = await Omega(ep, glass, "describe", "workload", "risk-api", "--tenant", "default");
            Assert.Contains("override/recover-eu: RecoveryOverride eu-central", workload.Stdout, StringComparison.Ordinal);
            Assert.Contains("override/default-quota: EmergencyQuota default", workload.Stdout, StringComparison.Ordinal);

            var doctor = await Omega(ep, admin, "doctor");
            Assert.Equal(3, doctor.ExitCode);
            Assert.Contains("override/avoid-za ZoneAvoid za", doctor.Stdout, StringComparison.Ordinal);
            Assert.Contains("emergency quotas: 1", doctor.Stdout, StringComparison.Ordinal);

            // A real scrape while overrides are live: every metric the rules name is exported but the recovery budget
            // gauge, which exists per budget and this server has none (Region_loss_exhausts_a_recovery_budget_… scrapes
            // it), and the OmegaOverrideLive alert fires when fed this scrape's value.
            string scrape = await ScrapeAsync(metricsPort);
            AssertRuleMetricsIn(scrape, "omega_recovery_budget_exhausted");
            var live = Regex.Matches(scrape, @"(?m)^omega_controlplane_overrides_active\{[^}]*\} (\d+)").Sum(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
            Assert.Equal(4, live);
            await PromtoolFiresAsync(data, live);

            // The zone-avoid override's TTL is cut to 1 s (runbook: shorten instead of delete, keeping the record): it is
            // past at once, and the sweep of the real server reverts it; doctor still flags the other overrides.
            string shorten = Path.Combine(data, "shorten.yaml");
            File.WriteAllText(shorten, "apiVersion: omega/v1\nkind: Override\nmetadata: { name: avoid-za }\nspec: { type: ZoneAvoid, target: za, ttlSeconds: 1, reason: \"incident 7, za power back\" }\n");
            var cut = await Omega(ep, glass, "apply", "-f", shorten);
            Assert.True(cut.ExitCode == 0, cut.Stdout + cut.Stderr);
            var sw = Stopwatch.StartNew();
            OmegaProcess.Result after;
            do
            {
                after = await Omega(ep, admin, "describe", "override", "avoid-za");
                if (after.Stdout.Contains("phase: Expired", StringComparison.Ordinal)) break;
                await Task.Delay(250);
            }
            while (sw.Elapsed < TimeSpan.FromSeconds(20));
            Assert.Contains("phase: Expired", after.Stdout, StringComparison.Ordinal);
            Assert.Contains("revertedAt", after.Stdout, StringComparison.Ordinal);
            doctor = await Omega(ep, admin, "doctor");
            Assert.Equal(3, doctor.ExitCode);
            Assert.DoesNotContain("avoid-za", doctor.Stdout, StringComparison.Ordinal);
            foreach (var name in new[] { "pause-general", "recover-eu", "default-quota" })
                Assert.True((await Omega(ep, glass, "delete", "override", name)).ExitCode == 0, name);
            sw.Restart();
            do doctor = await Omega(ep, admin, "doctor");
            while (doctor.ExitCode != 0 && sw.Elapsed < TimeSpan.FromSeconds(20));
            Assert.True(doctor.ExitCode == 0, doctor.Stdout + doctor.Stderr);

            // Break-glass audit: its issue (with the reason) and every override write it made, with the principal.
            var audit = await Omega(ep, admin, "audit", "--limit", "200");
            Assert.True(audit.ExitCode == 0, audit.Stderr);
            Assert.Contains("BREAK-GLASS for 00:30:00: incident 7", audit.Stdout, StringComparison.Ordinal);
            Assert.Contains("BreakGlassUnbounded", audit.Stdout, StringComparison.Ordinal);
            Assert.Contains(audit.Stdout.Split('\n'), l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("CreateObject Override/avoid-za: ok", StringComparison.Ordinal));
            Assert.Contains(audit.Stdout.Split('\n'), l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("UpdateObject Override/avoid-za: ok", StringComparison.Ordinal));
            Assert.Contains(audit.Stdout.Split('\n'), l => l.Contains("oncall", StringComparison.Ordinal) && l.Contains("DeleteObject Override/pause-general: ok", StringComparison.Ordinal));
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    // promtool runs the repository's own rule tests, then a test built from the real scrape's value: the live-override
    // alert must fire after an hour of it.
    private static async Task PromtoolFiresAsync(string dir, int live)
    {
        var own = await RunAsync("promtool", "test", "rules", RepoFile("docs/ops/alerts.test.yml"));
        Assert.True(own.Code == 0, own.Output);
        string test = Path.Combine(dir, "scrape.test.yml");
        File.WriteAllText(test, $"""
            rule_files:
              - {RepoFile("docs/ops/alerts.yml")}
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'omega_controlplane_overrides_active{"{"}type="ZoneAvoid"{"}"}'
                    values: '{live}x70'
                alert_rule_test:
                  - eval_time: 65m
                    alertname: OmegaOverrideLive
                    exp_alerts:
                      - exp_labels: {"{"} severity: info {"}"}
                        exp_annotations:
                          summary: "{live} override(s) live for an hour: confirm they are still wanted (omega doctor)"
                          runbook: docs/operations.md#post-incident-cleanup
            """);
        var fired = await RunAsync("promtool", "test", "rules", test);
        Assert.True(fired.Code == 0, fired.Output);
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await o + await e);
    }
}
