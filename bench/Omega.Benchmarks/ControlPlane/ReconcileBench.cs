using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Hosting;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// Issue 12, "Must show" (1): the workload controller reconciling R replicas across N nodes, in process, through the
/// library API (AddOmega's host: OmegaRuntime, ObjectStore, WorkloadController), with simulated agents reporting every
/// bound replica started at once and ready <c>--ready-ms</c> later. Measured per phase, from the first write:
///   control plane: W Workload objects of R/W replicas each are created; time until all bound, all ready, all serving
///                  (every workload's status says serving == replicas at its current generation);
///   engine alone:  the same replicas as plain one-task jobs (same resources, tenant, scheduler kind) given to
///                  SchedulingEngine.Submit; time until all bound.
/// Placement rate = replicas / time-to-all-bound; the ratio control plane / engine alone is printed for each rep.
/// Each phase runs on a fresh host (fresh cell with the same N nodes), so neither inherits the other's bindings; the
/// phase order alternates between reps so a warming machine does not favour one side.
/// <code>cpreconcile --nodes N --replicas R --workloads W --reps K [--cores C] [--ready-ms M] [--data DIR] [--timeout S] [--warmup 0]</code>
/// </summary>
internal static class ReconcileBench
{
    private const string Tenant = "bench";

    private sealed record Config(int Nodes, int Replicas, int Workloads, int Reps, int NodeCores, int ReadyMs, string? DataDir, int TimeoutSeconds);

    private sealed record PhaseResult(string Phase, double WritesSeconds, double BoundSeconds, double ReadySeconds, double ServingSeconds, long Bound, bool Complete)
    {
        public double Rate => Bound / BoundSeconds;
    }

    public static int Run(string[] args)
    {
        var o = BenchOutput.Options(args);
        var c = new Config(o.Int("nodes", 10_000), o.Int("replicas", 100_000), o.Int("workloads", 100), o.Int("reps", 1),
            o.Int("cores", 16), o.Int("ready-ms", 200), o.GetValueOrDefault("data"), o.Int("timeout", 900));
        if (c.Replicas % c.Workloads != 0 || c.Replicas / c.Workloads > Omega.ControlPlane.WorkloadSpec.MaxReplicas)
        {
            Console.Error.WriteLine("cpreconcile: --replicas must be a multiple of --workloads, at most 100,000 per workload (and a status of ~1,000 replicas fits MaxObjectBytes)");
            return 2;
        }
        var facts = BenchOutput.Environment("cpreconcile");
        Console.WriteLine($"nodes={c.Nodes} x {c.NodeCores} cores, replicas={c.Replicas} in {c.Workloads} workloads of {c.Replicas / c.Workloads} (1 core, 1 GiB each), " +
            $"agents: started at bind, ready after {c.ReadyMs} ms; store: {(c.DataDir is null ? "in memory" : "FASTER under " + c.DataDir)}; reps={c.Reps}, order alternates");
        if (o.Int("warmup", 1) > 0)
        {
            // JIT and thread-pool warm-up on a small cell, not reported: otherwise the first phase of rep 1 pays it.
            var small = c with { Nodes = Math.Min(c.Nodes, 200), Replicas = 2_000, Workloads = 10, DataDir = null };
            RunPhase(small, true, 0).GetAwaiter().GetResult();
            RunPhase(small, false, 0).GetAwaiter().GetResult();
            Console.WriteLine("warm-up done (200 nodes, 2,000 replicas, each phase once; not reported)");
        }
        var results = new List<(int Rep, PhaseResult Cp, PhaseResult Engine)>();
        bool ok = true;
        for (int rep = 1; rep <= c.Reps; rep++)
        {
            bool cpFirst = rep % 2 == 1;
            PhaseResult? cp = null, engine = null;
            foreach (bool isCp in cpFirst ? new[] { true, false } : new[] { false, true })
            {
                var r = RunPhase(c, isCp, rep).GetAwaiter().GetResult();
                Console.WriteLine($"rep {rep} {r.Phase}: writes {BenchOutput.F(r.WritesSeconds, "F2")} s, all bound {BenchOutput.F(r.BoundSeconds, "F2")} s ({BenchOutput.F(r.Rate, "F0")} placements/s), " +
                    $"all ready {BenchOutput.F(r.ReadySeconds, "F2")} s, all serving {(r.ServingSeconds > 0 ? BenchOutput.F(r.ServingSeconds, "F2") + " s" : "-")}{(r.Complete ? "" : "  INCOMPLETE (timeout)")}");
                ok &= r.Complete;
                if (isCp) cp = r; else engine = r;
                GC.Collect();
            }
            results.Add((rep, cp!, engine!));
        }

        Console.WriteLine();
        var rows = new List<string[]>();
        foreach (var (rep, cp, engine) in results)
            rows.Add([rep.ToString(System.Globalization.CultureInfo.InvariantCulture), BenchOutput.F(cp.ServingSeconds, "F2"), BenchOutput.F(cp.BoundSeconds, "F2"),
                BenchOutput.F(cp.Rate, "F0"), BenchOutput.F(engine.BoundSeconds, "F2"), BenchOutput.F(engine.Rate, "F0"), BenchOutput.F(cp.Rate / engine.Rate, "F2") + "x"]);
        static double Median(IEnumerable<double> v) { var x = v.OrderBy(d => d).ToArray(); return x.Length % 2 == 1 ? x[x.Length / 2] : (x[x.Length / 2 - 1] + x[x.Length / 2]) / 2; }
        double mServing = Median(results.Select(r => r.Cp.ServingSeconds)), mCp = Median(results.Select(r => r.Cp.Rate)), mEngine = Median(results.Select(r => r.Engine.Rate));
        double mRatio = Median(results.Select(r => r.Cp.Rate / r.Engine.Rate));
        if (results.Count > 1)
            rows.Add(["median", BenchOutput.F(mServing, "F2"), "", BenchOutput.F(mCp, "F0"), "", BenchOutput.F(mEngine, "F0"), BenchOutput.F(mRatio, "F2") + "x"]);
        BenchOutput.Table(["rep", "cp all serving s", "cp all bound s", "cp placements/s", "engine all bound s", "engine placements/s", "cp/engine"], rows);
        facts["median_cp_all_serving_s"] = Math.Round(mServing, 3);
        facts["median_cp_placements_per_s"] = Math.Round(mCp);
        facts["median_engine_placements_per_s"] = Math.Round(mEngine);
        facts["median_ratio_cp_to_engine"] = Math.Round(mRatio, 3);

        facts["nodes"] = c.Nodes; facts["node_cores"] = c.NodeCores; facts["replicas"] = c.Replicas; facts["workloads"] = c.Workloads;
        facts["ready_ms"] = c.ReadyMs; facts["store"] = c.DataDir is null ? "memory" : "faster";
        facts["complete"] = ok;
        facts["reps"] = results.Select(r => new Dictionary<string, object>
        {
            ["rep"] = r.Rep,
            ["cp_writes_s"] = Math.Round(r.Cp.WritesSeconds, 3),
            ["cp_all_bound_s"] = Math.Round(r.Cp.BoundSeconds, 3),
            ["cp_all_ready_s"] = Math.Round(r.Cp.ReadySeconds, 3),
            ["cp_all_serving_s"] = Math.Round(r.Cp.ServingSeconds, 3),
            ["cp_placements_per_s"] = Math.Round(r.Cp.Rate),
            ["engine_submit_s"] = Math.Round(r.Engine.WritesSeconds, 3),
            ["engine_all_bound_s"] = Math.Round(r.Engine.BoundSeconds, 3),
            ["engine_placements_per_s"] = Math.Round(r.Engine.Rate),
            ["ratio_cp_to_engine"] = Math.Round(r.Cp.Rate / r.Engine.Rate, 3),
        }).ToList();
        BenchOutput.Json(facts);
        return ok ? 0 : 1;
    }

    private static async Task<PhaseResult> RunPhase(Config c, bool controlPlane, int rep)
    {
        string? dir = c.DataDir is null ? null : Path.Combine(c.DataDir, $"rep{rep}-{(controlPlane ? "cp" : "engine")}-{Environment.ProcessId}");
        if (dir is not null && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Services.AddOmega(o =>
        {
            o.CellName = "cpreconcile";
            o.InMemory = dir is null;
            o.DataDirectory = dir;
            o.Listen = "127.0.0.1:0";
            o.Authentication = false; // nothing connects: the phases drive the library API in process
            o.Tenants.Add(Tenant);
            o.StartScheduling = false; // nodes first, then the workers
            o.Seed = 42 + rep;
            // Nodes are added to the cell directly (no agent connections, so no heartbeats): no lease expiry.
            o.Server.LifecyclePeriod = null;
            o.Storage.Cell.InitialNodeCapacity = c.Nodes + 16;
        });
        using var host = builder.Build();
        await host.StartAsync();
        var rt = host.Services.GetRequiredService<OmegaRuntime>();
        var cell = rt.Cell;
        for (int i = 0; i < c.Nodes; i++)
            cell.AddNode(new NodeSpec($"node-{i:D6}", new ResourceVector(c.NodeCores * 1000L, c.NodeCores * 4L << 30), $"rack-{i % 100}"));
        using var agents = new SimulatedAgents(cell, TimeSpan.FromMilliseconds(c.ReadyMs), controlPlaneOnly: controlPlane);
        cell.AddBindingListener(agents);
        rt.Engine.Start();
        if (!cell.TryGetTenant(Tenant, out var tenant)) throw new InvalidOperationException("tenant missing");

        var perTask = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 1L << 30 };
        int perWorkload = c.Replicas / c.Workloads;
        var clock = Stopwatch.StartNew();
        if (controlPlane)
        {
            for (int w = 0; w < c.Workloads; w++)
            {
                var r = await rt.Objects.CreateAsync(new Workload
                {
                    Metadata = new ObjectMeta { Name = $"w{w:D5}", Tenant = Tenant },
                    Spec = new WorkloadSpec { Replicas = perWorkload, Resources = perTask },
                });
                if (!r.IsOk) throw new InvalidOperationException($"create w{w}: {r.Status} {r.Message}");
            }
        }
        else
        {
            // The same replicas as plain jobs: one task each, as the workload controller submits them.
            var vec = perTask.ToVector();
            for (long j = 1; j <= c.Replicas; j++)
            {
                var er = rt.Engine.Submit(new JobSpec(new JobId(j), tenant, 0, 1, vec));
                if (er.Status != Omega.Scheduling.EnqueueStatus.Accepted) throw new InvalidOperationException($"submit {j}: {er.Status} {er.Reason}");
            }
        }
        double writes = clock.Elapsed.TotalSeconds;
        double bound = 0, ready = 0, serving = 0;
        var deadline = TimeSpan.FromSeconds(c.TimeoutSeconds);
        while (clock.Elapsed < deadline)
        {
            double now = clock.Elapsed.TotalSeconds;
            if (bound == 0 && agents.Bound >= c.Replicas) bound = now;
            if (ready == 0 && agents.ReadyReported >= c.Replicas) ready = now;
            if (controlPlane && bound > 0 && serving == 0 && AllServing(rt.Objects, c.Workloads, perWorkload)) serving = clock.Elapsed.TotalSeconds;
            if (bound > 0 && ready > 0 && (!controlPlane || serving > 0)) break;
            await Task.Delay(bound == 0 ? 5 : 20);
        }
        long boundCount = agents.Bound;
        await host.StopAsync();
        if (dir is not null) Directory.Delete(dir, recursive: true);
        bool complete = bound > 0 && ready > 0 && (!controlPlane || serving > 0);
        return new PhaseResult(controlPlane ? "control plane" : "engine alone", writes, bound > 0 ? bound : clock.Elapsed.TotalSeconds,
            ready, serving, boundCount, complete);
    }

    private static bool AllServing(ObjectStore objects, int workloads, int replicas)
    {
        var items = objects.List(new ObjectFilter(Workload.KindName), workloads + 10).Items;
        if (items.Count < workloads) return false;
        foreach (var item in items)
        {
            var w = (Workload)item;
            if (w.Status.ObservedGeneration != w.Metadata.Generation || w.Status.Serving < replicas) return false;
        }
        return true;
    }
}

/// <summary>
/// Node agents simulated in process: every Run binding the cell commits is reported started at once and ready a fixed
/// delay later, through the same cell call the server makes for an agent's TaskReport (Cell.ReportBindingPhase).
/// The listener is called under the cell's commit lock, so it only queues; one thread reports (the order is FIFO and
/// the delay constant, so the ready queue stays sorted by due time).
/// </summary>
internal sealed class SimulatedAgents : IBindingListener, IDisposable
{
    private readonly Cell _cell;
    private readonly long _readyTicks;
    private readonly bool _controlPlaneOnly;
    private readonly ConcurrentQueue<(Allocation A, long At)> _bound = new();
    private readonly Queue<(Allocation A, long Due)> _ready = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private long _boundCount, _started, _readyCount;

    public SimulatedAgents(Cell cell, TimeSpan readyAfter, bool controlPlaneOnly)
    {
        _cell = cell;
        _readyTicks = (long)(readyAfter.TotalSeconds * Stopwatch.Frequency);
        _controlPlaneOnly = controlPlaneOnly;
        _thread = new Thread(Loop) { IsBackground = true, Name = "simulated-agents" };
        _thread.Start();
    }

    /// <summary>Bindings currently live (bound minus unbound) that this fleet counts.</summary>
    public long Bound => Interlocked.Read(ref _boundCount);

    public long Started => Interlocked.Read(ref _started);

    public long ReadyReported => Interlocked.Read(ref _readyCount);

    public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
    {
        if (_controlPlaneOnly && !ReplicaJobs.IsReplica(allocation.Task.Job.Value)) return;
        if (change == BindingChange.Bound)
        {
            Interlocked.Increment(ref _boundCount);
            _bound.Enqueue((allocation, Stopwatch.GetTimestamp()));
        }
        else Interlocked.Decrement(ref _boundCount);
    }

    public void OnVersionComplete(long version) { }

    private void Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            bool idle = true;
            while (_bound.TryDequeue(out var b))
            {
                idle = false;
                if (_cell.ReportBindingPhase(b.A.Task, b.A.Node, b.A.Generation, BindingPhase.Started) == BindingPhaseStatus.Ok)
                {
                    Interlocked.Increment(ref _started);
                    _ready.Enqueue((b.A, b.At + _readyTicks));
                }
            }
            long now = Stopwatch.GetTimestamp();
            while (_ready.TryPeek(out var r) && r.Due <= now)
            {
                idle = false;
                _ready.Dequeue();
                if (_cell.ReportBindingPhase(r.A.Task, r.A.Node, r.A.Generation, BindingPhase.Ready) == BindingPhaseStatus.Ok)
                    Interlocked.Increment(ref _readyCount);
            }
            if (idle) _stop.Token.WaitHandle.WaitOne(1);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }
}
