using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Hosting.Tests;

/// <summary>
/// Issue 13's stage dashboards as data (docs/operations.md, "Stage dashboards"): a real host and a real agent over TCP,
/// the agent starting and readying its replicas after known delays, and the metrics of each stage read with a
/// <see cref="MeterListener"/> as an exporter would: scheduling, binding, startup, readiness and serving move apart.
/// </summary>
public sealed partial class StageMetricsTests
{
    private static readonly string[] Stages =
    [
        "omega.sched.job.placement.duration", "omega.server.binding.delivery.duration", "omega.server.task.startup.duration",
        "omega.server.task.readiness.duration", "omega.controlplane.replicas",
    ];

    /// <summary>What the listener saw of one host's cell: histogram values by instrument, the last gauge reading by (tenant, state).</summary>
    private sealed class Seen : IDisposable
    {
        private readonly MeterListener _listener = new();
        public readonly ConcurrentDictionary<string, ConcurrentQueue<double>> Values = new();
        public readonly ConcurrentDictionary<(string Tenant, string State), long> Replicas = new();
        public readonly ConcurrentDictionary<string, Instrument> Published = new();

        public Seen(string cell)
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (!instrument.Meter.Name.StartsWith("Omega.", StringComparison.Ordinal)) return;
                if (instrument.Meter.Tags?.FirstOrDefault(t => t.Key == "cell").Value as string != cell) return;
                Published[instrument.Name] = instrument;
                if (Stages.Contains(instrument.Name)) l.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<double>((instrument, value, _, _) => Values.GetOrAdd(instrument.Name, _ => new()).Enqueue(value));
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                string? tenant = null, state = null;
                foreach (var t in tags)
                {
                    if (t.Key == "tenant") tenant = t.Value as string;
                    else if (t.Key == "state") state = t.Value as string;
                }
                if (tenant is not null && state is not null) Replicas[(tenant, state)] = value;
            });
            _listener.Start();
        }

        public double[] Of(string instrument) => Values.TryGetValue(instrument, out var q) ? q.ToArray() : [];

        /// <summary>Reads the serving gauge now and returns shop's states in funnel order.</summary>
        public (long Desired, long Bound, long Running, long Ready, long Serving) Shop()
        {
            _listener.RecordObservableInstruments();
            long Get(string s) => Replicas.TryGetValue(("shop", s), out long v) ? v : -1;
            return (Get("desired"), Get("bound"), Get("running"), Get("ready"), Get("serving"));
        }

        public void Dispose() => _listener.Dispose();
    }

    private static Dictionary<string, string?> Config(string cell) => new()
    {
        ["Omega:CellName"] = cell,
        ["Omega:InMemory"] = "true",
        ["Omega:Listen"] = "127.0.0.1:0",
        ["Omega:Tenants:0"] = "shop",
        ["Omega:Tenants:1"] = "idle",
    };

    private static Workload Web(string name, int replicas) => new()
    {
        Metadata = new ObjectMeta { Name = name, Tenant = "shop" },
        Spec = new WorkloadSpec { Type = WorkloadType.Service, Replicas = replicas, Resources = new ResourceRequest { CpuMillis = 500, MemoryBytes = 1L << 30 } },
    };

    [Fact]
    public async Task Each_stage_of_a_replica_moves_its_own_metric_startup_and_readiness_at_least_the_agents_delays_and_serving_by_tenant()
    {
        var startDelay = TimeSpan.FromMilliseconds(300);
        var readyDelay = TimeSpan.FromMilliseconds(400);
        string cell = "stages-" + Guid.NewGuid().ToString("N")[..8];
        using var host = TestHost.Build(Config(cell));
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        await host.StartAsync();
        using var seen = new Seen(cell);
        try
        {
            // The agent reports only what the test tells it to (no ReadyAfter): start and readiness take known times.
            await using var agent = new AgentClient(new AgentOptions { Server = runtime.EndPoint, NodeName = "node-s", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 5 });
            await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            // Before anything runs, every tenant of the cell has its series (zeros): the cardinality is the cell's tenants × 5 states.
            Assert.True(seen.Shop() == (0, 0, 0, 0, 0), $"shop's series at zero, not {seen.Shop()}");
            Assert.Equal(0L, seen.Replicas[("idle", "desired")]);
            Assert.True((await runtime.Objects.CreateAsync(Web("web", 2))).IsOk);

            var held = await TestHost.BindingsAsync(agent, 2, "two bindings at the agent");
            // Scheduling and binding happened; nothing started yet.
            await TestHost.UntilAsync(() => Task.FromResult(seen.Shop() == (2, 2, 0, 0, 0)), "bound, nothing running");
            // Recorded by the engine's worker after its commit, which the controller may observe first.
            await TestHost.UntilAsync(() => Task.FromResult(seen.Of("omega.sched.job.placement.duration").Length >= 2), "one placement duration per replica job");
            // Recorded by the bind-path pass right after its flush, which may finish just after the agent read the frame.
            await TestHost.UntilAsync(() => Task.FromResult(seen.Of("omega.server.binding.delivery.duration").Length > 0), "a binding delivery measured");
            Assert.Empty(seen.Of("omega.server.task.startup.duration"));

            await Task.Delay(startDelay);
            foreach (var b in held) Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Running));
            await TestHost.UntilAsync(() => Task.FromResult(seen.Shop() == (2, 2, 2, 0, 0)), "running, not ready");
            var startup = seen.Of("omega.server.task.startup.duration");
            Assert.Equal(2, startup.Length);
            Assert.All(startup, s => Assert.InRange(s, startDelay.TotalSeconds, 30));
            Assert.Empty(seen.Of("omega.server.task.readiness.duration"));

            await Task.Delay(readyDelay);
            foreach (var b in held) Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Ready));
            await TestHost.UntilAsync(() => Task.FromResult(seen.Shop() == (2, 2, 2, 2, 2)), "ready and serving");
            var readiness = seen.Of("omega.server.task.readiness.duration");
            Assert.Equal(2, readiness.Length);
            // From the running report, not from the commit: at least the ready delay, less than startup + readiness.
            Assert.All(readiness, r => Assert.InRange(r, readyDelay.TotalSeconds, 30));
            // Binding is the first part of startup: each delivery (milliseconds) was of one of these two bindings, pushed
            // before the agent could start it, so shorter than any startup (at least the start delay).
            double delivered = seen.Of("omega.server.binding.delivery.duration").Max();
            Assert.True(delivered < startup.Min(), $"delivery {delivered} s must be shorter than startup {startup.Min()} s");

            // A relapse (running again) is not a second startup, and a repeated ready is not a second readiness (the
            // histograms are recorded before the acknowledgement). The controller, converged, sees the relapse only at its
            // resync: the gauge is not waited for here (ControlPlaneHostingTests covers readiness relapses).
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(held[0].Task, held[0].Generation, TaskState.Running));
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(held[1].Task, held[1].Generation, TaskState.Ready));
            Assert.Equal(2, seen.Of("omega.server.task.startup.duration").Length);
            Assert.Equal(2, seen.Of("omega.server.task.readiness.duration").Length);

            // The workload goes: its replicas leave the gauge, the tenant's series stays at zero.
            Assert.True((await runtime.Objects.DeleteAsync(new ObjectKey(Workload.KindName, "shop", "web"))).IsOk);
            await TestHost.UntilAsync(() => Task.FromResult(seen.Shop() == (0, 0, 0, 0, 0)), "no replicas after the delete");
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task Every_omega_metric_the_grafana_dashboard_queries_is_an_instrument_the_host_registers()
    {
        string cell = "dash-" + Guid.NewGuid().ToString("N")[..8];
        using var host = TestHost.Build(Config(cell));
        await host.StartAsync();
        using var seen = new Seen(cell);
        try
        {
            // Prometheus names as the OpenTelemetry exporter writes them: dots to underscores, the unit's suffix, then
            // _total (counters) or _bucket/_sum/_count (histograms).
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var i in seen.Published.Values)
            {
                string b = i.Name.Replace('.', '_');
                string unit = i.Unit switch { "s" => "_seconds", "By" => "_bytes", _ => "" };
                names.Add(b + unit);
                names.Add(b);
            }
            using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "docs", "grafana", "omega.json")));
            var queried = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var expr in Exprs(doc.RootElement))
                foreach (Match m in OmegaMetric().Matches(expr)) queried.Add(m.Value);
            // The five stages are on the dashboard.
            foreach (var stage in new[] { "omega_sched_job_placement_duration_seconds_bucket", "omega_server_binding_delivery_duration_seconds_bucket",
                                          "omega_server_task_startup_duration_seconds_bucket", "omega_server_task_readiness_duration_seconds_bucket", "omega_controlplane_replicas" })
                Assert.Contains(stage, queried);
            foreach (var q in queried)
            {
                string n = q;
                foreach (var suffix in new[] { "_bucket", "_sum", "_count", "_total" })
                    if (n.EndsWith(suffix, StringComparison.Ordinal)) { n = n[..^suffix.Length]; break; }
                Assert.True(names.Contains(n), $"the dashboard queries {q}, but no instrument of the host is exported as {n}");
            }
        }
        finally
        {
            await host.StopAsync();
        }

        static IEnumerable<string> Exprs(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name == "expr" && p.Value.ValueKind == JsonValueKind.String) yield return p.Value.GetString()!;
                    else foreach (var x in Exprs(p.Value)) yield return x;
                }
            }
            else if (e.ValueKind == JsonValueKind.Array)
                foreach (var item in e.EnumerateArray())
                    foreach (var x in Exprs(item)) yield return x;
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Omega.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Omega.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"\bomega_[a-z0-9_]+\b")]
    private static partial Regex OmegaMetric();
}
