using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Dst;
using Omega.Scheduling;

namespace Omega.Cli.Drill;

/// <summary>
/// The region-loss drill in virtual time (issue 13: "the same scenario at 100,000 nodes on the real commit code and
/// controllers"): the real <see cref="Cell"/> (commit path, recovery budgets), <see cref="SchedulingEngine"/> and
/// <see cref="WorkloadController"/> on a <see cref="ManualControllerScheduler"/> over the simulation clock
/// (<see cref="SimTime"/>), no network. Agents are modelled by a binding listener that reports each new binding started
/// at once and ready <c>--ready-seconds</c> later (virtual). The loss follows the lifecycle controller's regional path:
/// the region's nodes go down at t=0, and after the regional grace (2 s) plus one lifecycle tick (1 s) they are fenced
/// together and their bindings released and requeued. Measures per critical workload the virtual time until ≥ 4 replicas
/// serve in one healthy region, and the recovery budgets' consumption. An operator's zone-avoid <see cref="Override"/>
/// on one zone of the first failover region, created a second before the loss, expires during the recovery
/// (<c>--override-ttl-seconds</c>): the real <see cref="OverrideController"/> taints the zone and reverts it at the TTL;
/// nothing may be bound on the zone's nodes while it is live, and the revert must be recorded.
/// </summary>
internal static class VirtualRegionLoss
{
    private const int CriticalPriority = 1000;
    private static readonly string[] RegionNames = ["us-east", "eu-central", "ap-south", "us-west", "eu-north", "sa-east", "me-central", "af-south"];

    public static Command Create()
    {
        var regions = new Option<int>("--regions") { Description = "Regions (at least 3).", DefaultValueFactory = _ => 3 };
        var nodes = new Option<int>("--nodes-per-region") { Description = "Nodes per region.", DefaultValueFactory = _ => 100 };
        var ready = new Option<double>("--ready-seconds") { Description = "Virtual start + readiness time of a replica.", DefaultValueFactory = _ => 0.5 };
        var objective = new Option<double>("--objective-seconds") { Description = "The objective (virtual seconds).", DefaultValueFactory = _ => 10 };
        var budget = new Option<double>("--budget-cores") { Description = "Recovery budget per region, cores (0: none).", DefaultValueFactory = _ => 16 };
        var seed = new Option<int?>("--seed") { Description = "Engine seed (printed)." };
        var overrideTtl = new Option<int>("--override-ttl-seconds") { Description = "TTL of the zone-avoid override created 1 s before the loss (0: none).", DefaultValueFactory = _ => 5 };
        var cmd = new Command("region-loss-sim", "The region-loss drill in virtual time on the real cell, engine and controllers (no network).")
        {
            regions, nodes, ready, objective, budget, seed, overrideTtl,
        };
        cmd.SetAction((r, _) =>
        {
            int s = r.GetValue(seed) ?? Random.Shared.Next();
            int rc = r.GetValue(regions), n = r.GetValue(nodes);
            if (rc is < 3 or > 8 || n is < 4 or > 100_000 || !(r.GetValue(ready) > 0) || !(r.GetValue(objective) > 0) || r.GetValue(budget) < 0 || r.GetValue(overrideTtl) is < 0 or > 600)
            {
                Console.Error.WriteLine("omega drill region-loss-sim: --regions 3-8, --nodes-per-region 4-100,000; times positive, budget not negative, --override-ttl-seconds 0-600");
                return Task.FromResult(2);
            }
            return Task.FromResult(Run(rc, n, r.GetValue(ready), r.GetValue(objective), r.GetValue(budget), s, r.GetValue(overrideTtl)));
        });
        return cmd;
    }

    private sealed class Agents(Cell cell, SimTime time, TimeSpan ready) : IBindingListener
    {
        private readonly Queue<(long Due, Allocation A)> _pending = new();

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (change != BindingChange.Bound) return;
            _pending.Enqueue((time.GetTimestamp() + ready.Ticks, allocation));
        }

        public void OnVersionComplete(long version) { }

        // Started at once, ready after the delay: reported to the cell's lifecycle like an agent's TaskReports.
        public void Tick()
        {
            long now = time.GetTimestamp();
            while (_pending.Count > 0 && _pending.Peek().Due <= now)
            {
                var (_, a) = _pending.Dequeue();
                cell.ReportBindingPhase(a.Task, a.Node, a.Generation, BindingPhase.Started);
                cell.ReportBindingPhase(a.Task, a.Node, a.Generation, BindingPhase.Ready);
            }
        }
    }

    internal static int Run(int regionCount, int nodesPerRegion, double readySeconds, double objectiveSeconds, double budgetCores, int seed, int overrideTtlSeconds = 5)
    {
        var ci = CultureInfo.InvariantCulture;
        var wall = Stopwatch.StartNew();
        var time = new SimTime(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        string[] regions = [.. RegionNames.Take(regionCount)];
        string lost = regions[0];
        using var cell = new Cell(new CellOptions { Time = time, Name = "region-loss-sim" });
        var shape = ResourceVector.FromCoresAndGiB(8, 32);
        var byRegion = new Dictionary<string, List<NodeId>>();
        foreach (var region in regions)
        {
            byRegion[region] = new List<NodeId>(nodesPerRegion);
            for (int i = 0; i < nodesPerRegion; i++)
            {
                string zone = $"{region}-{(char)('a' + i % 3)}";
                _ = Topology.Merge(region, zone, null, out var labels);
                byRegion[region].Add(cell.AddNode(new NodeSpec($"{region}-{i}", shape, zone, labels)));
            }
            if (budgetCores > 0) cell.SetRecoveryBudget(region, ResourceVector.FromCoresAndGiB(budgetCores, 0), CriticalPriority, out _);
        }
        cell.CreateTenant("critical");
        cell.CreateTenant("analytics");
        using var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time, MaxObjects = 100_000 });
        var options = new SchedulingOptions { Time = time, Seed = seed };
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 5 });
        using var engine = new SchedulingEngine(cell, options);
        var scheduler = new ManualControllerScheduler(time);
        var agents = new Agents(cell, time, TimeSpan.FromSeconds(readySeconds));
        cell.AddBindingListener(agents);
        var controller = new WorkloadController(store, engine, time, new WorkloadControllerOptions { Observer = ReplicaObserver.AgentReported(cell) });
        using var runner = controller.CreateRunner(scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(10) });
        runner.Start();
        // The repair controller's override sweep on the same virtual clock (every second).
        using var overrides = new OverrideController(store, cell, scheduler);
        overrides.Start();

        void Step(TimeSpan by)
        {
            scheduler.RunUntilIdle();
            engine.RunUntilIdle();
            agents.Tick();
            scheduler.RunUntilIdle();
            time.Advance(by);
        }
        Workload W(string tenant, string name, int replicas, int priority, double cores, string[] preferred, string[] required)
            => new()
            {
                Metadata = new ObjectMeta { Name = name, Tenant = tenant },
                Spec = new WorkloadSpec
                {
                    Replicas = replicas, Priority = priority, MaxUnavailable = Math.Max(1, replicas / 4),
                    Resources = new ResourceRequest { CpuMillis = (long)(cores * 1000), MemoryBytes = 1L << 30 },
                    Topology = new WorkloadTopology { PreferredRegions = [.. preferred], RequiredRegions = [.. required] },
                },
            };
        bool Create(ApiObject w) => store.CreateAsync(w).AsTask().GetAwaiter().GetResult().IsOk;

        // Critical services live in the region that will be lost (required there until the loss, like the real drill's
        // starting state: ≥ 4 serving there and < 4 anywhere else), then prefer a different healthy region each.
        var critical = new[] { ("risk-api", regions[1]), ("billing-api", regions[2 % regions.Length]) };
        foreach (var (name, next) in critical)
            if (!Create(W("critical", name, 6, CriticalPriority, 2, [lost], [lost]))) throw new InvalidOperationException($"create {name}");
        // Best-effort filler: ~85 % of every region's CPU in 4-core replicas, at most 4,000 replicas per workload.
        long fillerPerRegion = (long)(nodesPerRegion * 8 * 0.85 / 4);
        int parts = 0;
        foreach (var region in regions)
            for (long left = fillerPerRegion; left > 0; left -= 4000)
                if (!Create(W("analytics", $"analytics-{region}-{parts++}", (int)Math.Min(4000, left), 0, 4, [], [region]))) throw new InvalidOperationException("create filler");
        Console.WriteLine(string.Create(ci, $"region-loss-sim: {regionCount} regions x {nodesPerRegion:N0} nodes (8 cores), seed {seed}, ready {readySeconds} s, budget {budgetCores} cores per region; filler {fillerPerRegion * regionCount:N0} replicas in {parts} workloads"));

        bool Serving(string name, int want, string? region)
        {
            var w = store.Get<Workload>("critical", name);
            if (w is null) return false;
            if (region is null) return w.Status.Serving >= want;
            return w.Status.ServingByRegion.TryGetValue(region, out int n) && n >= want;
        }
        int steps = 0;
        while (!(Serving("risk-api", 6, lost) && Serving("billing-api", 6, lost)))
        {
            Step(TimeSpan.FromMilliseconds(100));
            if (++steps > 20_000) { Console.Error.WriteLine("region-loss-sim: the starting state did not converge"); return 1; }
        }
        // Let the filler land (it preempts nothing: lower priority everywhere).
        for (int i = 0; i < 50; i++) Step(TimeSpan.FromMilliseconds(100));
        // Release the residency pin: from now on the critical services may fail over (the spec the real drill starts with).
        foreach (var (name, next) in critical)
        {
            var w = store.Get<Workload>("critical", name)!;
            w.Spec.Topology.RequiredRegions = [];
            w.Spec.Topology.PreferredRegions = [lost, next];
            if (!store.UpdateAsync(w).AsTask().GetAwaiter().GetResult().IsOk) throw new InvalidOperationException($"update {name}");
        }
        for (int i = 0; i < 10; i++) Step(TimeSpan.FromMilliseconds(100));
        // An operator avoids one zone of the first failover region, 1 s before the loss, with a TTL that ends during the
        // recovery: the failover must respect it while it lives and may use the zone once it is reverted.
        string avoidedZone = $"{regions[1]}-a";
        var avoidedNodes = new List<NodeId>();
        for (int i = 0; i < byRegion[regions[1]].Count; i += 3) avoidedNodes.Add(byRegion[regions[1]][i]); // zone "-a": index % 3 == 0 (above)
        if (overrideTtlSeconds > 0)
        {
            var ov = new Override { Metadata = new ObjectMeta { Name = "avoid-" + avoidedZone } };
            ov.Spec.Type = OverrideType.ZoneAvoid;
            ov.Spec.Target = avoidedZone;
            ov.Spec.TtlSeconds = overrideTtlSeconds;
            ov.Spec.Reason = "region-loss drill: suspected bad zone";
            ov.Spec.Author = "drill";
            if (!Create(ov)) throw new InvalidOperationException("create the zone-avoid override");
        }
        Override? Avoid() => overrideTtlSeconds > 0 ? store.Get<Override>("", "avoid-" + avoidedZone) : null;
        for (int i = 0; i < 30 && (i < 10 || (overrideTtlSeconds > 0 && Avoid() is not { Status.Phase: Override.PhaseActive })); i++) Step(TimeSpan.FromMilliseconds(100));
        // The version from which the taint is in place (the sweep tainted the nodes before it wrote phase Active).
        long avoidFrom = Avoid() is { Status.Phase: Override.PhaseActive } ? cell.Version : long.MaxValue;
        if (overrideTtlSeconds > 0 && avoidFrom == long.MaxValue) throw new InvalidOperationException("the zone-avoid override did not become active");
        Console.WriteLine(string.Create(ci, $"  setup {wall.Elapsed.TotalSeconds:0.0} s wall, {cell.AllocationCount:N0} bindings"));

        // ---------------------------------------------------------------- the loss (virtual t = 0)
        var t0 = time.Elapsed;
        var t0Utc = time.GetUtcNow();
        long commitsAt0 = cell.Counters.Transactions(TransactionStatus.Committed) + cell.Counters.Transactions(TransactionStatus.PartiallyCommitted);
        foreach (var n in byRegion[lost]) cell.SetNodeStatus(n, NodeStatus.Down);
        var recovered = new Dictionary<string, double>();
        bool evicted = false;
        double peakAge = 0;
        double? overrideExpiredAt = null;
        var overrideViolations = new List<string>();
        while ((time.Elapsed - t0).TotalSeconds < 120 && (recovered.Count < critical.Length || (overrideTtlSeconds > 0 && overrideExpiredAt is null)))
        {
            double t = (time.Elapsed - t0).TotalSeconds;
            if (!evicted && t >= 3.0)
            {
                // RegionLossGrace (2 s) + one lifecycle tick: fence every node first, then release and requeue.
                evicted = true;
                var released = new List<TaskId>();
                foreach (var n in byRegion[lost]) cell.SetNodeStatus(n, NodeStatus.Fenced);
                foreach (var n in byRegion[lost])
                    foreach (var a in cell.GetAllocationsOnNode(n))
                        if (cell.Release(a.Task, a.Generation) == ReleaseStatus.Released) released.Add(a.Task);
                engine.RequeueReleased(released);
            }
            foreach (var (name, _) in critical)
            {
                if (recovered.ContainsKey(name)) continue;
                var w = store.Get<Workload>("critical", name)!;
                foreach (var (region, n) in w.Status.ServingByRegion)
                    if (region != lost && n >= 4) { recovered[name] = t; break; }
            }
            // While the override lives nothing new may land on the avoided zone; note when the sweep reverts it.
            if (overrideTtlSeconds > 0 && overrideExpiredAt is null)
            {
                if (Avoid() is { Status.Phase: Override.PhaseExpired }) overrideExpiredAt = t;
                else
                    foreach (var n in avoidedNodes)
                        foreach (var a in cell.GetAllocationsOnNode(n))
                            if (a.Generation > avoidFrom && overrideViolations.Count < 5) overrideViolations.Add($"{a.Task} bound on {avoidedZone} at version {a.Generation} while avoided");
            }
            foreach (var k in engine.Kinds) peakAge = Math.Max(peakAge, engine.OldestQueuedAge(k).TotalSeconds);
            Step(TimeSpan.FromMilliseconds(50));
        }
        double span = Math.Max(1e-3, (time.Elapsed - t0).TotalSeconds);
        long commits = cell.Counters.Transactions(TransactionStatus.Committed) + cell.Counters.Transactions(TransactionStatus.PartiallyCommitted) - commitsAt0;
        var audit = cell.Audit();
        var lostSet = new HashSet<NodeId>(byRegion[lost]);
        bool inLost = cell.GetAllocations().Any(a => lostSet.Contains(a.Node));

        Console.WriteLine();
        Console.WriteLine($"  {"workload",-12} {"time to 4 serving (virtual)",28}");
        bool ok = audit.Count == 0 && !inLost && overrideViolations.Count == 0 && (overrideTtlSeconds == 0 || overrideExpiredAt is not null);
        var times = new List<double>();
        foreach (var (name, _) in critical)
        {
            bool got = recovered.TryGetValue(name, out double at);
            ok &= got && at <= objectiveSeconds;
            if (got) times.Add(at);
            Console.WriteLine($"  {name,-12} {(got ? at.ToString("0.000", ci) + " s" : "not recovered"),28}");
        }
        times.Sort();
        if (times.Count > 0) Console.WriteLine(string.Create(ci, $"  p50 {times[(times.Count - 1) / 2]:0.000} s, max {times[^1]:0.000} s (objective {objectiveSeconds} s, virtual)"));
        foreach (var region in regions)
            if (cell.GetRecoveryBudgetUsage(region) is { } u)
                Console.WriteLine(string.Create(ci, $"  budget {region}: allocated {u.Allocated.CpuMillis / 1000.0:0.#} cores, consumed {u.Consumed.CpuMillis / 1000.0:0.#} by {u.Consumers} failover replicas, exhausted {u.Exhausted}, backed {u.Backed}"));
        Console.WriteLine(string.Create(ci, $"  control-plane load: commits/s {commits / span:0.0} (virtual), max queue age {peakAge:0.000} s; claims refused by budgets {cell.Counters.Claims(ClaimStatus.RecoveryBudgetHeld)}"));
        if (overrideTtlSeconds > 0)
        {
            var ov = Avoid();
            int avoidedBindings = 0;
            foreach (var n in avoidedNodes) avoidedBindings += cell.GetAllocationsOnNode(n).Count;
            Console.WriteLine(string.Create(ci, $"  override zone-avoid {avoidedZone} (ttl {overrideTtlSeconds} s, created about 1 s before the loss): {(overrideExpiredAt is { } e ? $"expired and reverted at t={e:0.000} s (virtual), phase {ov?.Status.Phase}, revertedAt {(ov?.Status.RevertedAt is { } ra ? (ra - (t0Utc)).TotalSeconds.ToString("0.000", ci) + " s" : "none")}" : "NOT expired")}; {overrideViolations.Count} bindings on it while avoided; {avoidedBindings} bindings on its {avoidedNodes.Count} nodes at the end"));
            foreach (var v in overrideViolations) Console.WriteLine($"    violation: {v}");
        }
        Console.WriteLine($"  invariants: {(audit.Count == 0 ? "ok" : string.Join("; ", audit.Take(5)))}; bound in {lost} after the loss: {(inLost ? "YES" : "none")}");
        Console.WriteLine(string.Create(ci, $"  wall time {wall.Elapsed.TotalSeconds:0.0} s"));
        Console.WriteLine($"  objective: {(ok ? "met" : "NOT met")}");
        return ok ? 0 : 1;
    }
}
