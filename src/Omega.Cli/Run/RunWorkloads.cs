using System.Globalization;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Spectre.Console;

namespace Omega.Cli.Run;

/// <summary>
/// The control-plane part of <c>omega run</c> (issue 12): a few service <see cref="Workload"/>s written through the
/// runtime's <see cref="ObjectStore"/> at the start, scaled up and down while the batch/service job mix runs, and
/// reconciled by the host's workload controller into bindings that the simulated agents report started, then ready.
/// It prints their convergence (desired / bound / ready / serving, observedGeneration / generation) beside the engine's
/// figures.
/// </summary>
internal sealed class RunWorkloads
{
    /// <summary>The tenants the run's workloads belong to (created by the host at start).</summary>
    public static readonly string[] Tenants = ["frontend", "search"];

    private readonly ObjectStore _objects;
    private readonly List<(string Tenant, string Name, int Initial, double ScaleAt, int ScaledTo)> _plan = new();
    private readonly HashSet<string> _scaled = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _servingAt = new(StringComparer.Ordinal);
    private readonly double _seconds;

    /// <summary>Plans the workloads for a fleet of <paramref name="agents"/> nodes and a run of <paramref name="seconds"/>.</summary>
    public RunWorkloads(ObjectStore objects, int agents, double seconds)
    {
        _objects = objects;
        _seconds = seconds;
        // Small beside the fleet (1 core each, a few percent of the cells' CPU), so the job mix's figures stay comparable.
        int web = Math.Max(3, agents / 20), api = Math.Max(2, agents / 40), index = Math.Max(2, agents / 50);
        _plan.Add(("frontend", "web", web, 0.35, web * 2));      // scaled up
        _plan.Add(("frontend", "api", api, 0.55, Math.Max(1, api / 2))); // scaled down (within its disruption budget)
        _plan.Add(("search", "index", index, 0.45, index + index / 2));
    }

    /// <summary>Whether <paramref name="job"/> backs a workload replica (those run until stopped: services).</summary>
    public static bool IsReplica(JobId job) => (job.Value & WorkloadController.JobIdSpace) != 0;

    /// <summary>Creates the workloads (each acknowledged once durable).</summary>
    public async Task CreateAsync(CancellationToken cancel)
    {
        foreach (var (tenant, name, initial, _, _) in _plan)
        {
            var w = new Workload
            {
                Metadata = new ObjectMeta { Name = name, Tenant = tenant, Labels = { ["app"] = name } },
                Spec = new WorkloadSpec
                {
                    Type = WorkloadType.Service, Replicas = initial, Priority = 5, MaxUnavailable = Math.Max(1, initial / 4),
                    Resources = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 2L << 30 }, Scheduler = "service",
                },
            };
            var r = await _objects.CreateAsync(w, cancel).ConfigureAwait(false);
            if (!r.IsOk && r.Status != ObjectStatus.AlreadyExists) throw new InvalidOperationException($"creating workload {tenant}/{name}: {r.Status} {r.Message}");
        }
    }

    /// <summary>Applies the scale changes due at <paramref name="t"/> seconds into the run; returns a line per change.</summary>
    public async Task<List<string>> StepAsync(double t, CancellationToken cancel)
    {
        var lines = new List<string>();
        foreach (var (tenant, name, _, at, to) in _plan)
        {
            if (t < at * _seconds || !_scaled.Add(name)) continue;
            // Read-modify-write with the resourceVersion precondition: a conflict (the controller's finalizer write) re-reads.
            for (int attempt = 0; attempt < 10; attempt++)
            {
                if (_objects.Get<Workload>(tenant, name) is not { } w) break;
                int from = w.Spec.Replicas;
                w.Spec.Replicas = to;
                var r = await _objects.UpdateAsync(w, cancel).ConfigureAwait(false);
                if (r.Status == ObjectStatus.Conflict) continue;
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"  t={t,5:0.0}s  workload {tenant}/{name}: replicas {from} -> {to} (generation {r.Object?.Metadata.Generation})"));
                _servingAt.Remove(name);
                break;
            }
        }
        return lines;
    }

    private IEnumerable<Workload> Current()
    {
        foreach (var (tenant, name, _, _, _) in _plan)
            if (_objects.Get<Workload>(tenant, name) is { } w) yield return w;
    }

    /// <summary>One compact live line: each workload's desired/bound/ready/serving and observed/current generation.</summary>
    public string LiveLine(double t)
    {
        var sb = new System.Text.StringBuilder("            workloads d/b/r/s:");
        foreach (var w in Current())
        {
            var s = w.Status;
            bool converged = s.ObservedGeneration == w.Metadata.Generation && s.Serving == w.Spec.Replicas && s.Bound == w.Spec.Replicas;
            if (converged) _servingAt.TryAdd(w.Metadata.Name, t);
            sb.Append(CultureInfo.InvariantCulture, $"  {w.Metadata.Name} {s.Desired}/{s.Bound}/{s.Ready}/{s.Serving} g{s.ObservedGeneration}/{w.Metadata.Generation}{(converged ? " ok" : "")}");
        }
        return sb.ToString();
    }

    /// <summary>Bindings in the cell that back workload replicas (must equal the sum of bound: one per replica slot).</summary>
    public static int ReplicaBindings(Omega.Cells.Cell cell)
    {
        int n = 0;
        foreach (var a in cell.GetAllocations()) if (IsReplica(a.Task.Job)) n++;
        return n;
    }

    /// <summary>The summary table's section: one row per workload.</summary>
    public Table Table(Omega.Cells.Cell cell)
    {
        var t = new Table().Title("workloads (control plane)").AddColumn("workload")
            .AddColumn(new TableColumn("desired").RightAligned()).AddColumn(new TableColumn("bound").RightAligned())
            .AddColumn(new TableColumn("ready").RightAligned()).AddColumn(new TableColumn("serving").RightAligned())
            .AddColumn(new TableColumn("observed / generation").RightAligned()).AddColumn("condition");
        int bound = 0;
        foreach (var w in Current())
        {
            var s = w.Status;
            bound += s.Bound;
            var progressing = s.Conditions.Find(c => c.Type == "Progressing");
            string when = _servingAt.TryGetValue(w.Metadata.Name, out var at) ? string.Create(CultureInfo.InvariantCulture, $"; all serving by t={at:0}s") : "";
            t.AddRow(Markup.Escape($"{w.Metadata.Tenant}/{w.Metadata.Name}"), Num(s.Desired), Num(s.Bound), Num(s.Ready), Num(s.Serving),
                string.Create(CultureInfo.InvariantCulture, $"{s.ObservedGeneration} / {w.Metadata.Generation}"),
                Markup.Escape($"Progressing={progressing?.Status} {progressing?.Reason}{when}"));
        }
        int replicaBindings = ReplicaBindings(cell);
        t.Caption(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"{replicaBindings:N0} replica bindings in the cell for {bound:N0} bound replicas ({(replicaBindings == bound ? "one per replica" : "MISMATCH")}); ready = agent reported ready, serving = ready (minReadySeconds 0)")));
        return t;

        static string Num(int v) => v.ToString("N0", CultureInfo.InvariantCulture);
    }
}
