using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Budgets;
using Omega.ControlPlane.Controllers;

namespace Omega.Hosting.Tests;

/// <summary>
/// Issue 13, item 3 in the served product: with <c>Omega:RegionalBudgets:Enabled</c> the host's workload controller hands
/// every replica that requires a region to that region's scheduler, which spends its budget lease — one acquire per region,
/// none per replica — and a region whose budget the global policy revoked stops spending it: its new replicas stay pending
/// with the reason while the other region goes on, until the revocation is lifted. Spends of replicas that end come back.
/// </summary>
public sealed class RegionalBudgetHostingTests
{
    [Fact]
    public async Task Regional_schedulers_in_the_host_place_inside_their_leases_and_a_region_whose_budget_is_revoked_stops_spending_it()
    {
        int port = FreePort();
        var config = new Dictionary<string, string?>
        {
            ["Omega:CellName"] = "regional-budgets",
            ["Omega:InMemory"] = "true",
            ["Omega:Listen"] = $"127.0.0.1:{port}",
            ["Omega:Tenants:0"] = "shop",
            ["Omega:RegionalBudgets:Enabled"] = "true",
            ["Omega:RegionalBudgets:TenantCpuMillis"] = "100000",
            ["Omega:RegionalBudgets:LeaseCpuMillis"] = "4000",
            // A long lease renewed often: it never runs out on a loaded machine, and a revocation is heard within 200 ms.
            ["Omega:RegionalBudgets:LeaseTtl"] = "00:01:00",
            ["Omega:RegionalBudgets:RenewEvery"] = "00:00:00.2",
            ["Omega:RegionalBudgets:AcquireRetry"] = "00:00:00.2",
        };
        await using var east = Agent(port, "east-1", "us-east");
        await using var west = Agent(port, "west-1", "eu-central");
        using var host = TestHost.Build(config);
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        await host.StartAsync();
        try
        {
            await east.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
            await west.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var router = Assert.IsType<RegionalBudgetRouter>(runtime.RegionalBudgets);
            string budget = RegionalBudgetRouter.BudgetOf("shop");

            // 4 + 4 replicas of 500 millicores, each workload pinned to its region: one lease per region, no request per replica.
            await CreateAsync(runtime, "api-east", "us-east", 4);
            await CreateAsync(runtime, "api-west", "eu-central", 4);
            await UntilBoundAsync(runtime, "api-east", 4);
            await UntilBoundAsync(runtime, "api-west", 4);
            Assert.Equal(2, router.Global.Acquires);
            Assert.Equal((4, 0), (router.SchedulerFor("us-east", "shop")!.Counts.Admitted, router.SchedulerFor("us-east", "shop")!.Counts.FencedByExpiry));
            Assert.Equal(4, router.SchedulerFor("eu-central", "shop")!.Counts.Admitted);
            Assert.Equal(4000, router.Global.InUse(budget));
            AssertAllIn(runtime, "api-east", "us-east");
            AssertAllIn(runtime, "api-west", "eu-central");

            // The global policy revokes us-east's share: its scheduler hears it at the next renewal and drops its lease.
            Assert.Equal(BudgetLeaseStatus.Ok, router.Global.Revoke(budget, "us-east", TimeSpan.FromHours(1)));
            await TestHost.UntilAsync(() => Task.FromResult(router.SchedulerFor("us-east", "shop")!.Lease is null), "us-east's scheduler dropped its revoked lease", TimeSpan.FromSeconds(60));
            await ScaleAsync(runtime, "api-east", 6);
            await ScaleAsync(runtime, "api-west", 6);
            await UntilBoundAsync(runtime, "api-west", 6);
            await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "api-east").Status.PendingReason is { } r && r.Contains("RegionalBudgetNoLease", StringComparison.Ordinal)),
                "api-east's new replicas pending for want of a lease", TimeSpan.FromSeconds(60));
            // Nothing more was spent in us-east, nor bound there: the two new replicas never reached the engine.
            Assert.Equal(4, router.SchedulerFor("us-east", "shop")!.Counts.Admitted);
            Assert.Equal(4, Bound(runtime, "api-east"));
            Assert.Equal(4, Read(runtime, "api-east").Status.Bound);
            Assert.Equal(5000, router.Global.InUse(budget));

            // Lifted: us-east takes a new lease (one acquire) and places the two.
            Assert.Equal(BudgetLeaseStatus.Ok, router.Global.Revoke(budget, "us-east", TimeSpan.Zero));
            await UntilBoundAsync(runtime, "api-east", 6);
            AssertAllIn(runtime, "api-east", "us-east");
            // A new lease (the revoked one stays counted until its reclaim), from which exactly the two new replicas were spent.
            var fresh = router.SchedulerFor("us-east", "shop")!.Lease;
            Assert.NotNull(fresh);
            Assert.Equal(1000, fresh.Spent);
            Assert.Equal(6000, router.Global.InUse(budget));

            // Replicas that end give their spend back (exactly: the revoked lease's part comes off what it settled).
            await ScaleAsync(runtime, "api-west", 2);
            await ScaleAsync(runtime, "api-east", 3);
            await TestHost.UntilAsync(() => Task.FromResult(router.Global.InUse(budget) == 2500 && Bound(runtime, "api-west") == 2 && Bound(runtime, "api-east") == 3),
                $"the spends of the removed replicas given back (in use {router.Global.InUse(budget)})", TimeSpan.FromSeconds(60));
            Assert.Empty(runtime.Cell.Audit());
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task A_tenants_RegionalBudget_object_sets_its_global_budget_and_region_caps_which_its_status_reports_and_a_raised_cap_lets_pending_replicas_in()
    {
        // Issue 13, item 3: per-tenant budgets as durable objects (not one in-memory setting for every tenant). The host's
        // default is 100 cores per tenant; shop's RegionalBudget sets 40 cores and caps us-east at 2 cores (4 replicas of
        // 0.5 core): a fifth and sixth replica in us-east stay pending with the reason while eu-central goes on; the status
        // shows the limit, the spend per region and the exhausted cap; raising the cap lets them in; a second object of the
        // same tenant is a duplicate; deleting the object puts the host's default back.
        int port = FreePort();
        var config = new Dictionary<string, string?>
        {
            ["Omega:CellName"] = "regional-budget-objects",
            ["Omega:InMemory"] = "true",
            ["Omega:Listen"] = $"127.0.0.1:{port}",
            ["Omega:Tenants:0"] = "shop",
            ["Omega:RegionalBudgets:Enabled"] = "true",
            ["Omega:RegionalBudgets:TenantCpuMillis"] = "100000",
            ["Omega:RegionalBudgets:LeaseCpuMillis"] = "4000",
            ["Omega:RegionalBudgets:LeaseTtl"] = "00:01:00",
            ["Omega:RegionalBudgets:RenewEvery"] = "00:00:00.2",
            ["Omega:RegionalBudgets:AcquireRetry"] = "00:00:00.2",
        };
        await using var east = Agent(port, "east-1", "us-east");
        await using var west = Agent(port, "west-1", "eu-central");
        using var host = TestHost.Build(config);
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        await host.StartAsync();
        try
        {
            await east.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
            await west.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var router = Assert.IsType<RegionalBudgetRouter>(runtime.RegionalBudgets);
            string budget = RegionalBudgetRouter.BudgetOf("shop");
            var created = await runtime.Objects.CreateAsync(new RegionalBudget
            {
                Metadata = new ObjectMeta { Name = "shop-budget", Tenant = "shop" },
                Spec = new RegionalBudgetSpec { CpuMillis = 40_000, Regions = new() { ["us-east"] = 2_000 } },
            });
            Assert.True(created.IsOk, created.Message);
            await TestHost.UntilAsync(() => Task.FromResult(ReadBudget(runtime, "shop-budget").Status.LimitMillis == 40_000), "the budget applied (status.limitMillis)", TimeSpan.FromSeconds(60));
            Assert.Equal(40_000, router.Global.Get(budget).Limit);
            var applied = Conditions.Find(ReadBudget(runtime, "shop-budget").Status.Conditions, "Applied");
            Assert.Equal((ConditionStatus.True, "Applied"), (applied!.Status, applied.Reason));
            // An invalid one is refused with the field named.
            var bad = await runtime.Objects.CreateAsync(new RegionalBudget { Metadata = new ObjectMeta { Name = "bad", Tenant = "shop" }, Spec = new RegionalBudgetSpec { CpuMillis = 0 } });
            Assert.Equal(ObjectStatus.Invalid, bad.Status);

            await CreateAsync(runtime, "api-east", "us-east", 6);
            await CreateAsync(runtime, "api-west", "eu-central", 6);
            await UntilBoundAsync(runtime, "api-west", 6);
            await UntilBoundAsync(runtime, "api-east", 4);
            await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "api-east").Status.PendingReason is { } r && r.Contains("RegionalBudgetRegionCap", StringComparison.Ordinal)),
                "api-east's fifth and sixth replicas pending on the region cap", TimeSpan.FromSeconds(60));
            Assert.Equal(4, Bound(runtime, "api-east"));
            await TestHost.UntilAsync(() => Task.FromResult(Conditions.Find(ReadBudget(runtime, "shop-budget").Status.Conditions, "Exhausted") is { Status: ConditionStatus.True }),
                "the status reports the us-east cap reached", TimeSpan.FromSeconds(60));
            var status = ReadBudget(runtime, "shop-budget").Status;
            var eastRow = Assert.Single(status.Regions, r => r.Region == "us-east");
            Assert.Equal((2_000L, (long?)2_000, true), (eastRow.SpentMillis, eastRow.CapMillis, eastRow.Exhausted));
            Assert.True(eastRow.RefusedByCap > 0);
            var westRow = Assert.Single(status.Regions, r => r.Region == "eu-central");
            Assert.Equal((3_000L, (long?)null, false), (westRow.SpentMillis, westRow.CapMillis, westRow.Exhausted));
            Assert.Equal(5_000, status.InUseMillis);
            AssertAllIn(runtime, "api-east", "us-east");

            // A second object for the same tenant is not in effect.
            var dup = await runtime.Objects.CreateAsync(new RegionalBudget { Metadata = new ObjectMeta { Name = "shop-second", Tenant = "shop" }, Spec = new RegionalBudgetSpec { CpuMillis = 1_000 } });
            Assert.True(dup.IsOk, dup.Message);
            await TestHost.UntilAsync(() => Task.FromResult(Conditions.Find(ReadBudget(runtime, "shop-second").Status.Conditions, "Applied") is { Status: ConditionStatus.False, Reason: "Duplicate" }),
                "the second object reports Duplicate", TimeSpan.FromSeconds(60));
            Assert.Equal(40_000, router.Global.Get(budget).Limit);
            Assert.True((await runtime.Objects.DeleteAsync(new ObjectKey(RegionalBudget.KindName, "shop", "shop-second"))).IsOk);

            // The operator raises the cap: the pending replicas get in, in us-east.
            for (int attempt = 0; ; attempt++)
            {
                var b = ReadBudget(runtime, "shop-budget");
                b.Spec.Regions["us-east"] = 3_000;
                var u = await runtime.Objects.UpdateAsync(b);
                if (u.IsOk) break;
                Assert.True(attempt < 50, u.Message);
            }
            await UntilBoundAsync(runtime, "api-east", 6);
            AssertAllIn(runtime, "api-east", "us-east");

            // Deleted: the host's default budget is back (and no cap).
            Assert.True((await runtime.Objects.DeleteAsync(new ObjectKey(RegionalBudget.KindName, "shop", "shop-budget"))).IsOk);
            await TestHost.UntilAsync(() => Task.FromResult(router.Global.Get(budget).Limit == 100_000), "the default budget back after the delete", TimeSpan.FromSeconds(60));
            Assert.Empty(runtime.Cell.Audit());
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static RegionalBudget ReadBudget(OmegaRuntime r, string name) => Assert.IsType<RegionalBudget>(r.Objects.Get(new ObjectKey(RegionalBudget.KindName, "shop", name)).Object);

    private static AgentClient Agent(int port, string name, string region) => new(new AgentOptions
    {
        Server = new IPEndPoint(IPAddress.Loopback, port), NodeName = name, Region = region, Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 13,
        ReadyAfter = TimeSpan.FromMilliseconds(20), ReconnectMax = TimeSpan.FromMilliseconds(200),
    });

    private static async Task CreateAsync(OmegaRuntime runtime, string name, string region, int replicas)
    {
        var w = new Workload
        {
            Metadata = new ObjectMeta { Name = name, Tenant = "shop" },
            Spec = new WorkloadSpec
            {
                Replicas = replicas, Resources = new ResourceRequest { CpuMillis = 500, MemoryBytes = 1L << 30 },
                Topology = new WorkloadTopology { RequiredRegions = [region] },
            },
        };
        var r = await runtime.Objects.CreateAsync(w);
        Assert.True(r.IsOk, r.Message);
    }

    private static async Task ScaleAsync(OmegaRuntime runtime, string name, int replicas)
    {
        for (int attempt = 0; ; attempt++)
        {
            var w = Read(runtime, name);
            w.Spec.Replicas = replicas;
            var r = await runtime.Objects.UpdateAsync(w);
            if (r.IsOk) return;
            Assert.True(attempt < 50, r.Message); // conflicts with the controller's status writes: read again
        }
    }

    private static Task UntilBoundAsync(OmegaRuntime runtime, string name, int n) =>
        TestHost.UntilAsync(() => Task.FromResult(Bound(runtime, name) == n && Read(runtime, name).Status.Bound == n), $"{name}: {n} replicas bound", TimeSpan.FromSeconds(60));

    private static int Bound(OmegaRuntime runtime, string name)
    {
        long uid = Read(runtime, name).Metadata.Uid;
        int n = 0;
        foreach (var a in runtime.Cell.GetAllocations())
            if ((a.Task.Job.Value & WorkloadController.JobIdSpace) != 0 && (a.Task.Job.Value & ~WorkloadController.JobIdSpace) >> WorkloadController.SerialBits == uid) n++;
        return n;
    }

    private static void AssertAllIn(OmegaRuntime runtime, string name, string region)
    {
        long uid = Read(runtime, name).Metadata.Uid;
        var snap = runtime.Cell.Snapshot();
        foreach (var a in runtime.Cell.GetAllocations())
            if ((a.Task.Job.Value & WorkloadController.JobIdSpace) != 0 && (a.Task.Job.Value & ~WorkloadController.JobIdSpace) >> WorkloadController.SerialBits == uid)
            {
                Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(a.Node, out var v));
                Assert.Equal(region, v.Spec.Region);
            }
    }

    private static Workload Read(OmegaRuntime r, string name) => Assert.IsType<Workload>(r.Objects.Get(new ObjectKey(Workload.KindName, "shop", name)).Object);

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }
}
