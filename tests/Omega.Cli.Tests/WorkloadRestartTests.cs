using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Agent;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Hosting;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 12, "jobs and workloads survive omega serve restarts": durable intent is a Workload object. A workload is
/// written through the library (an in-process host on the data directory: the wire API for objects is another
/// branch's), then a real <c>omega serve</c> child process reconciles it, is killed with SIGKILL, the workload is scaled
/// while the server is down, a second <c>omega serve</c> converges to the new spec and is killed too, and a final host
/// on the same directory shows the status caught up — with no replica ever bound twice.
/// </summary>
public sealed class WorkloadRestartTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    private static IHost InProcess(string dir, IPEndPoint ep, bool controllers) => Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true })
        .With(b =>
        {
            b.Logging.ClearProviders();
            b.Services.AddOmega(o =>
            {
                o.DataDirectory = dir;
                o.Listen = ep.ToString();
                o.Tenants.Add("shop");
                o.RunControllers = controllers;
            });
        }).Build();

    private static async Task UntilAsync(Func<bool> condition, string what, Func<string>? state = null)
    {
        using var cts = new CancellationTokenSource(Wait);
        while (!condition())
        {
            try { await Task.Delay(50, cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"timed out waiting for: {what}; {state?.Invoke()}"); }
        }
    }

    [Fact]
    public async Task A_workload_survives_SIGKILL_of_omega_serve_is_scaled_while_down_and_converges_with_no_replica_bound_twice()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-workload-restart-" + Guid.NewGuid().ToString("N"));
        var ep = new IPEndPoint(IPAddress.Loopback, OmegaChild.FreePort());
        var key = new ObjectKey(Workload.KindName, "shop", "web");
        // Every Run binding any agent ever received, by task: a replica bound twice would show up here twice.
        var runBindings = new ConcurrentDictionary<TaskId, int>();
        var agents = new List<AgentClient>();
        try
        {
            // 1. Intent, through the library: durable once CreateAsync returns.
            using (var host = InProcess(dir, ep, controllers: false))
            {
                await host.StartAsync();
                var objects = host.Services.GetRequiredService<OmegaRuntime>().Objects;
                var created = await objects.CreateAsync(new Workload
                {
                    Metadata = new ObjectMeta { Name = "web", Tenant = "shop" },
                    Spec = new WorkloadSpec { Replicas = 4, Resources = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 1L << 30 } },
                });
                Assert.True(created.IsOk, created.Message);
                await host.StopAsync();
            }

            for (int i = 0; i < 2; i++)
            {
                agents.Add(new AgentClient(new AgentOptions
                {
                    Server = ep, NodeName = $"node-{i}", Capacity = ResourceVector.FromCoresAndGiB(4, 16), Seed = 10 + i,
                    ReadyAfter = TimeSpan.FromMilliseconds(100), ReconnectBase = TimeSpan.FromMilliseconds(20), ReconnectMax = TimeSpan.FromMilliseconds(200),
                    OnBinding = (_, b) => { if (b.Kind == Protocol.BindingKind.Run) runBindings.AddOrUpdate(b.Task, 1, static (_, n) => n + 1); },
                }));
            }
            HashSet<TaskId> Held() => agents.SelectMany(a => a.RunningTasks.Keys).ToHashSet();

            // 2. omega serve reconciles it; SIGKILL once the agents run all four replicas.
            HashSet<TaskId> four;
            using (var serve = new OmegaChild("serve", "--listen", ep.ToString(), "--data", dir, "--insecure", "--no-auth")) // the in-test agents speak plaintext without credentials: this test is about workloads across SIGKILL; TLS and credentials have their own tests
            {
                await serve.WaitForAsync("listening on", Wait);
                Assert.Contains("1 objects", serve.Output, StringComparison.Ordinal);
                foreach (var a in agents) await a.StartAsync().WaitAsync(Wait);
                await UntilAsync(() => Held().Count == 4, "four replicas running at the agents");
                four = Held();
                await serve.KillAsync();
            }

            // 3. Scale while the server is down (the library again; no controller runs here).
            long generation;
            using (var host = InProcess(dir, new IPEndPoint(IPAddress.Loopback, 0), controllers: false))
            {
                await host.StartAsync();
                var objects = host.Services.GetRequiredService<OmegaRuntime>().Objects;
                var w = Assert.IsType<Workload>(objects.Get(key).Object);
                Assert.Equal(4, w.Spec.Replicas);
                w.Spec.Replicas = 6;
                var scaled = await objects.UpdateAsync(w);
                Assert.True(scaled.IsOk, scaled.Message);
                generation = scaled.Object!.Metadata.Generation;
                await host.StopAsync();
            }

            // 4. A new omega serve converges to six; the four bound replicas are kept (not resubmitted); SIGKILL again.
            using (var serve = new OmegaChild("serve", "--listen", ep.ToString(), "--data", dir, "--insecure", "--no-auth")) // the in-test agents speak plaintext without credentials: this test is about workloads across SIGKILL; TLS and credentials have their own tests
            {
                await serve.WaitForAsync("listening on", Wait);
                await UntilAsync(() => Held().Count == 6, "six replicas running at the agents");
                Assert.Superset(four, Held());
                await serve.KillAsync();
            }

            // 5. A final host on the same directory and port: the status catches up (the agents re-report ready).
            using (var host = InProcess(dir, ep, controllers: true))
            {
                await host.StartAsync();
                var runtime = host.Services.GetRequiredService<OmegaRuntime>();
                Workload Read() => Assert.IsType<Workload>(runtime.Objects.Get(key).Object);
                await UntilAsync(() => Read().Status is { Desired: 6, Bound: 6, Ready: 6, Serving: 6 } s && s.ObservedGeneration == generation, "status 6/6/6/6 at the new generation",
                    () => $"status {System.Text.Encoding.UTF8.GetString(ObjectCodec.Serialize(Read()))}; agents registered {string.Join(",", agents.Select(a => a.Registrations))}, connected {string.Join(",", agents.Select(a => a.IsConnected))}; agents hold {string.Join(",", agents.SelectMany(a => a.RunningTasks).Select(kv => $"{kv.Key}@{kv.Value}"))}; cell {string.Join(",", runtime.Cell.GetAllocations().Select(a => $"{a.Task}@{a.Generation}:{runtime.Cell.GetBindingLifecycle(a.Task, a.Generation).Phase}"))}; running reports {runtime.Server.TaskReports(Protocol.TaskState.Running)} ready reports {runtime.Server.TaskReports(Protocol.TaskState.Ready)}");
                var w = Read();
                Assert.Equal(generation, w.Metadata.Generation);
                var bound = runtime.Cell.GetAllocations().Where(a => (a.Task.Job.Value & WorkloadController.JobIdSpace) != 0).Select(a => a.Task).ToHashSet();
                Assert.Equal(6, bound.Count);
                Assert.Equal(bound, Held());
                Assert.Equal(6, w.Status.Replicas.Select(r => r.Slot).Distinct().Count());
                Assert.Empty(runtime.Cell.Audit());
                await host.StopAsync();
            }
            // No task was ever pushed to an agent twice, and only six were ever pushed: no replica was bound twice.
            Assert.Equal(6, runBindings.Count);
            Assert.All(runBindings.Values, n => Assert.Equal(1, n));
        }
        finally
        {
            foreach (var a in agents) await a.DisposeAsync();
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}

internal static class HostBuilderExtensions
{
    public static HostApplicationBuilder With(this HostApplicationBuilder b, Action<HostApplicationBuilder> configure)
    {
        configure(b);
        return b;
    }
}
