using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Budgets;
using Omega.Scheduling;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Issue 13, item 3 wired to the engine: a <see cref="RegionalBudgetScheduler"/> per region places into the real
/// <see cref="SchedulingEngine"/> and cell inside a lease on a global budget, with no request to the global controller
/// per replica; its placements land in its own region; once its lease ends on its clock it stops spending (nothing more
/// reaches the engine), and the controller's reclaim makes the unspent part available to another region.
/// </summary>
public sealed class RegionalSchedulerTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly ResourceVector OneCore = ResourceVector.FromCoresAndGiB(1, 1);

    [Fact]
    public void Regional_schedulers_place_inside_their_leases_without_a_global_request_per_replica_and_stop_when_the_lease_lapses()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var regionOf = new Dictionary<NodeId, string>();
        foreach (var region in new[] { "us-east", "eu-central", "ap-south" })
            for (int i = 0; i < 4; i++)
            {
                Assert.Null(Topology.Merge(region, $"{region}-a", null, out var labels));
                regionOf[cell.AddNode(new NodeSpec($"{region}-{i}", ResourceVector.FromCoresAndGiB(8, 32), $"{region}-a", labels))] = region;
            }
        var tenant = cell.CreateTenant("t1");
        var options = new SchedulingOptions { Time = time, Seed = 13 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 3 });
        using var engine = new SchedulingEngine(cell, options);
        var global = new GlobalBudgetController(time);
        Assert.Equal(BudgetLeaseStatus.Ok, global.SetLimit("cpu", 10_000)); // 10 cores for every region together
        var lease = new RegionalBudgetOptions { LeaseCpuMillis = 6_000, LeaseTtl = TimeSpan.FromSeconds(10) };
        var us = new RegionalBudgetScheduler(global, engine, "us-east", "cpu", time, lease);
        var eu = new RegionalBudgetScheduler(global, engine, "eu-central", "cpu", time, lease);
        long nextJob = 1;
        JobSpec Job() => new(new JobId(nextJob++), tenant, 100, 1, OneCore);

        Assert.Equal(RegionalSubmitStatus.NoLease, us.Submit(Job()));
        Assert.Equal(BudgetLeaseStatus.Ok, us.Acquire());
        Assert.Equal(BudgetLeaseStatus.Ok, eu.Acquire());
        Assert.Equal(4_000, eu.Lease!.Amount); // what was left of the 10 cores
        long requests = global.Requests;

        // Spending is local: 6 + 4 one-core replicas, then each region is exhausted; not one request to the controller.
        var admitted = new List<(JobId Job, string Region)>();
        for (int i = 0; i < 6; i++) { var j = Job(); Assert.Equal(RegionalSubmitStatus.Accepted, us.Submit(j)); admitted.Add((j.Id, "us-east")); }
        Assert.Equal(RegionalSubmitStatus.BudgetExhausted, us.Submit(Job()));
        for (int i = 0; i < 4; i++) { var j = Job(); Assert.Equal(RegionalSubmitStatus.Accepted, eu.Submit(j)); admitted.Add((j.Id, "eu-central")); }
        Assert.Equal(RegionalSubmitStatus.BudgetExhausted, eu.Submit(Job()));
        Assert.Equal(requests, global.Requests);

        // The engine places them, each in the region whose scheduler admitted it (commit checked capacity and uniqueness).
        engine.RunUntilIdle();
        foreach (var (job, region) in admitted)
        {
            Assert.True(cell.TryGetAllocation(new TaskId(job, 0), out var a), $"{job} not bound");
            Assert.Equal(region, regionOf[a.Node]);
        }
        Assert.Empty(cell.Audit());

        // A renewal is one request per lease, whatever was spent; us-east gives 2 cores back by finishing two replicas.
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(BudgetLeaseStatus.Ok, us.Renew());
        Assert.Equal(requests + 1, global.Requests);
        for (int i = 0; i < 2; i++) Assert.Equal(ReleaseStatus.Released, engine.CompleteTask(new TaskId(admitted[i].Job, 0)));
        Assert.Equal(BudgetLeaseStatus.Ok, us.Lease!.Unspend(2_000));

        // eu-central's lease lapses on its clock (no renewal: a partition): it stops spending at once, before the
        // controller even looks, and nothing more reaches the engine from it.
        time.Advance(TimeSpan.FromSeconds(5));
        var fenced = Job();
        Assert.Equal(RegionalSubmitStatus.LeaseExpired, eu.Submit(fenced));
        Assert.False(engine.TryGetJob(fenced.Id, out _));
        Assert.Equal((4L, 1L), eu.Counts);
        // us-east renewed, so it still spends (from the 2 cores it gave back).
        Assert.Equal(RegionalSubmitStatus.Accepted, us.Submit(Job()));

        // After the drift allowance the controller settles eu's lease (4 cores spent stay committed); its renewal is
        // refused as stale and a new lease finds the budget exhausted until capacity is released.
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, global.Sweep());
        Assert.Equal(BudgetLeaseStatus.StaleLease, eu.Renew());
        Assert.Equal(BudgetLeaseStatus.Exhausted, eu.Acquire());
        Assert.Equal(RegionalSubmitStatus.NoLease, eu.Submit(Job()));
        Assert.True(global.InUse("cpu") <= 10_000);
        Assert.Equal(BudgetLeaseStatus.Ok, global.Release("cpu", 4_000)); // eu-central's replicas finished
        Assert.Equal(BudgetLeaseStatus.Ok, eu.Acquire());
        Assert.Equal(RegionalSubmitStatus.Accepted, eu.Submit(Job()));
        // A job whose residency excludes the region is refused by that region's scheduler, and nothing stays spent.
        long spent = eu.Lease!.Spent;
        var resident = new JobSpec(new JobId(nextJob++), tenant, 100, 1, OneCore) { Topology = new TopologyConstraints(["ap-south"], [], [], TopologySpread.None) };
        Assert.Equal(RegionalSubmitStatus.Rejected, eu.Submit(resident));
        Assert.Equal(spent, eu.Lease!.Spent);
        engine.RunUntilIdle();
        Assert.Empty(cell.Audit());
    }

    [Fact]
    public async Task Concurrent_submitters_of_several_regional_schedulers_admit_exactly_their_leases_and_the_regions_never_exceed_the_global_budget()
    {
        // Seeded stress: 3 regions, 2 submitter threads each, 40 one-core jobs per thread against 6-, 6- and 4-core leases
        // (16 of a 16-core budget); job sizes and interleaving vary with the seed (printed).
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } e ? int.Parse(e, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} replays the sizes)");
        for (int round = 0; round < 20; round++)
        {
            var rng = new Random(seed + round);
            var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
            using var cell = new Cell(new CellOptions { Time = time });
            string[] regions = ["us-east", "eu-central", "ap-south"];
            foreach (var region in regions)
                for (int i = 0; i < 4; i++)
                {
                    Assert.Null(Topology.Merge(region, $"{region}-a", null, out var labels));
                    cell.AddNode(new NodeSpec($"{region}-{i}", ResourceVector.FromCoresAndGiB(8, 32), $"{region}-a", labels));
                }
            var tenant = cell.CreateTenant("t1");
            var options = new SchedulingOptions { Time = time, Seed = seed + round };
            options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 3 });
            using var engine = new SchedulingEngine(cell, options);
            var global = new GlobalBudgetController(time);
            Assert.Equal(BudgetLeaseStatus.Ok, global.SetLimit("cpu", 16_000));
            var schedulers = new RegionalBudgetScheduler[regions.Length];
            for (int r = 0; r < regions.Length; r++)
            {
                schedulers[r] = new RegionalBudgetScheduler(global, engine, regions[r], "cpu", time, new RegionalBudgetOptions { LeaseCpuMillis = 6_000 });
                Assert.Equal(BudgetLeaseStatus.Ok, schedulers[r].Acquire());
            }
            long requests = global.Requests;
            long nextJob = 0;
            var admittedCpu = new long[regions.Length];
            var sizes = new long[6][];
            for (int t = 0; t < sizes.Length; t++) { sizes[t] = new long[40]; for (int j = 0; j < 40; j++) sizes[t][j] = 250 * rng.Next(1, 5); }
            var threads = new Task[6];
            for (int t = 0; t < threads.Length; t++)
            {
                int r = t % regions.Length, me = t;
                threads[t] = Task.Factory.StartNew(() =>
                {
                    foreach (long cpu in sizes[me])
                    {
                        var job = new JobSpec(new JobId(Interlocked.Increment(ref nextJob)), tenant, 100, 1, new ResourceVector(cpu, 1L << 28));
                        var s = schedulers[r].Submit(job);
                        Assert.True(s is RegionalSubmitStatus.Accepted or RegionalSubmitStatus.BudgetExhausted, s.ToString());
                        if (s == RegionalSubmitStatus.Accepted) Interlocked.Add(ref admittedCpu[r], cpu);
                    }
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            await Task.WhenAll(threads).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(requests, global.Requests); // no request per placement
            long total = 0;
            for (int r = 0; r < regions.Length; r++)
            {
                Assert.Equal(admittedCpu[r], schedulers[r].Lease!.Spent);
                Assert.True(admittedCpu[r] <= schedulers[r].Lease!.Amount, $"seed {seed + round}: {regions[r]} admitted {admittedCpu[r]} of {schedulers[r].Lease!.Amount}");
                total += admittedCpu[r];
            }
            Assert.True(total <= 16_000, $"seed {seed + round}: {total} admitted of a 16,000 budget");
            engine.RunUntilIdle();
            long bound = 0;
            foreach (var a in cell.GetAllocations()) bound += a.Resources.CpuMillis;
            Assert.Equal(total, bound); // every admitted job placed (the cell has room), nothing else
            Assert.Empty(cell.Audit());
        }
    }
    [Fact]
    public void The_router_takes_a_new_lease_when_the_rest_of_the_held_one_is_smaller_than_a_replica_and_gives_ended_spends_back()
    {
        // RegionalBudgetRouter (the served product's routing): a lease of 1 core and replicas of 0.6 core. The second
        // replica does not fit the 0.4 core left; the router asks for a new lease (returning the old one's rest) instead
        // of refusing every replica until the old lease expired. A replica's spend comes back when it is released.
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        Assert.Null(Topology.Merge("us-east", "us-east-a", null, out var labels));
        cell.AddNode(new NodeSpec("us-east-0", ResourceVector.FromCoresAndGiB(8, 32), "us-east-a", labels));
        var tenant = cell.CreateTenant("t1");
        var options = new SchedulingOptions { Time = time, Seed = 13 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 3 });
        using var engine = new SchedulingEngine(cell, options);
        var router = new RegionalBudgetRouter(engine, time, new RegionalBudgetRouterOptions { Enabled = true, LeaseCpuMillis = 1_000, TenantCpuMillis = 10_000, AcquireRetry = TimeSpan.Zero });
        JobSpec Replica(long id) => new(new JobId(id), tenant, 100, 1, new ResourceVector(600, 1L << 30))
        {
            Origin = new JobOrigin("t1", "api", 1, (int)id),
            Topology = new TopologyConstraints(["us-east"], null, null, TopologySpread.None),
        };
        Assert.Equal(Omega.ControlPlane.Controllers.ReplicaRouteStatus.Accepted, router.Submit(Replica(1), "service").Status);
        Assert.Equal(Omega.ControlPlane.Controllers.ReplicaRouteStatus.Accepted, router.Submit(Replica(2), "service").Status);
        Assert.Equal(2, router.Global.Acquires);
        Assert.Equal(1_200, router.Global.InUse(RegionalBudgetRouter.BudgetOf("t1")));
        // A replica without a required region is not the router's.
        Assert.Equal(Omega.ControlPlane.Controllers.ReplicaRouteStatus.NotRouted,
            router.Submit(new JobSpec(new JobId(3), tenant, 100, 1, OneCore) { Origin = new JobOrigin("t1", "api", 1, 3) }, "service").Status);
        engine.RunUntilIdle();
        Assert.True(cell.TryGetAllocation(new TaskId(new JobId(2), 0), out _));
        router.Released(new JobId(1)); // its lease was returned (settled): off the committed usage
        router.Released(new JobId(2)); // from the live lease
        router.Released(new JobId(2)); // idempotent
        Assert.Equal(0, router.Global.InUse(RegionalBudgetRouter.BudgetOf("t1")));
        Assert.Empty(cell.Audit());
    }
}
