namespace Omega.ControlPlane;

/// <summary>
/// A watch started by <see cref="ObjectStore.Watch"/>: a cursor into the store's shared history ring, read as an
/// <see cref="IAsyncEnumerable{T}"/> (or with <see cref="ReadAsync"/>). Delivers only durable changes, in resourceVersion
/// order, none twice. When it ends, <see cref="Termination"/> says why and <see cref="LastResourceVersion"/> is where to
/// resume (<c>store.Watch(watcher.LastResourceVersion, ...)</c>).
/// </summary>
/// <remarks>No thread of its own: a reader waiting for the next event is woken by the writer. One reader at a time.</remarks>
public sealed class ObjectWatcher : IAsyncEnumerable<WatchEvent>, IDisposable
{
    private readonly ObjectStore _store;
    private TaskCompletionSource? _signal;
    private int _termination;

    internal ObjectWatcher(ObjectStore store, ObjectFilter filter, long cursor, long from)
    {
        _store = store;
        Filter = filter;
        Cursor = cursor;
        LastResourceVersion = from;
    }

    /// <summary>What this watch covers.</summary>
    public ObjectFilter Filter { get; }

    /// <summary>The version of the last event delivered (or skipped by the filter); the start version before any.</summary>
    public long LastResourceVersion { get; internal set; }

    /// <summary>Why the watch ended, or <see cref="WatchTermination.None"/>.</summary>
    public WatchTermination Termination => (WatchTermination)Volatile.Read(ref _termination);

    // The sequence of the next event to look at in the store's ring (guarded by the store's lock).
    internal long Cursor { get; set; }

    /// <summary>
    /// The next event, waiting for one if needed; null when the watch has ended (see <see cref="Termination"/>).
    /// </summary>
    public async ValueTask<WatchEvent?> ReadAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var ev = _store.TryNext(this, out var wait);
            if (ev is not null) return ev;
            if (wait is null) return null;
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The next event if one is deliverable now, without waiting: null with <paramref name="ended"/> false when none is
    /// ready yet, null with <paramref name="ended"/> true when the watch has ended (see <see cref="Termination"/>).
    /// </summary>
    /// <remarks>
    /// For a caller that polls at moments it chooses (the deterministic simulation steps the server's watch pumps on its
    /// one thread): <see cref="ReadAsync"/> would resume its continuation on the thread pool, at a moment nobody controls.
    /// </remarks>
    public WatchEvent? TryRead(out bool ended)
    {
        var ev = _store.TryNext(this, out var wait);
        ended = ev is null && wait is null;
        return ev;
    }

    /// <inheritdoc />
    public async IAsyncEnumerator<WatchEvent> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        while (await ReadAsync(cancellationToken).ConfigureAwait(false) is { } ev) yield return ev;
    }

    // Caller holds the store's lock.
    internal Task ArmLocked()
    {
        var s = _signal;
        if (s is null || s.Task.IsCompleted)
        {
            // Continuations run outside the writer's lock and thread.
            s = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _signal = s;
        }
        return s.Task;
    }

    // Caller holds the store's lock.
    internal void Wake() => _signal?.TrySetResult();

    // Caller holds the store's lock.
    internal void Terminate(WatchTermination why)
    {
        if (Interlocked.CompareExchange(ref _termination, (int)why, 0) == 0) _signal?.TrySetResult();
    }

    /// <summary>Ends the watch (<see cref="WatchTermination.Disposed"/>) and frees its slot.</summary>
    public void Dispose() => _store.Unregister(this);
}
