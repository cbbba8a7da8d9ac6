using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;

namespace Omega.Hosting.Tests;

/// <summary>
/// The control plane inside the host (issue 12): the hosted service opens the object store on the store's cell and runs
/// the workload controller; replica readiness comes from what agents report (TaskState Running, then Ready).
/// </summary>
public sealed class ControlPlaneHostingTests
{
    private static Workload Web(string name, int replicas, double minReadySeconds = 0) => new()
    {
        Metadata = new ObjectMeta { Name = name, Tenant = "shop" },
        Spec = new WorkloadSpec { Type = WorkloadType.Service, Replicas = replicas, Resources = new ResourceRequest { CpuMillis = 500, MemoryBytes = 1L << 30 }, MinReadySeconds = minReadySeconds },
    };

    private static Dictionary<string, string?> Config(string? dir, int port) => new()
    {
        ["Omega:CellName"] = "cp-hosting",
        ["Omega:InMemory"] = dir is null ? "true" : "false",
        ["Omega:DataDirectory"] = dir,
        ["Omega:Listen"] = $"127.0.0.1:{port}",
        ["Omega:Tenants:0"] = "shop",
        ["Omega:Storage:CheckpointInterval"] = "01:00:00",
    };

    private static Workload Read(OmegaRuntime r, string name) => Assert.IsType<Workload>(r.Objects.Get(new ObjectKey(Workload.KindName, "shop", name)).Object);

    private static int ControlPlaneBindings(Cell cell) => cell.GetAllocations().Count(a => (a.Task.Job.Value & WorkloadController.JobIdSpace) != 0);

    [Fact]
    public async Task A_workload_written_through_the_runtime_reaches_serving_replicas_its_agent_reports_ready_and_converges_again_after_a_restart()
    {
        string dir = TestHost.TempDirectory();
        int port = FreePort();
        try
        {
            await using var agent = new AgentClient(new AgentOptions
            {
                Server = new IPEndPoint(IPAddress.Loopback, port), NodeName = "node-a", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 3,
                ReadyAfter = TimeSpan.FromMilliseconds(150), ReconnectMax = TimeSpan.FromMilliseconds(200),
            });
            long generation;
            using (var host = TestHost.Build(Config(dir, port)))
            {
                var runtime = host.Services.GetRequiredService<OmegaRuntime>();
                await host.StartAsync();
                await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
                var created = await runtime.Objects.CreateAsync(Web("web", 3));
                Assert.True(created.IsOk, created.Message);
                // A durable acknowledgement: the write's version is covered by the store's durable watermark.
                Assert.True(created.Object!.Metadata.ResourceVersion <= runtime.Store.DurableVersion);
                await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "web").Status is { Desired: 3, Bound: 3, Ready: 3, Serving: 3 }), "3 serving replicas");
                var w = Read(runtime, "web");
                Assert.Equal(w.Metadata.Generation, w.Status.ObservedGeneration);
                foreach (var a in w.Status.Replicas)
                {
                    var task = WorkloadController.TaskFor(w.Metadata.Uid, a.Serial);
                    Assert.True(runtime.Cell.TryGetAllocation(task, out var al));
                    Assert.Equal(BindingPhase.Ready, runtime.Cell.GetBindingLifecycle(task, al.Generation).Phase);
                }

                // Scale through the store: the generation moves, the controller catches up.
                w.Spec.Replicas = 5;
                var scaled = await runtime.Objects.UpdateAsync(w);
                Assert.True(scaled.IsOk, scaled.Message);
                generation = scaled.Object!.Metadata.Generation;
                await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "web").Status is { Desired: 5, Bound: 5, Ready: 5, Serving: 5 } s && s.ObservedGeneration == generation), "5 serving replicas at the new generation");
                await host.StopAsync();
            }

            // Restart on the same directory (and port): the workload is back from the journal; the bindings too; the
            // engine forgot every job, the controller does not resubmit a bound replica, and the agent re-reports ready.
            using (var again = TestHost.Build(Config(dir, port)))
            {
                var runtime = again.Services.GetRequiredService<OmegaRuntime>();
                await again.StartAsync();
                var w = Read(runtime, "web");
                Assert.Equal(generation, w.Metadata.Generation);
                Assert.Equal(5, ControlPlaneBindings(runtime.Cell));
                await TestHost.UntilAsync(() => Task.FromResult(agent.Registrations >= 2 && Read(runtime, "web").Status is { Bound: 5, Ready: 5, Serving: 5 }), "ready again after the restart");
                Assert.Equal(5, ControlPlaneBindings(runtime.Cell));
                Assert.Equal(5, agent.RunningTasks.Count);
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
    public async Task Ready_counts_what_agents_reported_ready_and_serving_waits_for_min_ready_seconds()
    {
        int port = FreePort();
        using var host = TestHost.Build(Config(null, port));
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        await host.StartAsync();
        // No ReadyAfter: this agent reports only what the test tells it to.
        await using var agent = new AgentClient(new AgentOptions { Server = runtime.EndPoint, NodeName = "node-b", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 4 });
        await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True((await runtime.Objects.CreateAsync(Web("api", 2, minReadySeconds: 3))).IsOk);

        var held = await TestHost.BindingsAsync(agent, 2, "two bindings at the agent");
        await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "api").Status is { Bound: 2, Ready: 0, Serving: 0 }), "bound, nothing ready");

        foreach (var b in held) Assert.Equal(Protocol.TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, Protocol.TaskState.Running));
        Assert.Equal(Protocol.TaskReportStatus.Ok, await agent.ReportAsync(held[0].Task, held[0].Generation, Protocol.TaskState.Ready));
        // Ready as soon as the controller looks (it requeues while replicas are unready); serving only once the replica
        // has stayed ready for minReadySeconds (3 s: far longer than a reconcile takes, even on a busy machine).
        WorkloadStatus first = null!;
        await TestHost.UntilAsync(() => Task.FromResult((first = Read(runtime, "api").Status) is { Bound: 2, Ready: 1 }), "one ready");
        Assert.Equal(0, first.Serving);
        Assert.Equal(ConditionStatus.True, first.Conditions.Single(c => c.Type == "Available").Status); // 1 ready >= 2 - maxUnavailable
        Assert.Equal(ConditionStatus.True, first.Conditions.Single(c => c.Type == "Progressing").Status); // one replica not ready yet
        await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "api").Status is { Ready: 1, Serving: 1 }), "one serving", TimeSpan.FromSeconds(30));
        // A later "running" is a failed readiness check: not ready any more.
        Assert.Equal(Protocol.TaskReportStatus.Ok, await agent.ReportAsync(held[0].Task, held[0].Generation, Protocol.TaskState.Running));
        await TestHost.UntilAsync(() => Task.FromResult(Read(runtime, "api").Status is { Bound: 2, Ready: 0, Serving: 0 }), "not ready again");
        await host.StopAsync();
    }

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }
}
