using System.Net;
using Omega.Agent;
using Xunit.Abstractions;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 13 through the CLI: the region-loss drill at small scale (a real <c>omega serve</c> with durable storage, three
/// regions of agents over TCP, the seed's workload mix, tenant quotas and recovery budgets as objects) meets the objective
/// with clean invariants (tenant quotas included) and control-plane load within its bounds; its quota check reports a
/// tenant pushed over its quota outside any override; and a node's region and zone survive a SIGKILL of the server and
/// show in <c>omega get nodes</c>.
/// </summary>
public sealed class RegionDrillTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Region_loss_drill_recovers_four_serving_replicas_of_every_critical_service_in_a_healthy_region_within_ten_seconds()
    {
        var r = await OmegaProcess.RunAsync(TimeSpan.FromSeconds(150), "drill", "region-loss", "--regions", "3", "--agents-per-region", "30",
            "--objective-seconds", "10", "--timeout-seconds", "30", "--seed", "13");
        output.WriteLine(r.Stdout);
        output.WriteLine(r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("objective: met", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("invariants: ok", r.Stdout, StringComparison.Ordinal);
        // Simulated agents take time to start (running 0.2 s after the binding) and then to become ready (0.5 s more).
        Assert.Contains("a task reports running 0.2 s after its binding arrives (start) and ready 0.5 s after that (readiness)", r.Stdout, StringComparison.Ordinal);
        // Every tenant stayed within the quota its Quota object gives it (checked at every audit, from the objects, not from
        // the cell's own limit), and the best-effort analytics tenant pressed against its limit (95 % of its filler's ask,
        // 513 of 540 cores) rather than the quota never mattering.
        Assert.Contains("every tenant within its quota (4 tenants)", r.Stdout, StringComparison.Ordinal);
        var quota = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"quotas: peak committed cores / quota per tenant: analytics (\d+(?:\.\d)?)/513, batch \d+(?:\.\d)?/63, critical \d+(?:\.\d)?/28, search \d+(?:\.\d)?/45; EmergencyQuota overrides counted: 0");
        Assert.True(quota.Success, r.Stdout);
        Assert.InRange(double.Parse(quota.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 460, 513);
        // The recovery's control-plane load is reported (issue 13): commits/s, evictions/s (30 region evictions), queue age,
        // and held within its bounds: evictions only of the lost region's 30 nodes, none outside the regional signal beyond
        // the shipped 10/s bucket, no job queued longer than the 10 s objective, and no more wasted transactions than the
        // commits plus 20 plus 20/s over the sampled span (10 jobs at the shipped retry policy's most, 10 attempts per 5 s
        // parked delay; DrillChecks.LoadBounds says why), with the refused claims listed by status.
        Assert.Matches(@"control-plane load during recovery: commits/s \d+\.\d \(peak \d+\.\d\), evictions/s \d+\.\d \(peak \d+\.\d\), evictions 30, max queue age \d+\.\d{3} s", r.Stdout);
        Assert.Matches(@"load bounds: ok \(evictions 30 <= 30 lost-region nodes; rate-limited evictions at most 0% of the 10/s bucket; max queue age \d+\.\d{3} s <= 10 s objective; transactions that bound nothing \d+ <= committed \d+ \+ 20 \+ 20/s x \d+\.\d s = \d+; claims refused: (none|[A-Za-z]+ \d+(, [A-Za-z]+ \d+)*)\)", r.Stdout);
        foreach (var w in new[] { "risk-api", "billing-api" })
        {
            var line = r.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith(w + " ", StringComparison.Ordinal) && l.Contains(" s ", StringComparison.Ordinal));
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.NotEqual("us-east", parts[2]); // recovered in a healthy region, never the lost one
            double seconds = double.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(seconds, 0.0, 10.0);
            // The recovery budget of the region it recovered into (a RecoveryBudget object made through the server; 2 x
            // (6 + 1) cores) was consumed by its failover replicas, as the recovery-budget controller reports.
            var budget = System.Text.RegularExpressions.Regex.Match(r.Stdout, "budget " + parts[2] + @": allocated 14 cores, consumed (\d+(?:\.\d+)?) cores by (\d+) failover replicas");
            Assert.True(budget.Success, r.Stdout);
            Assert.InRange(int.Parse(budget.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 4, 14);
        }
        // The region's nodes were fenced by the regional signal, all of them, without the 10/s rate limit.
        Assert.Contains("region_lost=30", r.Stdout, StringComparison.Ordinal);
        // Fraud batch jobs carry deadlines (spec.deadlineSeconds): one created early and four urgent ones running when the
        // loss hits each settle as met or missed by the server's DeadlineExceeded condition, and the misses are counted.
        Assert.Matches(@"fraud-detect\s+early\s+30\s+30\s+\d+\.\d{3}\s+(met|missed)", r.Stdout);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Count(r.Stdout, @"fraud-urgent-\d\s+just before\s+3\s+3\s+\d+\.\d{3}\s+(met|missed)"));
        Assert.Matches(@"fraud deadline misses: \d of 5 jobs\r?\n", r.Stdout);
        // The recovery breakdown explains the seconds: the region is signalled first and fenced no earlier than the 2 s
        // regional grace; nothing is re-placed before the fence; then the agents' 0.2 s start and 0.5 s readiness, then the status.
        Assert.Contains("where the time goes (mean): t=0 -> fenced", r.Stdout, StringComparison.Ordinal);
        foreach (var w in new[] { "risk-api", "billing-api" })
        {
            var row = Breakdown(r.Stdout, w);
            Assert.True(row.Signal <= row.Fenced, $"{w}: signal {row.Signal} after fenced {row.Fenced}");
            Assert.InRange(row.Fenced, 2.0, 10.0);
            Assert.InRange(row.FirstBound, 2.0, row.FourthBound);
            // The agents stamp running and ready when they send the reports; the simulated task starts 0.2 s after its
            // binding and is ready 0.5 s after that start, so the reports come no sooner (printed to the millisecond).
            Assert.InRange(row.FourthRunning, row.FourthBound + 0.199, row.FourthReady);
            Assert.InRange(row.FourthReady, row.FourthBound + 0.699, row.Serving);
        }
    }

    [Fact]
    public async Task Region_loss_drill_in_partition_mode_detects_by_lease_meets_the_objective_and_the_healed_agents_run_nothing_bound_elsewhere()
    {
        // Issue 13, partitions: the lost region's agents stay connected through a relay that drops every byte both ways
        // (no close reaches the server), so the server can only learn of it from the leases; the agents fence themselves
        // at their lease's end. After the recovery the partition heals: every agent reconnects, reconciles, and runs
        // nothing that the server has bound elsewhere; at no moment did more than replicas + maxSurge run on agents.
        // Back in the suite after the 3 + 3 split was found and fixed (docs/control-plane.md, "Partition-mode drill: the
        // 3 + 3 split"): with no feasible node left, preemption for a preferred region now looks one rank at a time.
        var r = await OmegaProcess.RunAsync(TimeSpan.FromSeconds(150), "drill", "region-loss", "--mode", "partition", "--regions", "3", "--agents-per-region", "30",
            "--objective-seconds", "40", "--timeout-seconds", "45", "--seed", "13");
        output.WriteLine(r.Stdout);
        output.WriteLine(r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("t=0: every agent of us-east partitioned (connections open, every byte dropped both ways)", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("objective: met", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("invariants: ok", r.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"healed: 30 agents of us-east reconnected and reconciled in \d+\.\d s; they had fenced 30 times; \d+ tasks stopped at re-registration \(the server said their binding was gone\); \d+ tasks running on them now, 0 of them bound elsewhere", r.Stdout);
        var most = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"partition: at most (\d+) critical replicas running on agents at once");
        Assert.True(most.Success, r.Stdout);
        Assert.InRange(int.Parse(most.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 4, 7); // 6 replicas + maxSurge 1
        foreach (var w in new[] { "risk-api", "billing-api" })
        {
            var row = Breakdown(r.Stdout, w);
            // Detection came from the leases (10 s, heartbeats every ~3.3 s), not from a connection close (the regional
            // signal would have fenced at ~2 s): nothing is fenced, and nothing re-placed, before a lease can have ended.
            Assert.InRange(row.Fenced, 6.0, 40.0);
            Assert.InRange(row.FourthBound, 6.0, 40.0);
        }
    }

    // The drill's breakdown row of a workload: signal, fenced, 1st bound, 4th bound, 4th running, 4th ready, serving (seconds since t=0).
    private static (double Signal, double Fenced, double FirstBound, double FourthBound, double FourthRunning, double FourthReady, double Serving) Breakdown(string stdout, string workload)
    {
        var m = System.Text.RegularExpressions.Regex.Match(stdout, "\\n\\s+" + workload + @"\s+[a-z-]+\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\r?\n");
        Assert.True(m.Success, $"no breakdown row for {workload}:\n{stdout}");
        double G(int i) => double.Parse(m.Groups[i].Value, System.Globalization.CultureInfo.InvariantCulture);
        return (G(1), G(2), G(3), G(4), G(5), G(6), G(7));
    }

    [Fact]
    public async Task Region_loss_drill_reports_a_tenant_pushed_over_its_quota_by_a_limit_raised_outside_any_override()
    {
        // The quota check can fail: the hidden fault raises the analytics tenant's limit in the cell over the wire (SetQuota,
        // bypassing its Quota object and leaving no EmergencyQuota override) and submits more analytics work just before
        // the loss. The cell admits it (its own limit allows it, and its own audit stays clean), so only a check against the
        // objects catches it. The same run raises the search tenant through an audited EmergencyQuota override and takes it
        // beyond its Quota object too: that is allowed, and not reported. Small shape (3 x 4 agents, 5 s fraud deadlines).
        var r = await OmegaProcess.RunAsync(TimeSpan.FromSeconds(120), "drill", "region-loss", "--fault", "quota-bypass", "--regions", "3", "--agents-per-region", "4",
            "--objective-seconds", "10", "--timeout-seconds", "20", "--fraud-deadline-seconds", "5", "--seed", "13");
        output.WriteLine(r.Stdout);
        output.WriteLine(r.Stderr);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("fault quota-bypass: analytics limit raised over the wire", r.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"invariants: [1-9]\d* violations", r.Stdout);
        Assert.Matches(@"violation: tenant analytics uses cpu=\d+m mem=\d+MiB gpu=0 disk=0MiB, over its quota cpu=\d+m mem=\d+MiB gpu=0 disk=0MiB \(no EmergencyQuota override raises it\)", r.Stdout);
        Assert.DoesNotMatch(@"violation: tenant (critical|batch|search) ", r.Stdout);
        Assert.Contains("fault quota-bypass: search raised by an audited EmergencyQuota override", r.Stdout, StringComparison.Ordinal);
        // search's quota is 1.5 x its 3 replicas x 2 cores = 9 cores; it went beyond it under the override, which counted.
        var quota = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"quotas: peak committed cores / quota per tenant: .*search (\d+(?:\.\d)?)/9; EmergencyQuota overrides counted: 1");
        Assert.True(quota.Success, r.Stdout);
        Assert.InRange(double.Parse(quota.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 9.5, 18);
        Assert.Contains("objective: NOT met", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_nodes_region_and_zone_survive_SIGKILL_of_omega_serve_and_show_in_get_nodes()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-region-restart-" + Guid.NewGuid().ToString("N"));
        var ep = new IPEndPoint(IPAddress.Loopback, OmegaChild.FreePort());
        try
        {
            using (var serve = OmegaChild.Serve(ep.ToString(), "--data", dir, "--insecure", "--no-auth"))
            {
                await serve.WaitForAsync("listening on", TimeSpan.FromSeconds(60));
                await using (var agent = new AgentClient(new AgentOptions { Server = ep, NodeName = "eu-node", Capacity = new ResourceVector(4000, 8L << 30), Region = "eu-central", Zone = "eu-central-b" }))
                    await agent.StartAsync(); // Registered is acknowledged only once durable
                await serve.KillAsync();
            }
            using (var serve = OmegaChild.Serve(ep.ToString(), "--data", dir, "--insecure", "--no-auth"))
            {
                await serve.WaitForAsync("listening on", TimeSpan.FromSeconds(60));
                var get = await OmegaProcess.RunAsync(TimeSpan.FromSeconds(60), "get", "nodes", "--connect", ep.ToString(), "--insecure");
                output.WriteLine(get.Stdout + get.Stderr);
                Assert.Equal(0, get.ExitCode);
                Assert.Contains("eu-node", get.Stdout, StringComparison.Ordinal);
                Assert.Contains("region=eu-central zone=eu-central-b", get.Stdout, StringComparison.Ordinal);
                await serve.StopAsync(TimeSpan.FromSeconds(30));
            }
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
        }
    }

    [Fact]
    public async Task The_region_loss_drill_in_virtual_time_meets_the_objective_consumes_recovery_budgets_and_keeps_the_invariants()
    {
        // Issue 13: the same scenario on the real cell, engine and controllers in virtual time (the 100k-node run is a
        // perf-reports entry; here 3 x 40 nodes, about a second of wall time).
        var r = await OmegaProcess.RunAsync(TimeSpan.FromSeconds(120), "drill", "region-loss-sim", "--regions", "3", "--nodes-per-region", "40", "--seed", "13");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("objective: met", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("invariants: ok; bound in us-east after the loss: none", r.Stdout, StringComparison.Ordinal);
        // Both critical services failed over, each into its own next region, consuming that region's recovery budget.
        Assert.Matches(@"budget eu-central: allocated 16 cores, consumed [1-9]\d* by [1-9]\d* failover replicas", r.Stdout);
        Assert.Matches(@"budget ap-south: allocated 16 cores, consumed [1-9]\d* by [1-9]\d* failover replicas", r.Stdout);
        // An operator's zone-avoid override on eu-central-a expires during the recovery: reverted by the override
        // controller, recorded (phase Expired), and nothing was bound on the zone while it lived.
        Assert.Matches(@"override zone-avoid eu-central-a \(ttl 5 s, created about 1 s before the loss\): expired and reverted at t=[3-9]\.\d{3} s \(virtual\), phase Expired, revertedAt [3-9]\.\d{3} s; 0 bindings on it while avoided", r.Stdout);
        foreach (var w in new[] { "risk-api", "billing-api" })
        {
            var line = r.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith(w + " ", StringComparison.Ordinal));
            double seconds = double.Parse(line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(seconds, 3.0, 10.0); // not before the regional grace + tick (3 s virtual)
        }
    }
}
