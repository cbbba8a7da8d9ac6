using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;

namespace Omega.Hosting.Tests;

/// <summary>
/// The rest of the control plane runs in a real host (issue 12, cpfin): the quota controller applies Quota objects, the
/// repair controller releases a leaked reservation, the promoted SchedulerPolicy revision is what the engine uses (also
/// after a restart), and the decision archive is durable (explain over the wire after a restart).
/// </summary>
public sealed class ControlPlaneWiringTests
{
    private static Dictionary<string, string?> Config(string dir, int port) => new()
    {
        ["Omega:CellName"] = "cp-wiring",
        ["Omega:InMemory"] = "false",
        ["Omega:DataDirectory"] = dir,
        ["Omega:Listen"] = $"127.0.0.1:{port}",
        ["Omega:Tenants:0"] = "shop",
        ["Omega:Storage:CheckpointInterval"] = "01:00:00",
    };

    // The repair sweep every 100 ms (default 5 s): an orphan is released at the second sweep that sees it.
    private static void Fast(OmegaOptions o) => o.RepairController.Interval = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task Quota_repair_policy_revisions_and_the_decision_archive_run_in_the_host_and_survive_a_restart()
    {
        string dir = TestHost.TempDirectory();
        int port = FreePort();
        try
        {
            await using var agent = new AgentClient(new AgentOptions
            {
                Server = new IPEndPoint(IPAddress.Loopback, port), NodeName = "node-w", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 5,
                ReadyAfter = TimeSpan.FromMilliseconds(50), ReconnectMax = TimeSpan.FromMilliseconds(200),
            });
            long generation;
            int revision;
            using (var host = TestHost.Build(Config(dir, port), configure: Fast))
            {
                var runtime = host.Services.GetRequiredService<OmegaRuntime>();
                await host.StartAsync();
                await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(0, runtime.Engine.Policy!.Current.Revision);

                // Policy: staged and promoted through the runtime; the engine's source is the one published.
                Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":2}}""", out var settings, out var error), error);
                var staged = await runtime.Policies.StageAsync(settings);
                Assert.Equal(PolicyStatus.Ok, staged.Status);
                Assert.Equal(PolicyStatus.Ok, (await runtime.Policies.PromoteAsync(staged.Revision)).Status);
                revision = staged.Revision;
                Assert.Equal(revision, runtime.Engine.Policy.Current.Revision);

                // Quota: a Quota object becomes the tenant's hard limit in the cell (the quota controller runs).
                var quota = new Quota { Metadata = new ObjectMeta { Name = "shop-quota", Tenant = "shop" }, Spec = new QuotaSpec { Limit = new ResourceRequest { CpuMillis = 6000, MemoryBytes = 24L << 30 } } };
                Assert.True((await runtime.Objects.CreateAsync(quota)).IsOk);
                Assert.True(runtime.Cell.TryGetTenant("shop", out var shop));
                await TestHost.UntilAsync(() => Task.FromResult(runtime.Cell.GetTenantUsage(shop).Quota is { } q && q.CpuMillis == 6000), "the quota applied to the cell");

                // A workload places through the promoted policy; its decisions are archived.
                var web = new Workload { Metadata = new ObjectMeta { Name = "web", Tenant = "shop" }, Spec = new WorkloadSpec { Replicas = 2, Resources = new ResourceRequest { CpuMillis = 500, MemoryBytes = 1L << 30 } } };
                var created = await runtime.Objects.CreateAsync(web);
                Assert.True(created.IsOk, created.Message);
                generation = created.Object!.Metadata.Generation;
                await TestHost.UntilAsync(() => Task.FromResult(Read(runtime).Status is { Bound: 2, Ready: 2 }), "two ready replicas");
                await TestHost.UntilAsync(async () => { await runtime.Decisions.FlushAsync(); return runtime.Decisions.For("shop", "web", generation).Count > 0; }, "decisions archived");
                Assert.All(runtime.Decisions.For("shop", "web", generation), d => Assert.Equal(revision, d.Spec.PolicyRevision));

                // A reservation held for a workload uid that has no object: leaked. The repair controller releases it.
                Assert.True(runtime.Cell.TryGetNodeId("node-w", out var node));
                var lease = runtime.Cell.AcquireLease("leaky", TimeSpan.FromMinutes(5)).Lease;
                var leaked = WorkloadController.TaskFor(created.Object.Metadata.Uid + 1000, 0);
                var tx = new Transaction(lease);
                tx.Add(new Claim(leaked, node, new ResourceVector(500, 1 << 20), 0, shop, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromHours(1)));
                Assert.Equal(TransactionStatus.Committed, runtime.Cell.Commit(tx).Status);
                Assert.True(runtime.Cell.TryGetReservation(leaked, out _));
                // Both: the controller counts its action just after the release, so the reservation can be seen gone first.
                await TestHost.UntilAsync(() => Task.FromResult(!runtime.Cell.TryGetReservation(leaked, out _) && runtime.Repair!.Actions(RepairKind.LeakedReservation) >= 1), "the leaked reservation released by the repair controller");
                Assert.Equal(1, runtime.Repair!.Actions(RepairKind.LeakedReservation));
                Assert.Equal(2, runtime.Cell.GetAllocations().Count(a => (a.Task.Job.Value & WorkloadController.JobIdSpace) != 0)); // the live workload's bindings untouched
                await host.StopAsync();
            }

            using (var again = TestHost.Build(Config(dir, port), configure: Fast))
            {
                var runtime = again.Services.GetRequiredService<OmegaRuntime>();
                await again.StartAsync();
                // The promoted revision is loaded before the workers place anything.
                Assert.Equal(revision, runtime.Policies.ActiveRevision);
                Assert.Equal(revision, runtime.Engine.Policy!.Current.Revision);
                // The archive is durable: explain over the wire (the server's Decisions) finds the generation's records.
                Assert.NotEmpty(runtime.Decisions.For("shop", "web", generation));
                await using var client = await ControlClient.ConnectAsync(runtime.EndPoint);
                var (found, text) = await client.ExplainWorkloadAsync("shop", "web", generation);
                Assert.True(found, text);
                Assert.Contains($"with policy r{revision}", text, StringComparison.Ordinal);
                Assert.False(runtime.Cell.TryGetReservation(WorkloadController.TaskFor(Read(runtime).Metadata.Uid + 1000, 0), out _));
                Assert.Empty(runtime.Cell.Audit());
                await again.StopAsync();
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_rollout_replaces_replicas_within_surge_and_a_new_revision_that_never_gets_ready_is_rolled_back()
    {
        int port = FreePort();
        var config = Config(TestHost.TempDirectory(), port);
        config["Omega:InMemory"] = "true";
        config["Omega:DataDirectory"] = null;
        using var host = TestHost.Build(config);
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        await host.StartAsync();
        // "good" reports every replica ready; "bad" never does (a readiness probe that keeps failing).
        await using var good = new AgentClient(new AgentOptions
        {
            Server = runtime.EndPoint, NodeName = "good", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 6,
            Labels = new Dictionary<string, string> { ["pool"] = "good" }, ReadyAfter = TimeSpan.FromMilliseconds(50),
        });
        await using var bad = new AgentClient(new AgentOptions
        {
            Server = runtime.EndPoint, NodeName = "bad", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 7,
            Labels = new Dictionary<string, string> { ["pool"] = "bad" },
        });
        await good.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await bad.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));

        var web = new Workload
        {
            Metadata = new ObjectMeta { Name = "web", Tenant = "shop" },
            Spec = new WorkloadSpec
            {
                Replicas = 3, MaxSurge = 1, MaxUnavailable = 1, ProgressDeadlineSeconds = 3,
                Resources = new ResourceRequest { CpuMillis = 500, MemoryBytes = 1L << 30 }, NodeSelector = { ["pool"] = "good" },
            },
        };
        Assert.True((await runtime.Objects.CreateAsync(web)).IsOk);
        await TestHost.UntilAsync(() => Task.FromResult(Read(runtime).Status is { Serving: 3, Rollout.Phase: RolloutPhases.Complete }), "3 serving");

        // A new template (more CPU): replicas replaced one surge at a time, never more than 3 + 1 bindings.
        var w = Read(runtime);
        w.Spec.Resources.CpuMillis = 700;
        var updated = await runtime.Objects.UpdateAsync(w);
        Assert.True(updated.IsOk, updated.Message);
        long generation = updated.Object!.Metadata.Generation;
        int most = 0;
        await TestHost.UntilAsync(() =>
        {
            var b = Bindings(runtime);
            most = Math.Max(most, b.Count);
            return Task.FromResult(b.Count == 3 && b.All(a => a.Resources.CpuMillis == 700) && Read(runtime).Status is { Serving: 3, Rollout.Phase: RolloutPhases.Complete });
        }, "the new revision serving everywhere");
        Assert.InRange(most, 3, 4);
        var rolled = Read(runtime);
        Assert.Equal((generation, generation), (rolled.Status.Rollout.Revision, rolled.Status.Rollout.StableRevision));
        Assert.Equal((3, 3, 3), (rolled.Status.Rollout.Updated, rolled.Status.Rollout.UpdatedReady, rolled.Status.Rollout.UpdatedServing));
        Assert.True(Conditions.IsTrue(rolled.Status.Conditions, RolloutController.RolloutComplete));

        // A revision whose replicas bind (on "bad") but never get ready: rolled back after the 3 s deadline.
        rolled.Spec.NodeSelector["pool"] = "bad";
        var failing = await runtime.Objects.UpdateAsync(rolled);
        Assert.True(failing.IsOk, failing.Message);
        Assert.True(runtime.Cell.TryGetNodeId("bad", out var badNode));
        bool boundOnBad = false;
        await TestHost.UntilAsync(() =>
        {
            boundOnBad |= Bindings(runtime).Any(a => a.Node == badNode);
            return Task.FromResult(Read(runtime).Status.Rollout.Phase == RolloutPhases.RolledBack);
        }, "rolled back");
        Assert.True(boundOnBad); // the new replicas were placed: they failed readiness, not placement
        var back = Read(runtime);
        var condition = Conditions.Find(back.Status.Conditions, RolloutController.RolledBack)!;
        Assert.Equal((ConditionStatus.True, "ProgressDeadlineExceeded"), (condition.Status, condition.Reason));
        Assert.Contains($"rolled back to revision {generation}", condition.Message, StringComparison.Ordinal);
        Assert.Equal(failing.Object!.Metadata.Generation, back.Status.Rollout.FailedRevision);
        // Converges on the stable template: 3 serving on "good", nothing left on "bad", the spec left as written.
        await TestHost.UntilAsync(() => Task.FromResult(Bindings(runtime) is { Count: 3 } b && b.All(a => a.Node != badNode && a.Resources.CpuMillis == 700)
            && Read(runtime).Status is { Serving: 3, Bound: 3 }), "back on the stable revision");
        Assert.Equal("bad", Read(runtime).Spec.NodeSelector["pool"]);
        Assert.Empty(runtime.Cell.Audit());
        await host.StopAsync();
    }

    private static List<Allocation> Bindings(OmegaRuntime r) => r.Cell.GetAllocations().Where(a => (a.Task.Job.Value & WorkloadController.JobIdSpace) != 0).ToList();

    private static Workload Read(OmegaRuntime r) => Assert.IsType<Workload>(r.Objects.Get(new ObjectKey(Workload.KindName, "shop", "web")).Object);

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }
}
