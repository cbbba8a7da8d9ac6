using System.Buffers;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

namespace Omega.Dst;

/// <summary>Options of one wire simulation run (<see cref="WireSimulation"/>).</summary>
public sealed class WireOptions
{
    /// <summary>Steps with faults.</summary>
    public int Steps { get; set; } = 1500;

    /// <summary>Deliberately broken variants (off: the product).</summary>
    public Buggify Buggify { get; set; }

    /// <summary>Nodes, each with one simulated agent.</summary>
    public int Nodes { get; set; } = 3;

    /// <summary>External schedulers speaking the scheduler protocol.</summary>
    public int Schedulers { get; set; } = 2;

    /// <summary>Keep the whole trace (else the last 60 events).</summary>
    public bool FullTrace { get; set; }

    /// <summary>
    /// The unified harness (<see cref="UnifiedSimulation"/>): the control plane runs behind the handler (object store,
    /// policy revisions, scheduling engine with stepped workers, the workload, reservation, repair, quota and override
    /// controllers), and an operator/submitter client writes workloads, watches them, drains nodes, raises quotas with
    /// overrides, rolls policies back and manages credentials, all over the wire.
    /// </summary>
    public bool ControlPlane { get; set; }

    /// <summary>Authentication on: every peer presents a credential; the operator revokes and re-issues them.</summary>
    public bool Authentication { get; set; }

    /// <summary>
    /// Unified harness: simulated time allowed, after the faults stop, for every workload to converge to its desired
    /// state (the convergence checker); the run fails with <c>convergence</c> past it.
    /// </summary>
    public TimeSpan ConvergenceLimit { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// The wire simulation (issue 18): simulated agents and external schedulers exchange real frames, encoded by
/// Omega.Protocol, with the server's real <c>ProtocolHandler</c>, <c>Dispatcher</c> (stepped) and node lifecycle
/// (ticked), over detached <c>FrameConnection</c>s, through a simulated network that delays, drops, duplicates, reorders
/// and partitions frames and cuts connections; the journal is a <see cref="SimDisk"/> and the server crashes. One thread,
/// simulated time, one seed. docs/testing.md, "The real protocol handling in the simulation".
/// </summary>
public static class WireSimulation
{
    /// <summary>Runs one seed.</summary>
    public static DstResult RunSeed(long seed, WireOptions? options = null)
    {
        var prior = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(null);
        try
        {
            using var run = new WireRun(seed, options ?? new WireOptions());
            return run.Run();
        }
        finally { SynchronizationContext.SetSynchronizationContext(prior); }
    }
}

internal sealed partial class WireRun : IDisposable
{
    private static readonly DateTimeOffset Epoch = new(2027, 1, 1, 0, 0, 0, TimeSpan.Zero);
    internal static readonly ResourceVector Capacity = new(4000, 8L << 30);
    internal static readonly ResourceVector Request = new(1000, 1L << 30);
    internal static readonly ResourceVector T2Quota = new(3000, 3L << 30);

    private readonly long _seed;
    private readonly WireOptions _o;
    private readonly Random _rng;
    private readonly SimTime _time = new(Epoch);
    private readonly SimDisk _disk = new();
    private readonly long[] _faults = new long[Enum.GetValues<DstFault>().Length];
    private readonly List<string> _trace = new();
    private readonly List<WirePeer> _peers = new();
    private readonly List<Packet> _inFlight = new();
    private readonly HashSet<int> _partitioned = new();
    private readonly List<byte[]> _drain = new();
    private ulong _hash = 14695981039346656037UL;
    private int _events;
    private string? _violation;
    private WireServer _server = null!;
    private long _connIds;
    private int _incarnation;
    private bool _faultsOn = true;

    // Acknowledged commits (the reply said applied) by cell version: all must survive a crash.
    private long _ackedVersion;

    // Unified: keys whose commit the server applied, with the version (dropped when a crash loses that version).
    private readonly Dictionary<(ulong, ulong), long> _appliedKeys = new();

    // Replies to committed keys: a retry must return the same outcome.
    private readonly Dictionary<(ulong, ulong), (TransactionStatus Status, int Applied, long Version)> _outcomes = new();

    public WireRun(long seed, WireOptions o)
    {
        _seed = seed;
        _o = o;
        _rng = new Random(unchecked((int)(seed * 2654435761L) ^ (int)(seed >> 32)));
    }

    // The run's last incarnation ends like a crashed one: its controllers stop and its cell is disposed too. The cell and
    // the engine own Meters, which live in the runtime's global meter list until disposed: left alone, every seed's cell
    // stayed reachable through them and a 10,000-seed run ran out of memory (~1 MB a seed).
    public void Dispose()
    {
        if (_server is null) return;
        _server.Kill();
        _server.Cell.Dispose();
        _server.Dispose();
    }

    internal SimTime Time => _time;
    internal int TenantT1 { get; private set; }
    internal int TenantT2 { get; private set; }
    internal DateTimeOffset Now => _time.GetUtcNow();
    internal bool FaultsOn => _faultsOn;
    internal bool Unified => _o.ControlPlane;
    internal WireServer Server => _server;
    internal int Next(int min, int max) => _rng.Next(min, max);
    internal ulong NextKey() => (ulong)_rng.NextInt64();
    internal bool Chance(double p) => _rng.NextDouble() < p;
    internal bool FaultChance(double p) => _faultsOn && Chance(p);
    internal void Count(DstFault f) => _faults[(int)f]++;
    internal bool Failed => _violation is not null;
    internal long FramesHandled;
    internal long BindingsReceived;
    private long _commitsAcked;

    internal void Event(string what)
    {
        _events++;
        string line = $"[{_events,5} t={(long)_time.Elapsed.TotalMilliseconds,6}ms] {what}";
        foreach (char ch in line) _hash = (_hash ^ ch) * 1099511628211UL;
        _trace.Add(line);
        if (!_o.FullTrace && _trace.Count > 60) _trace.RemoveAt(0);
    }

    internal void Fail(string checker, string message)
    {
        if (_violation is not null) return;
        _violation = $"{checker}: {message}";
        Event($"VIOLATION {_violation}");
    }

    public DstResult Run()
    {
        _disk.Thread = Environment.CurrentManagedThreadId;
        int steps = 0;
        try
        {
            Boot();
            for (int i = 0; i < _o.Nodes; i++) _peers.Add(new WireAgent(this, 10 + i, $"n{i}"));
            for (int i = 0; i < _o.Schedulers; i++) _peers.Add(new WireScheduler(this, 100 + i, $"s{i}", i));
            if (_o.ControlPlane) AddControlPlanePeers();
            int total = _o.Steps + 300;
            var quietSince = DateTimeOffset.MaxValue;
            for (; _violation is null; steps++)
            {
                if (steps == _o.Steps)
                {
                    _faultsOn = false;
                    _partitioned.Clear();
                    quietSince = Now;
                    Event("faults stop; the network heals");
                }
                if (steps >= total)
                {
                    if (!_o.ControlPlane) break;
                    // Liveness (unified): past the 300 quiet steps, the run ends once everything converged, and fails if
                    // that takes longer than the bound (docs/testing.md, "convergence").
                    if (Converged(out string why)) { Event("converged"); break; }
                    if (Now - quietSince > _o.ConvergenceLimit)
                    {
                        Fail("convergence", $"not converged {_o.ConvergenceLimit.TotalSeconds:0} s after the faults stopped: {why}");
                        break;
                    }
                }
                Step();
                if (_o.ControlPlane) StepControlPlane();
                Check();
                if (_o.ControlPlane) CheckControlPlane();
            }
            if (_disk.OffThread > 0) Fail("harness", $"{_disk.OffThread} journal call(s) off the simulation's thread");
        }
        catch (Exception ex) when (_violation is null)
        {
            Fail("exception", ex.ToString());
        }
        foreach (char ch in _violation ?? "ok") _hash = (_hash ^ ch) * 1099511628211UL;
        return new DstResult(_seed, _hash, _violation, [.. _trace], _faults, steps, _time.Elapsed, converged: _violation is null)
        {
            DecisionsReplayed = _decisionsReplayed,
            Wire = true,
            Unified = _o.ControlPlane,
            ObjectWritesAcknowledged = _objectAcks,
            WatchEvents = _watchEvents,
            FramesHandled = FramesHandled,
            CommitsAcknowledged = _commitsAcked,
            BindingsReceived = BindingsReceived,
        };
    }

    private void Boot()
    {
        var cell = new Cell(CellOptions(), _disk.Journal());
        for (int i = 0; i < _o.Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", Capacity));
        TenantT1 = cell.CreateTenant("t1").Value;
        // Unified: t2's limit comes from its Quota object through the quota controller (and its overrides).
        TenantT2 = (_o.ControlPlane ? cell.CreateTenant("t2") : cell.CreateTenant("t2", T2Quota)).Value;
        _disk.Flush();
        StartServer(cell);
        if (_o.ControlPlane) BootControlPlane();
        Event($"boot: {_o.Nodes} nodes, cell v{cell.Version}");
    }

    private CellOptions CellOptions() => new() { Name = "wire", Time = _time, Buggify = _o.Buggify };

    private void StartServer(Cell cell)
    {
        _server = new WireServer(this, cell, ++_incarnation, _o, _disk);
    }

    private void Step()
    {
        _time.Advance(TimeSpan.FromMilliseconds(Next(1, 25)));
        if (_crashSoon)
        {
            // A crash right after an acknowledgement reached its client: what was acknowledged must be durable.
            _crashSoon = false;
            if (_faultsOn) { Count(DstFault.CrashAfterAck); Crash(); }
        }
        if (_o.ControlPlane) StepFaultsOfTheControlPlane();
        int what = Next(0, 100);
        if (what < 45) Deliver();
        else if (what < 75) _peers[Next(0, _peers.Count)].Act();
        else if (what < 83) _disk.Flush(Next(1, 4));
        else if (what < 90) { _server.Dispatcher.Pump(); PumpServer(); }
        else if (what < 92) _server.Lifecycle.Tick();
        else if (what < 93 && _faultsOn) Partition();
        else if (what < 94 && FaultChance(0.3)) ReconnectStorm();
        else if (what < 96 && FaultChance(0.1)) Crash();
        // The durable store's group commit: soon after a commit, at a moment the seed picks (a crash in between loses
        // the non-durable suffix, which nothing may have acknowledged).
        if (!_faultsOn || Chance(0.15)) _disk.Flush();
        _server.Dispatcher.Pump();
        PumpServer();
        if (_o.ControlPlane) BreakDoomed();
    }

    private void Partition()
    {
        var p = _peers[Next(0, _peers.Count)];
        bool cut = !_partitioned.Contains(p.Endpoint);
        if (cut) _partitioned.Add(p.Endpoint);
        else _partitioned.Remove(p.Endpoint);
        Count(DstFault.Partition);
        Event($"{(cut ? "partition" : "heal")} {p.Name}");
    }

    private void ReconnectStorm()
    {
        Count(DstFault.ReconnectStorm);
        Event("reconnect storm: every connection drops");
        foreach (var p in _peers) Disconnect(p, DisconnectReason.PeerClosed);
    }

    private void Crash()
    {
        bool tear = Next(0, 2) == 0;
        Count(DstFault.Crash);
        if (tear) Count(DstFault.TornTail);
        Event($"CRASH server {_incarnation} (disk {_disk.DurableCount}/{_disk.Count} durable, tear={tear})");
        // Every connection dies with the process; the handler is never called again.
        _inFlight.Clear();
        foreach (var p in _peers) p.Lost();
        var lastExpiry = _o.ControlPlane ? LastLiveOverrideExpiry() : null;
        _server.Kill();
        _server.Cell.Dispose();
        _server.Dispose();
        _disk.Crash(tear, _rng);
        if (lastExpiry is { } until && Next(0, 4) != 0)
        {
            // Override expiry during recovery: the process stays down until every live override's TTL has passed, so the
            // recovered cell carries a raised limit whose audited window is over; the new sweep must revert it first.
            var down = until - Now + TimeSpan.FromMilliseconds(Next(1, 1500));
            Count(DstFault.OverrideExpiryDuringRecovery);
            Event($"recovery takes {down.TotalMilliseconds:0}ms: live overrides expire meanwhile");
            _time.Advance(down);
        }
        var cell = _disk.Recover(CellOptions());
        // acked-commit-lost: every commit the server acknowledged as applied is in the recovered prefix.
        if (cell.Version < _ackedVersion)
            Fail("acked-commit-lost", $"a commit acknowledged at cell version {_ackedVersion} is gone: the recovered cell is at v{cell.Version}");
        var audit = DstSimulation.RealProblems(cell.Audit());
        if (audit.Count > 0) Fail("recovery-audit", string.Join("; ", audit));
        if (_appliedKeys.Count > 0)
        {
            var lost = new List<(ulong, ulong)>();
            foreach (var (k, v) in _appliedKeys) if (v > cell.Version) lost.Add(k);
            foreach (var k in lost) _appliedKeys.Remove(k);
        }
        StartServer(cell);
        if (_o.ControlPlane) Recovered(cell);
    }

    // ------------------------------------------------------------------ the network (frames)

    internal readonly record struct Packet(int From, int To, long Connection, DateTimeOffset DeliverAt, byte[] Bytes);

    /// <summary>A peer opens a new connection to the server: the handler's OnConnected runs now.</summary>
    internal long Connect(WirePeer p)
    {
        long id = ++_connIds;
        _server.Open(id, p);
        return id;
    }

    internal void Disconnect(WirePeer p, DisconnectReason reason)
    {
        if (p.Connection == 0) return;
        _server.Close(p.Connection, reason);
        p.Lost();
    }

    internal void Send(int from, int to, long connection, byte[] frame)
    {
        if (_o.ControlPlane) { SendStream(from, to, connection, frame); return; }
        if (_partitioned.Contains(from) || _partitioned.Contains(to)) { Count(DstFault.Drop); return; }
        if (FaultChance(0.04)) { Count(DstFault.Drop); Event($"net drop {from}->{to} {Describe(frame)}"); return; }
        Enqueue(from, to, connection, frame);
        if (FaultChance(0.03)) { Count(DstFault.Duplicate); Enqueue(from, to, connection, frame); }
    }

    private void Enqueue(int from, int to, long connection, byte[] frame)
    {
        long ms = FaultChance(0.05) ? Next(200, 2500) : Next(1, 40);
        _inFlight.Add(new Packet(from, to, connection, Now + TimeSpan.FromMilliseconds(ms), frame));
    }

    private void Deliver()
    {
        var now = Now;
        int first = -1, count = 0;
        for (int i = 0; i < _inFlight.Count; i++)
        {
            if (_inFlight[i].DeliverAt > now) continue;
            if (first < 0) first = i;
            count++;
        }
        if (first < 0) return;
        int pick = first;
        if (_faultsOn && count > 1 && Chance(0.3))
        {
            int k = Next(0, count);
            for (int i = first; ; i++)
            {
                if (_inFlight[i].DeliverAt > now) continue;
                if (k-- == 0) { pick = i; break; }
            }
            if (pick != first) Count(DstFault.Reorder);
        }
        if (_o.ControlPlane) pick = FirstOfStream(pick);
        var m = _inFlight[pick];
        _inFlight.RemoveAt(pick);
        if (_o.ControlPlane && _doomed.Contains(m.Connection)) return; // the connection broke: nothing more arrives on it
        if (_partitioned.Contains(m.From) || _partitioned.Contains(m.To))
        {
            Count(DstFault.Drop);
            if (_o.ControlPlane) Doom(m.Connection);
            return;
        }
        if (m.To == 0) ToServer(m);
        else
        {
            foreach (var p in _peers)
                if (p.Endpoint == m.To && p.Connection == m.Connection) { p.Receive(m.Bytes); break; }
        }
    }

    private void ToServer(Packet m)
    {
        if (!_server.TryGet(m.Connection, out var c)) return; // the connection is gone (closed, or a crashed process's)
        var cell = _server.Cell;
        // stale-token: a Commit under a fencing token that is not its identity's current one must apply nothing.
        bool stale = false;
        int sid = -1;
        long token = 0;
        (ulong, ulong) key = default;
        if (PeekType(m.Bytes) == MessageType.Commit && Codec.TryDecode<Commit>(Body(m.Bytes), out var commit, out _))
        {
            sid = commit.SchedulerId;
            token = commit.Token;
            key = (commit.KeyHigh, commit.KeyLow);
            var name = cell.LeaseName(new SchedulerId(sid));
            stale = name is null || cell.GetCurrentToken(name)?.Value != token;
        }
        long before = cell.Version;
        Event($"server <- {m.From} c{m.Connection} {Describe(m.Bytes)}");
        c.DeliverDetached(m.Bytes);
        FramesHandled++;
        if (stale && cell.Version != before)
            Fail("stale-token", $"a commit by scheduler {sid} with token {token} applied at v{cell.Version}, but it is not the identity's current token");
        // What the server really did with a key (the harness sees it; the scheduler may not, if the reply was lost).
        if (_o.ControlPlane && sid >= 0 && !stale && cell.Version != before) _appliedKeys.TryAdd(key, cell.Version);
        PumpServer();
    }

    /// <summary>Moves every frame the server wrote to the network; ends connections the server closed.</summary>
    internal void PumpServer()
    {
        foreach (var (id, conn, peer) in _server.Connections())
        {
            _drain.Clear();
            conn.DrainDetached(_drain);
            foreach (var f in _drain) Send(0, peer.Endpoint, id, f);
            if (conn.IsClosing)
            {
                _server.Close(id, DisconnectReason.LocalClose);
                Event($"server closed c{id} ({conn.Reason})");
            }
        }
    }

    internal static MessageType PeekType(byte[] frame)
    {
        var seq = new ReadOnlySequence<byte>(frame);
        return Frame.TryRead(ref seq, int.MaxValue, out var f) == FrameReadStatus.Ok ? f.Type : 0;
    }

    internal static ReadOnlySequence<byte> Body(byte[] frame)
    {
        var seq = new ReadOnlySequence<byte>(frame);
        Frame.TryRead(ref seq, int.MaxValue, out var f);
        return f.Body;
    }

    internal static uint RequestId(byte[] frame)
    {
        var seq = new ReadOnlySequence<byte>(frame);
        return Frame.TryRead(ref seq, int.MaxValue, out var f) == FrameReadStatus.Ok ? f.RequestId : 0;
    }

    private static string Describe(byte[] frame) => $"{PeekType(frame)}#{RequestId(frame)}";

    internal static byte[] Encode<T>(uint rid, in T message) where T : IWireMessage<T>
    {
        var w = new ArrayBufferWriter<byte>(256);
        Codec.WriteFrame(w, rid, message);
        return w.WrittenSpan.ToArray();
    }

    // ------------------------------------------------------------------ checkers

    /// <summary>A reply to a commit reached its scheduler (the acknowledgement the invariants speak of).</summary>
    internal void CommitAcknowledged(WireScheduler s, (ulong, ulong) key, in CommitReply r, bool retry)
    {
        Event($"{s.Name} commit reply {r.Status} applied {r.Applied} v{r.Version}{(r.Replayed ? " (replayed)" : "")}{(retry ? " after a retry" : "")}");
        if (r.Applied > 0) { _ackedVersion = Math.Max(_ackedVersion, r.Version); _commitsAcked++; MaybeCrashSoon(); }
        if (_o.ControlPlane && r.Applied == 0 && r.Status is not (TransactionStatus.LeaseExpired or TransactionStatus.StaleFencingToken)
            && _appliedKeys.TryGetValue(key, out var appliedAt))
            // Unified: the first send of this key applied (and survived every crash since), yet a send of the same key
            // is answered "nothing applied": a retry after a timeout-after-commit must get the original outcome, or the
            // scheduler believes the task unplaced while it is bound (it would place it again).
            Fail("retry-binds-once", $"{s.Name}: key applied at v{appliedAt}, but a send of the same key got {r.Status} with nothing applied");
        if (_outcomes.TryGetValue(key, out var first))
        {
            // The cell checks the fencing token and lease before it looks up the key (docs/commit-protocol.md), so a retry
            // that arrives after the scheduler's lease lapsed or was taken over is refused whole: it applies nothing, which
            // still binds once. Anything else must be the original outcome.
            bool fencedWhole = r.Applied == 0 && r.Status is TransactionStatus.LeaseExpired or TransactionStatus.StaleFencingToken;
            if (first.Applied > 0 && !fencedWhole && (r.Status != first.Status || r.Applied != first.Applied || r.Version != first.Version))
                Fail("retry-binds-once", $"{s.Name}: a retried commit got {r.Status}, {r.Applied} applied at v{r.Version}; the original was {first.Status}, {first.Applied} applied at v{first.Version}");
        }
        else _outcomes[key] = (r.Status, r.Applied, r.Version);
    }

    private void Check()
    {
        if (_violation is not null) return;
        var cell = _server.Cell;
        var seen = new HashSet<TaskId>();
        var snap = cell.Snapshot();
        // Reservations hold capacity too (the unified harness's reserver makes them): summed with the bindings.
        var held = new Dictionary<int, ResourceVector>();
        foreach (var r in cell.GetReservations()) held[r.Node.Value] = held.GetValueOrDefault(r.Node.Value) + r.Resources;
        for (int i = 0; i < snap.NodeCount; i++)
        {
            var id = new NodeId(i);
            if (snap.TryGetNode(id, out var v) != SnapshotRead.Ok) continue;
            var used = held.GetValueOrDefault(i);
            foreach (var a in cell.GetAllocationsOnNode(id))
            {
                if (!seen.Add(a.Task)) { Fail("one-live-binding", $"{a.Task} is bound twice"); return; }
                used += a.Resources;
            }
            if (!used.FitsWithin(v.Capacity)) { Fail("node-capacity", $"node {v.Spec.Name} holds {used} over its capacity {v.Capacity}"); return; }
        }
        if (!_o.ControlPlane && cell.TryGetTenant("t2", out var t2))
        {
            var (usage, quota) = cell.GetTenantUsage(t2);
            if (quota is { } q && !usage.FitsWithin(q)) { Fail("quota", $"tenant t2 uses {usage} over its quota {q}"); return; }
        }
        var audit = DstSimulation.RealProblems(cell.Audit());
        if (audit.Count > 0) Fail("cell-audit", string.Join("; ", audit));
        // Fold a digest of the state into the hash: two runs that differ anywhere differ here.
        foreach (char ch in $"{cell.Version}/{seen.Count}/{_inFlight.Count}") _hash = (_hash ^ ch) * 1099511628211UL;
    }
}

/// <summary>One server process in the wire simulation: the real handler, dispatcher and lifecycle over one cell.</summary>
internal sealed class WireServer : IDisposable
{
    private readonly WireRun _run;
    private readonly SortedDictionary<long, (FrameConnection Connection, WirePeer Peer)> _conns = new();
    private readonly ProtocolHandler _handler;
    private readonly TransportOptions _transport;
    private readonly TransportMetrics _metrics = new("wire-dst");

    public WireServer(WireRun run, Cell cell, int incarnation, WireOptions o, SimDisk disk)
    {
        _run = run;
        Cell = cell;
        var buggify = o.Buggify;
        var options = new ServerOptions
        {
            Name = $"wire{incarnation}",
            Time = run.Time,
            LifecyclePeriod = null, // ticked by the simulation (SimTime refuses timers)
            Publisher = new DiskPublisher(disk),
            Buggify = buggify,
            Stepped = true,
            // The expiry sweep's timer is not needed: an expired credential is refused at its next request.
            Authentication = o.Authentication ? new AuthOptions { ExpirySweepPeriod = null } : null,
        };
        if (o.ControlPlane) ControlPlane = new WireControlPlane(run, cell, disk, options);
        options.Transport.Time = run.Time;
        _transport = options.Transport;
        var feed = new BindingFeed();
        var nodes = new NodeRegistry();
        // As OmegaServer does at startup: restored bindings go back into their nodes' outboxes, so a returning agent
        // learns every binding it has not seen (the unified harness's convergence needs it; the wire simulation keeps
        // its earlier behaviour, documented as not simulated there).
        if (o.ControlPlane && (buggify & Buggify.SkipOutboxReseed) == 0) OmegaServer.SeedOutboxes(cell, nodes);
        cell.AddBindingListener(feed);
        Dispatcher = new Dispatcher(feed, options.Publisher, nodes, runLoop: false);
        Lifecycle = new NodeLifecycleController(cell, null, options);
        _auth = new AuthService(cell, options.Authentication, run.Time, null, buggify);
        _handler = new ProtocolHandler(cell, ControlPlane?.Engine, options, nodes, Dispatcher, Lifecycle, _auth);
    }

    private readonly AuthService _auth;

    /// <summary>The control plane behind the handler (unified harness), or null.</summary>
    public WireControlPlane? ControlPlane { get; }

    /// <summary>The server's credential store.</summary>
    public AuthService Auth => _auth;

    /// <summary>The process dies: its controllers stop (their pending work never completes).</summary>
    public void Kill() => ControlPlane?.Kill();

    /// <summary>The process died: nothing of it runs again (its connections are dropped without a disconnect call).</summary>
    public void Dispose()
    {
        _conns.Clear();
        Lifecycle.Dispose();
        _handler.Dispose();
        _auth.Dispose();
        _metrics.Dispose();
    }

    public Cell Cell { get; }
    public Dispatcher Dispatcher { get; }
    public NodeLifecycleController Lifecycle { get; }

    public void Open(long id, WirePeer peer) => _conns[id] = (FrameConnection.CreateDetached(id, _handler, _transport, _metrics), peer);

    public bool TryGet(long id, out FrameConnection c)
    {
        if (_conns.TryGetValue(id, out var e)) { c = e.Connection; return true; }
        c = null!;
        return false;
    }

    public void Close(long id, DisconnectReason reason)
    {
        if (!_conns.Remove(id, out var e)) return;
        e.Connection.FinishDetached(reason);
        if (e.Peer.Connection == id) e.Peer.Lost();
    }

    public List<(long, FrameConnection, WirePeer)> Connections()
    {
        var list = new List<(long, FrameConnection, WirePeer)>(_conns.Count);
        foreach (var (id, e) in _conns) list.Add((id, e.Connection, e.Peer));
        return list;
    }

    private sealed class DiskPublisher(SimDisk disk) : IPublishableVersion
    {
        public long PublishableVersion => disk.DurableVersion;
        public long PublishableSequence => disk.DurableSequence;
    }
}

/// <summary>A client of the wire simulation: one connection at a time, reconnecting after it is lost.</summary>
internal abstract class WirePeer(WireRun run, int endpoint, string name)
{
    protected readonly WireRun Run = run;
    protected uint NextRid = 1;

    public int Endpoint { get; } = endpoint;
    public string Name { get; } = name;
    public long Connection { get; private set; }
    protected bool Welcomed { get; private set; }

    /// <summary>The credential presented in Hello (authentication on), or null.</summary>
    public string? Token { get; set; }

    public void Lost()
    {
        Connection = 0;
        Welcomed = false;
        OnLost();
    }

    protected virtual void OnLost() { }

    public void Act()
    {
        if (Connection == 0)
        {
            Connection = Run.Connect(this);
            Run.Event($"{Name} connects (c{Connection})");
            Send(new Hello { Version = Frame.ProtocolVersion, Role = Role, Name = Name, Token = Token });
            return;
        }
        if (Run.FaultChance(0.01))
        {
            Run.Count(DstFault.ReconnectStorm);
            Run.Event($"{Name} drops its connection");
            Run.Disconnect(this, DisconnectReason.PeerClosed);
            return;
        }
        if (Welcomed) OnAct();
    }

    protected abstract PeerRole Role { get; }

    protected abstract void OnAct();

    protected uint Send<T>(in T message) where T : IWireMessage<T>
    {
        uint rid = NextRid++;
        Run.Send(Endpoint, 0, Connection, WireRun.Encode(rid, message));
        return rid;
    }

    protected void SendNoReply<T>(in T message) where T : IWireMessage<T>
        => Run.Send(Endpoint, 0, Connection, WireRun.Encode(0, message));

    public void Receive(byte[] frame)
    {
        var type = WireRun.PeekType(frame);
        if (type == MessageType.Welcome) { Welcomed = true; OnWelcome(); return; }
        if (type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(WireRun.Body(frame), out var e, out _);
            Run.Event($"{Name} error {e.Code}: {e.Message}");
            OnError(WireRun.RequestId(frame), e.Code);
            return;
        }
        OnReceive(type, WireRun.RequestId(frame), WireRun.Body(frame));
    }

    protected abstract void OnWelcome();

    /// <summary>A typed error arrived for request <paramref name="rid"/> (0: about the connection).</summary>
    protected virtual void OnError(uint rid, ErrorCode code) { }

    protected abstract void OnReceive(MessageType type, uint rid, in ReadOnlySequence<byte> body);
}

/// <summary>A node agent: registers, heartbeats, learns bindings from Bindings frames, reports Running and completes some.</summary>
internal sealed class WireAgent(WireRun run, int endpoint, string name) : WirePeer(run, endpoint, name)
{
    private int _nodeId = -1;
    private long _lastVersion;
    private readonly List<(TaskId Task, long Generation)> _running = new(); // in arrival order (deterministic)

    protected override PeerRole Role => PeerRole.Agent;

    private int Find(TaskId task)
    {
        for (int i = 0; i < _running.Count; i++)
            if (_running[i].Task == task) return i;
        return -1;
    }

    protected override void OnLost() => _nodeId = -1;

    /// <summary>What this agent knows of <paramref name="task"/> (the convergence checker's diagnostics).</summary>
    public string Describe(TaskId task)
    {
        int at = Find(task);
        return $"{(Connection == 0 ? "disconnected" : _nodeId < 0 ? "unregistered" : "registered")}, last v{_lastVersion}, {(at < 0 ? "does not run it" : $"runs it @{_running[at].Generation}")}";
    }

    protected override void OnWelcome()
        => Send(new Register { Node = Name, Capacity = WireRun.Capacity, FailureDomain = "", ResumeFrom = _lastVersion });

    protected override void OnAct()
    {
        if (_nodeId < 0) return;
        if (Run.Unified && !Run.FaultsOn) { QuietAct(); return; }
        if (Run.Chance(0.5)) { Send(new Heartbeat { NodeId = _nodeId, LastVersion = _lastVersion }); return; }
        if (_running.Count == 0) return;
        if (Run.Unified && Run.Chance(0.5))
        {
            // A task passed its readiness check: Ready (fire-and-forget, like Running).
            var (t, g) = _running[Run.Next(0, _running.Count)];
            SendNoReply(new TaskReport { NodeId = _nodeId, Task = t, Generation = g, State = TaskState.Ready, Reason = "" });
            return;
        }
        // Complete one task: the server releases its binding (and acknowledges once durable).
        int k = Run.Next(0, _running.Count);
        var (task, gen) = _running[k];
        _running.RemoveAt(k);
        Complete(task, gen);
        Run.Event($"{Name} completes {task}@{gen}");
    }

    // A completion is reported until the server answers it (unified): a report lost with its connection would otherwise
    // leave the binding in the cell and the task gone from the agent, which no real agent does (it re-reports what it
    // finished), and the replica would never be Ready nor replaced.
    private readonly List<(TaskId Task, long Generation)> _unanswered = new();
    private readonly Dictionary<uint, (TaskId, long)> _completionRids = new();

    private void Complete(TaskId task, long gen)
    {
        uint rid = Send(new TaskReport { NodeId = _nodeId, Task = task, Generation = gen, State = TaskState.Completed, Reason = "" });
        if (!Run.Unified) return;
        if (!_unanswered.Contains((task, gen))) _unanswered.Add((task, gen));
        _completionRids[rid] = (task, gen);
    }

    // Unified harness, faults over: heartbeat, report every task Ready (the phase is kept in memory only, so a restart
    // forgets it), and finish the external schedulers' tasks (workload replicas run on) so the capacity they held frees.
    private void QuietAct()
    {
        Send(new Heartbeat { NodeId = _nodeId, LastVersion = _lastVersion });
        foreach (var (t, g) in _unanswered.ToArray()) Complete(t, g);
        foreach (var (t, g) in _running)
            SendNoReply(new TaskReport { NodeId = _nodeId, Task = t, Generation = g, State = TaskState.Ready, Reason = "" });
        for (int i = 0; i < _running.Count; i++)
        {
            var (task, gen) = _running[i];
            if ((task.Job.Value & Omega.ControlPlane.Controllers.WorkloadController.JobIdSpace) != 0) continue;
            _running.RemoveAt(i);
            Complete(task, gen);
            Run.Event($"{Name} completes {task}@{gen}");
            return;
        }
    }

    protected override void OnReceive(MessageType type, uint rid, in ReadOnlySequence<byte> body)
    {
        switch (type)
        {
            case MessageType.TaskReportAck when _completionRids.Remove(rid, out var done):
                _unanswered.Remove(done); // answered (released, or not bound any more): done either way
                break;
            case MessageType.Registered when Codec.TryDecode<Registered>(body, out var r, out _):
                _nodeId = r.NodeId;
                Run.Event($"{Name} registered as node {r.NodeId}");
                break;
            case MessageType.Bindings when Codec.TryDecode<Bindings>(body, out var b, out _):
                foreach (var e in b.Entries.Span)
                {
                    Run.BindingsReceived++;
                    if (e.Kind == BindingKind.Run)
                    {
                        int at = Find(e.Task);
                        // A newer binding of a task the agent still runs under an older generation replaces it (unified
                        // only, so the wire simulation's seeds keep their runs): reports must name the live generation.
                        if (at >= 0 && Run.Unified && _running[at].Generation < e.Generation) { _running.RemoveAt(at); at = -1; }
                        if (at < 0)
                        {
                            _running.Add((e.Task, e.Generation));
                            SendNoReply(new TaskReport { NodeId = _nodeId, Task = e.Task, Generation = e.Generation, State = TaskState.Running, Reason = "" });
                        }
                    }
                    else if (Find(e.Task) is var at and >= 0 && (!Run.Unified || _running[at].Generation <= e.Generation)) _running.RemoveAt(at);
                }
                _lastVersion = Math.Max(_lastVersion, b.Version);
                break;
        }
    }
}

/// <summary>
/// An external scheduler: acquires a lease, syncs, commits one-task transactions with an idempotency key, retries a
/// commit whose reply did not come (same key, maybe on a new connection), and sometimes restarts and acquires its lease
/// again while its old incarnation keeps its old token (a deposed scheduler).
/// </summary>
internal sealed class WireScheduler(WireRun run, int endpoint, string name, int index) : WirePeer(run, endpoint, name)
{
    private int _schedulerId = -1;
    private long _token;
    private long _nextJob = (index + 1) * 1_000_000L;
    private readonly List<(int Id, long Version, long Capacity)> _nodes = new();
    private Pending? _pending;
    private readonly Dictionary<uint, Pending> _byRid = new();

    private sealed record Pending((ulong, ulong) Key, Commit Message, DateTimeOffset SentAt)
    {
        public bool Retried { get; set; }
    }

    protected override PeerRole Role => PeerRole.Scheduler;

    protected override void OnLost() => _byRid.Clear();

    protected override void OnWelcome() => Send(new AcquireLease { Name = Name, DurationMs = 4000 });

    protected override void OnAct()
    {
        if (_schedulerId < 0) return;
        if (_pending is { } p)
        {
            if (Run.Now - p.SentAt < TimeSpan.FromSeconds(1)) return;
            // Timeout: the reply (or the request) was lost; retry with the same key.
            if (Run.Unified && Run.FaultChance(0.3))
            {
                // A client that gives up on the key and sends the same claims under a new one: the cell must refuse
                // the task it already bound (one live binding), whatever the idempotency table says.
                var fresh = p.Message with { KeyLow = Run.NextKey() };
                Run.Count(DstFault.ResubmitNewKey);
                Run.Event($"{Name} commit timed out; resubmitting the same claims under a new key");
                _pending = new Pending((fresh.KeyHigh, fresh.KeyLow), fresh, Run.Now);
                _byRid[Send(fresh)] = _pending;
                return;
            }
            Run.Count(DstFault.CommitTimeout);
            Run.Event($"{Name} commit timed out; retrying with the same key");
            p.Retried = true;
            _pending = p with { SentAt = Run.Now, Retried = true };
            _byRid[Send(p.Message)] = _pending;
            return;
        }
        if (Run.Unified && !Run.FaultsOn) return; // faults over: no new work, so the workloads' capacity frees
        int what = Run.Next(0, 10);
        if (what < 2) { Send(new Sync { Since = 0, StartNode = 0, MaxNodes = 0 }); return; }
        if (what < 3) { Send(new RenewLease { Name = Name, SchedulerId = _schedulerId, Token = _token, DurationMs = 4000 }); return; }
        if (what < 4 && Run.FaultsOn && Run.Chance(0.2))
        {
            // Restart: a new incarnation acquires the lease (a new token); this one keeps committing with the old
            // token until it hears of it: the cell must refuse those commits.
            Run.Event($"{Name} restarts and acquires its lease again (old token {_token} kept for one more commit)");
            Send(new AcquireLease { Name = Name, DurationMs = 4000 });
        }
        if (_nodes.Count == 0) return;
        var n = _nodes[Run.Next(0, _nodes.Count)];
        var task = new TaskId(++_nextJob, 0);
        int tenant = Run.Chance(0.5) ? Run.TenantT2 : Run.TenantT1;
        var claim = new WireClaim(task, n.Id, WireRun.Request, n.Version, tenant, 100, null);
        var m = new Commit { SchedulerId = _schedulerId, Token = _token, Mode = 0, Detection = 0, KeyHigh = (ulong)index + 1, KeyLow = Run.NextKey(), Claims = [claim] };
        _pending = new Pending((m.KeyHigh, m.KeyLow), m, Run.Now);
        _byRid[Send(m)] = _pending;
        Run.Event($"{Name} commits {task} on node {n.Id} (tenant {tenant}, token {_token})");
    }

    protected override void OnReceive(MessageType type, uint rid, in ReadOnlySequence<byte> body)
    {
        switch (type)
        {
            case MessageType.LeaseReply when Codec.TryDecode<LeaseReply>(body, out var r, out _):
                if (r.Status <= 1 && r.Token > 0)
                {
                    _schedulerId = r.SchedulerId;
                    _token = r.Token;
                }
                Run.Event($"{Name} lease reply {(LeaseStatus)r.Status} id {r.SchedulerId} token {r.Token}");
                break;
            case MessageType.SyncReply when Codec.TryDecode<SyncReply>(body, out var s, out _):
                _nodes.Clear();
                foreach (var n in s.Nodes)
                    if (n.Status == NodeStatus.Schedulable) _nodes.Add((n.Id, n.NodeVersion, 0));
                break;
            case MessageType.CommitReply when Codec.TryDecode<CommitReply>(body, out var c, out _):
                if (!_byRid.Remove(rid, out var p)) break;
                Run.CommitAcknowledged(this, p.Key, c, p.Retried);
                if (_pending is { } cur && cur.Key == p.Key) _pending = null;
                break;
        }
    }
}
