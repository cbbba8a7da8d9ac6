using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Omega.Agent;
using Omega.Cli.Fleet;
using Omega.Cli.Run;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Cli.Drill;

/// <summary>What one drill run is asked to do (<c>omega drill region-loss</c>).</summary>
internal sealed record DrillOptions(int Regions, int AgentsPerRegion, int AgentProcesses, double Cores, double MemoryGiB, int CriticalReplicas,
    double ReadySeconds, double ObjectiveSeconds, double TimeoutSeconds, string DataDirectory, string? ReportDirectory, int Seed, bool KeepData,
    double FraudDeadlineSeconds = 30, string Mode = "loss", double StartSeconds = 0.2, string Fault = "");

/// <summary>
/// <c>omega drill region-loss</c> (issue 13): seed 001's regional failover drill against a real <c>omega serve</c> child
/// (durable FASTER storage, shipped defaults: lease, eviction rate, brake) and simulated agents in several regions over
/// real TCP (in this process, or in <c>omega agents</c> child processes for 10k-node runs). Critical services prefer the
/// region that is then lost, so only replicas placed after the loss can meet the objective: at least four serving in one
/// healthy region. The clock starts when the lost region's agents all disconnect; per critical workload it stops when
/// the workload's status (written by the server's controller from agent-reported readiness) shows four serving in one
/// healthy region. Throughout, the cell's invariant audit (no task bound twice, no node over capacity, aggregates
/// consistent) must stay clean, no binding may be made on a node of the lost region, every tenant must stay within the
/// quota its <see cref="Quota"/> object gives it (<see cref="QuotaAudit"/>), and the control-plane load must stay within
/// <see cref="LoadBounds"/>.
/// </summary>
internal static class RegionLossDrill
{
    private const int CriticalPriority = 1000, BatchPriority = 500, SearchPriority = 300, FillerPriority = 0;
    private static readonly string[] RegionNames = ["us-east", "eu-central", "ap-south", "us-west", "eu-north", "sa-east", "me-central", "af-south"];

    public static Command Create()
    {
        var drill = new Command("drill", "Operational drills against a real server started for the drill.");
        var regions = new Option<int>("--regions") { Description = "Regions (at least 3).", DefaultValueFactory = _ => 3 };
        var agents = new Option<int>("--agents-per-region") { Description = "Simulated agents (nodes) per region.", DefaultValueFactory = _ => 30 };
        var procs = new Option<int>("--agent-processes") { Description = "Run the agents in this many 'omega agents' child processes per region (0: in this process).", DefaultValueFactory = _ => 0 };
        var cores = new Option<double>("--cores") { Description = "Cores per node.", DefaultValueFactory = _ => 8 };
        var memory = new Option<double>("--memory-gib") { Description = "Memory per node, GiB.", DefaultValueFactory = _ => 32 };
        var replicas = new Option<int>("--critical-replicas") { Description = "Replicas of each critical service (at least 4).", DefaultValueFactory = _ => 6 };
        var start = new Option<double>("--start-seconds") { Description = "Simulated start time of a task on its agent: from its binding's arrival to its running report.", DefaultValueFactory = _ => 0.2 };
        var ready = new Option<double>("--ready-seconds") { Description = "Simulated readiness time of a task on its agent: from its running report to its ready report.", DefaultValueFactory = _ => 0.5 };
        var objective = new Option<double>("--objective-seconds") { Description = "The objective: four serving replicas in a healthy region within this time.", DefaultValueFactory = _ => 10 };
        var timeout = new Option<double>("--timeout-seconds") { Description = "Give up on recovery after this long.", DefaultValueFactory = _ => 60 };
        var data = new Option<string?>("--data") { Description = "The server's data directory (default: a new temporary directory, deleted after)." };
        var report = new Option<string?>("--report") { Description = "Write README.md and a timeline chart (timeline.png) into this directory." };
        var seed = new Option<int?>("--seed") { Description = "Random seed (printed)." };
        var fraudDeadline = new Option<double>("--fraud-deadline-seconds") { Description = "Deadline of every fraud batch job, from its creation (spec.deadlineSeconds).", DefaultValueFactory = _ => 30 };
        // Hidden: a deliberate fault that the drill's checks must report (the tests prove with it that they can fail).
        // quota-bypass: just before the loss, the analytics tenant's limit is raised in the cell over the wire (SetQuota,
        // the path that bypasses the Quota object and any override) and more analytics work is submitted.
        var fault = new Option<string>("--fault") { Description = "Inject a fault the checks must report (quota-bypass).", DefaultValueFactory = _ => "", Hidden = true };
        var mode = new Option<string>("--mode") { Description = "loss: the region's agents disconnect (sockets close); partition: they stay connected through a relay that drops every byte both ways (detection by lease), and the partition heals after the recovery.", DefaultValueFactory = _ => "loss" };
        var cmd = new Command("region-loss", "Lose one region's agents at once and measure the time until every critical service has 4 serving replicas in a healthy region.")
        {
            regions, agents, procs, cores, memory, replicas, start, ready, objective, timeout, data, report, seed, fraudDeadline, mode, fault,
        };
        cmd.SetAction(async (r, cancel) =>
        {
            var o = new DrillOptions(r.GetValue(regions), r.GetValue(agents), r.GetValue(procs), r.GetValue(cores), r.GetValue(memory), r.GetValue(replicas),
                r.GetValue(ready), r.GetValue(objective), r.GetValue(timeout), r.GetValue(data) ?? "", r.GetValue(report), r.GetValue(seed) ?? Random.Shared.Next(), r.GetValue(data) is not null,
                r.GetValue(fraudDeadline), r.GetValue(mode) ?? "loss", r.GetValue(start), r.GetValue(fault) ?? "");
            if (o.Mode is not ("loss" or "partition") || o.Fault is not ("" or "quota-bypass"))
            {
                Console.Error.WriteLine("omega drill region-loss: --mode is loss or partition; --fault is quota-bypass or empty");
                return 2;
            }
            if (o.Regions is < 3 or > 8 || o.AgentsPerRegion is < 4 or > 50_000 || o.AgentProcesses is < 0 or > 64 || o.CriticalReplicas is < 4 or > 1000
                || !(o.Cores > 0) || !(o.MemoryGiB > 0) || !(o.ReadySeconds > 0) || !(o.ObjectiveSeconds > 0) || !(o.TimeoutSeconds > 0)
                || !(o.FraudDeadlineSeconds is >= 1 and <= 86_400) || !(o.StartSeconds is >= 0 and <= 3600))
            {
                Console.Error.WriteLine("omega drill region-loss: --regions 3-8, --agents-per-region 4-50,000, --agent-processes 0-64, --critical-replicas 4-1,000; sizes and times positive, --start-seconds 0-3,600, --fraud-deadline-seconds 1-86,400");
                return 2;
            }
            return await RunAsync(o, cancel).ConfigureAwait(false);
        });
        drill.Subcommands.Add(cmd);
        drill.Subcommands.Add(VirtualRegionLoss.Create());
        return drill;
    }

    private sealed class Tracked(string name, string preferred, string failover)
    {
        public string Name { get; } = name;
        public string Preferred { get; } = preferred;
        public string Failover { get; } = failover;
        public double? RecoveredAt { get; set; }
        public string RecoveredIn { get; set; } = "";
        public int MaxUnreachable { get; set; }
        public List<(double T, int Healthy)> Timeline { get; } = new();
    }

    // A fraud batch job with a deadline (issue 13). The outcome is the server's: condition DeadlineExceeded, which the
    // workload controller sets from spec.deadlineSeconds and the object's creation time.
    private sealed class FraudJob(string name, int replicas, bool atLoss)
    {
        public string Name { get; } = name;
        public int Replicas { get; } = replicas;
        public bool AtLoss { get; } = atLoss;
        public int Completed { get; set; }
        public double? CompletedAt { get; set; }
        public string Outcome { get; set; } = "unsettled";
    }

    private static async Task<int> RunAsync(DrillOptions o, CancellationToken cancel)
    {
        var ci = CultureInfo.InvariantCulture;
        string[] names = RegionNames[..o.Regions];
        string lost = names[0];
        bool tempData = o.DataDirectory.Length == 0;
        string dataDir = tempData ? Path.Combine(Path.GetTempPath(), "omega-drill-" + Guid.NewGuid().ToString("N")[..12]) : o.DataDirectory;
        Directory.CreateDirectory(dataDir);
        int port = FreePort();
        var endpoint = new IPEndPoint(IPAddress.Loopback, port);
        Console.WriteLine($"omega drill region-loss: {o.Regions} regions x {o.AgentsPerRegion:N0} agents ({o.Cores} cores, {o.MemoryGiB} GiB each), region lost: {lost}, seed {o.Seed}");
        Console.WriteLine($"  simulated agents: a task reports running {o.StartSeconds.ToString(ci)} s after its binding arrives (start) and ready {o.ReadySeconds.ToString(ci)} s after that (readiness)");
        Console.WriteLine($"  server: omega serve --data {dataDir} on {endpoint} (shipped defaults: lease, eviction rate, brake)");
        using var serve = ChildProcess.Start("serve", ["serve", "--listen", endpoint.ToString(), "--data", dataDir, "--insecure", "--no-auth",
            "--tenant", "critical", "--tenant", "batch", "--tenant", "search", "--tenant", "analytics"]);
        var fleets = new List<(string Region, AgentFleet Fleet)>();
        // Partition mode (issue 13): the lost region's agents connect through a relay that can drop every byte.
        bool partition = o.Mode == "partition";
        await using var relay = partition ? new Omega.Transport.PartitionRelay(endpoint) : null;
        var breakdown = new RecoveryBreakdown();
        if (partition) Console.WriteLine($"  mode partition: {lost}'s agents connect through a relay on {relay!.EndPoint} that will drop every byte both ways without closing (agents fence on lease loss, the shipped default)");
        var children = new List<(string Region, ChildProcess Process)>();
        try
        {
            await serve.WaitForAsync("listening on", TimeSpan.FromSeconds(60), cancel).ConfigureAwait(false);
            await using var client = await ControlClient.ConnectAsync(endpoint, "omega-drill", cancel).ConfigureAwait(false);

            // ---------------------------------------------------------------- agents
            var capacity = ResourceVector.FromCoresAndGiB(o.Cores, o.MemoryGiB);
            int expected = o.Regions * o.AgentsPerRegion;
            for (int i = 0; i < names.Length; i++)
            {
                if (o.AgentProcesses == 0)
                {
                    string region = names[i];
                    var fleet = new AgentFleet(new FleetOptions(partition && i == 0 ? relay!.EndPoint : endpoint, o.AgentsPerRegion, capacity, 4, 3, o.Seed + i * 100_003, names[i],
                        ReadySeconds: o.ReadySeconds, Region: names[i], Zones: 3, BatchPriority: BatchPriority, StartSeconds: o.StartSeconds))
                    {
                        TracePriority = CriticalPriority,
                        Trace = (kind, task, ts) => breakdown.Record(kind, region, task, ts),
                    };
                    fleets.Add((names[i], fleet));
                    await fleet.StartAsync(cancel).ConfigureAwait(false);
                    continue;
                }
                int per = (o.AgentsPerRegion + o.AgentProcesses - 1) / o.AgentProcesses;
                for (int p = 0, left = o.AgentsPerRegion; left > 0; p++, left -= per)
                {
                    int n = Math.Min(per, left);
                    children.Add((names[i], ChildProcess.Start($"agents {names[i]}/{p}", ["agents", "--connect", (partition && i == 0 ? relay!.EndPoint : endpoint).ToString(), "--count", n.ToString(ci),
                        "--trace-priority", CriticalPriority.ToString(ci),
                        "--cores", o.Cores.ToString(ci), "--memory-gib", o.MemoryGiB.ToString(ci), "--racks", "4", "--task-seconds", "3",
                        "--name-prefix", $"{names[i]}-p{p}", "--seed", (o.Seed + i * 100_003 + p).ToString(ci), "--region", names[i], "--zones", "3",
                        "--batch-priority", BatchPriority.ToString(ci), "--ready-seconds", o.ReadySeconds.ToString(ci), "--start-seconds", o.StartSeconds.ToString(ci), "--insecure"])));
                }
            }
            var sw = Stopwatch.StartNew();
            while (true)
            {
                var (total, _) = await client.InspectAsync(InspectTarget.Nodes, 1, cancel).ConfigureAwait(false);
                if (total >= expected) break;
                if (sw.Elapsed.TotalSeconds > 120) throw new TimeoutException($"only {total} of {expected} agents registered within 120 s");
                await Task.Delay(200, cancel).ConfigureAwait(false);
            }
            // Steady state: every node has heartbeated (a node is pending until its first heartbeat, about a third of a
            // lease after registering), so the lifecycle controller tracks all of them before anything is lost.
            while (true)
            {
                var (_, live) = await client.InspectAsync(InspectTarget.Liveness, 1, cancel).ConfigureAwait(false);
                int at = live.Count > 0 ? live[0].IndexOf("tracked=", StringComparison.Ordinal) : -1;
                if (at >= 0 && int.TryParse(live[0].AsSpan(at + 8).ToString().Split(' ')[0], NumberStyles.Integer, ci, out int tracked) && tracked >= expected) break;
                if (sw.Elapsed.TotalSeconds > 120) throw new TimeoutException($"not every agent heartbeated within 120 s ({(live.Count > 0 ? live[0] : "")})");
                await Task.Delay(200, cancel).ConfigureAwait(false);
            }
            Console.WriteLine($"  {expected:N0} agents registered and heartbeating in {sw.Elapsed.TotalSeconds:0.0} s");

            // ---------------------------------------------------------------- workloads
            string[] criticalNames = ["risk-api", "billing-api"];
            double totalCores = o.Cores * expected;
            int search = Math.Max(3, expected / 6), fraud = Math.Max(3, expected / 3), urgent = Math.Max(2, fraud / 8);
            // Best-effort analytics fills what is left to ~85 % of the cell's CPU: recovery must preempt it.
            int filler = Math.Max(1, (int)(totalCores * 0.85 - 2 * o.CriticalReplicas - 2 * search - fraud));
            // Tenant quotas (issue 13: every tenant within its quota, except through an audited override), as Quota objects
            // that the server's quota controller applies to the cell. Sized so the scenario fits: critical twice its
            // replicas + surge (failover must never wait on quota), search and batch half as much again as they ask; the
            // best-effort analytics tenant gets 95 % of what its filler asks, so it presses against its limit throughout
            // and every one of its placements and re-placements meets the cell's quota check.
            var quotas = new Dictionary<string, ResourceVector>(StringComparer.Ordinal)
            {
                ["critical"] = Times(ResourceVector.FromCoresAndGiB(1, 2), 2.0 * criticalNames.Length * (o.CriticalReplicas + 1)),
                ["search"] = Times(ResourceVector.FromCoresAndGiB(2, 8), 1.5 * search),
                ["batch"] = Times(ResourceVector.FromCoresAndGiB(1, 2), 1.5 * (fraud + 4 * urgent)),
                ["analytics"] = Times(ResourceVector.FromCoresAndGiB(1, 1), 0.95 * filler),
            };
            await QuotaAudit.ApplyAsync(client, quotas, cancel).ConfigureAwait(false);
            var quotaAudit = new QuotaAudit();
            Console.WriteLine($"  tenant quotas (Quota objects, applied by the quota controller): {string.Join(", ", quotas.Select(kv => string.Create(ci, $"{kv.Key} {kv.Value.CpuMillis / 1000.0:0.#} cores")))}");
            // Recovery budgets (issue 13) in the healthy regions, through the server: room for the whole critical tier to
            // fail over into any one of them. Failover consumes them at commit, preempting reclaimable work.
            string[] healthy = names[1..];
            var budget = Times(ResourceVector.FromCoresAndGiB(1, 2), criticalNames.Length * (o.CriticalReplicas + 1));
            await DrillBudgets.CreateAsync(client, healthy, budget, CriticalPriority, cancel).ConfigureAwait(false);
            Console.WriteLine($"  recovery budgets (RecoveryBudget objects, priority >= {CriticalPriority}): {budget.CpuMillis / 1000.0:0.#} cores in each of {string.Join(", ", healthy)}");

            // Critical services first, so they take their preferred (soon lost) region before the filler arrives.
            var critical = new List<Tracked>();
            string lastState = "";
            for (int i = 0; i < criticalNames.Length; i++)
            {
                var t = new Tracked(criticalNames[i], lost, names[1 + i % (names.Length - 1)]);
                critical.Add(t);
                await CreateAsync(client, "critical", t.Name, WorkloadType.Service, o.CriticalReplicas, CriticalPriority, 1000, 2, cancel,
                    topology: new WorkloadTopology { PreferredRegions = [t.Preferred, t.Failover] }).ConfigureAwait(false);
            }
            await WaitAsync(TimeSpan.FromSeconds(60), async () =>
            {
                foreach (var t in critical)
                {
                    var w = await GetAsync(client, "critical", t.Name, cancel).ConfigureAwait(false);
                    // All serving, at least 4 of them in the preferred region (checked below: fewer than 4 in any other).
                    if (w is null || w.Status.Serving < o.CriticalReplicas || (w.Status.ServingByRegion.TryGetValue(lost, out int s) ? s : 0) < 4)
                    {
                        lastState = w is null ? "missing" : $"{t.Name}: bound {w.Status.Bound} ready {w.Status.Ready} serving {w.Status.Serving} by region [{string.Join(", ", w.Status.ServingByRegion.Select(kv => kv.Key + "=" + kv.Value))}] pending {w.Status.PendingReason}";
                        return false;
                    }
                }
                return true;
            }, "critical services serving in their preferred region", cancel, () => lastState).ConfigureAwait(false);
            await CreateAsync(client, "search", "search-workers", WorkloadType.Service, search, SearchPriority, 2000, 8, cancel,
                topology: new WorkloadTopology { Spread = TopologySpreadScope.Region }).ConfigureAwait(false);
            // Fraud batch: one big job now, and urgent ones that arrive just before the loss (below), all with a deadline.
            var fraudJobs = new List<FraudJob> { new("fraud-detect", fraud, atLoss: false) };
            await CreateAsync(client, "batch", "fraud-detect", WorkloadType.Batch, fraud, BatchPriority, 1000, 2, cancel, deadlineSeconds: o.FraudDeadlineSeconds).ConfigureAwait(false);
            // Split into workloads of at most 4,000 replicas: a workload's status lists one entry per replica, and one
            // object is at most 256 KiB.
            int fillerParts = (filler + 3999) / 4000;
            for (int p = 0; p < fillerParts; p++)
                await CreateAsync(client, "analytics", $"analytics-{p}", WorkloadType.Service, filler / fillerParts + (p < filler % fillerParts ? 1 : 0), FillerPriority, 1000, 1, cancel).ConfigureAwait(false);
            await WaitAsync(TimeSpan.FromSeconds(180), async () =>
            {
                int bound = 0;
                for (int p = 0; p < fillerParts; p++)
                    if (await GetAsync(client, "analytics", $"analytics-{p}", cancel).ConfigureAwait(false) is { } w) bound += w.Status.Bound;
                return bound >= filler * 9 / 10;
            }, "the analytics filler bound", cancel).ConfigureAwait(false);
            if (o.Fault == "quota-bypass") await QuotaFaultAsync(client, quotas, filler, search, cancel).ConfigureAwait(false);
            // The starting state that makes the objective real: every critical replica in the lost region, < 4 elsewhere.
            foreach (var t in critical)
            {
                var w = (await GetAsync(client, "critical", t.Name, cancel).ConfigureAwait(false))!;
                foreach (var (region, n) in w.Status.ServingByRegion)
                    if (region != lost && n >= 4) throw new InvalidOperationException($"{t.Name} already has {n} serving in {region} before the loss");
            }
            // Urgent fraud jobs arrive just before the loss and are running when it hits: their replicas in the lost region
            // must run again elsewhere, competing with the recovery, within the deadline. (Created before the loss, not at
            // it: a job created after the disconnect may legitimately bind on a lost node before the server has noticed
            // the loss, which the "nothing new bound in the lost region" check below would count.)
            for (int i = 0; i < 4; i++)
            {
                fraudJobs.Add(new FraudJob($"fraud-urgent-{i}", urgent, atLoss: true));
                await CreateAsync(client, "batch", $"fraud-urgent-{i}", WorkloadType.Batch, urgent, BatchPriority, 1000, 2, cancel, deadlineSeconds: o.FraudDeadlineSeconds).ConfigureAwait(false);
            }
            await WaitAsync(TimeSpan.FromSeconds(60), async () =>
            {
                foreach (var f in fraudJobs)
                    if (f.AtLoss && (await GetAsync(client, "batch", f.Name, cancel).ConfigureAwait(false) is not { } w || w.Status.Bound + w.Status.Succeeded < f.Replicas)) return false;
                return true;
            }, "the urgent fraud jobs bound", cancel).ConfigureAwait(false);
            await DrillBudgets.WaitAppliedAsync(client, healthy, TimeSpan.FromSeconds(30), cancel).ConfigureAwait(false);
            // Inspect replies carry at most 10,000 lines (InspectReply.MaxLines), so at 10k agents this set and the
            // allocation listing the lost-region check reads are partial: the eviction bound uses the region's agent
            // count instead (every agent registered before the loss), and the lost-region check covers the listed part.
            var (nodesBefore, nodeLines) = await client.InspectAsync(InspectTarget.Nodes, 10_000, cancel).ConfigureAwait(false);
            var lostNodes = new HashSet<string>(StringComparer.Ordinal);
            foreach (var line in nodeLines)
                if (line.Contains($" region={lost} ", StringComparison.Ordinal)) lostNodes.Add(line.Split(' ')[1]);
            var before = await LostRegionBindingsAsync(client, lostNodes).ConfigureAwait(false);
            // The cell version just before the loss: a binding's generation is the cell version of its commit, so a
            // binding in the lost region is new exactly when its generation is above this. (Comparing listings instead
            // is wrong at scale: a listing is cut at 10,000 lines or 896 KiB, and two cuts of a changing list differ.)
            long versionAtLoss = await CellVersionAsync(client, cancel).ConfigureAwait(false);
            Console.WriteLine($"  workloads: 2 critical x {o.CriticalReplicas} (priority {CriticalPriority}, prefer {lost}), search {search} (priority {SearchPriority}), fraud batch {fraud} (priority {BatchPriority}), analytics filler {filler} in {fillerParts} workloads (priority {FillerPriority}); {before.Count:N0} bindings in {lost}");

            // The breakdown's starting point: what each critical workload serves where, and its uid (its tasks' job ids carry it).
            var limits = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var t in critical)
                if (await GetAsync(client, "critical", t.Name, cancel).ConfigureAwait(false) is { } cw)
                {
                    breakdown.Track(t.Name, cw.Metadata.Uid, cw.Status.ServingByRegion);
                    limits[t.Name] = cw.Spec.Replicas + cw.Spec.MaxSurge;
                }

            // ---------------------------------------------------------------- the loss
            breakdown.Start(Stopwatch.GetTimestamp());
            var clock = Stopwatch.StartNew();
            if (partition) relay!.Partition();
            else
            {
                foreach (var (region, fleet) in fleets) if (region == lost) await fleet.DisconnectAllAsync().ConfigureAwait(false);
                foreach (var (region, child) in children) if (region == lost) child.Kill();
            }
            double disconnectSeconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(partition
                ? $"  t=0: every agent of {lost} partitioned (connections open, every byte dropped both ways)"
                : $"  t=0: every agent of {lost} disconnected ({disconnectSeconds:0.000} s to close them)");
            int maxRunning = 0;
            // Partition mode: the server cannot know of a partition before the leases end, so work bound in the region
            // until then is legitimate; from the fence to the heal nothing may be bound there (after the heal it is healthy).
            long regionCheckFrom = partition ? long.MaxValue : versionAtLoss;

            var violations = new List<string>();
            int audits = 0;
            double nextAudit = 0;
            // Control-plane load during the recovery (issue 13: "report commits/s, evictions/s and queue age"): sampled
            // from Inspect Stats at t=0 and at every audit tick.
            var load = new LoadSampler();
            await load.SampleAsync(client, clock.Elapsed.TotalSeconds, cancel).ConfigureAwait(false);
            while (clock.Elapsed.TotalSeconds < o.TimeoutSeconds)
            {
                double t = clock.Elapsed.TotalSeconds;
                bool all = true;
                foreach (var c in critical)
                {
                    var w = await GetAsync(client, "critical", c.Name, cancel).ConfigureAwait(false);
                    if (w is null) { all = false; continue; }
                    c.MaxUnreachable = Math.Max(c.MaxUnreachable, w.Status.Unreachable);
                    int best = 0;
                    string bestRegion = "";
                    foreach (var (region, n) in w.Status.ServingByRegion)
                        if (region != lost && n > best) (best, bestRegion) = (n, region);
                    c.Timeline.Add((t, best));
                    if (c.RecoveredAt is null && best >= 4) { c.RecoveredAt = t; c.RecoveredIn = bestRegion; }
                    all &= c.RecoveredAt is not null;
                }
                bool wasFenced = breakdown.Fenced is not null;
                await DrillStages.ObserveStagesAsync(client, breakdown, o.AgentsPerRegion, clock, cancel).ConfigureAwait(false);
                if (partition && !wasFenced && breakdown.Fenced is not null) regionCheckFrom = await CellVersionAsync(client, cancel).ConfigureAwait(false);
                if (partition) maxRunning = Math.Max(maxRunning, DrillStages.CheckRunning(fleets, breakdown, limits, violations));
                if (t >= nextAudit)
                {
                    nextAudit = t + 0.5;
                    audits++;
                    await AuditAsync(client, lostNodes, regionCheckFrom, violations, quotaAudit, cancel).ConfigureAwait(false);
                    await load.SampleAsync(client, clock.Elapsed.TotalSeconds, cancel).ConfigureAwait(false);
                }
                if (all) break;
                await Task.Delay(100, cancel).ConfigureAwait(false);
            }
            // Partition mode: heal only once the whole region has been evicted (the leases end over a heartbeat interval
            // plus the server's lag allowance, which can outlast a quick recovery), so the heal always meets fenced tasks.
            while (partition && breakdown.Fenced is null && clock.Elapsed.TotalSeconds < o.TimeoutSeconds + 30)
            {
                await Task.Delay(100, cancel).ConfigureAwait(false);
                await DrillStages.ObserveStagesAsync(client, breakdown, o.AgentsPerRegion, clock, cancel).ConfigureAwait(false);
                if (breakdown.Fenced is not null) regionCheckFrom = await CellVersionAsync(client, cancel).ConfigureAwait(false);
                maxRunning = Math.Max(maxRunning, DrillStages.CheckRunning(fleets, breakdown, limits, violations));
            }
            if (partition) await AuditAsync(client, lostNodes, regionCheckFrom, violations, quotaAudit, cancel).ConfigureAwait(false);
            if (partition) regionCheckFrom = long.MaxValue;
            string healed = partition ? await DrillStages.HealAsync(client, relay!, fleets, lost, breakdown, limits, violations, cancel).ConfigureAwait(false) : "";
            // Fraud deadlines: wait until each job has completed or the server reports its deadline passed (bounded by
            // the deadline itself plus a margin for the controller's look at that instant).
            while (true)
            {
                bool settled = true;
                foreach (var f in fraudJobs)
                {
                    if (f.Outcome != "unsettled") continue;
                    var w = await GetAsync(client, "batch", f.Name, cancel).ConfigureAwait(false);
                    if (w is null) { settled = false; continue; }
                    f.Completed = w.Status.Succeeded;
                    // How long the job took, on the server's clock: creation to the Available=True (Completed) transition.
                    if (f.CompletedAt is null && Omega.ControlPlane.Conditions.Find(w.Status.Conditions, "Available") is { Status: ConditionStatus.True, Reason: "Completed" } av
                        && w.Metadata.CreationTimestamp is { } created)
                        f.CompletedAt = (av.LastTransitionTime - created).TotalSeconds;
                    var dc = Omega.ControlPlane.Conditions.Find(w.Status.Conditions, "DeadlineExceeded");
                    if (dc is { Status: ConditionStatus.True }) f.Outcome = "missed";
                    else if (dc is { Reason: "CompletedInTime" }) f.Outcome = "met";
                    else settled = false;
                }
                if (settled || clock.Elapsed.TotalSeconds > o.TimeoutSeconds + o.FraudDeadlineSeconds + 15) break;
                await Task.Delay(200, cancel).ConfigureAwait(false);
            }
            // Once more at the end, after everything settled for a moment.
            await Task.Delay(500, cancel).ConfigureAwait(false);
            await AuditAsync(client, lostNodes, regionCheckFrom, violations, quotaAudit, cancel).ConfigureAwait(false);
            audits++;
            await load.SampleAsync(client, clock.Elapsed.TotalSeconds, cancel).ConfigureAwait(false);
            // Bounded control-plane load (issue 13), from the shipped eviction rate, the objective and the shipped retry policy.
            var (loadViolations, loadLine) = new LoadBounds(o.AgentsPerRegion, new Omega.Server.ServerOptions().EvictionsPerSecond, o.ObjectiveSeconds,
                WastedPerSecond: LoadBounds.ShippedWastedPerSecond()).Check(load.Samples, ci);
            foreach (var v in loadViolations) if (!violations.Contains(v)) violations.Add(v);
            var (_, liveness) = await client.InspectAsync(InspectTarget.Liveness, 2, cancel).ConfigureAwait(false);
            var recoveredInto = new HashSet<string>(critical.Where(c => c.RecoveredIn.Length > 0).Select(c => c.RecoveredIn), StringComparer.Ordinal);
            var budgetLines = await DrillBudgets.ReportAsync(client, healthy, recoveredInto, 4, TimeSpan.FromSeconds(5), cancel).ConfigureAwait(false);
            var (_, stats) = await client.InspectAsync(InspectTarget.Stats, 100, cancel).ConfigureAwait(false);

            // ---------------------------------------------------------------- report
            Console.WriteLine();
            Console.WriteLine($"  {"workload",-12} {"preferred",-10} {"recovered in",-12} {"time to 4 serving",17}  {"max unreachable",15}");
            bool ok = violations.Count == 0;
            var times = new List<double>();
            foreach (var c in critical)
            {
                string time = c.RecoveredAt is { } at ? at.ToString("0.000", ci) + " s" : "not recovered";
                ok &= c.RecoveredAt is { } a && a <= o.ObjectiveSeconds;
                if (c.RecoveredAt is { } x) times.Add(x);
                Console.WriteLine($"  {c.Name,-12} {c.Preferred,-10} {c.RecoveredIn,-12} {time,17}  {c.MaxUnreachable,15}");
            }
            // A workload that did not recover says where it stands, so a failed run explains itself (a CI run keeps only the output).
            foreach (var c in critical)
            {
                if (c.RecoveredAt is not null) continue;
                var w = await GetAsync(client, "critical", c.Name, cancel).ConfigureAwait(false);
                if (w is null) { Console.WriteLine($"    {c.Name}: missing"); continue; }
                Console.WriteLine($"    {c.Name}: generation {w.Metadata.Generation} observed {w.Status.ObservedGeneration} bound {w.Status.Bound} ready {w.Status.Ready} serving {w.Status.Serving} unreachable {w.Status.Unreachable} by region [{string.Join(", ", w.Status.ServingByRegion.Select(kv => kv.Key + "=" + kv.Value))}] pending {w.Status.PendingReason}");
                foreach (var cond in w.Status.Conditions) Console.WriteLine($"      condition {cond.Type}={cond.Status} {cond.Reason}: {cond.Message}");
            }
            if (critical.Exists(c => c.RecoveredAt is null))
            {
                // Where each critical replica is (priority identifies them), with its node's region, and why it went there.
                var (_, nodesNow) = await client.InspectAsync(InspectTarget.Nodes, 10_000, cancel).ConfigureAwait(false);
                var regionOf = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var l in nodesNow)
                {
                    var f = l.Split(' ');
                    int at = l.IndexOf(" region=", StringComparison.Ordinal);
                    if (f.Length > 1 && at >= 0) regionOf[f[1]] = l[(at + 8)..].Split(' ')[0];
                }
                var (_, allocs) = await client.InspectAsync(InspectTarget.Allocations, 10_000, cancel).ConfigureAwait(false);
                foreach (var l in allocs)
                {
                    if (!l.Contains($"priority={CriticalPriority} ", StringComparison.Ordinal)) continue;
                    var f = l.Split(' ');
                    Console.WriteLine($"    allocation {l} region={(f.Length > 1 && regionOf.TryGetValue(f[1], out var rg) ? rg : "?")}");
                    if (TaskId.TryParse(f[0], out var task) && await client.ExplainAsync(task, cancel).ConfigureAwait(false) is { } why)
                        foreach (var wl in why.Split('\n')) if (wl.Length > 0) Console.WriteLine($"      {wl}");
                }
            }
            times.Sort();
            if (times.Count > 0) Console.WriteLine($"  p50 {times[(times.Count - 1) / 2].ToString("0.000", ci)} s, max {times[^1].ToString("0.000", ci)} s (objective {o.ObjectiveSeconds.ToString(ci)} s)");
            foreach (var (_, child) in children) breakdown.RecordChildOutput(child.Output);
            foreach (var l in breakdown.Lines(critical.Select(c => (c.Name, c.RecoveredIn.Length > 0 ? c.RecoveredIn : c.Failover, c.RecoveredAt)),
                partition ? $"detection by lease: the node lease is {new Omega.Server.ServerOptions().NodeLease.TotalSeconds:0.#} s" : $"the regional grace is {new Omega.Server.ServerOptions().RegionLossGrace.TotalSeconds:0.#} s", o.StartSeconds, o.ReadySeconds))
                Console.WriteLine($"  {l}");
            if (partition) Console.WriteLine($"  partition: at most {maxRunning} critical replicas running on agents at once (limit: replicas + maxSurge per workload); {healed}");
            Console.WriteLine($"  invariants: {(violations.Count == 0 ? "ok" : $"{violations.Count} violations")} ({audits} audits: no task bound twice, no node over capacity, nothing new bound in {lost}, every tenant within its quota ({quotaAudit.Tenants} tenants), control-plane load within bounds)");
            Console.WriteLine($"  quotas: {quotaAudit.Summary(ci)}");
            foreach (var l in budgetLines) Console.WriteLine($"  {l}");
            foreach (var v in violations.Take(20)) Console.WriteLine($"    violation: {v}");
            int misses = 0, unsettled = 0;
            Console.WriteLine();
            Console.WriteLine($"  {"fraud job",-16} {"arrived",-12} {"replicas",8} {"completed",9} {"took (s)",11}  deadline ({o.FraudDeadlineSeconds.ToString(ci)} s)");
            foreach (var f in fraudJobs)
            {
                if (f.Outcome == "missed") misses++;
                if (f.Outcome == "unsettled") unsettled++;
                Console.WriteLine($"  {f.Name,-16} {(f.AtLoss ? "just before" : "early"),-12} {f.Replicas,8} {f.Completed,9} {(f.CompletedAt is { } d ? d.ToString("0.000", ci) : "-"),11}  {f.Outcome}");
            }
            Console.WriteLine($"  fraud deadline misses: {misses} of {fraudJobs.Count} jobs{(unsettled > 0 ? $" ({unsettled} unsettled)" : "")}");
            ok &= unsettled == 0;
            foreach (var l in liveness) Console.WriteLine($"  lifecycle {l}");
            foreach (var l in stats) if (l.StartsWith("commits", StringComparison.Ordinal) || l.StartsWith("engine", StringComparison.Ordinal)) Console.WriteLine($"  {l}");
            Console.WriteLine($"  control-plane load during recovery: {load.Summary(ci)}");
            Console.WriteLine($"  {loadLine}");
            Console.WriteLine($"  objective: {(ok ? "met" : "NOT met")}");
            if (o.ReportDirectory is { } dir) WriteReport(dir, o, critical, violations, liveness, lost, load.Summary(ci) + "; " + loadLine, fraudJobs, quotaAudit.Summary(ci), budgetLines);
            return ok ? 0 : 1;
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or AgentRequestException or System.Net.Sockets.SocketException or IOException)
        {
            Console.Error.WriteLine($"omega drill region-loss: {e.Message}");
            Console.Error.WriteLine(serve.Output);
            return 1;
        }
        finally
        {
            foreach (var (_, fleet) in fleets) await fleet.DisposeAsync().ConfigureAwait(false);
            foreach (var (_, child) in children) child.Dispose();
            await serve.StopAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            if (tempData)
                try { Directory.Delete(dataDir, recursive: true); }
                catch (IOException) { }
        }
    }

    private static async Task CreateAsync(ControlClient client, string tenant, string name, WorkloadType type, int replicas, int priority, long cpuMillis, long memGiB,
        CancellationToken cancel, WorkloadTopology? topology = null, AntiAffinity antiAffinity = AntiAffinity.None, double? deadlineSeconds = null)
    {
        var w = new Workload
        {
            Metadata = new ObjectMeta { Name = name, Tenant = tenant, Labels = { ["app"] = name } },
            Spec = new WorkloadSpec
            {
                Type = type, Replicas = replicas, Priority = priority, MaxUnavailable = Math.Max(1, replicas / 4), AntiAffinity = antiAffinity,
                Resources = new ResourceRequest { CpuMillis = cpuMillis, MemoryBytes = memGiB << 30 }, Topology = topology ?? new WorkloadTopology(),
                DeadlineSeconds = deadlineSeconds,
            },
        };
        await client.CreateAsync(w, cancel).ConfigureAwait(false);
    }

    // n times a per-unit vector, rounded up (cpu and memory; the drill's quotas limit nothing else).
    private static ResourceVector Times(ResourceVector per, double n)
        => new((long)Math.Ceiling(per.CpuMillis * n), (long)Math.Ceiling(per.MemoryBytes * n));

    /// <summary>
    /// The hidden <c>--fault quota-bypass</c>, both sides of "within its quota except through an audited override".
    /// The fault: the analytics tenant's limit is raised in the cell over the wire (SetQuota: no Quota object change, no
    /// override, so nothing audited allows it) and more analytics work is submitted; the quota controller puts the limit
    /// back at its next reconcile (within its 10 s usage refresh), so the raise is repeated until the cell has admitted
    /// usage beyond the Quota object (which stays). The contrast: an audited <c>EmergencyQuota</c> override doubles the
    /// search tenant's quota and more search work takes it beyond its Quota object's limit, which the check must accept.
    /// Returns once both tenants' usage is beyond their objects' limits.
    /// </summary>
    private static async Task QuotaFaultAsync(ControlClient client, Dictionary<string, ResourceVector> quotas, int filler, int search, CancellationToken cancel)
    {
        var analytics = quotas["analytics"];
        var raised = Times(analytics, 2);
        await client.SetQuotaAsync("analytics", QuotaField.Set(raised), QuotaField.Keep, cancel).ConfigureAwait(false);
        await CreateAsync(client, "analytics", "analytics-bypass", WorkloadType.Service, Math.Max(2, filler / 10), FillerPriority, 1000, 1, cancel).ConfigureAwait(false);
        var searchQuota = quotas["search"];
        await client.CreateAsync(new Override
        {
            Metadata = new ObjectMeta { Name = "drill-emergency-search" },
            Spec = new OverrideSpec
            {
                Type = OverrideType.EmergencyQuota, Target = "search", TtlSeconds = 3600, Reason = "region drill: search needs more during the incident",
                Extra = new ResourceRequest { CpuMillis = searchQuota.CpuMillis, MemoryBytes = searchQuota.MemoryBytes },
            },
        }, cancel).ConfigureAwait(false);
        // search uses 2 x search cores of its 3 x search; this many more 2-core replicas go beyond it, within the raise.
        await CreateAsync(client, "search", "search-emergency", WorkloadType.Service, search / 2 + 1, SearchPriority, 2000, 8, cancel).ConfigureAwait(false);
        var sw = Stopwatch.StartNew();
        bool bypassed = false, overridden = false;
        while (sw.Elapsed.TotalSeconds < 30)
        {
            var (tenants, _, _) = await client.ListQuotasAsync(cancel).ConfigureAwait(false);
            foreach (var t in tenants)
            {
                if (t.Name == "analytics" && !bypassed)
                {
                    bypassed = !t.Usage.FitsWithin(analytics);
                    if (bypassed) Console.WriteLine($"  fault quota-bypass: analytics limit raised over the wire, usage {t.Usage} now beyond its Quota object's {analytics}");
                    else if (t.Limit != raised) await client.SetQuotaAsync("analytics", QuotaField.Set(raised), QuotaField.Keep, cancel).ConfigureAwait(false);
                }
                if (t.Name == "search" && !overridden)
                {
                    overridden = !t.Usage.FitsWithin(searchQuota);
                    if (overridden) Console.WriteLine($"  fault quota-bypass: search raised by an audited EmergencyQuota override, usage {t.Usage} now beyond its Quota object's {searchQuota}");
                }
            }
            if (bypassed && overridden) return;
            await Task.Delay(100, cancel).ConfigureAwait(false);
        }
        throw new TimeoutException($"fault quota-bypass: within 30 s analytics {(bypassed ? "did" : "did not")} and search {(overridden ? "did" : "did not")} go beyond its Quota object");
    }

    private static async Task<Workload?> GetAsync(ControlClient client, string tenant, string name, CancellationToken cancel)
        => await client.GetAsync(new ObjectKey(Workload.KindName, tenant, name), cancel).ConfigureAwait(false) as Workload;

    private static async Task WaitAsync(TimeSpan timeout, Func<Task<bool>> done, string what, CancellationToken cancel, Func<string>? state = null)
    {
        var sw = Stopwatch.StartNew();
        while (!await done().ConfigureAwait(false))
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"{what}: not reached within {timeout.TotalSeconds:0} s {state?.Invoke()}");
            await Task.Delay(200, cancel).ConfigureAwait(false);
        }
        Console.WriteLine($"  {what} ({sw.Elapsed.TotalSeconds:0.0} s)");
    }

    // Bindings on the lost region's nodes, as "task generation" strings (Inspect Allocations: "TASK nID RES tenant=.. priority=.. generation=G").
    private static async Task<HashSet<string>> LostRegionBindingsAsync(ControlClient client, HashSet<string> lostNodes)
    {
        var (_, lines) = await client.InspectAsync(InspectTarget.Allocations, 10_000).ConfigureAwait(false);
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var l in lines)
        {
            var parts = l.Split(' ');
            if (parts.Length > 1 && lostNodes.Contains(parts[1])) set.Add(parts[0] + " " + parts[^1]);
        }
        return set;
    }

    private static async Task AuditAsync(ControlClient client, HashSet<string> lostNodes, long versionAtLoss, List<string> violations, QuotaAudit quotas, CancellationToken cancel)
    {
        await quotas.AuditAsync(client, violations, cancel).ConfigureAwait(false);
        var (_, audit) = await client.InspectAsync(InspectTarget.Audit, 100, cancel).ConfigureAwait(false);
        if (audit.Count == 0 || audit[0] != "ok")
            foreach (var l in audit) if (l != "ok" && !violations.Contains(l)) violations.Add(l);
        // Nothing may be bound in the lost region after the loss: no binding there committed after the loss's version.
        foreach (var b in await LostRegionBindingsAsync(client, lostNodes).ConfigureAwait(false))
        {
            int eq = b.LastIndexOf("generation=", StringComparison.Ordinal);
            if (eq < 0 || !long.TryParse(b.AsSpan(eq + "generation=".Length), NumberStyles.None, CultureInfo.InvariantCulture, out long g) || g <= versionAtLoss) continue;
            if (!violations.Contains("bound in the lost region: " + b)) violations.Add("bound in the lost region: " + b);
        }
    }

    // The first Stats line is "cell version=V nodes=N bindings=B".
    private static async Task<long> CellVersionAsync(ControlClient client, CancellationToken cancel)
    {
        var (_, stats) = await client.InspectAsync(InspectTarget.Stats, 1, cancel).ConfigureAwait(false);
        const string Key = "cell version=";
        if (stats.Count > 0 && stats[0].StartsWith(Key, StringComparison.Ordinal))
        {
            var rest = stats[0].AsSpan(Key.Length);
            int sp = rest.IndexOf(' ');
            if (long.TryParse(sp < 0 ? rest : rest[..sp], NumberStyles.None, CultureInfo.InvariantCulture, out long v)) return v;
        }
        throw new InvalidOperationException("the server's statistics name no cell version");
    }

    private static void WriteReport(string dir, DrillOptions o, List<Tracked> critical, List<string> violations, IReadOnlyList<string> liveness, string lost, string load, List<FraudJob> fraudJobs, string quotas, List<string> budgets)
    {
        var ci = CultureInfo.InvariantCulture;
        Directory.CreateDirectory(dir);
        var series = new List<Omega.Reporting.Series>();
        foreach (var c in critical)
        {
            var xs = new List<double>();
            var ys = new List<double>();
            foreach (var (t, n) in c.Timeline) { xs.Add(t); ys.Add(n); }
            if (xs.Count > 0) series.Add(new Omega.Reporting.Series(c.Name, xs, ys));
        }
        if (series.Count > 0)
            Omega.Reporting.Charts.WriteLineChart(Path.Combine(dir, "timeline.png"), $"Region {lost} lost: serving replicas in the best healthy region",
                "seconds since the loss", "serving replicas", series);
        var sb = new System.Text.StringBuilder();
        sb.AppendLine(ci, $"# Region-loss drill: {o.Regions} regions x {o.AgentsPerRegion} agents");
        sb.AppendLine();
        sb.AppendLine(ci, $"Seed {o.Seed}; agents {(o.AgentProcesses == 0 ? "in the drill process" : $"in {o.AgentProcesses} processes per region")}; start {o.StartSeconds} s, readiness {o.ReadySeconds} s; objective {o.ObjectiveSeconds} s.");
        sb.AppendLine();
        sb.AppendLine("| workload | preferred | recovered in | time to 4 serving (s) | max unreachable |");
        sb.AppendLine("|---|---|---|---:|---:|");
        foreach (var c in critical)
            sb.AppendLine(ci, $"| {c.Name} | {c.Preferred} | {c.RecoveredIn} | {(c.RecoveredAt is { } a ? a.ToString("0.000", ci) : "not recovered")} | {c.MaxUnreachable} |");
        sb.AppendLine();
        sb.AppendLine(ci, $"Invariant violations: {violations.Count}. Tenant quotas: {quotas}.");
        sb.AppendLine();
        sb.AppendLine("Recovery budgets after the recovery (RecoveryBudget status):");
        sb.AppendLine();
        foreach (var l in budgets) sb.AppendLine(ci, $"    {l}");
        sb.AppendLine();
        int missed = fraudJobs.Count(f => f.Outcome == "missed");
        sb.AppendLine(ci, $"Fraud batch jobs (deadline {o.FraudDeadlineSeconds} s from creation, `spec.deadlineSeconds`): {missed} of {fraudJobs.Count} missed.");
        sb.AppendLine();
        sb.AppendLine("| fraud job | arrived | replicas | completed | took (s, creation to completion) | deadline |");
        sb.AppendLine("|---|---|---:|---:|---:|---|");
        foreach (var f in fraudJobs)
            sb.AppendLine(ci, $"| {f.Name} | {(f.AtLoss ? "just before" : "early")} | {f.Replicas} | {f.Completed} | {(f.CompletedAt is { } d ? d.ToString("0.000", ci) : "-")} | {f.Outcome} |");
        sb.AppendLine();
        sb.AppendLine(ci, $"Control-plane load during the recovery (Inspect Stats every 0.5 s from t=0): {load}.");
        foreach (var l in liveness) sb.AppendLine(ci, $"    {l}");
        sb.AppendLine();
        sb.AppendLine("![timeline](timeline.png)");
        File.WriteAllText(Path.Combine(dir, "README.md"), sb.ToString());
    }

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}

/// <summary>An <c>omega</c> child process of the drill (the same executable or omega.dll), its output collected.</summary>
internal sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _out = new();
    private readonly string _name;

    private ChildProcess(Process process, string name)
    {
        _process = process;
        _name = name;
    }

    public static ChildProcess Start(string name, string[] args)
    {
        // Run as 'dotnet omega.dll' when this process is 'dotnet omega.dll', else the same apphost.
        string self = Environment.ProcessPath ?? "dotnet";
        bool viaDotnet = Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (viaDotnet) psi.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start omega {name}");
        var c = new ChildProcess(p, name);
        p.OutputDataReceived += (_, e) => c.Append(e.Data, "");
        p.ErrorDataReceived += (_, e) => c.Append(e.Data, "stderr: ");
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return c;
    }

    private void Append(string? line, string prefix)
    {
        if (line is null) return;
        lock (_out) _out.Append(_name).Append(": ").Append(prefix).AppendLine(line);
    }

    public string Output { get { lock (_out) return _out.ToString(); } }

    public async Task WaitForAsync(string text, TimeSpan timeout, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited) throw new InvalidOperationException($"omega {_name} exited ({_process.ExitCode}) before printing '{text}'");
            if (sw.Elapsed > timeout) throw new TimeoutException($"omega {_name} did not print '{text}' within {timeout.TotalSeconds:0} s");
            await Task.Delay(50, cancel).ConfigureAwait(false);
        }
    }

    /// <summary>SIGKILL: the kernel closes its sockets, so the server sees every connection of it end at once.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
    }

    /// <summary>SIGTERM and wait (a clean stop: checkpoint), SIGKILL after the timeout.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (_process.HasExited) return;
        using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])) await term.WaitForExitAsync().ConfigureAwait(false);
        using var cts = new CancellationTokenSource(timeout);
        try { await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { Kill(); }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}

/// <summary>
/// Samples Inspect Stats (transactions by status, each scheduler's oldest queued job, evictions by reason) and
/// reports the recovery's control-plane load: commits per second and evictions per second between the first and
/// the last sample, their peak between two consecutive samples, and the largest queue age seen; <see cref="LoadBounds"/>
/// checks the samples.
/// </summary>
internal sealed class LoadSampler
{
    private readonly List<LoadSample> _samples = new();

    /// <summary>The samples so far, in time order.</summary>
    public IReadOnlyList<LoadSample> Samples => _samples;

    public async Task SampleAsync(ControlClient client, double t, CancellationToken cancel)
    {
        var (_, lines) = await client.InspectAsync(InspectTarget.Stats, 100, cancel).ConfigureAwait(false);
        _samples.Add(Parse(t, lines));
    }

    internal static LoadSample Parse(double t, IReadOnlyList<string> lines)
    {
        long commits = 0, wasted = 0, evictions = 0, rateLimited = 0;
        double age = 0;
        Dictionary<string, long>? rejected = null;
        foreach (var l in lines)
        {
            // "claims STATUS=N": why claims were refused (every status but Applied), so a bound exceeded names its cause.
            const string Cl = "claims ";
            if (l.StartsWith(Cl, StringComparison.Ordinal) && l.IndexOf('=') is int ce and > 0
                && long.TryParse(l.AsSpan(ce + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long cn))
            {
                string status = l[Cl.Length..ce];
                if (status != "Applied") (rejected ??= new(StringComparer.Ordinal))[status] = cn;
                continue;
            }
            // "transactions STATUS=N": Committed and PartiallyCommitted bound something; every other status bound nothing.
            const string Tx = "transactions ";
            if (l.StartsWith(Tx, StringComparison.Ordinal) && l.IndexOf('=') is int at and > 0
                && long.TryParse(l.AsSpan(at + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long n))
            {
                var status = l.AsSpan(Tx.Length, at - Tx.Length);
                if (status.SequenceEqual("Committed") || status.SequenceEqual("PartiallyCommitted")) commits += n;
                else wasted += n;
                continue;
            }
            bool evictionLine = l.StartsWith("lifecycle evictions ", StringComparison.Ordinal);
            foreach (var token in l.Split(' '))
            {
                int eq = token.IndexOf('=');
                if (eq < 0) continue;
                var key = token.AsSpan(0, eq);
                var value = token.AsSpan(eq + 1);
                if (key.SequenceEqual("oldest_queued_s") && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double a)) age = Math.Max(age, a);
                else if (evictionLine && long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long e))
                {
                    evictions += e;
                    // The regional signal evicts a lost region's nodes at once, outside the rate limit; every other reason is under it.
                    if (!key.SequenceEqual("region_lost")) rateLimited += e;
                }
            }
        }
        return new LoadSample(t, commits, wasted, evictions, rateLimited, age, rejected);
    }

    public string Summary(CultureInfo ci)
    {
        if (_samples.Count < 2) return "not sampled";
        var s0 = _samples[0];
        var s1 = _samples[^1];
        double span = Math.Max(1e-3, s1.T - s0.T), peakCommits = 0, peakEvictions = 0, maxAge = 0;
        for (int i = 0; i < _samples.Count; i++)
        {
            maxAge = Math.Max(maxAge, _samples[i].QueueAge);
            if (i == 0) continue;
            double dt = Math.Max(1e-3, _samples[i].T - _samples[i - 1].T);
            peakCommits = Math.Max(peakCommits, (_samples[i].Commits - _samples[i - 1].Commits) / dt);
            peakEvictions = Math.Max(peakEvictions, (_samples[i].Evictions - _samples[i - 1].Evictions) / dt);
        }
        return string.Create(ci, $"commits/s {(s1.Commits - s0.Commits) / span:0.0} (peak {peakCommits:0.0}), evictions/s {(s1.Evictions - s0.Evictions) / span:0.0} (peak {peakEvictions:0.0}), evictions {s1.Evictions - s0.Evictions}, max queue age {maxAge:0.000} s over {span:0.0} s ({_samples.Count} samples)");
    }
}
