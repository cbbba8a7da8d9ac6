using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;

namespace Omega.Dst;

// The checkers (run after every step) and the convergence phase.
public sealed partial class DstSimulation
{
    private readonly SimClient _client;
    private string _lastWorkloads = "";
    private readonly List<SimAgent> _agents = new();

    internal static ResourceVector Capacity => NodeCapacity;

    private long _decisionsReplayed;

    /// <summary>Replays every decision the schedulers record, inline, as the "decision-replay" checker.</summary>
    internal IDecisionSink DecisionChecker => _decisionChecker ??= new ReplayingSink(this);

    private IDecisionSink? _decisionChecker;

    private sealed class ReplayingSink(DstSimulation sim) : IDecisionSink
    {
        public void OnRecorded(DecisionRecord record) => sim.ReplayDecision(record);
    }

    /// <summary>
    /// The decision-replay checker (issue 18, item 4): every decision a scheduler records is replayed at once from its
    /// record alone (the inputs it kept, the policy revision compiled from the store's revision object) with the real
    /// pipeline, and must reach the same choice for the same reasons. Runs on the simulation's thread, inside the worker's
    /// step (the sink is called synchronously), so it sees the store as the decision did.
    /// </summary>
    private void ReplayDecision(DecisionRecord r)
    {
        if (_violation is not null) return;
        if (r.Inputs is null) { Fail("decision-replay", $"the decision of {r.Job} attempt {r.Attempt} kept no inputs"); return; }
        var policy = new DecisionReplayer(_p.Store).PolicyAt(r.PolicyRevision);
        if (policy is null) { Fail("decision-replay", $"the decision of {r.Job} attempt {r.Attempt} names policy r{r.PolicyRevision}, which the store does not hold"); return; }
        var outcome = DecisionReplay.Replay(r.Inputs, policy, r.TenantUsage, r.TenantQuota);
        var diff = DecisionFacts.From(r).Differences(outcome.Facts);
        if (diff.Count > 0 || outcome.Notes.Count > 0)
        {
            Fail("decision-replay", $"the decision of {r.Job} attempt {r.Attempt} (snapshot v{r.SnapshotVersion}, r{r.PolicyRevision}) replays differently: {string.Join("; ", [.. diff, .. outcome.Notes])}");
            return;
        }
        _decisionsReplayed++;
    }

    internal SimDisk Disk => _disk;

    internal bool FaultsOn => _faultsOn;

    internal static Workload NewWorkload(string name, int replicas)
    {
        var w = new Workload();
        w.Metadata.Name = name;
        w.Metadata.Tenant = TenantOf(name);
        w.Spec.Type = WorkloadType.Service;
        w.Spec.Replicas = replicas;
        w.Spec.Priority = 100;
        w.Spec.Resources = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 1L << 30 };
        return w;
    }

    private void AgentAct()
    {
        var a = _agents[_rng.Next(0, _agents.Count)];
        switch (_rng.Next(0, 5))
        {
            case 0 or 1: a.Sync(); break;
            case 2 or 3: a.Progress(all: false); break;
            default: a.Heartbeat(); break;
        }
    }

    internal static bool TryOwner(TaskId task, out long uid)
    {
        long job = task.Job.Value;
        uid = (job & (WorkloadController.JobIdSpace - 1)) >> WorkloadController.SerialBits;
        return job > 0 && (job & WorkloadController.JobIdSpace) != 0;
    }

    /// <summary>The safety checkers. Each failure names its checker (docs/testing.md lists them).</summary>
    private void Check()
    {
        if (_violation is not null) return;
        var cell = _p.Cell;
        var allocs = cell.GetAllocations();
        var holds = cell.GetReservations();
        var used = new ResourceVector[_o.Nodes];
        var bound = new HashSet<TaskId>();
        foreach (var a in allocs)
        {
            if (!bound.Add(a.Task)) { Fail("one-live-binding", $"{a.Task} is bound twice"); return; }
            used[a.Node.Value] += a.Resources;
        }
        foreach (var r in holds)
        {
            if (bound.Contains(r.Task)) { Fail("one-live-binding", $"{r.Task} is both bound and reserved"); return; }
            used[r.Node.Value] += r.Resources;
        }
        for (int i = 0; i < used.Length; i++)
            if (!used[i].FitsWithin(NodeCapacity))
            {
                Fail("node-capacity", $"node n{i} holds {used[i].CpuMillis}m / {used[i].MemoryBytes} bytes, over its capacity {NodeCapacity.CpuMillis}m / {NodeCapacity.MemoryBytes}");
                return;
            }
        // At most one live binding per workload replica slot (the replica the client asked for runs once).
        foreach (var o in _p.Store.List(new ObjectFilter(Workload.KindName)).Items)
        {
            if (o is not Workload w) continue;
            var slots = new Dictionary<int, int>();
            foreach (var ra in w.Status.Replicas)
            {
                if (!cell.TryGetAllocation(WorkloadController.TaskFor(w.Metadata.Uid, ra.Serial), out _)) continue;
                slots[ra.Slot] = slots.TryGetValue(ra.Slot, out int c) ? c + 1 : 1;
                if (slots[ra.Slot] > 1) { Fail("one-live-binding", $"{w.Key} slot {ra.Slot} has two live bindings"); return; }
            }
        }
        // Leaked reservations: once the reservation controller has run for a deadline, nothing is held past expiry + deadline.
        var now = Now;
        if (now - _p.StartedAt > _o.RepairDeadline + TimeSpan.FromSeconds(1))
            foreach (var r in holds)
                if (now - r.ExpiresAt > _o.RepairDeadline)
                {
                    Fail("leaked-reservation", $"reservation {r.Task} on n{r.Node.Value} expired at +{(r.ExpiresAt - Epoch).TotalMilliseconds:0}ms and is still held at +{(now - Epoch).TotalMilliseconds:0}ms (deadline {_o.RepairDeadline.TotalSeconds:0} s)");
                    return;
                }
        var audit = RealProblems(cell.Audit());
        if (audit.Count > 0) { Fail("cell-audit", string.Join("; ", audit)); return; }
        CheckQuota(cell);
        if (_violation is not null) return;
        // Fold the state into the hash (not the printed trace) so a divergence shows even without an event.
        string state = $"v{cell.Version} b{allocs.Count} r{holds.Count} d{_disk.DurableCount}/{_disk.Count} n{_net.InFlight}";
        foreach (char c in state) _hash = (_hash ^ c) * 1099511628211UL;
        if (_all is not null)
        {
            var sb = new System.Text.StringBuilder();
            foreach (var o in _p.Store.List(new ObjectFilter(Workload.KindName)).Items)
                if (o is Workload w)
                {
                    sb.Append(w.Metadata.Name).Append(" uid").Append(w.Metadata.Uid).Append(" g").Append(w.Metadata.Generation).Append('/').Append(w.Status.ObservedGeneration)
                      .Append(" rv").Append(w.Metadata.ResourceVersion).Append(" want").Append(w.Spec.Replicas).Append(" [");
                    foreach (var ra in w.Status.Replicas)
                    {
                        sb.Append(ra.Slot).Append(':').Append(ra.Serial);
                        if (_p.Engine.TryGetJob(WorkloadController.JobFor(w.Metadata.Uid, ra.Serial), out var js)) sb.Append('(').Append(js.Phase).Append(')');
                        sb.Append(' ');
                    }
                    sb.Append("] x[");
                    foreach (int x in w.Status.Retired)
                    {
                        sb.Append(x);
                        if (_p.Engine.TryGetJob(WorkloadController.JobFor(w.Metadata.Uid, x), out var js)) sb.Append('(').Append(js.Phase).Append(')');
                        sb.Append(' ');
                    }
                    sb.Append("]; ");
                }
            string ws = sb.ToString();
            if (ws != _lastWorkloads) _all.Add($"[{_step,5}] workloads {ws}");
            _lastWorkloads = ws;
        }
        if (_all is not null) _all.Add($"[{_step,5}] state {state} q{_p.Engine.QueuedTasks} s{_p.Scheduler.Pending} z{_p.Zombies.Count}");
    }

    /// <summary>
    /// The audit's problems without "over quota": a tenant's limit may legitimately fall below its usage (an emergency
    /// override reverted at its TTL, an operator lowering a Quota object; <c>SetTenantQuota</c> allows it and commits then
    /// refuse new claims), which the audit reports as a fact, not a broken invariant (the cell's model tests filter it
    /// the same way). The quota checker below asserts what must hold instead.
    /// </summary>
    internal static List<string> RealProblems(IReadOnlyList<string> audit)
    {
        var real = new List<string>();
        foreach (var p in audit) if (!p.Contains("over quota", StringComparison.Ordinal)) real.Add(p);
        return real;
    }

    /// <summary>
    /// The quota checker: tenant t2's usage never grows beyond its Quota object's limit plus the extras of the audited
    /// emergency overrides (an author and a reason) live now or within <see cref="OverrideGrace"/> of their TTL. Usage
    /// admitted under an override may stay after it expires (quotas are enforced at commit), but nothing new is admitted.
    /// </summary>
    private void CheckQuota(Cell cell)
    {
        if (!cell.TryGetTenant("t2", out var t2)) return;
        var usage = cell.GetTenantUsage(t2).Usage;
        bool grew = usage.CpuMillis > _lastQuotaUsage.CpuMillis || usage.MemoryBytes > _lastQuotaUsage.MemoryBytes;
        _lastQuotaUsage = usage;
        if (!grew) return;
        var authorized = QuotaBase;
        var now = Now;
        var by = new List<string>();
        foreach (var o in _p.Store.List(new ObjectFilter(Override.KindName)).Items)
        {
            if (o is not Override ov || ov.Spec.Type != OverrideType.EmergencyQuota || ov.Spec.Target != "t2") continue;
            if (ov.Spec.Author.Length == 0 || ov.Spec.Reason.Length == 0 || ov.ExpiresAt is not { } e || now >= e + OverrideGrace) continue;
            authorized += ov.Spec.Extra.ToVector();
            by.Add(ov.Metadata.Name);
        }
        if (!usage.FitsWithin(authorized))
            Fail("quota", $"tenant t2's usage grew to {usage.CpuMillis}m, over its quota {QuotaBase.CpuMillis}m plus audited live overrides [{string.Join(", ", by)}] = {authorized.CpuMillis}m (cell limit {cell.GetTenantUsage(t2).Quota?.CpuMillis.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}m)");
    }

    /// <summary>Faults off: the system must reach the state the client asked for, within the quiesce limit.</summary>
    private bool Quiesce()
    {
        var until = Now + _o.QuiesceLimit;
        var nextAgents = Now;
        string why = "";
        while (Now < until && _violation is null)
        {
            _step++;
            AdvanceTime(TimeSpan.FromMilliseconds(100));
            _disk.Flush();
            while (_net.TakeDeliverable(false) is { } m)
            {
                if (m.To == SimNetwork.Server) _p.Handle(m);
                else if (m.To == SimNetwork.Client) _client.Handle(m.Payload);
                else _agents[(int)(m.To - AgentBase)].Handle(m.Payload);
            }
            _p.Engine.RunUntilIdle(1000);
            if (Now >= nextAgents)
            {
                foreach (var a in _agents) { a.Sync(); a.Progress(all: true); a.Heartbeat(); }
                nextAgents = Now + TimeSpan.FromMilliseconds(500);
            }
            Settle();
            _disk.Flush();
            Settle();
            Check();
            if (_client.Outstanding == 0 && Converged(out why))
            {
                Event("converged");
                return true;
            }
        }
        Fail("convergence", $"not converged {_o.QuiesceLimit.TotalSeconds:0} s after the faults stopped: {why}");
        return false;
    }

    private bool Converged(out string why)
    {
        var cell = _p.Cell;
        var perUid = new Dictionary<long, int>();
        foreach (var a in cell.GetAllocations())
            if (TryOwner(a.Task, out long uid)) perUid[uid] = perUid.TryGetValue(uid, out int c) ? c + 1 : 1;
        var live = new HashSet<long>();
        foreach (var o in _p.Store.List(new ObjectFilter(Workload.KindName)).Items)
        {
            if (o is not Workload w) continue;
            live.Add(w.Metadata.Uid);
            if (w.Metadata.DeletionTimestamp is not null) { why = $"{w.Key} is still terminating"; return false; }
            int b = perUid.TryGetValue(w.Metadata.Uid, out int n) ? n : 0;
            // A quota-limited workload converges to what its quota admits (replicas admitted under an override may stay).
            bool quotaFull = TenantOf(w.Metadata.Name) == "t2" && cell.TryGetTenant("t2", out var t2)
                && cell.GetTenantUsage(t2) is { Quota: { } limit } quotaUse && !(quotaUse.Usage + new ResourceVector(1000, 1L << 30)).FitsWithin(limit);
            bool placedEnough = b == w.Spec.Replicas || quotaFull && b < w.Spec.Replicas;
            if (w.Status.ObservedGeneration != w.Metadata.Generation || !placedEnough || w.Status.Ready != b)
            {
                var serials = new List<string>();
                foreach (var a in cell.GetAllocations())
                    if (TryOwner(a.Task, out long u) && u == w.Metadata.Uid) serials.Add($"{a.Task.Job.Value & ((1 << WorkloadController.SerialBits) - 1)}@v{a.Generation}");
                why = $"{w.Key} gen {w.Metadata.Generation} observed {w.Status.ObservedGeneration}, wants {w.Spec.Replicas}, {b} bound (serials {string.Join(",", serials)}; status replicas {string.Join(",", w.Status.Replicas.Select(r => $"{r.Slot}:{r.Serial}"))} retired {string.Join(",", w.Status.Retired)}), status ready {w.Status.Ready}";
                return false;
            }
        }
        foreach (var (uid, n) in perUid)
            if (!live.Contains(uid)) { why = $"{n} binding(s) of deleted workload uid {uid}"; return false; }
        foreach (var r in cell.GetReservations())
            if (r.ExpiresAt <= Now) { why = $"expired reservation {r.Task} still held"; return false; }
        why = "";
        return true;
    }
}
