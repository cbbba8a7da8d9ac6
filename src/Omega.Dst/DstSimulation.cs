using System.Globalization;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;

namespace Omega.Dst;

/// <summary>
/// One deterministic simulation run of the whole control plane (docs/testing.md): the real <see cref="Cell"/> and commit
/// path, <see cref="ObjectStore"/>, <see cref="SchedulingEngine"/> workers (stepped explicitly), and the workload,
/// reservation and repair controllers on a <see cref="ManualControllerScheduler"/>, over a simulated journal
/// (<see cref="SimDisk"/>), clock (<see cref="SimTime"/>) and network, driven on one thread by one seeded random
/// stream. Checkers run after every step; once the faults stop, the run must converge.
/// </summary>
public sealed partial class DstSimulation
{
    private static readonly DateTimeOffset Epoch = new(2027, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly ResourceVector NodeCapacity = new(4000, 8L << 30);
    private const long AgentBase = 100;

    private readonly DstOptions _o;
    private readonly Random _rng;
    private readonly SimTime _time = new(Epoch);
    private readonly SimDisk _disk = new();
    private readonly SimNetwork _net;
    private readonly long[] _faults = new long[Enum.GetValues<DstFault>().Length];
    private readonly Queue<string> _tail = new();
    private readonly List<string>? _all;
    private readonly Dictionary<(string Name, long Token), DateTimeOffset> _leaseExpiry = new();
    private ulong _hash = 14695981039346656037UL;
    private string? _violation;
    private int _step;
    private bool _faultsOn = true;
    private Process _p = null!;
    private int _incarnation;
    private long _ackedVersion;
    private ResourceVector _lastQuotaUsage;
    private long _overrides;

    /// <summary>Replicas tenant t2's quota admits (its Quota object's limit is this many 1-core replicas).</summary>
    internal const int QuotaReplicas = 3;

    /// <summary>Tenant t2's Quota object limit: three 1-core replicas (memory does not bind).</summary>
    internal static readonly ResourceVector QuotaBase = new(QuotaReplicas * 1000L, 64L << 30);

    /// <summary>How long after its TTL an override may still count (the sweep runs every second and waits for a flush).</summary>
    internal static readonly TimeSpan OverrideGrace = TimeSpan.FromSeconds(3);

    internal static string TenantOf(string workload) => workload.StartsWith('q') ? "t2" : "t1";

    /// <summary>Creates a run (call <see cref="Run"/>).</summary>
    public DstSimulation(DstOptions options)
    {
        _o = options ?? throw new ArgumentNullException(nameof(options));
        // One stream for everything. The 64-bit seed is folded into Random's 32-bit seed deterministically.
        _rng = new Random(unchecked((int)(options.Seed ^ (options.Seed >> 32) ^ 0x5DEECE66L)));
        _net = new SimNetwork(this);
        if (options.FullTrace) _all = new List<string>();
        _client = new SimClient(this);
        for (int i = 0; i < options.Nodes; i++) _agents.Add(new SimAgent(this, i));
    }

    /// <summary>Runs one seed to the end (or to the first violation) and returns its result.</summary>
    public static DstResult RunSeed(long seed, DstOptions? template = null)
    {
        var o = template ?? new DstOptions();
        var copy = new DstOptions
        {
            Seed = seed, Steps = o.Steps, QuiesceLimit = o.QuiesceLimit, Buggify = o.Buggify, Nodes = o.Nodes, Workloads = o.Workloads,
            MaxReplicas = o.MaxReplicas, Lease = o.Lease, RepairDeadline = o.RepairDeadline, FaultRate = o.FaultRate, TraceTail = o.TraceTail,
            FullTrace = o.FullTrace,
        };
        return new DstSimulation(copy).Run();
    }

    internal DateTimeOffset Now => _time.GetUtcNow();

    internal string? Violation => _violation;

    internal SimTime Time => _time;

    internal Process Current => _p;

    internal SimNetwork Network => _net;

    internal DstOptions Options => _o;

    // ------------------------------------------------------------------ randomness, events, counting

    internal bool Chance(double p) => _rng.NextDouble() < p;

    internal bool FaultChance(double p) => _faultsOn && _rng.NextDouble() < p * _o.FaultRate;

    internal int Next(int min, int max) => _rng.Next(min, max);

    internal void Count(DstFault f) => _faults[(int)f]++;

    internal void Event(string what)
    {
        string e = string.Create(CultureInfo.InvariantCulture, $"[{_step,5} t={_time.Elapsed.TotalMilliseconds,9:0}ms] {what}");
        foreach (char c in e) _hash = (_hash ^ c) * 1099511628211UL;
        _all?.Add(e);
        _tail.Enqueue(e);
        while (_tail.Count > Math.Max(1, _o.TraceTail)) _tail.Dequeue();
    }

    /// <summary>Records the first violation (later ones are ignored: the first is what the trace leads to).</summary>
    internal void Fail(string checker, string detail)
    {
        if (_violation is not null) return;
        _violation = $"{checker}: {detail}";
        Event("VIOLATION " + _violation);
    }

    // ------------------------------------------------------------------ leases (the stale-token checker's model)

    internal void LeaseGranted(string name, SchedulerLease lease)
    {
        _leaseExpiry[(name, lease.Token.Value)] = lease.ExpiresAt;
        Event($"lease {name} token {lease.Token.Value} until +{(lease.ExpiresAt - Epoch).TotalMilliseconds:0}ms");
    }

    /// <summary>
    /// True when a commit under (<paramref name="scheduler"/>, <paramref name="token"/>) must not apply: the identity has a
    /// newer token, or the lease this token was granted with has lapsed by the simulation's (the cell's) clock. The model
    /// is lenient on purpose (a renewal lost in a crash keeps its later expiry here), so it never flags a correct cell.
    /// </summary>
    internal bool IsStale(Cell cell, SchedulerId scheduler, FencingToken token)
    {
        string? name = cell.LeaseName(scheduler);
        if (name is null) return true;
        if (cell.GetCurrentToken(name) != token) return true;
        return !_leaseExpiry.TryGetValue((name, token.Value), out var until) || Now >= until;
    }

    // ------------------------------------------------------------------ the run

    /// <summary>Runs the fault phase, then the convergence phase; checkers after every step.</summary>
    public DstResult Run()
    {
        bool converged = false;
        // A continuation resumed by a durability flush must run inline, on this thread, at the step that flushed. .NET
        // inlines it only where no SynchronizationContext is current (a test runner installs one): clear it for the run.
        var context = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(null);
        _disk.Thread = Environment.CurrentManagedThreadId;
        try
        {
            Boot();
            for (_step = 1; _step <= _o.Steps && _violation is null; _step++)
            {
                StepOnce();
                Settle();
                Check();
            }
            if (_violation is null)
            {
                _faultsOn = false;
                _net.HealAll();
                Event("faults stop");
                converged = Quiesce();
            }
        }
#pragma warning disable CA1031 // a crash of the product under simulation is a finding, reported with its seed
        catch (Exception e)
#pragma warning restore CA1031
        {
            Fail("exception", e.ToString());
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(context);
        }
        // The last incarnation is never killed by a fault: dispose it here. Its cell's and engine's meters are registered
        // with the process-wide meter listeners, which would otherwise keep every seed's cell alive (a 10,000-seed run
        // reached 3 GiB resident by seed 3,000 and slowed as the heap grew; the unified harness had the same leak).
        if (_p is not null) _p.Kill();
        if (_disk.OffThread > 0) Fail("harness", $"{_disk.OffThread} journal appends or durability waits ran off the simulation's thread: the run is not deterministic");
        IReadOnlyList<string> trace = _all is not null ? _all : [.. _tail];
        return new DstResult(_o.Seed, _hash, _violation, trace, (long[])_faults.Clone(), _step, _time.Elapsed, converged) { DecisionsReplayed = _decisionsReplayed };
    }

    private void StepOnce()
    {
        int roll = _rng.Next(0, 100);
        double f = _o.FaultRate;
        switch (roll)
        {
            case < 18: AdvanceTime(TimeSpan.FromMilliseconds(_rng.Next(5, 250))); break;
            case < 36: StepWorker(); break;
            case < 48: Flush(_rng.Next(1, 4)); break;
            case < 68: Deliver(reorder: _faultsOn); break;
            case < 76: _client.Act(); break;
            case < 82: AgentAct(); break;
            case < 87: _p.Reserver.Act(); break;
            default:
                if (f <= 0 || _rng.NextDouble() > Math.Min(1, 0.35 * f)) { AdvanceTime(TimeSpan.FromMilliseconds(_rng.Next(5, 100))); break; }
                InjectFault();
                break;
        }
    }

    private void InjectFault()
    {
        switch (_rng.Next(0, 8))
        {
            case 7: QuotaOverride(); break;
            case 6: PolicyChange(); break;
            case 0: Crash(); break;
            case 1: RestartScheduler(); break;
            case 2:
            {
                // Within lease bounds: at most half a lease forward, for every process at once.
                var jump = TimeSpan.FromMilliseconds(_rng.Next(1, (int)(_o.Lease.TotalMilliseconds / 2)));
                Count(DstFault.ClockJump);
                Event($"clock jumps +{jump.TotalMilliseconds:0}ms");
                _time.Advance(jump);
                break;
            }
            case 3:
            {
                int ep = _rng.Next(0, 1 + _agents.Count) switch { 0 => SimNetwork.Client, var k => (int)AgentBase + k - 1 };
                bool cut = !_net.IsPartitioned(ep);
                _net.SetPartitioned(ep, cut);
                Count(DstFault.Partition);
                Event($"partition {(cut ? "cuts" : "heals")} endpoint {ep}");
                break;
            }
            case 4: ReconnectStorm(); break;
            default:
                if (_p.Zombies.Count > 0) ZombieClockJump(_p.Zombies[_rng.Next(0, _p.Zombies.Count)]);
                else RestartScheduler();
                break;
        }
    }

    /// <summary>Runs what is ready: controller work due now, and server replies whose writes completed.</summary>
    private void Settle()
    {
        for (int round = 0; round < 8; round++)
        {
            int n = _p.Scheduler.RunUntilIdle(100_000);
            n += _p.PumpReplies();
            if (n == 0) break;
        }
    }

    internal void AdvanceTime(TimeSpan by)
    {
        _time.Advance(by);
        _client.OnTime();
        _p.ExpireZombies();
    }

    internal void Flush(int elements)
    {
        int n = _disk.Flush(elements);
        if (n > 0) Event($"disk flush {n} -> durable v{_disk.DurableVersion}");
    }

    private void StepWorker()
    {
        var workers = new List<(SchedulerWorker W, string Who)>();
        foreach (var w in _p.Engine.Workers) workers.Add((w, "current"));
        foreach (var z in _p.Zombies) foreach (var w in z.Engine.Workers) workers.Add((w, "zombie"));
        var (worker, who) = workers[_rng.Next(0, workers.Count)];
        var outcome = worker.Step();
        if (outcome != StepOutcome.Idle) Event($"{who} worker {worker.Kind}/{worker.Index} {outcome} (cell v{_p.Cell.Version})");
    }

    private void Deliver(bool reorder)
    {
        if (_net.TakeDeliverable(reorder) is not { } m) return;
        if (m.To == SimNetwork.Server) _p.Handle(m);
        else if (m.To == SimNetwork.Client) _client.Handle(m.Payload);
        else _agents[(int)(m.To - AgentBase)].Handle(m.Payload);
    }

    // ------------------------------------------------------------------ process lifecycle

    private void Boot()
    {
        var cell = new Cell(CellOptions(), _disk.Journal());
        for (int i = 0; i < _o.Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", NodeCapacity));
        cell.CreateTenant("t1");
        cell.CreateTenant("t2");
        _disk.Flush(); // the bootstrap is durable before anything can crash
        _p = new Process(this, cell, ++_incarnation);
        var quota = new Quota();
        quota.Metadata.Name = "t2";
        quota.Metadata.Tenant = "t2";
        quota.Spec.Limit = new ResourceRequest { CpuMillis = QuotaBase.CpuMillis, MemoryBytes = QuotaBase.MemoryBytes };
        var created = _p.Store.CreateAsync(quota);
        _disk.Flush();
        if (!created.IsCompleted || !created.Result.IsOk) Fail("harness", "the bootstrap Quota object was not written");
        Settle();
        _disk.Flush(); // the quota controller's limit is durable before anything can crash
        Event($"boot: {_o.Nodes} nodes, tenant t1, cell v{cell.Version}");
        foreach (var a in _agents) a.Reconnect();
    }

    internal CellOptions CellOptions() => new() { Name = "dst", Time = _time, Buggify = _o.Buggify };

    private void Crash()
    {
        bool tear = _rng.Next(0, 2) == 0;
        Count(DstFault.Crash);
        if (tear) Count(DstFault.TornTail);
        Event($"CRASH process {_incarnation} (disk {_disk.DurableCount}/{_disk.Count} durable, tear={tear})");
        // Override expiry during recovery: the process stays down (recovers) until every live override's TTL has passed,
        // so the recovered cell may carry a raised limit whose audited window is over; the new override sweep must revert
        // it before the schedulers place more than the quota.
        DateTimeOffset? lastExpiry = null;
        foreach (var o in _p.Store.List(new ObjectFilter(Override.KindName)).Items)
            if (o is Override ov && ov.IsLive(Now) && ov.ExpiresAt is { } e && (lastExpiry is null || e > lastExpiry)) lastExpiry = e;
        _p.Kill();
        _disk.Crash(tear, _rng);
        if (lastExpiry is { } until && _rng.Next(0, 4) != 0)
        {
            var down = until - Now + TimeSpan.FromMilliseconds(_rng.Next(1, 1500));
            Count(DstFault.OverrideExpiryDuringRecovery);
            Event($"recovery takes {down.TotalMilliseconds:0}ms: live overrides expire meanwhile");
            _time.Advance(down);
        }
        var cell = _disk.Recover(CellOptions());
        // The durability checker: everything acknowledged to a client is in the recovered prefix.
        if (cell.Version < _ackedVersion)
            Fail("acked-write-lost", $"a write acknowledged at cell version {_ackedVersion} is gone: the recovered cell is at v{cell.Version}");
        var audit = RealProblems(cell.Audit());
        if (audit.Count > 0) Fail("recovery-audit", string.Join("; ", audit));
        _p = new Process(this, cell, ++_incarnation);
        _lastQuotaUsage = cell.TryGetTenant("t2", out var t2) ? cell.GetTenantUsage(t2).Usage : default;
        Event($"restart as process {_incarnation}: recovered v{cell.Version}, {cell.AllocationCount} bindings, {cell.ReservationCount} reservations, {_p.Store.Count} objects");
        foreach (var a in _agents) a.Reconnect();
    }

    private void RestartScheduler()
    {
        Count(DstFault.SchedulerRestart);
        _p.RestartScheduler();
    }

    private void ZombieClockJump(Zombie z)
    {
        // Back within the lease: the deposed scheduler believes its lease has 50-95% of its length left to run.
        var skew = -TimeSpan.FromMilliseconds(_o.Lease.TotalMilliseconds * _rng.Next(50, 96) / 100.0);
        z.Clock.Skew = skew;
        Count(DstFault.ZombieClockJump);
        Event($"zombie scheduler {z.Id} clock jumps {skew.TotalMilliseconds:0}ms");
    }

    private void ReconnectStorm()
    {
        Count(DstFault.ReconnectStorm);
        int dropped = _net.DropWhere(ep => ep >= AgentBase);
        Event($"agent reconnect storm ({dropped} messages lost)");
        foreach (var a in _agents) a.Reconnect();
    }

    // The operator stages, promotes and rolls back scheduler policy revisions while replicas are placed and starting.
    private void PolicyChange()
    {
        var p = _p.Policies;
        if (_p.PendingPolicy is { } pending)
        {
            if (!pending.IsCompleted) return; // one operator command at a time (PolicyRevisions serializes them anyway)
            if (_p.PendingIsStage && pending.Result.IsOk) _p.StagedRevision = pending.Result.Revision;
            Event($"policy command done: {pending.Result.Status} r{pending.Result.Revision}");
            _p.PendingPolicy = null;
        }
        int active = p.ActiveRevision;
        if (_p.StagedRevision > 0 && _p.StagedRevision != active)
        {
            Count(DstFault.PolicyChange);
            Event($"operator promotes policy r{_p.StagedRevision} (active r{active})");
            _p.PendingIsStage = false;
            _p.PendingPolicy = p.PromoteAsync(_p.StagedRevision).AsTask();
            _p.StagedRevision = 0;
        }
        else if (active > 0 && _rng.Next(0, 2) == 0)
        {
            // The rollback race: replicas placed under the active revision may be starting right now.
            int starting = 0;
            foreach (var a in _p.Cell.GetAllocations())
                if (_p.Cell.GetBindingLifecycle(a.Task, a.Generation).Phase != BindingPhase.Ready) starting++;
            Count(DstFault.PolicyChange);
            if (starting > 0) Count(DstFault.RollbackWhileStarting);
            Event($"operator rolls back policy r{active} with {starting} replica(s) starting");
            _p.PendingIsStage = false;
            _p.PendingPolicy = p.RollbackAsync().AsTask();
        }
        else
        {
            var settings = new SchedulerPolicySettings();
            settings.Weights["bin-packing"] = _rng.Next(0, 10);
            settings.Weights["domain-spread"] = _rng.Next(0, 10);
            settings.Filters["group-anti-affinity"] = _rng.Next(0, 2) == 0;
            Count(DstFault.PolicyChange);
            Event($"operator stages a policy (bin-packing {settings.Weights["bin-packing"]}, domain-spread {settings.Weights["domain-spread"]})");
            _p.PendingIsStage = true;
            _p.PendingPolicy = p.StageAsync(settings).AsTask();
        }
    }

    // An operator raises tenant t2's quota for a short while: an audited override (author, reason, TTL) written to the store.
    private void QuotaOverride()
    {
        var ov = new Override();
        ov.Metadata.Name = "raise-" + ++_overrides;
        ov.Spec.Type = OverrideType.EmergencyQuota;
        ov.Spec.Target = "t2";
        ov.Spec.TtlSeconds = _rng.Next(1, 7);
        ov.Spec.Reason = "dst: an emergency needs more capacity";
        ov.Spec.Author = "operator";
        ov.Spec.Extra = new ResourceRequest { CpuMillis = 1000L * _rng.Next(1, 4) };
        Count(DstFault.QuotaOverride);
        Event($"operator raises t2's quota by {ov.Spec.Extra.CpuMillis}m for {ov.Spec.TtlSeconds} s ({ov.Metadata.Name})");
        _ = _p.Store.CreateAsync(ov).AsTask(); // acknowledged once durable; the checker reads the store, not the ack
    }

    internal void Acked(long version, string what)
    {
        if (version > _ackedVersion) _ackedVersion = version;
        Event($"client ack {what} v{version}");
    }

    internal static int AgentEndpoint(int node) => (int)AgentBase + node;
}
