using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;

namespace Omega.Dst;

// Messages of the simulated network (the client/server and agent/server message layer; docs/testing.md says what of
// the wire protocol they stand for).
internal sealed record ClientRequest(long Id, char Op, string Name, int Replicas)
{
    /// <summary>Workloads named q… belong to the quota-limited tenant t2; the others to t1.</summary>
    public string Tenant => DstSimulation.TenantOf(Name);

    public override string ToString() => $"req#{Id} {Op} {Name} {Replicas}";
}

internal sealed record ClientReply(long Id, ObjectStatus Status, long Version)
{
    public override string ToString() => $"reply#{Id} {Status} v{Version}";
}

internal sealed record AgentSync(int Node)
{
    public override string ToString() => $"sync n{Node}";
}

internal sealed record AgentSnapshot(int Incarnation, long Version, (TaskId Task, long Generation)[] Bindings)
{
    public override string ToString() => $"snapshot p{Incarnation} v{Version} ({Bindings.Length})";
}

internal sealed record AgentReport(int Node, TaskId Task, long Generation, BindingPhase Phase)
{
    public override string ToString() => $"report n{Node} {Task}@{Generation} {Phase}";
}

/// <summary>A deposed scheduler still running (a partitioned or paused former leader) until it dies.</summary>
internal sealed record Zombie(int Id, SchedulingEngine Engine, SkewedTime Clock, DateTimeOffset DiesAt);

/// <summary>One incarnation of the server process: everything in it is rebuilt from the disk after a crash.</summary>
internal sealed class Process
{
    private readonly DstSimulation _sim;
    private readonly List<(Task<ObjectResult> Task, long Id, string What)> _replies = new();
    private SkewedTime _clock = null!;
    private int _schedulers;

    public Process(DstSimulation sim, Cell cell, int id)
    {
        _sim = sim;
        Id = id;
        Cell = cell;
        StartedAt = sim.Now;
        var o = sim.Options;
        Store = new ObjectStore(cell, new ObjectStoreOptions { Time = sim.Time, HistoryCapacity = 16, MaxWatcherLag = 8, Buggify = o.Buggify }, sim.Disk);
        Scheduler = new ManualControllerScheduler(sim.Time);
        Reserver = new Reserver(sim, this);
        // One policy source per process, shared by every scheduler incarnation; the active revision is restored from the store.
        Policies = new PolicyRevisions(Store, new PolicySource(), sim.Time);
        Policies.Load();
        StartScheduler();
        Reservations = new ReservationController(cell, Scheduler, new ReservationControllerOptions { Interval = TimeSpan.FromSeconds(1), RepairDeadline = o.RepairDeadline });
        Reservations.Start();
        Repair = new RepairController(Store, cell, Scheduler, new RepairControllerOptions { Interval = TimeSpan.FromSeconds(2), FinalizerDeadline = TimeSpan.FromSeconds(20) });
        Repair.Start();
        // Quotas and overrides (issue 18): tenant t2's Quota object is applied by the quota controller; emergency-quota
        // overrides raise it for their TTL through the override sweep, which reverts them at expiry (also after a crash).
        Quotas = new QuotaController(Store, cell, sim.Time, new QuotaControllerOptions { UsageRefresh = TimeSpan.FromSeconds(2) });
        QuotaRunner = Quotas.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(5) });
        QuotaRunner.Start();
        Overrides = new OverrideController(Store, cell, Scheduler, new OverrideControllerOptions { Interval = TimeSpan.FromSeconds(1) });
        Overrides.Start();
    }

    public QuotaController Quotas { get; }
    public ControllerRunner QuotaRunner { get; }
    public OverrideController Overrides { get; }

    public int Id { get; }
    public Cell Cell { get; }
    public ObjectStore Store { get; }
    public ManualControllerScheduler Scheduler { get; }
    public SchedulingEngine Engine { get; private set; } = null!;
    public RemoteCommitter Committer { get; private set; } = null!;
    public WorkloadController Controller { get; private set; } = null!;
    public ControllerRunner Runner { get; private set; } = null!;
    public ReservationController Reservations { get; }
    public RepairController Repair { get; }
    public Reserver Reserver { get; }
    public PolicyRevisions Policies { get; }
    public Task<PolicyResult>? PendingPolicy { get; set; }
    public bool PendingIsStage { get; set; }
    public int StagedRevision { get; set; }
    public List<Zombie> Zombies { get; } = new();
    public DateTimeOffset StartedAt { get; }

    private void StartScheduler()
    {
        _schedulers++;
        _clock = new SkewedTime(_sim.Time);
        var opts = new SchedulingOptions { Seed = _sim.Next(0, int.MaxValue), Time = _clock, DecisionLogCapacity = 256, Policy = Policies.Source, DecisionSink = _sim.DecisionChecker };
        opts.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 2, LeaseDuration = _sim.Options.Lease, QueueCapacity = 10_000, Backoff = TimeSpan.FromMilliseconds(20) });
        Committer = new RemoteCommitter(_sim, Cell, (ulong)(Id * 1000 + _schedulers)) { Interleave = () => Reserver.Act() };
        Engine = new SchedulingEngine(Cell, Committer, opts);
        Controller = new WorkloadController(Store, Engine, _sim.Time, new WorkloadControllerOptions
        {
            Observer = ReplicaObserver.AgentReported(Cell),
            ProgressRequeue = TimeSpan.FromMilliseconds(200),
            ParkedRetryDelay = TimeSpan.FromSeconds(2),
        });
        Runner = Controller.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(5), Workers = 2 });
        Runner.Start();
    }

    /// <summary>The scheduler restarts mid-placement: the old engine lives on as a zombie with its lease until it dies.</summary>
    public void RestartScheduler()
    {
        Runner.Dispose();
        var z = new Zombie(_schedulers, Engine, _clock, _sim.Now + 2 * _sim.Options.Lease);
        Zombies.Add(z);
        _sim.Event($"scheduler {_schedulers} restarts (queued {Engine.QueuedTasks}); the old one lingers as a zombie");
        StartScheduler();
    }

    public void ExpireZombies()
    {
        for (int i = Zombies.Count - 1; i >= 0; i--)
        {
            if (Zombies[i].DiesAt > _sim.Now) continue;
            // Not Dispose: that would release the leases gracefully; a zombie just stops, its leases lapse.
            Zombies[i].Engine.Metrics.Dispose();
            _sim.Event($"zombie scheduler {Zombies[i].Id} dies");
            Zombies.RemoveAt(i);
        }
    }

    /// <summary>The process dies: nothing of it runs again (its pending acknowledgements never complete).</summary>
    public void Kill()
    {
        Runner.Dispose();
        Reservations.Dispose();
        Repair.Dispose();
        QuotaRunner.Dispose();
        Overrides.Dispose();
        Engine.Metrics.Dispose();
        foreach (var z in Zombies) z.Engine.Metrics.Dispose();
        Zombies.Clear();
        _replies.Clear();
        Cell.Dispose();
    }

    /// <summary>Handles a message delivered to the server.</summary>
    public void Handle(SimNetwork.Message m)
    {
        switch (m.Payload)
        {
            case ClientRequest r:
                HandleClient(r);
                break;
            case AgentSync s:
            {
                var list = new List<(TaskId, long)>();
                if (Cell.TryGetNodeId($"n{s.Node}", out var node))
                    foreach (var a in Cell.GetAllocationsOnNode(node)) list.Add((a.Task, a.Generation));
                _sim.Network.Send(SimNetwork.Server, m.From, new AgentSnapshot(Id, Cell.Version, [.. list]), _sim.FaultsOn);
                break;
            }
            case AgentReport rep:
            {
                if (!Cell.TryGetNodeId($"n{rep.Node}", out var node)) break;
                var st = Cell.ReportBindingPhase(rep.Task, node, rep.Generation, rep.Phase);
                if (st != BindingPhaseStatus.Ok)
                {
                    _sim.Count(DstFault.StaleReport);
                    _sim.Event($"server refuses {rep}: {st}");
                }
                break;
            }
        }
    }

    private void HandleClient(ClientRequest r)
    {
        var key = new ObjectKey(Workload.KindName, r.Tenant, r.Name);
        ValueTask<ObjectResult> op;
        if (r.Op == 'D') op = Store.DeleteAsync(key);
        else if (Store.Get(key).Object is Workload w)
        {
            w.Spec.Replicas = r.Replicas;
            op = Store.UpdateAsync(w);
        }
        else op = Store.CreateAsync(DstSimulation.NewWorkload(r.Name, r.Replicas));
        _sim.Event($"server handles {r}");
        _replies.Add((op.AsTask(), r.Id, r.ToString()));
    }

    /// <summary>Sends the replies of client writes that completed (a write completes once durable). Returns how many.</summary>
    public int PumpReplies()
    {
        int n = 0;
        for (int i = 0; i < _replies.Count; i++)
        {
            var (task, id, _) = _replies[i];
            if (!task.IsCompleted) continue;
            _replies.RemoveAt(i--);
            var res = task.Result;
            long v = res.Object?.Metadata.ResourceVersion ?? 0;
            _sim.Network.Send(SimNetwork.Server, SimNetwork.Client, new ClientReply(id, res.Status, v), _sim.FaultsOn);
            n++;
        }
        return n;
    }
}
