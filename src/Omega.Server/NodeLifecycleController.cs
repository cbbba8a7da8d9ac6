using System.Diagnostics.Metrics;
using Omega.Cells;
using Omega.Scheduling;

namespace Omega.Server;

/// <summary>Outcome of one <see cref="NodeLifecycleController.Tick"/>.</summary>
public readonly record struct LifecycleTick(int Expired, int Evicted, int Deferred, bool InGrace, bool MassSilence);

/// <summary>
/// Node leases. An agent's register and heartbeats renew its node's lease; a node whose lease has expired is fenced (no
/// new claims validate on it), its bindings are released (the agent is told to stop them when it comes back) and its
/// tasks go back to their queues, to be bound again at a higher generation. Three brakes keep a network problem from
/// becoming a mass eviction: nothing is declared dead during one lease period after the controller starts (restart
/// grace); evictions are rate-limited by a token bucket; and if more than <see cref="ServerOptions.MassSilenceFraction"/>
/// of the tracked nodes are silent at once, nothing is evicted at all. Time comes from the injected <see cref="TimeProvider"/>.
/// </summary>
public sealed class NodeLifecycleController : IDisposable
{
    private readonly Cell _cell;
    private readonly SchedulingEngine? _engine;
    private readonly ServerOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly Dictionary<NodeId, long> _lastSeen = new();
    private readonly HashSet<NodeId> _dead = new();
    // Registered by this process and not heard from since (no heartbeat yet), with the registration time. Kept out of
    // _lastSeen on purpose: a pending node is neither evicted (fenced) nor counted by the mass-silence brake, so junk
    // registrations cannot trip the brake; it is removed outright if no heartbeat comes within the registration timeout.
    private readonly Dictionary<NodeId, long> _pending = new();
    private int _pendingReserved;
    private readonly long _registrationTicks;
    private long _expiredRegistrations;
    private readonly long _graceEnds;
    private readonly long _leaseTicks;
    private double _tokens;
    private long _lastRefill;
    private readonly ITimer? _timer;
    private readonly Meter _meter = new("Omega.Server.Lifecycle");
    private readonly Counter<long> _evictions, _deferred, _massSilence, _returned;
    private long _evictedCount, _massSilenceCount, _returnedCount;

    /// <summary>
    /// Creates the controller. Every node already in the cell is tracked as if it had just heartbeated, so after an
    /// engine restart agents get one full lease period to reconnect before anything is declared dead.
    /// </summary>
    public NodeLifecycleController(Cell cell, SchedulingEngine? engine, ServerOptions options)
    {
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _engine = engine;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _time = options.Time;
        long now = _time.GetTimestamp();
        _leaseTicks = (long)(options.NodeLease.TotalSeconds * _time.TimestampFrequency);
        _graceEnds = now + _leaseTicks;
        _registrationTicks = (long)((options.RegistrationTimeout ?? options.NodeLease).TotalSeconds * _time.TimestampFrequency);
        _lastRefill = now;
        _tokens = Math.Max(1, options.EvictionsPerSecond);
        var snap = cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok) continue;
            if (v.Status is NodeStatus.Schedulable or NodeStatus.Draining) _lastSeen[new NodeId(i)] = now;
            // Recovered from the durable cell: a node that is Fenced was declared lost before the restart (eviction is
            // the only thing that fences). Remembering it as dead is what lets its returning agent un-fence it, exactly
            // as without a restart; kept only in memory, it would stay fenced forever (issue 10, defect 5).
            else if (v.Status == NodeStatus.Fenced) _dead.Add(new NodeId(i));
        }
        _evictions = _meter.CreateCounter<long>("omega.lifecycle.evictions");
        _deferred = _meter.CreateCounter<long>("omega.lifecycle.evictions.deferred");
        _massSilence = _meter.CreateCounter<long>("omega.lifecycle.mass_silence");
        _returned = _meter.CreateCounter<long>("omega.lifecycle.nodes.returned");
        if (options.LifecyclePeriod is { } p) _timer = _time.CreateTimer(_ => Tick(), null, p, p);
    }

    /// <summary>Nodes evicted (declared lost) so far.</summary>
    public long EvictedCount => Volatile.Read(ref _evictedCount);

    /// <summary>Ticks that found most nodes silent and evicted nothing.</summary>
    public long MassSilenceCount => Volatile.Read(ref _massSilenceCount);

    /// <summary>Nodes that came back after being declared lost.</summary>
    public long ReturnedCount => Volatile.Read(ref _returnedCount);

    /// <summary>Registrations removed because no heartbeat followed within the registration timeout.</summary>
    public long ExpiredRegistrationCount => Volatile.Read(ref _expiredRegistrations);

    /// <summary>Nodes registered by this process that have not heartbeated yet (plus registrations being admitted).</summary>
    public int PendingRegistrationCount
    {
        get { lock (_lock) return _pending.Count + _pendingReserved; }
    }

    /// <summary>
    /// Reserves room for a registration that adds a new node; false when <see cref="ServerOptions.MaxPendingRegistrations"/>
    /// never-heartbeated registrations are already pending. Follow with <see cref="Registered"/> or <see cref="CancelRegistration"/>.
    /// </summary>
    public bool TryReserveRegistration()
    {
        lock (_lock)
        {
            if (_pending.Count + _pendingReserved >= _options.MaxPendingRegistrations) return false;
            _pendingReserved++;
            return true;
        }
    }

    /// <summary>Gives back a reservation whose registration did not add a node.</summary>
    public void CancelRegistration()
    {
        lock (_lock) _pendingReserved--;
    }

    /// <summary>
    /// A Register: a node it added (after <see cref="TryReserveRegistration"/>) is pending until its first heartbeat; an
    /// existing node renews its lease as a heartbeat does, unless it is itself still pending (re-registering does not
    /// prove an agent works: only a heartbeat does, so re-registering cannot keep a junk node alive).
    /// </summary>
    public void Registered(NodeId node, bool added)
    {
        lock (_lock)
        {
            if (added)
            {
                _pendingReserved--;
                _pending[node] = _time.GetTimestamp();
                return;
            }
            if (_pending.ContainsKey(node)) return;
        }
        Renew(node);
    }

    /// <summary>The lease length in milliseconds, as told to agents.</summary>
    public int LeaseMilliseconds => (int)_options.NodeLease.TotalMilliseconds;

    /// <summary>True if the node was declared lost and has not re-registered since.</summary>
    public bool IsDead(NodeId node)
    {
        lock (_lock) return _dead.Contains(node);
    }

    /// <summary>
    /// Register or heartbeat: renews the node's lease. A node that was declared lost is made schedulable again
    /// (its superseded tasks were already released; the agent learns to stop them from its binding stream).
    /// </summary>
    public void Renew(NodeId node)
    {
        bool returned;
        lock (_lock)
        {
            // A heartbeat about a node removed meanwhile (an expired registration, an operator's removal) tracks nothing.
            if (!_pending.Remove(node) && !_lastSeen.ContainsKey(node) && !_dead.Contains(node) && !IsLive(node)) return;
            _lastSeen[node] = _time.GetTimestamp();
            returned = _dead.Remove(node);
        }
        if (returned)
        {
            _cell.SetNodeStatus(node, NodeStatus.Schedulable);
            Interlocked.Increment(ref _returnedCount);
            _returned.Add(1);
        }
    }

    /// <summary>Stops tracking a node (removed by an operator).</summary>
    public void Forget(NodeId node)
    {
        lock (_lock) { _lastSeen.Remove(node); _dead.Remove(node); _pending.Remove(node); }
    }

    private bool IsLive(NodeId node)
        => _cell.Snapshot().TryGetNode(node, out var v) == SnapshotRead.Ok && v.Status != NodeStatus.Removed;

    /// <summary>
    /// Ends registrations that never heartbeated within the registration timeout: a node with nothing bound is removed
    /// (junk: nothing ran there, so nothing needs stopping); a node that holds bindings is evicted like any lost node
    /// (fenced, bindings released and requeued), because removing it would leave its agent, should it come back under
    /// a new node id, running tasks nobody tells it to stop. No grace or brake applies: a pending node was registered
    /// by this process (the restart grace does not concern it) and never proved an agent behind it, and pending nodes
    /// are not counted by the mass-silence brake. Returns the number of evictions.
    /// </summary>
    private int ExpireRegistrations(long now)
    {
        List<NodeId>? expired = null;
        lock (_lock)
        {
            if (_pending.Count == 0) return 0;
            foreach (var (node, at) in _pending)
                if (now - at >= _registrationTicks) (expired ??= new()).Add(node);
            if (expired is null) return 0;
            foreach (var node in expired) _pending.Remove(node);
        }
        int evicted = 0;
        foreach (var node in expired)
        {
            if (_cell.GetAllocationsOnNode(node).Count == 0 && _cell.RemoveNode(node, out var released) == NodeOpStatus.Ok)
            {
                // A binding may have landed between the check and the removal: it was released with the node.
                if (released.Count > 0)
                {
                    var tasks = new List<TaskId>(released.Count);
                    foreach (var a in released) tasks.Add(a.Task);
                    _engine?.RequeueReleased(tasks);
                }
                Interlocked.Increment(ref _expiredRegistrations);
                continue;
            }
            if (!IsLive(node)) continue;
            lock (_lock) _dead.Add(node);
            Evict(node);
            evicted++;
        }
        return evicted;
    }

    /// <summary>
    /// Checks every lease once; evicts what the brakes allow; ends registrations that never heartbeated (their evictions
    /// are counted in <see cref="LifecycleTick.Evicted"/>). Called by the timer, or by tests after advancing time.
    /// </summary>
    public LifecycleTick Tick()
    {
        int registrationEvictions = ExpireRegistrations(_time.GetTimestamp());
        var t = TickLeases();
        return registrationEvictions == 0 ? t : t with { Expired = t.Expired + registrationEvictions, Evicted = t.Evicted + registrationEvictions };
    }

    private LifecycleTick TickLeases()
    {
        long now = _time.GetTimestamp();
        List<NodeId> expired = new();
        int tracked;
        lock (_lock)
        {
            if (now < _graceEnds) return new LifecycleTick(0, 0, 0, InGrace: true, MassSilence: false);
            tracked = _lastSeen.Count;
            foreach (var (node, seen) in _lastSeen)
                if (now - seen >= _leaseTicks) expired.Add(node);
            double elapsed = (now - _lastRefill) / (double)_time.TimestampFrequency;
            _lastRefill = now;
            double cap = Math.Max(1, _options.EvictionsPerSecond);
            _tokens = Math.Min(cap, _tokens + elapsed * _options.EvictionsPerSecond);
        }
        if (expired.Count == 0) return default;
        if (tracked > 1 && expired.Count > _options.MassSilenceFraction * tracked)
        {
            Interlocked.Increment(ref _massSilenceCount);
            _massSilence.Add(1);
            return new LifecycleTick(expired.Count, 0, expired.Count, InGrace: false, MassSilence: true);
        }
        expired.Sort((a, b) => a.Value.CompareTo(b.Value));
        int evicted = 0;
        foreach (var node in expired)
        {
            lock (_lock)
            {
                if (_tokens < 1) break;
                _tokens -= 1;
                _lastSeen.Remove(node);
                _dead.Add(node);
            }
            Evict(node);
            evicted++;
        }
        int deferred = expired.Count - evicted;
        if (deferred > 0) _deferred.Add(deferred);
        return new LifecycleTick(expired.Count, evicted, deferred, InGrace: false, MassSilence: false);
    }

    private void Evict(NodeId node)
    {
        // Fence first: from here no claim validates on the node, so nothing new lands while its tasks are released.
        _cell.SetNodeStatus(node, NodeStatus.Fenced);
        var released = new List<TaskId>();
        foreach (var a in _cell.GetAllocationsOnNode(node))
            if (_cell.Release(a.Task, a.Generation) == ReleaseStatus.Released) released.Add(a.Task);
        _engine?.RequeueReleased(released);
        Interlocked.Increment(ref _evictedCount);
        _evictions.Add(1);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _timer?.Dispose();
        _meter.Dispose();
    }
}
