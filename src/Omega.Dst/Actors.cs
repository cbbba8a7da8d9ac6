using Omega.Cells;
using Omega.ControlPlane;

namespace Omega.Dst;

/// <summary>
/// The operator's client: create-or-scale and delete of workloads over the network, each request retried with the same
/// id after a timeout (a lost request or a lost reply), acknowledged writes reported to the durability checker.
/// </summary>
internal sealed class SimClient(DstSimulation sim)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(1500);
    private readonly SortedDictionary<long, (ClientRequest Req, DateTimeOffset SentAt, int Tries)> _outstanding = new();
    private long _ids;

    public int Outstanding => _outstanding.Count;

    public void Act()
    {
        var o = sim.Options;
        // One in five requests is for the quota-limited tenant's workload, which asks for up to twice its quota.
        bool quota = sim.Next(0, 5) == 0;
        string name = quota ? "q0" : "w" + sim.Next(0, o.Workloads);
        int max = quota ? DstSimulation.QuotaReplicas * 2 : o.MaxReplicas;
        var req = sim.Next(0, 100) < 85 ? new ClientRequest(++_ids, 'P', name, sim.Next(0, max + 1)) : new ClientRequest(++_ids, 'D', name, 0);
        _outstanding[req.Id] = (req, sim.Now, 1);
        sim.Event($"client sends {req}");
        sim.Network.Send(SimNetwork.Client, SimNetwork.Server, req, sim.FaultsOn);
    }

    public void OnTime()
    {
        List<long>? due = null;
        foreach (var (id, e) in _outstanding)
            if (sim.Now - e.SentAt >= Timeout) (due ??= new()).Add(id);
        if (due is null) return;
        foreach (long id in due)
        {
            var e = _outstanding[id];
            if (e.Tries >= 4)
            {
                _outstanding.Remove(id);
                sim.Event($"client gives up on {e.Req}");
                continue;
            }
            _outstanding[id] = (e.Req, sim.Now, e.Tries + 1);
            sim.Count(DstFault.ClientRetry);
            sim.Event($"client times out, resends {e.Req}");
            sim.Network.Send(SimNetwork.Client, SimNetwork.Server, e.Req, sim.FaultsOn);
        }
    }

    public void Handle(object payload)
    {
        if (payload is not ClientReply r || !_outstanding.Remove(r.Id, out var e)) return;
        if (r.Status == ObjectStatus.Ok) sim.Acked(r.Version, e.Req.ToString());
        else sim.Event($"client got {r} for {e.Req}");
    }
}

/// <summary>
/// A faithful stand-in for the node agent: it learns its node's bindings from snapshots the server sends (which may
/// arrive late, twice or out of order: a stale watch), starts each binding (Started, then Ready) and reports the phase;
/// it re-reports its whole cache on a heartbeat and after a reconnect (possibly for bindings long gone).
/// </summary>
internal sealed class SimAgent(DstSimulation sim, int node)
{
    // Sorted so a heartbeat reports in the same order in every run.
    private readonly SortedDictionary<TaskId, (long Generation, BindingPhase Phase)> _cache = new(Comparer<TaskId>.Create(
        static (a, b) => a.Job.Value != b.Job.Value ? a.Job.Value.CompareTo(b.Job.Value) : a.Index.CompareTo(b.Index)));
    private (int Incarnation, long Version) _seen;

    private int Endpoint => DstSimulation.AgentEndpoint(node);

    public void Reconnect()
    {
        sim.Network.Send(Endpoint, SimNetwork.Server, new AgentSync(node), sim.FaultsOn);
        Heartbeat();
    }

    public void Sync() => sim.Network.Send(Endpoint, SimNetwork.Server, new AgentSync(node), sim.FaultsOn);

    public void Heartbeat()
    {
        foreach (var (task, (gen, phase)) in _cache) Report(task, gen, phase);
    }

    public void Progress(bool all)
    {
        foreach (var task in new List<TaskId>(_cache.Keys))
        {
            var (gen, phase) = _cache[task];
            if (phase != BindingPhase.Started) continue;
            _cache[task] = (gen, BindingPhase.Ready);
            Report(task, gen, BindingPhase.Ready);
            if (!all) return;
        }
    }

    private void Report(TaskId task, long gen, BindingPhase phase)
        => sim.Network.Send(Endpoint, SimNetwork.Server, new AgentReport(node, task, gen, phase), sim.FaultsOn);

    public void Handle(object payload)
    {
        if (payload is not AgentSnapshot s) return;
        // A watch client ignores what is older than what it has seen (within one server incarnation: a restarted
        // server may be at a lower version after losing its non-durable suffix).
        if (s.Incarnation < _seen.Incarnation || (s.Incarnation == _seen.Incarnation && s.Version < _seen.Version)) return;
        _seen = (s.Incarnation, s.Version);
        var live = new HashSet<TaskId>();
        foreach (var (task, gen) in s.Bindings)
        {
            live.Add(task);
            if (_cache.TryGetValue(task, out var c) && c.Generation == gen) continue;
            _cache[task] = (gen, BindingPhase.Started);
            Report(task, gen, BindingPhase.Started);
        }
        var gone = new List<TaskId>();
        foreach (var t in _cache.Keys) if (!live.Contains(t)) gone.Add(t);
        foreach (var t in gone) _cache.Remove(t);
    }
}

/// <summary>
/// A second scheduler identity that reserves capacity (Reserve claims with a TTL) through its own network link,
/// deciding on a cached view of the cell that it refreshes only sometimes (a stale scheduler cache); it releases some
/// holds and leaks the rest to the reservation controller.
/// </summary>
internal sealed class Reserver
{
    private readonly DstSimulation _sim;
    private readonly Process _p;
    private readonly RemoteCommitter _committer;
    private readonly Dictionary<int, ResourceVector> _free = new();
    private SchedulerLease _lease;
    private long _next;
    private bool _inside;

    public Reserver(DstSimulation sim, Process p)
    {
        _sim = sim;
        _p = p;
        _committer = new RemoteCommitter(sim, p.Cell, (ulong)(p.Id * 1000 + 999));
    }

    public RemoteCommitter Committer => _committer;

    public void Act()
    {
        if (_inside) return; // re-entered from its own lost reply: one step at a time
        _inside = true;
        try
        {
            ActCore();
        }
        finally
        {
            _inside = false;
        }
    }

    private void ActCore()
    {
        var cell = _p.Cell;
        if (_lease.Token.Value == 0 || _sim.Now >= _lease.ExpiresAt - TimeSpan.FromSeconds(1))
        {
            bool renewed = false;
            LeaseResult r = default;
            if (_lease.Token.Value != 0)
            {
                r = _committer.RenewLease(_lease, TimeSpan.FromSeconds(6));
                renewed = r.Succeeded;
            }
            if (!renewed) r = _committer.AcquireLease("reserver", TimeSpan.FromSeconds(6));
            if (!r.Succeeded) return;
            _lease = r.Lease;
        }
        if (_free.Count == 0 || _sim.Chance(0.5)) Refresh(cell);
        if (_sim.Chance(0.3))
        {
            foreach (var res in cell.GetReservations())
            {
                if (res.Task.Job.Value < 1_000_000) continue;
                var st = cell.ReleaseReservation(res.Task, res.Generation);
                _sim.Event($"reserver releases {res.Task}: {st}");
                return;
            }
            return;
        }
        int node = _sim.Next(0, _sim.Options.Nodes);
        var want = new ResourceVector(_sim.Next(5, 26) * 100, 1L << 30);
        bool cachedFits = _free.TryGetValue(node, out var free) && want.FitsWithin(free);
        if (!cachedFits && _sim.Chance(0.7)) return; // a careful reserver mostly trusts its cache
        if (!cell.TryGetNodeId($"n{node}", out var id) || !cell.TryGetTenant("t1", out var tenant)) return;
        var tx = new Transaction(_lease);
        var task = new TaskId(new JobId(1_000_000 + ++_next), 0);
        tx.Add(new Claim(task, id, want, 0, tenant, 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMilliseconds(_sim.Next(1000, 6000))));
        var result = _committer.Commit(tx);
        if (cachedFits && result.AppliedCount == 0) _sim.Count(DstFault.StaleCacheDecision);
        _sim.Event($"reserver reserves {want.CpuMillis}m on n{node} as {task}: {result.Status} applied {result.AppliedCount}");
        if (result.Status.IsFencingFailure()) _lease = default;
    }

    private void Refresh(Cell cell)
    {
        _free.Clear();
        var used = new Dictionary<int, ResourceVector>();
        foreach (var a in cell.GetAllocations()) used[a.Node.Value] = (used.TryGetValue(a.Node.Value, out var u) ? u : default) + a.Resources;
        foreach (var r in cell.GetReservations()) used[r.Node.Value] = (used.TryGetValue(r.Node.Value, out var u) ? u : default) + r.Resources;
        for (int i = 0; i < _sim.Options.Nodes; i++) _free[i] = DstSimulation.Capacity - (used.TryGetValue(i, out var u) ? u : default);
    }
}
