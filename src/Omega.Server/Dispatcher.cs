using Omega.Cells;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// The bind path: moves binding changes from the feed to node outboxes, up to the publishable version, and pushes them
/// to connected agents. One pass writes every pending frame of every touched connection and then flushes each
/// connection once, so a burst of placements costs one socket write per agent, not one per binding.
/// Commit replies that wait for durability are released here too.
/// </summary>
internal sealed class Dispatcher : IAsyncDisposable
{
    private readonly BindingFeed _feed;
    private readonly IPublishableVersion _publisher;
    private readonly NodeRegistry _nodes;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<NodeState> _dirty = new();
    private readonly HashSet<FrameConnection> _flush = new();
    private readonly BindingEntry[] _scratch = new BindingEntry[256];
    private readonly Lock _heldLock = new();
    private List<HeldReply> _held = new();
    private List<HeldReply> _heldSpare = new();
    private List<(long Version, Action<FrameConnection> Send, FrameConnection Connection)> _heldActions = new();
    // One pass at a time: the loop, a notifying publisher's thread (OnPublishableAdvanced) and direct callers of Pump
    // all route through it, and a pass is single-consumer (the feed, _dirty, _flush).
    private readonly Lock _pumpLock = new();
    private readonly Task _loop;
    private readonly IDisposable? _subscription;
    private readonly TimeSpan _idleWait;
    private volatile bool _stopping;

    // Version is what must be publishable (durable) before the reply leaves; Operate is set for operator replies that
    // acknowledge a durable record (a domain-loss confirmation), otherwise Reply is a commit's.
    internal readonly record struct HeldReply(FrameConnection Connection, uint RequestId, CommitReply Reply, long Version, OperateReply? Operate = null);

    // Replies gated on the journal sequence rather than the cell version (lease grants and renewals, registrations,
    // drains, node removals, acknowledged releases). They are rare next to commits, so a delegate per held reply is fine.
    internal readonly record struct HeldAction(FrameConnection Connection, long Sequence, Action Send);

    private List<HeldAction> _heldSeq = new();
    private List<HeldAction> _heldSeqSpare = new();

    // runLoop false: no background loop; the owner calls Pump (the deterministic simulation steps it on its one thread,
    // as it steps scheduler workers). The production server always runs the loop.
    public Dispatcher(BindingFeed feed, IPublishableVersion publisher, NodeRegistry nodes, bool runLoop = true)
    {
        _feed = feed;
        _publisher = publisher;
        _nodes = nodes;
        // Pushed, not polled: a publisher that can notify (the durable store, from its group commit) wakes the
        // dispatcher the moment a group is durable. The 2 ms poll it replaces added up to 2 ms (1 ms on average) to
        // every binding's commit-to-agent latency and woke the loop 500 times a second on an idle server. The timeout
        // stays as a safety net only (long when notified, the old 2 ms for a publisher that cannot notify).
        _subscription = publisher.Subscribe(OnPublishableAdvanced);
        _idleWait = _subscription is null ? TimeSpan.FromMilliseconds(2) : TimeSpan.FromMilliseconds(25);
        _loop = runLoop ? Task.Factory.StartNew(LoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap() : Task.CompletedTask;
    }

    /// <summary>Bindings pushed (entries) in total.</summary>
    public long EntriesRouted;

    /// <summary>
    /// The binding stage (docs/operations.md, "Stage dashboards"): seconds from a binding's commit to its push on its
    /// agent's connection, recorded once per pass for the pass's oldest run binding to a connected agent (the pass's
    /// slowest), not per binding. Set by the protocol handler, which owns the meter; null records nothing.
    /// </summary>
    internal System.Diagnostics.Metrics.Histogram<double>? Delivery;

    /// <summary>The commit times of the feed's versions (null when the feed keeps none).</summary>
    internal StageClock? Clock => _feed.Clock;

    /// <summary>Replies a commit once its version is publishable; returns true if sent now.</summary>
    public bool ReplyWhenPublishable(FrameConnection c, uint rid, in CommitReply reply)
    {
        if (reply.Version <= _publisher.PublishableVersion) return true;
        lock (_heldLock) _held.Add(new HeldReply(c, rid, reply, reply.Version));
        _feed.Signal();
        return false;
    }

    /// <summary>Replies to an operator request once <paramref name="version"/> is publishable; returns true if sent now.</summary>
    public bool ReplyWhenPublishable(FrameConnection c, uint rid, in OperateReply reply, long version)
    {
        if (version <= _publisher.PublishableVersion)
        {
            c.Send(rid, reply);
            return true;
        }
        lock (_heldLock) _held.Add(new HeldReply(c, rid, default, version, reply));
        _feed.Signal();
        return false;
    }

    /// <summary>
    /// Runs <paramref name="send"/> (which sends a reply and ends its request) once <paramref name="version"/> is
    /// publishable, that is durable: for control-plane acknowledgements such as a tenant's creation. Returns true
    /// when it is publishable already (the caller replies itself).
    /// </summary>
    public bool RunWhenPublishable(FrameConnection c, long version, Action<FrameConnection> send)
    {
        if (version <= _publisher.PublishableVersion) return true;
        lock (_heldLock) _heldActions.Add((version, send, c));
        _feed.Signal();
        return false;
    }

    private void ReleaseHeldActions(long publishable)
    {
        List<(long Version, Action<FrameConnection> Send, FrameConnection Connection)>? due = null;
        lock (_heldLock)
        {
            for (int i = _heldActions.Count - 1; i >= 0; i--)
            {
                if (_heldActions[i].Version > publishable) continue;
                (due ??= new()).Add(_heldActions[i]);
                _heldActions.RemoveAt(i);
            }
        }
        if (due is null) return;
        foreach (var (_, send, c) in due)
        {
            send(c);
            _flush.Add(c);
        }
    }

    /// <summary>True when every journal record up to <paramref name="sequence"/> is publishable (durable).</summary>
    public bool IsPublishable(long sequence) => sequence <= _publisher.PublishableSequence;

    /// <summary>
    /// Runs <paramref name="send"/> on the dispatcher once journal <paramref name="sequence"/> is publishable, then ends
    /// the connection's request and flushes it. The caller has found it not publishable yet and keeps the request in flight.
    /// </summary>
    public void RunWhenPublishable(FrameConnection c, long sequence, Action send)
    {
        lock (_heldLock) _heldSeq.Add(new HeldAction(c, sequence, send));
        _feed.Signal();
    }

    /// <summary>Passes of the bind path run on a notifying publisher's thread (the group-commit thread), in total.</summary>
    public long InlinePasses;

    // Runs on the publisher's thread: the durable store's dedicated group-commit thread, right after a group is durable
    // (outside the journal's locks). Issue 15: the pass runs here, inline, instead of waking the dispatcher loop. The wake
    // was a thread-pool hop (a queued continuation) between the durable point and the write into the agent's pipe, on
    // top of the send loop's own hop: two hops per binding, now one (committer -> [pool] send loop -> socket). The
    // pass only routes, writes to pipes and flushes them (never I/O, never a journal append, so it cannot wait for the
    // committer it runs on); it delays the next group by its own length, during which appends keep batching.
    // Rejected: pumping from the commit lock's listener (BindingFeed) for in-memory cells: that would hold the commit
    // lock through socket-pipe writes. Blocking here briefly while the loop finishes a pass is fine: this is a dedicated
    // thread, never a pool thread.
    private void OnPublishableAdvanced()
    {
        if (_stopping) return;
        lock (_pumpLock)
        {
            if (_stopping) return;
            InlinePasses++;
            PumpLocked();
        }
    }

    private async Task LoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try { await _feed.WaitAsync(_idleWait, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
            Pump();
        }
    }

    /// <summary>One pass of the bind path (also called by tests and benchmarks that drive it directly).</summary>
    public void Pump()
    {
        lock (_pumpLock) PumpLocked();
    }

    private void PumpLocked()
    {
        long publishable = _publisher.PublishableVersion;
        long limit = Math.Min(publishable, _feed.CompleteVersion);
        long oldestRun = long.MaxValue;
        while (_feed.TryTake(limit, out var e))
        {
            var node = _nodes.Get(e.Allocation.Node);
            var a = e.Allocation;
            var entry = new BindingEntry(e.Change == BindingChange.Bound ? BindingKind.Run : BindingKind.Stop, a.Task, a.Generation, a.Resources, a.Tenant.Value, a.Priority);
            lock (node.Sync)
            {
                node.Append(entry, e.Version);
                if (!node.Dirty) { node.Dirty = true; _dirty.Add(node); }
                if (e.Change == BindingChange.Bound && e.Version < oldestRun && node.Connection is not null) oldestRun = e.Version;
            }
            EntriesRouted++;
        }
        foreach (var node in _dirty)
        {
            lock (node.Sync)
            {
                node.Dirty = false;
                if (node.SendPending(_scratch) > 0 && node.Connection is { } c) _flush.Add(c);
            }
        }
        _dirty.Clear();
        if (_held.Count > 0) ReleaseHeld(publishable);
        if (_heldActions.Count > 0) ReleaseHeldActions(publishable);
        if (_heldSeq.Count > 0) ReleaseHeldSequence(_publisher.PublishableSequence);
        foreach (var c in _flush) c.Flush();
        _flush.Clear();
        if (oldestRun != long.MaxValue && Delivery is { Enabled: true } delivery && _feed.Clock is { } clock && clock.TryGetCommitTime(oldestRun, out long committed))
            delivery.Record(clock.SecondsSince(committed));
    }

    private void ReleaseHeld(long publishable)
    {
        List<HeldReply> list;
        lock (_heldLock)
        {
            list = _held;
            _held = _heldSpare;
            _heldSpare = list;
        }
        foreach (var h in list)
        {
            if (h.Version <= publishable)
            {
                if (h.Operate is { } op) h.Connection.Send(h.RequestId, op);
                else h.Connection.Send(h.RequestId, h.Reply);
                h.Connection.EndRequest();
                _flush.Add(h.Connection);
            }
            else lock (_heldLock) _held.Add(h);
        }
        list.Clear();
    }

    private void ReleaseHeldSequence(long publishable)
    {
        List<HeldAction> list;
        lock (_heldLock)
        {
            list = _heldSeq;
            _heldSeq = _heldSeqSpare;
            _heldSeqSpare = list;
        }
        foreach (var h in list)
        {
            if (h.Sequence <= publishable)
            {
                if (!h.Connection.IsClosing) h.Send();
                h.Connection.EndRequest();
                _flush.Add(h.Connection);
            }
            else lock (_heldLock) _heldSeq.Add(h);
        }
        list.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        _subscription?.Dispose();
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        // A pass already running on the publisher's thread finishes before the server tears connections down.
        lock (_pumpLock) _stopping = true;
        _stop.Dispose();
    }
}

/// <summary>Node states indexed by node id, created on first use.</summary>
internal sealed class NodeRegistry
{
    private readonly Lock _grow = new();
    private NodeState?[] _nodes = new NodeState?[1024];

    /// <summary>The node's state if it was ever created (a node that never registered has none).</summary>
    public NodeState? TryGet(NodeId id)
    {
        var arr = Volatile.Read(ref _nodes);
        return (uint)id.Value < (uint)arr.Length ? Volatile.Read(ref arr[id.Value]) : null;
    }

    public NodeState Get(NodeId id)
    {
        var arr = Volatile.Read(ref _nodes);
        if ((uint)id.Value < (uint)arr.Length && arr[id.Value] is { } s) return s;
        lock (_grow)
        {
            arr = _nodes;
            if ((uint)id.Value >= (uint)arr.Length)
            {
                int cap = arr.Length;
                while (cap <= id.Value) cap *= 2;
                var next = new NodeState?[cap];
                Array.Copy(arr, next, arr.Length);
                Volatile.Write(ref _nodes, arr = next);
            }
            return arr[id.Value] ??= new NodeState(id);
        }
    }
}
