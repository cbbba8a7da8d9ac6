using System.Net;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// The network face of an Omega engine: a TCP server speaking the protocol of docs/protocol.md to node agents and
/// external schedulers, the bind path that pushes committed (and publishable) bindings to agents, and the node
/// lifecycle controller. Sockets stay inside the transport; this type only wires the parts together.
/// </summary>
public sealed class OmegaServer : IAsyncDisposable
{
    private readonly BindingFeed _feed;
    private readonly NodeRegistry _nodes = new();
    private readonly Dispatcher _dispatcher;
    private readonly ProtocolHandler _handler;
    private readonly FrameServer _server;

    /// <summary>Creates the server on <paramref name="endpoint"/> (port 0 picks a free port). Call <see cref="Start"/>.</summary>
    public OmegaServer(Cell cell, SchedulingEngine? engine, IPEndPoint endpoint, ServerOptions? options = null)
    {
        Cell = cell ?? throw new ArgumentNullException(nameof(cell));
        Engine = engine;
        Options = options ?? new ServerOptions();
        // The stage histograms' commit times (StageClock), on the server's clock: the host gives the cell the same one.
        _feed = new BindingFeed { Clock = new StageClock(Options.Time) };
        // BUGGIFY SkipOutboxReseed (docs/testing.md): the liveness defect the simulation's convergence checker must catch.
        if ((Options.Buggify & Omega.Cells.Buggify.SkipOutboxReseed) == 0) SeedOutboxes(cell, _nodes);
        cell.AddBindingListener(_feed);
        var publisher = Options.Publisher ?? new CellVersionPublisher(cell);
        _dispatcher = new Dispatcher(_feed, publisher, _nodes);
        Lifecycle = new NodeLifecycleController(cell, engine, Options);
        Lifecycle.InboundProbe = SinceLastReceived;
        // Credentials and the audit log are read from the cell's security records (restored with it).
        Auth = new AuthService(cell, Options.Authentication, Options.Time, Options.MeterFactory, Options.Buggify);
        _handler = new ProtocolHandler(cell, engine, Options, _nodes, _dispatcher, Lifecycle, Auth);
        Options.Transport.MeterFactory ??= Options.MeterFactory;
        Options.Transport.MeterCellName ??= cell.Name;
        _server = new FrameServer(endpoint, _handler, Options.Transport, Options.Name);
        if (Options.Leadership is { } gate)
        {
            _gate = gate;
            _wasLeader = gate.IsLeader;
            gate.Changed += OnLeadershipChanged;
        }
    }

    private readonly ILeaderGate? _gate;
    private readonly Lock _leadershipLock = new();
    private bool _wasLeader;

    // The gate's Changed (any thread). Losing the leadership turns every client away at once with the redirect (request
    // id 0), so agents and schedulers move to the new leader now instead of at their next request; a connection that
    // sends a request first gets the same answer from the per-frame check. Gaining it starts the node restart grace.
    private void OnLeadershipChanged()
    {
        var gate = _gate!;
        bool leads = gate.IsLeader;
        bool lost;
        lock (_leadershipLock)
        {
            lost = _wasLeader && !leads;
            _wasLeader = leads;
        }
        Lifecycle.RefreshLeadership();
        // Also when still a follower and the leader's address changed: nothing is open then but handshakes in progress.
        if (!leads) _server.ForEachConnection(c => _handler.Redirect(c, 0, gate));
        if (lost)
        {
            Interlocked.Increment(ref _leadershipLosses);
            _handler.DropSnapshots(); // a follower serves no snapshot; the replica asks the new leader
        }
    }

    private long _leadershipLosses;

    /// <summary>Times this replica lost the leadership (and turned its clients away).</summary>
    public long LeadershipLosses => Volatile.Read(ref _leadershipLosses);

    /// <summary>Clients turned away with NotLeader or NoLeader (metric <c>omega.server.redirects</c>).</summary>
    public long Redirects => _handler.RedirectCount;

    // After a restart the outboxes (in memory) are empty, but the cell restored every binding, including ones committed
    // (durable) just before the crash and never pushed to their agent: without this, such an agent would never learn of
    // its task (a bound replica that never starts). So each restored binding is put back in its node's outbox at its
    // version (= its generation, the commit's cell version); a returning agent's Register resumes after its last
    // processed version, so it receives exactly the bindings it has not seen, and nothing twice. Done before the
    // listener is added and before anything can commit (the host starts the engine after building the server).
    // (Stops for bindings released just before a crash are not recovered this way: the released binding is gone.)
    // Internal static: the deterministic simulation's server (Omega.Dst) seeds its outboxes the same way after a crash.
    internal static void SeedOutboxes(Cell cell, NodeRegistry nodes)
    {
        var all = cell.GetAllocations();
        if (all.Count == 0) return;
        // GetAllocations hands out a fresh list: sort that one in place. A second copy cost 72 bytes per binding of
        // transient memory at startup (~700 MB at 10M bindings).
        var sorted = all as List<Allocation> ?? new List<Allocation>(all);
        sorted.Sort(static (x, y) => x.Generation.CompareTo(y.Generation));
        // Size every outbox once (growing ~1,000 entries per node by doubling left as much again as garbage).
        var perNode = new Dictionary<int, int>();
        foreach (var a in sorted) perNode[a.Node.Value] = perNode.GetValueOrDefault(a.Node.Value) + 1;
        foreach (var (id, n) in perNode)
        {
            var node = nodes.Get(new NodeId(id));
            lock (node.Sync) node.Reserve(n);
        }
        foreach (var a in sorted)
        {
            var node = nodes.Get(a.Node);
            lock (node.Sync) node.Append(new BindingEntry(BindingKind.Run, a.Task, a.Generation, a.Resources, a.Tenant.Value, a.Priority), a.Generation);
        }
    }

    // Liveness by receive time: how long since the node's registered connection took bytes off its socket. Each clock
    // measures its own elapsed time, so the transport's and the lifecycle's clocks need not be the same object.
    private TimeSpan? SinceLastReceived(NodeId id)
    {
        var c = _nodes.TryGet(id)?.Connection;
        if (c is null || c.IsClosing) return null;
        return c.Clock.GetElapsedTime(c.LastReceivedAt);
    }

    /// <summary>The cell served.</summary>
    public Cell Cell { get; }

    /// <summary>The engine whose workers schedule submitted jobs (may be null: agents and external schedulers only).</summary>
    public SchedulingEngine? Engine { get; }

    /// <summary>The options in force.</summary>
    public ServerOptions Options { get; }

    /// <summary>Credentials, revocations and the audit log (docs/protocol.md, section 12); <see cref="AuthService.Enabled"/> says whether they are checked.</summary>
    public AuthService Auth { get; }

    /// <summary>The node lease controller.</summary>
    public NodeLifecycleController Lifecycle { get; }

    /// <summary>The listening address.</summary>
    public IPEndPoint EndPoint => _server.EndPoint;

    /// <summary>Transport counters (connections, frames, errors by code, disconnects by reason).</summary>
    public TransportMetrics TransportMetrics => _server.Metrics;

    /// <summary>Open connections.</summary>
    public int ConnectionCount => _server.ConnectionCount;

    /// <summary>Bytes held now for incomplete frames over all connections (bounded by <c>TransportOptions.MaxIncompleteFrameBytes</c>).</summary>
    public long IncompleteFrameBytes => _server.IncompleteFrameBytes;

    /// <summary>Binding changes routed to node outboxes so far.</summary>
    public long BindingsRouted => Volatile.Read(ref _dispatcher.EntriesRouted);

    /// <summary>Task reports accepted, by state.</summary>
    public long TaskReports(Protocol.TaskState state) => _handler.TaskReportsByState(state);

    /// <summary>Starts accepting connections.</summary>
    public void Start() => _server.Start();

    /// <summary>Runs the handshake/idle timeout sweep now (after advancing a fake clock).</summary>
    public void SweepConnections() => _server.SweepNow();

    /// <summary>Runs one pass of the bind path now (normally a background loop does it).</summary>
    public void PumpBindings() => _feed.Signal();

    /// <summary>Stops the server: closes connections, the bind path and the lifecycle timer.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_gate is not null) _gate.Changed -= OnLeadershipChanged;
        await _server.DisposeAsync().ConfigureAwait(false);
        await _dispatcher.DisposeAsync().ConfigureAwait(false);
        Cell.RemoveBindingListener(_feed);
        Lifecycle.Dispose();
        _handler.Dispose();
        Auth.Dispose();
        _feed.Dispose();
    }
}
