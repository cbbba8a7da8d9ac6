using System.Buffers;
using System.Globalization;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;
using Omega.Server;

namespace Omega.Dst;

/// <summary>
/// The unified deterministic simulation (issue 18): one seeded run where the control plane's controllers and scheduler
/// workers and the server's real protocol handling run together, on one thread, in simulated time. It is the wire
/// simulation (<see cref="WireSimulation"/>: simulated agents and external schedulers speaking real frames to the real
/// <c>ProtocolHandler</c> and <c>Dispatcher</c> through a faulty network, server crashes with torn journal tails) with
/// the control plane behind the handler (object store, policy revisions, the scheduling engine's workers stepped by the
/// seed, the workload, reservation, repair, quota and override controllers on a manual scheduler), authentication on,
/// and an operator/submitter client that writes workloads and overrides, watches workloads (resuming from a
/// resourceVersion, re-listing on <c>WatchExpired</c>), drains nodes, rolls policies back and revokes and re-issues
/// credentials, all over the wire. docs/testing.md, "The unified harness".
/// </summary>
public static class UnifiedSimulation
{
    /// <summary>Runs one seed of the unified harness (the options' <c>ControlPlane</c> and <c>Authentication</c> are forced on).</summary>
    public static DstResult RunSeed(long seed, WireOptions? options = null)
    {
        var o = options ?? new WireOptions();
        var copy = new WireOptions
        {
            Steps = o.Steps, Buggify = o.Buggify, Nodes = o.Nodes, Schedulers = o.Schedulers, FullTrace = o.FullTrace,
            ConvergenceLimit = o.ConvergenceLimit, ControlPlane = true, Authentication = true,
        };
        return WireSimulation.RunSeed(seed, copy);
    }
}

/// <summary>The control plane of one server process of the unified harness (rebuilt from the disk after a crash).</summary>
internal sealed class WireControlPlane
{
    public WireControlPlane(WireRun run, Cell cell, SimDisk disk, ServerOptions server)
    {
        Store = new ObjectStore(cell, new ObjectStoreOptions { Time = run.Time, HistoryCapacity = 16, MaxWatcherLag = 8, Buggify = server.Buggify }, disk);
        Scheduler = new ManualControllerScheduler(run.Time);
        Policies = new PolicyRevisions(Store, new PolicySource(), run.Time);
        Policies.Load();
        // Every decision is recorded and replayed at once by the decision-replay checker (the sink runs inside the step).
        var opts = new SchedulingOptions { Seed = run.Next(0, int.MaxValue), Time = run.Time, DecisionLogCapacity = 256, Policy = Policies.Source, DecisionSink = run.DecisionChecker };
        opts.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 2, LeaseDuration = TimeSpan.FromSeconds(4), QueueCapacity = 10_000, Backoff = TimeSpan.FromMilliseconds(20) });
        Engine = new SchedulingEngine(cell, opts);
        Workloads = new WorkloadController(Store, Engine, run.Time, new WorkloadControllerOptions
        {
            Observer = ReplicaObserver.AgentReported(cell),
            ProgressRequeue = TimeSpan.FromMilliseconds(200),
            ParkedRetryDelay = TimeSpan.FromSeconds(2),
        });
        Runner = Workloads.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(5), Workers = 2 });
        Runner.Start();
        Reservations = new ReservationController(cell, Scheduler, new ReservationControllerOptions { Interval = TimeSpan.FromSeconds(1), RepairDeadline = TimeSpan.FromSeconds(3) });
        Reservations.Start();
        Repair = new RepairController(Store, cell, Scheduler, new RepairControllerOptions { Interval = TimeSpan.FromSeconds(2), FinalizerDeadline = TimeSpan.FromSeconds(20) });
        Repair.Start();
        Quotas = new QuotaController(Store, cell, run.Time, new QuotaControllerOptions { UsageRefresh = TimeSpan.FromSeconds(2) });
        QuotaRunner = Quotas.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(5) });
        QuotaRunner.Start();
        Overrides = new OverrideController(Store, cell, Scheduler, new OverrideControllerOptions { Interval = TimeSpan.FromSeconds(1) });
        Overrides.Start();
        server.Objects = Store;
        server.Policies = Policies;
    }

    public ObjectStore Store { get; }
    public ManualControllerScheduler Scheduler { get; }
    public PolicyRevisions Policies { get; }
    public SchedulingEngine Engine { get; }
    public WorkloadController Workloads { get; }
    public ControllerRunner Runner { get; }
    public ReservationController Reservations { get; }
    public RepairController Repair { get; }
    public QuotaController Quotas { get; }
    public ControllerRunner QuotaRunner { get; }
    public OverrideController Overrides { get; }

    /// <summary>The process died: nothing of it runs again (not a graceful stop: leases lapse, pending acks never complete).</summary>
    public void Kill()
    {
        Runner.Dispose();
        Reservations.Dispose();
        Repair.Dispose();
        QuotaRunner.Dispose();
        Overrides.Dispose();
        Engine.Metrics.Dispose();
    }
}

internal sealed partial class WireRun
{
    private WireOperator? _operator;
    private ResourceVector _lastQuotaUsage;
    private readonly Dictionary<int, HashSet<TaskId>> _drained = new();
    // Credential ids whose revocation the operator was told succeeded (durably): never accepted again, crash or not.
    private readonly List<(string Id, string Token)> _revoked = new();
    private long _objectAcks, _watchEvents;
    private long _decisionsReplayed;
    private bool _crashSoon;
    private DateTimeOffset _processStartedAt;

    // ------------------------------------------------------------------ decision replay (issue 18, item 4)

    private IDecisionSink? _decisionChecker;

    /// <summary>Replays every decision the engine's workers record, inline, as the "decision-replay" checker.</summary>
    internal IDecisionSink DecisionChecker => _decisionChecker ??= new ReplayingSink(this);

    private sealed class ReplayingSink(WireRun run) : IDecisionSink
    {
        public void OnRecorded(DecisionRecord record) => run.ReplayDecision(record);
    }

    /// <summary>
    /// decision-replay: every decision a worker records is replayed at once from its record alone (the inputs it kept, the
    /// policy revision compiled from the store's revision object) with the real pipeline, and must reach the same choice
    /// for the same reasons. The sink is called synchronously inside the worker's step, so the store is as the decision saw it.
    /// </summary>
    private void ReplayDecision(DecisionRecord r)
    {
        if (_violation is not null) return;
        if (r.Inputs is null) { Fail("decision-replay", $"the decision of {r.Job} attempt {r.Attempt} kept no inputs"); return; }
        var policy = new DecisionReplayer(_server.ControlPlane!.Store).PolicyAt(r.PolicyRevision);
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

    // ------------------------------------------------------------------ faults of the unified harness

    // A crash soon after an acknowledgement reached its client: the acknowledged write (object or commit) must survive.
    // Without it a crash rarely falls between an early acknowledgement and the flush (the AckBeforeDurable variant hid).
    private void MaybeCrashSoon()
    {
        if (_o.ControlPlane && FaultChance(0.25)) _crashSoon = true;
    }

    // Before the step: clock jumps within lease bounds, and the in-process reserver.
    private void StepFaultsOfTheControlPlane()
    {
        if (FaultChance(0.002))
        {
            // Within lease bounds: at most half a lease (4 s) forward, for every process at once.
            var jump = TimeSpan.FromMilliseconds(Next(1, 2000));
            Count(DstFault.ClockJump);
            Event($"clock jumps +{jump.TotalMilliseconds:0}ms");
            _time.Advance(jump);
        }
        if (FaultChance(0.02)) ReserverAct();
    }

    private SchedulerLease _reserverLease;
    private long _reserverNext;

    // Another scheduler identity in the server's process holds capacity with Reserve claims (TTL 1-3 s), releases some
    // and leaks the rest: the reservation controller must release each within its repair deadline (leaked-reservation).
    private void ReserverAct()
    {
        var cell = _server.Cell;
        if (_reserverLease.Token.Value == 0 || Now >= _reserverLease.ExpiresAt - TimeSpan.FromSeconds(1))
        {
            // (A default LeaseResult reads as Granted: renew only a lease we hold, else acquire.)
            var lr = _reserverLease.Token.Value != 0 ? cell.RenewLease(_reserverLease, TimeSpan.FromSeconds(6)) : cell.AcquireLease("reserver", TimeSpan.FromSeconds(6));
            if (!lr.Succeeded && _reserverLease.Token.Value != 0) lr = cell.AcquireLease("reserver", TimeSpan.FromSeconds(6));
            if (!lr.Succeeded) return;
            _reserverLease = lr.Lease;
        }
        if (Chance(0.3))
        {
            foreach (var res in cell.GetReservations())
            {
                var st = cell.ReleaseReservation(res.Task, res.Generation);
                Event($"reserver releases {res.Task}: {st}");
                return;
            }
            return;
        }
        int node = Next(0, _o.Nodes);
        if (!cell.TryGetNodeId($"n{node}", out var id)) return;
        var tx = new Transaction(_reserverLease);
        var task = new TaskId(new JobId(900_000_000 + ++_reserverNext), 0);
        tx.Add(new Claim(task, id, new ResourceVector(Next(5, 16) * 100, 1L << 30), 0, new TenantId(TenantT1), 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromMilliseconds(Next(1000, 3000))));
        var r = cell.Commit(tx);
        if (r.AppliedCount > 0) Count(DstFault.Reservation);
        Event($"reserver reserves on n{node} as {task}: {r.Status} applied {r.AppliedCount}");
        if (r.Status.IsFencingFailure()) _reserverLease = default;
    }

    // The latest expiry of an override live now (for OverrideExpiryDuringRecovery), read before the process dies.
    private DateTimeOffset? LastLiveOverrideExpiry()
    {
        DateTimeOffset? last = null;
        foreach (var o in _server.ControlPlane!.Store.List(new ObjectFilter(Override.KindName)).Items)
            if (o is Override ov && ov.IsLive(Now) && ov.ExpiresAt is { } e && (last is null || e > last)) last = e;
        return last;
    }

    internal IReadOnlyList<(string Id, string Token)> Revoked => _revoked;

    // ------------------------------------------------------------------ the network as streams (unified harness)
    //
    // The object watch relies on what TCP gives a connection: frames arrive in order, none twice, and a lost frame means
    // the connection broke. So in the unified harness the network keeps each connection's direction FIFO (reordering
    // happens only between streams), duplicates only requests (a client sending again on its connection), and a dropped
    // frame dooms its connection: it is closed on both sides at the end of the step, and nothing more arrives on it.

    private readonly HashSet<long> _doomed = new();
    private readonly Dictionary<(long, bool), DateTimeOffset> _streamTail = new();

    private void SendStream(int from, int to, long connection, byte[] frame)
    {
        if (_doomed.Contains(connection)) return;
        if (_partitioned.Contains(from) || _partitioned.Contains(to) || FaultChance(0.01))
        {
            Count(DstFault.Drop);
            Event($"net drop {from}->{to} {Describe(frame)}: connection c{connection} breaks");
            Doom(connection);
            return;
        }
        EnqueueStream(from, to, connection, frame);
        if (to == 0 && FaultChance(0.03)) { Count(DstFault.Duplicate); EnqueueStream(from, to, connection, frame); }
    }

    private void EnqueueStream(int from, int to, long connection, byte[] frame)
    {
        long ms = FaultChance(0.05) ? Next(200, 2500) : Next(1, 40);
        var at = Now + TimeSpan.FromMilliseconds(ms);
        var stream = (connection, to == 0);
        if (_streamTail.TryGetValue(stream, out var tail) && tail > at) at = tail; // FIFO within the stream
        _streamTail[stream] = at;
        _inFlight.Add(new Packet(from, to, connection, at, frame));
    }

    // The packet to deliver instead of _inFlight[pick]: the oldest one of the same stream (sent first, deliverable too).
    private int FirstOfStream(int pick)
    {
        var p = _inFlight[pick];
        bool up = p.To == 0;
        for (int i = 0; i < pick; i++)
            if (_inFlight[i].Connection == p.Connection && (_inFlight[i].To == 0) == up) return i;
        return pick;
    }

    private readonly List<long> _breakNow = new();

    private void Doom(long connection)
    {
        if (connection != 0 && _doomed.Add(connection)) _breakNow.Add(connection);
    }

    // Closes the connections a lost frame broke: the server's disconnect path runs, the peer reconnects later.
    private void BreakDoomed()
    {
        if (_breakNow.Count == 0) return;
        var ids = new List<long>(_breakNow);
        _breakNow.Clear();
        foreach (var id in ids)
        {
            WirePeer? owner = null;
            foreach (var p in _peers)
                if (p.Connection == id) { owner = p; break; }
            if (owner is not null) Disconnect(owner, Omega.Transport.DisconnectReason.PeerClosed);
            else _server.Close(id, Omega.Transport.DisconnectReason.PeerClosed);
        }
        // Frames of these connections still in flight are dropped when they come up (the ids stay doomed; ids are never reused).
    }

    internal long ObjectAcks => _objectAcks;

    internal long WatchEventsReceived => _watchEvents;

    // Bootstrap of the control plane (as an administrator sets a cell up): tenant t2's Quota object, made durable.
    private void BootControlPlane()
    {
        var cp = _server.ControlPlane!;
        _processStartedAt = Now;
        var quota = new Quota();
        quota.Metadata.Name = "t2";
        quota.Metadata.Tenant = "t2";
        quota.Spec.Limit = new ResourceRequest { CpuMillis = DstSimulation.QuotaBase.CpuMillis, MemoryBytes = DstSimulation.QuotaBase.MemoryBytes };
        var created = cp.Store.CreateAsync(quota);
        _disk.Flush();
        if (!created.IsCompleted || !created.Result.IsOk) Fail("harness", "the bootstrap Quota object was not written");
        Settle();
        _disk.Flush();
    }

    // The operator and the intruder join the peers; with authentication on, every peer gets a credential, installed by
    // the administrator before the run (deterministic tokens from the run's stream) and durable before anything crashes.
    private void AddControlPlanePeers()
    {
        _operator = new WireOperator(this, 200, "op");
        var intruder = new WireIntruder(this, 201, "intruder");
        _peers.Add(_operator);
        _peers.Add(intruder);
        if (!_o.Authentication) return;
        var auth = _server.Auth;
        foreach (var p in _peers)
        {
            string token = NewToken();
            string? error;
            bool ok = p switch
            {
                WireAgent => auth.TryInstallToken(token, CredentialRole.Agent, p.Name, OperatorScopes.None, out error),
                WireScheduler => auth.TryInstallToken(token, CredentialRole.Scheduler, p.Name, OperatorScopes.None, out error),
                WireOperator => auth.TryInstallToken(token, CredentialRole.Operator, "op", OperatorScopes.All, out error),
                // A read-only operator: it tries operations its scopes do not allow (the scope checker).
                _ => auth.TryInstallToken(token, CredentialRole.Operator, "viewer", OperatorScopes.Read, out error),
            };
            if (!ok) Fail("harness", $"credential for {p.Name}: {error}");
            p.Token = token;
        }
        intruder.OwnToken = intruder.Token;
        _disk.Flush();
    }

    // A token of the documented shape from the run's stream (the product's own tokens come from the OS's generator).
    private string NewToken()
    {
        Span<byte> id = stackalloc byte[8];
        Span<byte> secret = stackalloc byte[32];
        _rng.NextBytes(id);
        _rng.NextBytes(secret);
        return "omega1." + Convert.ToHexStringLower(id) + "." + System.Buffers.Text.Base64Url.EncodeToString(secret);
    }

    internal WirePeer? Peer(string name)
    {
        foreach (var p in _peers)
            if (p.Name == name) return p;
        return null;
    }

    /// <summary>Runs the controllers' due work until idle.</summary>
    private void Settle()
    {
        var cp = _server.ControlPlane!;
        for (int round = 0; round < 8; round++)
            if (cp.Scheduler.RunUntilIdle(100_000) == 0) break;
    }

    // One step of the control plane after the network/peer step: a scheduler worker the seed picks, the controllers' due
    // work, and the watch pumps of every connection.
    private void StepControlPlane()
    {
        if (_violation is not null) return;
        var cp = _server.ControlPlane!;
        if (Next(0, 100) < 40)
        {
            var workers = cp.Engine.Workers;
            var w = workers[Next(0, workers.Count)];
            var outcome = w.Step();
            if (outcome != StepOutcome.Idle) Event($"worker {w.Kind}/{w.Index} {outcome} (cell v{_server.Cell.Version})");
        }
        Settle();
        foreach (var (_, conn, _) in _server.Connections()) ProtocolHandler.StepWatches(conn);
        _server.Dispatcher.Pump();
        PumpServer();
    }

    private void Recovered(Cell cell)
    {
        _lastQuotaUsage = cell.TryGetTenant("t2", out var t2) ? cell.GetTenantUsage(t2).Usage : default;
        _drained.Clear();
        _processStartedAt = Now;
        _reserverLease = default; // its lease is the dead process's: the reserver acquires again
        Event($"restart: recovered v{cell.Version}, {cell.AllocationCount} bindings, {_server.ControlPlane!.Store.Count} objects");
    }

    internal void ObjectAcknowledged(string what, long version)
    {
        _objectAcks++;
        if (version > _ackedVersion) _ackedVersion = version;
        Event($"op ack {what} v{version}");
        MaybeCrashSoon();
    }

    internal void WatchEventReceived() => _watchEvents++;

    internal void RevocationAcknowledged(string id, string token)
    {
        _revoked.Add((id, token));
        Count(DstFault.Revocation);
        Event($"op: revocation of credential #{_revoked.Count} acknowledged");
    }

    // ------------------------------------------------------------------ checkers of the unified harness

    private void CheckControlPlane()
    {
        if (_violation is not null) return;
        var cell = _server.Cell;
        CheckQuota(cell);
        CheckDrain(cell);
        _operator?.CheckWatch();
        CheckReservations(cell);
    }

    /// <summary>leaked-reservation: once the reservation controller has run for its deadline, nothing is held past expiry + deadline.</summary>
    private void CheckReservations(Cell cell)
    {
        if (_violation is not null) return;
        var deadline = TimeSpan.FromSeconds(3); // the reservation controller's RepairDeadline
        var now = Now;
        if (now - _processStartedAt <= deadline + TimeSpan.FromSeconds(1)) return;
        foreach (var r in cell.GetReservations())
            if (now - r.ExpiresAt > deadline)
            {
                Fail("leaked-reservation", $"reservation {r.Task} on node {r.Node.Value} expired {(now - r.ExpiresAt).TotalMilliseconds:0}ms ago and is still held (deadline {deadline.TotalSeconds:0} s)");
                return;
            }
    }

    /// <summary>
    /// convergence (liveness): faults over, the operator's last write answered and its drains undone, every workload's
    /// status observes its generation with exactly its replicas bound (fewer only when its tenant's quota or the whole
    /// cluster has no room for one more) and all of them Ready; nothing is terminating; no binding of a deleted workload;
    /// no expired reservation is held.
    /// </summary>
    private bool Converged(out string why)
    {
        var cell = _server.Cell;
        var store = _server.ControlPlane!.Store;
        if (_operator is { Outstanding: true }) { why = "the operator's last write is unanswered"; return false; }
        var snap = cell.Snapshot();
        bool room = false;
        var reserved = new Dictionary<int, ResourceVector>();
        foreach (var r in cell.GetReservations())
        {
            if (r.ExpiresAt <= Now) { why = $"expired reservation {r.Task} still held"; return false; }
            reserved[r.Node.Value] = reserved.GetValueOrDefault(r.Node.Value) + r.Resources;
        }
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok) continue;
            if (v.Status == NodeStatus.Draining) { why = $"node {v.Spec.Name} is still draining"; return false; }
            if (v.IsSchedulable && (v.Allocated + reserved.GetValueOrDefault(i) + Request).FitsWithin(v.Capacity)) room = true;
        }
        var perUid = new SortedDictionary<long, int>();
        foreach (var a in cell.GetAllocations())
            if (DstSimulation.TryOwner(a.Task, out long uid)) perUid[uid] = perUid.GetValueOrDefault(uid) + 1;
        var live = new HashSet<long>();
        foreach (var o in store.List(new ObjectFilter(Workload.KindName)).Items)
        {
            if (o is not Workload w) continue;
            live.Add(w.Metadata.Uid);
            if (w.Metadata.DeletionTimestamp is not null) { why = $"{w.Key} is still terminating"; return false; }
            int b = perUid.GetValueOrDefault(w.Metadata.Uid);
            bool quotaFull = DstSimulation.TenantOf(w.Metadata.Name) == "t2" && cell.TryGetTenant("t2", out var t2)
                && cell.GetTenantUsage(t2) is { Quota: { } limit } use && !(use.Usage + Request).FitsWithin(limit);
            bool placedEnough = b == w.Spec.Replicas || (quotaFull || !room) && b < w.Spec.Replicas;
            if (w.Status.ObservedGeneration != w.Metadata.Generation || !placedEnough || w.Status.Ready != b)
            {
                var detail = new List<string>();
                foreach (var a in cell.GetAllocations())
                {
                    if (!DstSimulation.TryOwner(a.Task, out long u) || u != w.Metadata.Uid) continue;
                    var agent = Peer($"n{a.Node.Value}") as WireAgent;
                    detail.Add($"{a.Task}@{a.Generation} on n{a.Node.Value} {cell.GetBindingLifecycle(a.Task, a.Generation).Phase}, agent {(agent is null ? "none" : agent.Describe(a.Task))}");
                }
                why = $"{w.Key} gen {w.Metadata.Generation} observed {w.Status.ObservedGeneration}, wants {w.Spec.Replicas}, {b} bound, status ready {w.Status.Ready} [{string.Join("; ", detail)}]";
                return false;
            }
        }
        foreach (var (uid, n) in perUid)
            if (!live.Contains(uid)) { why = $"{n} binding(s) of deleted workload uid {uid}"; return false; }
        why = "";
        return true;
    }

    /// <summary>
    /// quota: tenant t2's usage never grows beyond its Quota object's limit plus the extras of the audited (author and
    /// reason set) emergency overrides live now or within the grace of their TTL (as in the main harness).
    /// </summary>
    private void CheckQuota(Cell cell)
    {
        if (!cell.TryGetTenant("t2", out var t2)) return;
        var usage = cell.GetTenantUsage(t2).Usage;
        bool grew = usage.CpuMillis > _lastQuotaUsage.CpuMillis || usage.MemoryBytes > _lastQuotaUsage.MemoryBytes;
        _lastQuotaUsage = usage;
        if (!grew) return;
        var authorized = DstSimulation.QuotaBase;
        var now = Now;
        foreach (var o in _server.ControlPlane!.Store.List(new ObjectFilter(Override.KindName)).Items)
        {
            if (o is not Override ov || ov.Spec.Type != OverrideType.EmergencyQuota || ov.Spec.Target != "t2") continue;
            if (ov.Spec.Author.Length == 0 || ov.Spec.Reason.Length == 0 || ov.ExpiresAt is not { } e || now >= e + DstSimulation.OverrideGrace) continue;
            authorized += ov.Spec.Extra.ToVector();
        }
        if (!usage.FitsWithin(authorized))
            Fail("quota", $"tenant t2's usage grew to {usage.CpuMillis}m, over its quota plus audited live overrides {authorized.CpuMillis}m");
    }

    /// <summary>drain: a node the cell shows draining gains no binding (its bindings when it was first seen draining stay the only ones).</summary>
    private void CheckDrain(Cell cell)
    {
        var snap = cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            var id = new NodeId(i);
            if (snap.TryGetNode(id, out var v) != SnapshotRead.Ok || v.Status != NodeStatus.Draining)
            {
                _drained.Remove(i);
                continue;
            }
            if (!_drained.TryGetValue(i, out var before))
            {
                before = new HashSet<TaskId>();
                foreach (var a in cell.GetAllocationsOnNode(id)) before.Add(a.Task);
                _drained[i] = before;
                continue;
            }
            foreach (var a in cell.GetAllocationsOnNode(id))
                if (!before.Contains(a.Task)) { Fail("drain", $"{a.Task} was bound to node {v.Spec.Name} while it drains"); return; }
        }
    }
}

/// <summary>
/// The operator/submitter client of the unified harness: writes workloads (create, scale, delete; a write whose reply
/// does not come within 1 s is sent again), keeps an informer-style cache of workloads from a list and a watch that it
/// resumes from its last resourceVersion after every loss (re-listing on <c>WatchExpired</c>), raises tenant t2's quota
/// with audited emergency overrides (TTL 1-6 s), drains and undrains nodes, applies and rolls back scheduler policies,
/// and revokes a scheduler's credential and issues it a new one.
/// </summary>
internal sealed class WireOperator(WireRun run, int endpoint, string name) : WirePeer(run, endpoint, name)
{
    private static readonly string[] Names = ["w0", "w1", "q0", "q1"];

    // The informer: objects by key (resourceVersion and document), and per key the highest version the client has seen
    // it at (an event, a list, or its removal).
    private readonly SortedDictionary<string, (long Rv, byte[] Json)> _cache = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, long> _seen = new(StringComparer.Ordinal);
    // Per key, the highest resourceVersion of a write the server acknowledged to this client.
    private readonly SortedDictionary<string, long> _acked = new(StringComparer.Ordinal);
    private long _position; // the version the watch has delivered up to (its resume point)
    private long _streamLast;
    private bool _listed;
    private uint _watchRid, _listRid;
    private (uint Rid, string Key, string What, Func<uint, byte[]> Frame, DateTimeOffset SentAt)? _write;
    private uint _policyRid, _drainRid, _revokeRid, _createTokenRid;
    // Every request id the current write was sent under: the answer to any of them settles it (a reply slower than the
    // retry timer answers an earlier send; matching only the last one left a refused write retried forever).
    private readonly HashSet<uint> _writeRids = new();
    private string _revokeFor = "", _revokeToken = "";
    private int _overrides;

    protected override PeerRole Role => PeerRole.Scheduler;

    protected override void OnLost()
    {
        _watchRid = _listRid = 0;
        _policyRid = _drainRid = _revokeRid = _createTokenRid = 0;
    }

    protected override void OnWelcome() => OpenWatch();

    private void OpenWatch()
    {
        if (!_listed)
        {
            _listRid = Send(new ListObjects { Kind = Workload.KindName, Tenant = "", Limit = 0, Continue = "" });
            return;
        }
        // A stale watch resumed from the last version it delivered.
        Run.Count(DstFault.WatchResume);
        _streamLast = _position;
        _watchRid = Send(new WatchObjects { FromResourceVersion = _position, Kind = Workload.KindName, Tenant = "" });
        Run.Event($"op watches workloads from v{_position}");
    }

    protected override void OnAct()
    {
        if (_watchRid == 0 && _listRid == 0) { OpenWatch(); return; }
        if (_write is { } w)
        {
            if (Run.Now - w.SentAt < TimeSpan.FromSeconds(1)) return;
            // No reply: the request or the reply was lost (or the server died); the same write goes again.
            Run.Count(DstFault.ClientRetry);
            uint rid = NextRid++;
            Run.Send(Endpoint, 0, Connection, w.Frame(rid));
            _write = (rid, w.Key, w.What, w.Frame, Run.Now);
            _writeRids.Add(rid);
            Run.Event($"op retries {w.What}");
            return;
        }
        if (!Run.FaultsOn) { UndrainAll(); return; } // faults over: the desired state stays as it is; drains are undone
        int roll = Run.Next(0, 100);
        if (roll < 45) WriteWorkload();
        else if (roll < 58) RaiseQuota();
        else if (roll < 72) Drain();
        else if (roll < 82) Policy();
        else if (roll < 90) Revoke();
    }

    private void WriteWorkload()
    {
        string name = Names[Run.Next(0, Names.Length)];
        string tenant = DstSimulation.TenantOf(name);
        string key = new ObjectKey(Workload.KindName, tenant, name).ToString();
        Func<uint, byte[]> frame;
        string what;
        uint rid = NextRid++;
        if (_cache.TryGetValue(key, out var cached) && Run.Chance(0.25))
        {
            frame = r => WireRun.Encode(r, new DeleteObject { Kind = Workload.KindName, Tenant = tenant, Name = name, ResourceVersion = 0 });
            what = $"delete {name}";
        }
        else if (_cache.TryGetValue(key, out cached) && ObjectCodec.Deserialize(cached.Json, out _) is Workload wl && wl.Metadata.DeletionTimestamp is null)
        {
            wl.Spec.Replicas = Run.Next(0, 4);
            var json = ObjectCodec.Serialize(wl);
            frame = r => WireRun.Encode(r, new UpdateObject { Body = new ObjectWrite { Object = json } });
            what = $"scale {name} to {wl.Spec.Replicas} (rv {cached.Rv})";
        }
        else
        {
            int replicas = Run.Next(1, 4);
            var json = ObjectCodec.Serialize(DstSimulation.NewWorkload(name, replicas));
            frame = r => WireRun.Encode(r, new CreateObject { Body = new ObjectWrite { Object = json } });
            what = $"create {name} x{replicas}";
        }
        Run.Send(Endpoint, 0, Connection, frame(rid));
        _write = (rid, key, what, frame, Run.Now);
        _writeRids.Clear();
        _writeRids.Add(rid);
        Run.Event($"op {what}");
    }

    private void RaiseQuota()
    {
        var ov = new Override();
        ov.Metadata.Name = "raise-" + ++_overrides;
        ov.Spec.Type = OverrideType.EmergencyQuota;
        ov.Spec.Target = "t2";
        ov.Spec.TtlSeconds = Run.Next(1, 7);
        ov.Spec.Reason = "dst: an emergency needs more capacity";
        ov.Spec.Extra = new ResourceRequest { CpuMillis = 1000L * Run.Next(1, 4) };
        uint rid = NextRid++;
        var json = ObjectCodec.Serialize(ov);
        Func<uint, byte[]> frame = r => WireRun.Encode(r, new CreateObject { Body = new ObjectWrite { Object = json } });
        Run.Send(Endpoint, 0, Connection, frame(rid));
        string key = ""; // not a watched kind: the watch-gap checker does not track it
        string what = $"override {ov.Metadata.Name} +{ov.Spec.Extra.CpuMillis}m for {ov.Spec.TtlSeconds} s";
        _write = (rid, key, what, frame, Run.Now);
        _writeRids.Clear();
        _writeRids.Add(rid);
        Run.Count(DstFault.QuotaOverride);
        Run.Event($"op {what}");
    }

    private void Drain()
    {
        if (_drainRid != 0) return;
        var node = $"n{Run.Next(0, 3)}";
        bool drain = Run.Chance(0.5);
        _drainRid = Send(new Operate { Kind = drain ? OperateKind.DrainNode : OperateKind.UndrainNode, Target = node, Reason = "dst", Author = "" });
        if (drain) Run.Count(DstFault.Drain);
        Run.Event($"op {(drain ? "drains" : "undrains")} {node}");
    }

    /// <summary>A write of the operator's is still unanswered (convergence waits for it).</summary>
    public bool Outstanding => _write is not null;

    private void UndrainAll()
    {
        if (_drainRid != 0) return;
        var snap = Run.Server.Cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.Status != NodeStatus.Draining) continue;
            _drainRid = Send(new Operate { Kind = OperateKind.UndrainNode, Target = v.Spec.Name, Reason = "dst: faults over", Author = "" });
            Run.Event($"op undrains {v.Spec.Name}");
            return;
        }
    }

    private void Policy()
    {
        if (_policyRid != 0) return; // one policy command at a time (PolicyRevisions serializes them on a semaphore)
        Run.Count(DstFault.PolicyChange);
        if (Run.Chance(0.5))
        {
            int starting = 0;
            var cell = Run.Server.Cell;
            foreach (var a in cell.GetAllocations())
                if (cell.GetBindingLifecycle(a.Task, a.Generation).Phase != BindingPhase.Ready) starting++;
            if (starting > 0) Run.Count(DstFault.RollbackWhileStarting);
            _policyRid = Send(new PolicyRequest { Operation = 3, Policy = "", Document = "", Revision = 0 });
            Run.Event($"op rolls the policy back with {starting} replica(s) starting");
        }
        else
        {
            int bp = Run.Next(0, 10), ds = Run.Next(0, 10);
            _policyRid = Send(new PolicyRequest { Operation = 5, Policy = "", Document = $"{{\"weights\":{{\"bin-packing\":{bp},\"domain-spread\":{ds}}}}}", Revision = 0 });
            Run.Event($"op applies a policy (bin-packing {bp}, domain-spread {ds})");
        }
    }

    private void Revoke()
    {
        if (Token is null || _revokeRid != 0 || _createTokenRid != 0) return;
        var s = Run.Peer(Run.Chance(0.5) ? "s0" : "s1");
        if (s?.Token is not { } token || AuthService.TokenId(token) is not { } id) return;
        _revokeFor = s.Name;
        _revokeToken = token;
        _revokeRid = Send(new RevokeToken { Id = id });
        Run.Event($"op revokes {s.Name}'s credential");
    }

    protected override void OnReceive(MessageType type, uint rid, in ReadOnlySequence<byte> body)
    {
        switch (type)
        {
            case MessageType.ObjectList when rid == _listRid && Codec.TryDecode<ObjectList>(body, out var list, out _):
                _listRid = 0;
                OnList(list);
                break;
            case MessageType.WatchEvent when rid == _watchRid && Codec.TryDecode<WatchEventMessage>(body, out var ev, out _):
                OnWatchEvent(ev);
                break;
            case MessageType.ObjectReply when _write is { } w && _writeRids.Contains(rid) && Codec.TryDecode<ObjectReply>(body, out var reply, out _):
                _write = null;
                if (w.Key.Length > 0 && (!_acked.TryGetValue(w.Key, out var prior) || reply.ResourceVersion > prior)) _acked[w.Key] = reply.ResourceVersion;
                Run.ObjectAcknowledged(w.What, reply.ResourceVersion);
                break;
            case MessageType.OperateReply when rid == _drainRid && Codec.TryDecode<OperateReply>(body, out var op, out _):
                _drainRid = 0;
                Run.Event($"op operate reply {op.Status}: {op.Message}");
                break;
            case MessageType.PolicyReply when rid == _policyRid && Codec.TryDecode<PolicyReply>(body, out var pr, out _):
                _policyRid = 0;
                Run.Event($"op policy reply {(PolicyStatus)pr.Status} r{pr.Revision}");
                break;
            case MessageType.TokenRevoked when rid == _revokeRid:
                _revokeRid = 0;
                Run.RevocationAcknowledged(AuthService.TokenId(_revokeToken)!, _revokeToken);
                // Issue the scheduler a new credential (its connections were closed by the revocation).
                _createTokenRid = Send(new CreateToken { Role = CredentialRole.Scheduler, Subject = _revokeFor, Scopes = OperatorScopes.None, TtlMs = 0, Uses = 0, Tenants = null, AgentTtlMs = 0, Reason = null });
                break;
            case MessageType.TokenCreated when rid == _createTokenRid && Codec.TryDecode<TokenCreated>(body, out var tc, out _):
                _createTokenRid = 0;
                if (Run.Peer(_revokeFor) is { } s) s.Token = tc.Token;
                Run.Event($"op issued {_revokeFor} a new credential");
                break;
        }
    }

    protected override void OnError(uint rid, ErrorCode code)
    {
        if (rid == 0) return;
        if (rid == _watchRid)
        {
            _watchRid = 0;
            if (code == ErrorCode.WatchExpired || code == ErrorCode.InvalidRequest)
            {
                // Expired: the resume point left the history window. InvalidRequest: a version from before a crash that the
                // recovered store has not reached. Either way the informer lists again.
                if (code == ErrorCode.WatchExpired) Run.Count(DstFault.WatchExpired);
                _listed = false;
            }
            OpenWatch();
        }
        else if (rid == _listRid) _listRid = 0;
        else if (_write is { } w && _writeRids.Contains(rid)) _write = null; // refused (conflict, exists, terminating...): not acknowledged
        else if (rid == _drainRid) _drainRid = 0;
        else if (rid == _policyRid) _policyRid = 0;
        else if (rid == _revokeRid) _revokeRid = 0;
        else if (rid == _createTokenRid) _createTokenRid = 0;
    }

    private void OnList(in ObjectList list)
    {
        var present = new HashSet<string>(StringComparer.Ordinal);
        _cache.Clear();
        foreach (var item in list.Items)
        {
            if (ObjectCodec.Deserialize(item.Span, out _) is not { } obj) continue;
            string key = obj.Key.ToString();
            present.Add(key);
            _cache[key] = (obj.Metadata.ResourceVersion, item.ToArray());
            Saw(key, obj.Metadata.ResourceVersion);
        }
        // Keys the list does not show were removed by its version.
        var keys = new List<string>(_acked.Keys);
        foreach (var k in keys)
            if (!present.Contains(k)) Saw(k, list.ResourceVersion);
        _listed = true;
        _position = list.ResourceVersion;
        Run.Event($"op lists {list.Items.Count} workload(s) at v{list.ResourceVersion}");
        OpenWatch();
    }

    private void OnWatchEvent(in WatchEventMessage ev)
    {
        Run.WatchEventReceived();
        if (ev.ResourceVersion <= _streamLast)
            Run.Fail("watch-order", $"watch event at v{ev.ResourceVersion} after v{_streamLast} on the same watch");
        _streamLast = ev.ResourceVersion;
        if (ObjectCodec.Deserialize(ev.Object.Span, out _) is not { } obj) return;
        string key = obj.Key.ToString();
        if (ev.EventType == WireWatchEventType.Deleted) _cache.Remove(key);
        else _cache[key] = (ev.ResourceVersion, ev.Object.ToArray());
        Saw(key, ev.ResourceVersion);
        _position = ev.ResourceVersion;
    }

    private void Saw(string key, long version)
    {
        if (!_seen.TryGetValue(key, out var v) || version > v) _seen[key] = version;
    }

    /// <summary>
    /// watch-gap: once the informer's watch has delivered past the version of a write the server acknowledged to this
    /// client, the informer has seen that object at that version or later (an event, a list, or its removal). A watch that
    /// resumed past a gap (events lost between its resume point and what it delivered) breaks it.
    /// </summary>
    public void CheckWatch()
    {
        if (!_listed) return;
        foreach (var (key, acked) in _acked)
        {
            if (acked > _position) continue;
            if (!_seen.TryGetValue(key, out var seen) || seen < acked)
            {
                Run.Fail("watch-gap", $"the watch delivered up to v{_position} but never showed {key} at its acknowledged v{acked} (last seen v{(_seen.TryGetValue(key, out var s) ? s : 0)})");
                return;
            }
        }
    }
}

/// <summary>
/// A peer with a read-only operator credential that tries a drain it may not do (the scope checker), and that, once a
/// revocation was acknowledged, sometimes connects with the revoked token (a leaked credential): the server must refuse
/// the handshake, before and after any crash (the revoked-credential checker).
/// </summary>
internal sealed class WireIntruder(WireRun run, int endpoint, string name) : WirePeer(run, endpoint, name)
{
    private uint _drainRid;
    private bool _usingRevoked;

    public string? OwnToken { get; set; }

    protected override PeerRole Role => PeerRole.Scheduler;

    protected override void OnLost()
    {
        _drainRid = 0;
        _usingRevoked = false;
        if (OwnToken is null) return;
        Token = OwnToken;
        var revoked = Run.Revoked;
        if (revoked.Count > 0 && Run.Chance(0.5))
        {
            Token = revoked[Run.Next(0, revoked.Count)].Token;
            _usingRevoked = true;
        }
    }

    protected override void OnWelcome()
    {
        if (_usingRevoked)
            Run.Fail("revoked-credential", "a handshake with a credential whose revocation was acknowledged was accepted");
    }

    protected override void OnAct()
    {
        if (_usingRevoked || _drainRid != 0 || OwnToken is null) return;
        _drainRid = Send(new Operate { Kind = OperateKind.DrainNode, Target = "n0", Reason = "not allowed", Author = "" });
    }

    protected override void OnReceive(MessageType type, uint rid, in ReadOnlySequence<byte> body)
    {
        if (type == MessageType.OperateReply && rid == _drainRid)
            Run.Fail("scope", "a drain by a read-only operator credential was served");
    }

    protected override void OnError(uint rid, ErrorCode code)
    {
        if (rid == _drainRid && rid != 0)
        {
            _drainRid = 0;
            if (code != ErrorCode.PermissionDenied) Run.Event($"intruder drain refused with {code}");
        }
        // A refused handshake: the server closes the connection; drop it and come back (maybe with another token).
        if (code is ErrorCode.CredentialRevoked or ErrorCode.Unauthenticated) Run.Disconnect(this, Omega.Transport.DisconnectReason.PeerClosed);
    }
}
