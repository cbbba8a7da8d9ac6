namespace Omega.Cells;

/// <summary>What happened to a binding, as reported to an <see cref="IBindingListener"/>.</summary>
public enum BindingChange : byte
{
    /// <summary>The task was bound to the node (a claim was applied).</summary>
    Bound = 0,

    /// <summary>The binding was removed: released (completed or failed), preempted, or its node was removed.</summary>
    Unbound = 1,
}

/// <summary>
/// Receives every binding change of a cell, in cell-version order. Called under the cell's commit lock (on
/// <see cref="CommitPath.Striped"/>: by the committing thread after the lock, one version at a time, in order, while later
/// commits wait for it), so an implementation must be short, must not call back into the cell, and must not block: copy
/// the event and return.
/// </summary>
public interface IBindingListener
{
    /// <summary>
    /// One binding change. <paramref name="version"/> is the cell version at which the change becomes visible; several
    /// changes (one transaction, or one node removal) may share a version and are reported in a deterministic order.
    /// </summary>
    void OnBindingChanged(BindingChange change, in Allocation allocation, long version);

    /// <summary>
    /// Every change of <paramref name="version"/> has been reported: a consumer may now treat that version as complete.
    /// Called once per version that had at least one change, after the last <see cref="OnBindingChanged"/> of it.
    /// </summary>
    void OnVersionComplete(long version);
}

public sealed partial class Cell
{
    // Written under _lock only; read under _lock by the notify helpers. Null when nothing listens, so the commit path
    // pays one null check per binding change.
    private IBindingListener[]? _bindingListeners;

    // All-or-nothing transactions add bindings and may roll them back before publication. Events are buffered for the
    // duration of a commit and flushed only for what was actually published, so listeners never see a rolled-back bind.
    private readonly List<(BindingChange Change, Allocation Allocation)> _pendingFeed = new();

    /// <summary>
    /// Registers a listener for binding changes. Changes that happen after this call are delivered; use
    /// <see cref="GetAllocations"/> together with <see cref="Version"/> under the same call for the state before.
    /// Returns the cell version at which the listener was attached: every change with a higher version is delivered.
    /// </summary>
    public long AddBindingListener(IBindingListener listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        using (Serial())
        {
            var old = _bindingListeners;
            var next = old is null ? new IBindingListener[1] : new IBindingListener[old.Length + 1];
            old?.CopyTo(next, 0);
            next[^1] = listener;
            _bindingListeners = next;
            return _vw.Published;
        }
    }

    /// <summary>Removes a listener added with <see cref="AddBindingListener"/>; returns false if it was not registered.</summary>
    public bool RemoveBindingListener(IBindingListener listener)
    {
        using (Serial())
        {
            var old = _bindingListeners;
            if (old is null) return false;
            int i = Array.IndexOf(old, listener);
            if (i < 0) return false;
            if (old.Length == 1) { _bindingListeners = null; return true; }
            var next = new IBindingListener[old.Length - 1];
            Array.Copy(old, 0, next, 0, i);
            Array.Copy(old, i + 1, next, i, old.Length - i - 1);
            _bindingListeners = next;
            return true;
        }
    }

    /// <summary>
    /// The cell version at which node <paramref name="id"/> last changed (capacity, status, allocations), as seen by the
    /// latest snapshot. Used to compute deltas ("what changed since version v") without a per-change log.
    /// Returns <see cref="SnapshotRead.NotFound"/> for an id never added; a removed node reports its removal version.
    /// </summary>
    public SnapshotRead TryGetNodeChange(NodeId id, long atVersion, out long changedAtVersion, out NodeStatus status)
    {
        changedAtVersion = 0;
        status = default;
        var slots = Volatile.Read(ref _slots);
        if ((uint)id.Value >= (uint)Volatile.Read(ref _nodeCount) || (uint)id.Value >= (uint)slots.Length) return SnapshotRead.NotFound;
        var r = slots[id.Value].Read(atVersion, out var e);
        if (r != SnapshotRead.Ok) return r;
        changedAtVersion = e.Stamp;
        status = e.Status;
        return SnapshotRead.Ok;
    }

    // Caller holds _lock. Called next to AddBinding/RemoveBinding; buffered until the change is published.
    private void FeedBinding(BindingChange change, in Allocation a)
    {
        if (_bindingListeners is null) return;
        if (_deferring) { _work!.AddFeed(change, a); return; } // delivered in version order by the publication
        _pendingFeed.Add((change, a));
    }

    // Caller holds _lock: the buffered changes were published at `version` (or discarded by a rollback).
    private void FlushFeed(long version, bool published)
    {
        if (_deferring)
        {
            // Striped path: the publication delivers the buffer after the version is visible; a rollback drops it.
            if (!published) _work!.FeedCount = 0;
            return;
        }
        var listeners = _bindingListeners;
        if (listeners is null || _pendingFeed.Count == 0) { _pendingFeed.Clear(); return; }
        if (published)
        {
            foreach (var (change, a) in _pendingFeed)
                foreach (var l in listeners) l.OnBindingChanged(change, a, version);
            foreach (var l in listeners) l.OnVersionComplete(version);
        }
        _pendingFeed.Clear();
    }
}
