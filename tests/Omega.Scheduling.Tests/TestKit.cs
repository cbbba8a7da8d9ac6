using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Scheduling.Pipeline;

namespace Omega.Scheduling.Tests;

/// <summary>Shorthands shared by the scheduling tests: resource vectors, nodes, engines on a fake clock, invariant checks.</summary>
internal static class TestKit
{
    public const long GiB = 1024L * 1024 * 1024;

    /// <summary>Cores (in millicores, so 1 = one core) and GiB.</summary>
    public static ResourceVector R(double cores, double memGiB = 1) => ResourceVector.FromCoresAndGiB(cores, memGiB);

    public static NodeSpec Node(string name, double cores = 4, double memGiB = 16, string domain = "rack-0",
        IReadOnlyDictionary<string, string>? labels = null, IReadOnlyList<string>? taints = null)
        => new(name, R(cores, memGiB), domain, labels, taints);

    public static JobSpec Job(long id, int tasks = 1, double cores = 1, double memGiB = 1, int priority = 0, int tenant = 0, bool gang = false,
        IReadOnlyDictionary<string, string>? labels = null, IReadOnlyList<string>? tolerations = null)
        => new(new JobId(id), new TenantId(tenant), priority, tasks, R(cores, memGiB), gang, labels, tolerations);

    public static Dictionary<string, string> Labels(params (string Key, string Value)[] kv) => kv.ToDictionary(p => p.Key, p => p.Value);

    /// <summary>Creates tenants t1..t<paramref name="count"/> (ids 1..count): tenants exist only once created.</summary>
    public static Cell WithTenants(this Cell cell, int count = 8)
    {
        for (int t = 1; t <= count; t++) Assert.Equal(new TenantId(t), cell.CreateTenant($"t{t}"));
        return cell;
    }

    public static NodeView View(Cell cell, NodeId id)
    {
        Assert.Equal(SnapshotRead.Ok, cell.Snapshot().TryGetNode(id, out var v));
        return v;
    }

    /// <summary>
    /// Runs the pipeline's Plan for <paramref name="job"/> (placing the given number of tasks tentatively) and returns the
    /// pipeline's context, which the public filter and scorer interfaces take. This is how a context with a job, a tenant
    /// quota and tentative placements is built through the public API only.
    /// </summary>
    public static PlacementContext Context(PlacementPipeline pipeline, JobSpec job, CellSnapshot snapshot, int tentativeTasks = 0,
        (ResourceVector Usage, ResourceVector? Quota) tenant = default, NodeId[]? boundElsewhere = null, List<PlannedClaim>? planned = null)
    {
        var indexes = Enumerable.Range(0, tentativeTasks).ToArray();
        planned ??= new List<PlannedClaim>();
        pipeline.Plan(job, indexes, snapshot, tenant, boundElsewhere ?? [], new Random(1), planned, new PlanStats());
        return pipeline.Context;
    }

    /// <summary>A pipeline that scans every node of a small cell (floor above the node count) with the default plugins.</summary>
    public static PlacementPipeline FullScanPipeline(int floor = 1_000) => PlacementPipeline.CreateDefault(new SamplingOptions { FeasibleFloor = floor, MinProbes = floor });

    /// <summary>Commits one claim directly on the cell (bypassing the engine), as another scheduler would.</summary>
    public static CommitResult CommitDirect(Cell cell, SchedulerLease lease, TaskId task, NodeId node, ResourceVector res, int tenant = 0, int priority = 0)
    {
        var tx = new Transaction(lease);
        tx.Add(new Claim(task, node, res, View(cell, node).Version, new TenantId(tenant), priority));
        return cell.Commit(tx).Detach();
    }

    /// <summary>
    /// The engine's view and the cell's agree: the number of bound tasks of every job equals the cell's bindings of that
    /// job, every binding belongs to a known job and task, and the cell audit is clean.
    /// </summary>
    public static void AssertEngineMatchesCell(SchedulingEngine engine, Cell cell, IEnumerable<JobSpec> jobs, string context = "")
    {
        Assert.True(cell.Audit().Count == 0, $"{context} audit: {string.Join("; ", cell.Audit())}");
        var allocations = cell.GetAllocations();
        Assert.Equal(allocations.Count, allocations.Select(a => a.Task).Distinct().Count());
        var byJob = allocations.GroupBy(a => a.Task.Job).ToDictionary(g => g.Key, g => g.ToList());
        int bound = 0;
        foreach (var job in jobs)
        {
            Assert.True(engine.TryGetJob(job.Id, out var s), $"{context} job {job.Id} unknown to the engine");
            int inCell = byJob.TryGetValue(job.Id, out var list) ? list.Count : 0;
            Assert.True(s.Bound == inCell, $"{context} job {job.Id}: engine says {s.Bound} bound, cell holds {inCell} ({s.Phase}, gen {s.Generation})");
            if (list is not null)
                foreach (var a in list)
                {
                    Assert.InRange(a.Task.Index, 0, job.TaskCount - 1);
                    Assert.Equal(job.PerTask, a.Resources);
                    Assert.Equal(job.Tenant, a.Tenant);
                    Assert.Equal(job.Priority, a.Priority);
                }
            bound += s.Bound;
        }
        Assert.Equal(allocations.Count, bound);
    }

    /// <summary>Waits (asynchronously, with a deadline) until <paramref name="done"/> holds; fails with <paramref name="what"/> otherwise.</summary>
    public static async Task WaitUntil(Func<bool> done, TimeSpan timeout, Func<string> what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!done())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s: {what()}");
            await Task.Delay(5);
        }
    }

    /// <summary>True when every job is Placed (nothing pending) or Parked.</summary>
    public static bool AllSettled(SchedulingEngine engine, IEnumerable<JobSpec> jobs)
    {
        foreach (var j in jobs)
        {
            if (!engine.TryGetJob(j.Id, out var s)) return false;
            if (s.Phase == JobPhase.Parked) continue;
            if (s.Phase == JobPhase.Placed && s.Pending == 0) continue;
            return false;
        }
        return true;
    }

    public static string Describe(SchedulingEngine engine, IEnumerable<JobSpec> jobs)
        => string.Join(", ", jobs.Select(j => engine.TryGetJob(j.Id, out var s) ? $"{j.Id}:{s.Phase}/p{s.Pending}b{s.Bound}a{s.Attempts}" : $"{j.Id}:?")
            .Where(t => !t.Contains(":Placed/p0", StringComparison.Ordinal) && !t.Contains(":Parked", StringComparison.Ordinal)).Take(20));
}

/// <summary>A cell on a fake clock with an engine whose kinds the test configures.</summary>
internal sealed class TestEngine : IDisposable
{
    public TestEngine(Action<SchedulingOptions> configure, int seed = 1)
    {
        Cell = new Cell(new CellOptions { Time = Time }).WithTenants();
        var options = new SchedulingOptions { Time = Time, Seed = seed };
        configure(options);
        Options = options;
        EngineFactory = () => new SchedulingEngine(Cell, options);
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 25, 0, 0, 0, TimeSpan.Zero));

    public Cell Cell { get; }

    public SchedulingOptions Options { get; }

    private Func<SchedulingEngine> EngineFactory { get; }

    private SchedulingEngine? _engine;

    /// <summary>The engine, created on first use (so nodes can be added first).</summary>
    public SchedulingEngine Engine => _engine ??= EngineFactory();

    public NodeId Add(NodeSpec spec) => Cell.AddNode(spec);

    /// <summary>Submits and asserts acceptance.</summary>
    public JobSpec Submit(JobSpec job, string? kind = null)
    {
        var r = Engine.Submit(job, kind);
        Assert.True(r.Accepted, $"submit {job.Id}: {r.Status} {r.Reason}");
        return job;
    }

    /// <summary>Runs workers until idle, advancing the fake clock past back-offs, for a bounded number of rounds.</summary>
    public void Settle(int rounds = 30, TimeSpan? step = null)
    {
        for (int i = 0; i < rounds; i++)
        {
            Engine.RunUntilIdle();
            if (Engine.Workers.Select(w => w.Kind).Distinct().Sum(Engine.QueueDepth) == 0) return;
            Time.Advance(step ?? TimeSpan.FromSeconds(1));
        }
    }

    public JobStatus Status(JobSpec job)
    {
        Assert.True(Engine.TryGetJob(job.Id, out var s));
        return s;
    }

    public SchedulerWorker Worker(string kind, int index = 0) => Engine.Workers.Single(w => w.Kind == kind && w.Index == index);

    public void Dispose()
    {
        _engine?.Dispose();
        Cell.Dispose();
    }
}

/// <summary>A filter that runs an action the first time it is asked (after arming), to interleave another worker's step deterministically.</summary>
internal sealed class HookFilter : IFilter
{
    public Action? OnFirstCall { get; set; }

    public string Name => "hook";

    public FilterStatus Filter(PlacementContext context, in NodeView node)
    {
        var a = OnFirstCall;
        OnFirstCall = null;
        a?.Invoke();
        return FilterStatus.Feasible;
    }
}
