using Omega.Cells;

namespace Omega.ControlPlane;

/// <summary>
/// The durable store of API objects (docs/control-plane.md). Objects live in the cell's one journal (records 15/16):
/// every write gets a cell version of its own, which is the object's resourceVersion, and is acknowledged only once
/// durable (<see cref="IDurabilityWaiter"/>). The store keeps the current objects in memory (bounded), checks
/// preconditions (<see cref="ObjectStatus.AlreadyExists"/>, <see cref="ObjectStatus.Conflict"/>), implements
/// finalizers, and serves a resumable watch over a bounded history window.
/// </summary>
/// <remarks>
/// Thread-safe. Writes are serialized by one lock (validate, append to the cell, update the index and the history in
/// version order); the durability wait happens outside it, so concurrent writers share a group commit. Lock order:
/// the store's lock, then the cell's commit lock (the cell never calls back).
/// </remarks>
public sealed class ObjectStore : IDisposable
{
    private readonly Cell _cell;
    private readonly IDurabilityWaiter _durability;
    private readonly ObjectStoreOptions _options;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Entry> _objects = new(StringComparer.Ordinal);
    private readonly long[] _rejections = new long[16];
    private readonly WatchEvent[] _ring;
    private readonly List<ObjectWatcher> _watchers = new();
    private long _head;           // events ever appended; the ring holds sequences [_head - count, _head)
    private long _visibleSeq;     // events below this sequence are durable (deliverable)
    private long _visibleVersion; // the highest durable version known
    private long _floor;          // every event with a version above it is in the ring
    private long _lastWrite;      // the version of the last object write
    private long _totalBytes;
    private bool _disposed;

    /// <summary>
    /// Opens the store over <paramref name="cell"/>, decoding every object the cell holds (after a restart: what its
    /// journal replay or checkpoint restored). Objects of unknown kinds are kept in the cell but not served
    /// (counted in <see cref="UndecodableObjects"/>).
    /// </summary>
    public ObjectStore(Cell cell, ObjectStoreOptions? options = null, IDurabilityWaiter? durability = null)
    {
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _options = options ?? new ObjectStoreOptions();
        _durability = durability ?? DurabilityWaiter.Immediate;
        if (_options.HistoryCapacity < 1 || _options.MaxWatcherLag < 1) throw new ArgumentException("history capacity and watcher lag must be positive", nameof(options));
        // A watcher's lag may not exceed the ring, or it could lose events without being cut off.
        _options.MaxWatcherLag = Math.Min(_options.MaxWatcherLag, _options.HistoryCapacity);
        _ring = new WatchEvent[_options.HistoryCapacity];
        foreach (var stored in cell.GetObjects())
        {
            if (!ObjectKey.TryParse(stored.Key, out var key)) { UndecodableObjects++; continue; }
            var obj = ObjectCodec.Deserialize(stored.Value, out _);
            if (obj is null) { UndecodableObjects++; continue; }
            obj.Metadata.ResourceVersion = stored.Version;
            obj.Metadata.Uid = stored.Created;
            var json = ObjectCodec.Serialize(obj);
            _objects[stored.Key] = new Entry(key, stored.Version, json, obj.Metadata.Finalizers.Count, obj.Metadata.DeletionTimestamp is not null);
            _totalBytes += json.Length + stored.Value.Length;
            _lastWrite = Math.Max(_lastWrite, stored.Version);
        }
        // History is not persisted: after a restart a watch can resume only from the version the store opened at.
        long v = cell.Version;
        _floor = v;
        _visibleVersion = v;
    }

    /// <summary>
    /// The version the current objects are consistent with (what <see cref="List"/> returns as its resourceVersion): the
    /// last object write, or the history floor when that is later (after a restart the floor is the cell version the
    /// store opened at, and a watch must start at or above it; no object changed between the last write and the floor).
    /// </summary>
    public long ResourceVersion
    {
        get
        {
            lock (_lock) return Math.Max(_lastWrite, _floor);
        }
    }

    // The broken variants the simulation runs with (docs/testing.md); read by controllers that implement one.
    internal Buggify Buggify => _options.Buggify;

    /// <summary>Objects held.</summary>
    public int Count
    {
        get
        {
            lock (_lock) return _objects.Count;
        }
    }

    /// <summary>Stored objects that could not be decoded at open (a kind this release does not know).</summary>
    public int UndecodableObjects { get; }

    /// <summary>Open watchers.</summary>
    public int WatcherCount
    {
        get
        {
            lock (_lock) return _watchers.Count;
        }
    }

    /// <summary>The oldest version a watch may start from (older gets <see cref="WatchStatus.Expired"/>).</summary>
    public long HistoryFloor
    {
        get
        {
            lock (_lock) return _floor;
        }
    }

    /// <summary>Rejected operations with code <paramref name="status"/> since open (the metric of typed errors).</summary>
    public long Rejections(ObjectStatus status) => Interlocked.Read(ref _rejections[(int)status]);

    /// <summary>Watchers cut off for falling behind since open.</summary>
    public long WatchersCutOff => Interlocked.Read(ref _cutOff);

    private long _cutOff;

    // ---------------------------------------------------------------- reads

    /// <summary>Reads one object (a private copy). May show a write whose writer is still waiting for durability.</summary>
    public ObjectResult Get(ObjectKey key)
    {
        byte[] json;
        lock (_lock)
        {
            if (!_objects.TryGetValue(key.ToString(), out var e)) return Reject(ObjectStatus.NotFound, $"{key} not found");
            json = e.Json;
        }
        return new ObjectResult(ObjectStatus.Ok, ObjectCodec.Deserialize(json, out _));
    }

    /// <summary>Reads one object as <typeparamref name="T"/>, or null when absent.</summary>
    public T? Get<T>(string tenant, string name) where T : ApiObject, new()
        => Get(new ObjectKey(new T().Kind, tenant, name)).Object as T;

    /// <summary>
    /// Lists objects passing <paramref name="filter"/>, ordered by key, at most <paramref name="limit"/>, after the key
    /// <paramref name="continueAfter"/> (a previous page's <see cref="ListResult.Continue"/>).
    /// </summary>
    public ListResult List(ObjectFilter filter = default, int limit = 1000, string? continueAfter = null)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var jsons = new List<byte[]>(Math.Min(limit, 256));
        string? next = null, lastKey = null;
        long rv;
        lock (_lock)
        {
            // Not just the last write: after a restart that can be below the history floor (cell changes followed it),
            // and a watch from it would be Expired forever, so an informer would re-list in a loop.
            rv = Math.Max(_lastWrite, _floor);
            foreach (var (k, e) in _objects)
            {
                if (continueAfter is not null && string.CompareOrdinal(k, continueAfter) <= 0) continue;
                if (!filter.Matches(e.Key)) continue;
                if (jsons.Count == limit) { next = lastKey; break; }
                jsons.Add(e.Json);
                lastKey = k;
            }
        }
        var items = new List<ApiObject>(jsons.Count);
        foreach (var j in jsons) items.Add(ObjectCodec.Deserialize(j, out _)!);
        return new ListResult(items, rv, next);
    }

    // ---------------------------------------------------------------- writes

    /// <summary>
    /// Creates <paramref name="obj"/>. The store sets uid, generation 1, resourceVersion and creationTimestamp and
    /// ignores any status. Completes once durable; <see cref="ObjectStatus.AlreadyExists"/> if the key exists.
    /// </summary>
    public ValueTask<ObjectResult> CreateAsync(ApiObject obj, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ApiObject next;
        long version;
        lock (_lock)
        {
            if (_disposed) return ValueTask.FromResult(Reject(ObjectStatus.Closed, "the store is closed"));
            if (ValidateShape(obj) is { } shape) return ValueTask.FromResult(Reject(ObjectStatus.Invalid, shape));
            string key = obj.Key.ToString();
            if (_objects.ContainsKey(key)) return ValueTask.FromResult(Reject(ObjectStatus.AlreadyExists, $"{obj.Key} already exists"));
            if (_objects.Count >= _options.MaxObjects) return ValueTask.FromResult(Reject(ObjectStatus.TooManyObjects, $"the store holds its maximum of {_options.MaxObjects} objects"));
            next = ObjectCodec.Clone(obj);
            var m = next.Metadata;
            m.Uid = 0;
            m.ResourceVersion = 0;
            m.Generation = 1;
            m.CreationTimestamp = _options.Time.GetUtcNow();
            m.DeletionTimestamp = null;
            next.ResetStatus();
            var r = WriteLocked(next, key, expected: 0, WatchEventType.Added, out version);
            if (r is not null) return ValueTask.FromResult(r);
        }
        return AckWhenDurable(version, next, removed: false, cancellationToken);
    }

    /// <summary>
    /// Updates spec and metadata (labels, finalizers, owner references) of <paramref name="obj"/>; its status is
    /// ignored (the stored one is kept). <c>metadata.resourceVersion</c> is the precondition (0: unconditional).
    /// The generation is bumped when the spec changed. Removing the last finalizer of a terminating object removes it.
    /// </summary>
    public ValueTask<ObjectResult> UpdateAsync(ApiObject obj, CancellationToken cancellationToken = default)
        => Write(obj, statusOnly: false, cancellationToken);

    /// <summary>
    /// Replaces the status of the stored object with <paramref name="obj"/>'s status (its spec and metadata are
    /// ignored). <c>metadata.resourceVersion</c> is the precondition (0: unconditional). Never bumps the generation.
    /// </summary>
    public ValueTask<ObjectResult> UpdateStatusAsync(ApiObject obj, CancellationToken cancellationToken = default)
        => Write(obj, statusOnly: true, cancellationToken);

    /// <summary>
    /// Deletes <paramref name="key"/> (precondition <paramref name="expectedResourceVersion"/>, 0: unconditional). An
    /// object with finalizers is only marked terminating (deletionTimestamp; <see cref="ObjectResult.Removed"/> false)
    /// and is removed when its last finalizer is.
    /// </summary>
    public ValueTask<ObjectResult> DeleteAsync(ObjectKey key, long expectedResourceVersion = 0, CancellationToken cancellationToken = default)
    {
        ApiObject current;
        long version;
        bool removed;
        lock (_lock)
        {
            if (_disposed) return ValueTask.FromResult(Reject(ObjectStatus.Closed, "the store is closed"));
            string k = key.ToString();
            if (!_objects.TryGetValue(k, out var e)) return ValueTask.FromResult(Reject(ObjectStatus.NotFound, $"{key} not found"));
            if (expectedResourceVersion != 0 && expectedResourceVersion != e.Version)
                return ValueTask.FromResult(Reject(ObjectStatus.Conflict, $"{key} is at resourceVersion {e.Version}, not {expectedResourceVersion}"));
            current = ObjectCodec.Deserialize(e.Json, out _)!;
            if (e.Terminating)
            {
                // Already being deleted: nothing to write, but the deletion this reply reports may not be durable yet (a
                // retried delete arriving before the first one's record is flushed). Acknowledge it only once it is; an
                // immediate Ok lost the deletion in a crash (found by the deterministic simulation, docs/testing.md).
                version = e.Version;
                removed = false;
                goto Ack;
            }
            if (e.Finalizers > 0)
            {
                current.Metadata.DeletionTimestamp = _options.Time.GetUtcNow();
                current.Metadata.ResourceVersion = 0;
                var r = WriteLocked(current, k, e.Version, WatchEventType.Modified, out version);
                if (r is not null) return ValueTask.FromResult(r);
                removed = false;
            }
            else
            {
                var r = RemoveLocked(current, k, e, out version);
                if (r is not null) return ValueTask.FromResult(r);
                removed = true;
            }
        }
    Ack:
        return AckWhenDurable(version, current, removed, cancellationToken);
    }

    private ValueTask<ObjectResult> Write(ApiObject obj, bool statusOnly, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ApiObject next;
        long version;
        bool removed = false;
        lock (_lock)
        {
            if (_disposed) return ValueTask.FromResult(Reject(ObjectStatus.Closed, "the store is closed"));
            if (obj.Metadata is null) return ValueTask.FromResult(Reject(ObjectStatus.Invalid, "metadata is required"));
            string key = obj.Key.ToString();
            if (!_objects.TryGetValue(key, out var e)) return ValueTask.FromResult(Reject(ObjectStatus.NotFound, $"{obj.Key} not found"));
            long expected = obj.Metadata.ResourceVersion;
            if (expected != 0 && expected != e.Version)
                return ValueTask.FromResult(Reject(ObjectStatus.Conflict, $"{obj.Key} is at resourceVersion {e.Version}, not {expected}"));
            var current = ObjectCodec.Deserialize(e.Json, out _)!;
            if (statusOnly)
            {
                next = current;
                next.CopyStatusFrom(obj);
            }
            else
            {
                if (ValidateShape(obj) is { } shape) return ValueTask.FromResult(Reject(ObjectStatus.Invalid, shape));
                next = ObjectCodec.Clone(obj);
                next.CopyStatusFrom(current);
                var m = next.Metadata;
                var c = current.Metadata;
                m.Uid = c.Uid;
                m.CreationTimestamp = c.CreationTimestamp;
                m.DeletionTimestamp = c.DeletionTimestamp;
                bool specChanged = !next.SpecJson().AsSpan().SequenceEqual(current.SpecJson());
                if (specChanged && c.DeletionTimestamp is not null)
                    return ValueTask.FromResult(Reject(ObjectStatus.Terminating, $"{obj.Key} is being deleted; its spec is frozen"));
                m.Generation = specChanged ? c.Generation + 1 : c.Generation;
                if (c.DeletionTimestamp is not null && m.Finalizers.Count == 0)
                {
                    next.Metadata.ResourceVersion = 0;
                    var rr = RemoveLocked(next, key, e, out version);
                    if (rr is not null) return ValueTask.FromResult(rr);
                    removed = true;
                    goto Ack;
                }
            }
            next.Metadata.ResourceVersion = 0;
            var r = WriteLocked(next, key, e.Version, WatchEventType.Modified, out version);
            if (r is not null) return ValueTask.FromResult(r);
        }
    Ack:
        return AckWhenDurable(version, next, removed, cancellationToken);
    }

    // Caller holds _lock. Encodes, bounds, appends to the cell, indexes and records the event. Null on success.
    private ObjectResult? WriteLocked(ApiObject next, string key, long expected, WatchEventType type, out long version)
    {
        version = 0;
        byte[] record = ObjectCodec.Serialize(next); // uid and resourceVersion are 0 here: positions the cell assigns
        if (record.Length > _options.MaxObjectBytes)
            return Reject(ObjectStatus.TooLarge, $"{next.Key} encodes to {record.Length} bytes, over the limit of {_options.MaxObjectBytes}");
        _objects.TryGetValue(key, out var old);
        if (old is not null && _cell.TryGetObject(key, out var prior) && prior!.Value.AsSpan().SequenceEqual(record))
        {
            // Nothing changed: no write, no new resourceVersion (no churn from resyncs).
            version = old.Version;
            next.Metadata.ResourceVersion = old.Version;
            next.Metadata.Uid = prior.Created;
            return null;
        }
        long estimate = _totalBytes + 2L * record.Length - (old is null ? 0 : 2L * old.Json.Length);
        if (estimate > _options.MaxTotalBytes)
            return Reject(ObjectStatus.TooManyObjects, $"the store holds its maximum of {_options.MaxTotalBytes} bytes of objects");
        var status = _cell.PutObject(key, record, expected, out version, out long created);
        if (status != ObjectWriteStatus.Written)
            return Reject(status switch
            {
                ObjectWriteStatus.Exists => ObjectStatus.AlreadyExists,
                ObjectWriteStatus.NotFound => ObjectStatus.NotFound,
                ObjectWriteStatus.VersionMismatch => ObjectStatus.Conflict,
                _ => ObjectStatus.Invalid,
            }, $"the cell refused the write of {key}: {status}");
        next.Metadata.ResourceVersion = version;
        next.Metadata.Uid = created;
        byte[] json = ObjectCodec.Serialize(next);
        if (old is not null)
        {
            // The cell's record for the old version is replaced too; estimate with the JSON size.
            _totalBytes -= 2L * old.Json.Length;
        }
        _totalBytes += json.Length + record.Length;
        _objects[key] = new Entry(next.Key, version, json, next.Metadata.Finalizers.Count, next.Metadata.DeletionTimestamp is not null);
        _lastWrite = version;
        AppendLocked(new WatchEvent(type, version, next.Key, json));
        return null;
    }

    // Caller holds _lock. Removes the object (cell delete record) and records a Deleted event with its last state.
    private ObjectResult? RemoveLocked(ApiObject last, string key, Entry e, out long version)
    {
        var status = _cell.DeleteObject(key, e.Version, out version);
        if (status != ObjectWriteStatus.Written)
            return Reject(status == ObjectWriteStatus.VersionMismatch ? ObjectStatus.Conflict : ObjectStatus.NotFound, $"the cell refused the delete of {key}: {status}");
        last.Metadata.ResourceVersion = version;
        byte[] json = ObjectCodec.Serialize(last);
        _objects.Remove(key);
        _totalBytes -= 2L * e.Json.Length;
        _lastWrite = version;
        AppendLocked(new WatchEvent(WatchEventType.Deleted, version, e.Key, json));
        return null;
    }

    private async ValueTask<ObjectResult> AckWhenDurable(long version, ApiObject obj, bool removed, CancellationToken cancellationToken)
    {
        // BUGGIFY: acknowledging before the record is durable is the defect the simulation's durability checker must catch.
        if ((_options.Buggify & Buggify.AckBeforeDurable) == 0) await _durability.WaitDurableAsync(version, cancellationToken).ConfigureAwait(false);
        MarkDurable(version);
        return new ObjectResult(ObjectStatus.Ok, obj) { Removed = removed };
    }

    private ObjectResult Reject(ObjectStatus status, string message)
    {
        Interlocked.Increment(ref _rejections[(int)status]);
        return new ObjectResult(status, null, message);
    }

    private static string? ValidateShape(ApiObject obj)
    {
        var m = obj.Metadata;
        if (m is null) return "metadata is required";
        if (!ValidName(m.Name)) return "metadata.name must be 1-253 characters of [a-z0-9.-], starting and ending alphanumeric";
        if (obj.ClusterScoped ? m.Tenant.Length != 0 : !ValidName(m.Tenant))
            return obj.ClusterScoped ? $"{obj.Kind} is cluster-scoped: metadata.tenant must be empty" : "metadata.tenant must be 1-253 characters of [a-z0-9.-]";
        if (m.Finalizers is null || m.Labels is null || m.OwnerReferences is null) return "metadata lists must not be null";
        if (m.Finalizers.Count > 32) return "at most 32 finalizers";
        foreach (var f in m.Finalizers)
            if (string.IsNullOrEmpty(f) || f.Length > 253) return "finalizer names must be 1-253 characters";
        if (m.Labels.Count > 64) return "at most 64 labels";
        return obj.ValidateSpec();
    }

    private static bool ValidName(string? s)
    {
        if (string.IsNullOrEmpty(s) || s.Length > 253) return false;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            bool alnum = c is (>= 'a' and <= 'z') or (>= '0' and <= '9');
            if (!alnum && (c is not ('-' or '.') || i == 0 || i == s.Length - 1)) return false;
        }
        return true;
    }

    // ---------------------------------------------------------------- watch

    /// <summary>
    /// Starts a watch of every change after <paramref name="fromResourceVersion"/> that passes <paramref name="filter"/>.
    /// <see cref="WatchStatus.Expired"/> when that version is older than the history window (list again).
    /// </summary>
    public WatchStatus Watch(long fromResourceVersion, ObjectFilter filter, out ObjectWatcher? watcher)
    {
        watcher = null;
        lock (_lock)
        {
            if (_disposed) return WatchStatus.Closed;
            // Buggify.WatchResumeGap (simulation only): start anyway, from the oldest event still held, silently losing
            // the changes between the requested version and the floor.
            if (fromResourceVersion < _floor && (_options.Buggify & Buggify.WatchResumeGap) == 0) return WatchStatus.Expired;
            if (fromResourceVersion > _cell.Version) return WatchStatus.InvalidVersion;
            if (_watchers.Count >= _options.MaxWatchers) return WatchStatus.TooManyWatchers;
            // First event with a version above the start (the ring is in version order).
            long seq = _head;
            long oldest = Math.Max(0, _head - _ring.Length);
            while (seq > oldest && _ring[(seq - 1) % _ring.Length].ResourceVersion > fromResourceVersion) seq--;
            watcher = new ObjectWatcher(this, filter, seq, fromResourceVersion);
            _watchers.Add(watcher);
            SkipUnmatchedLocked(watcher);
            return WatchStatus.Ok;
        }
    }

    // Caller holds _lock.
    private void AppendLocked(WatchEvent ev)
    {
        if (_head >= _ring.Length)
        {
            var evicted = _ring[_head % _ring.Length];
            _floor = Math.Max(_floor, evicted.ResourceVersion);
        }
        _ring[_head % _ring.Length] = ev;
        _head++;
        // A watcher whose next event was just overwritten lost history: cut it off (it resumes from its last version).
        long oldest = _head - _ring.Length;
        for (int i = _watchers.Count - 1; i >= 0; i--)
            if (_watchers[i].Cursor < oldest) CutOffLocked(_watchers[i], WatchTermination.TooSlow);
        if (ev.ResourceVersion <= _visibleVersion) AdvanceVisibleLocked();
    }

    private void MarkDurable(long version)
    {
        lock (_lock)
        {
            if (version <= _visibleVersion) return;
            _visibleVersion = version;
            AdvanceVisibleLocked();
        }
    }

    // Caller holds _lock. Makes durable events deliverable, skips events watchers do not want, cuts off laggards, wakes.
    private void AdvanceVisibleLocked()
    {
        while (_visibleSeq < _head && _ring[_visibleSeq % _ring.Length].ResourceVersion <= _visibleVersion) _visibleSeq++;
        for (int i = _watchers.Count - 1; i >= 0; i--)
        {
            var w = _watchers[i];
            SkipUnmatchedLocked(w);
            if (_visibleSeq - w.Cursor > _options.MaxWatcherLag) CutOffLocked(w, WatchTermination.TooSlow);
            else if (w.Cursor < _visibleSeq) w.Wake();
        }
    }

    // Caller holds _lock. A filtered watcher does not fall behind on events it would never read.
    private void SkipUnmatchedLocked(ObjectWatcher w)
    {
        while (w.Cursor < _visibleSeq && !w.Filter.Matches(_ring[w.Cursor % _ring.Length].Key))
        {
            w.LastResourceVersion = _ring[w.Cursor % _ring.Length].ResourceVersion;
            w.Cursor++;
        }
    }

    private void CutOffLocked(ObjectWatcher w, WatchTermination why)
    {
        if (why == WatchTermination.TooSlow) Interlocked.Increment(ref _cutOff);
        _watchers.Remove(w);
        w.Terminate(why);
    }

    /// <summary>Next deliverable event for <paramref name="w"/>, or null (then <paramref name="wait"/> is set unless ended).</summary>
    internal WatchEvent? TryNext(ObjectWatcher w, out Task? wait)
    {
        lock (_lock)
        {
            wait = null;
            SkipUnmatchedLocked(w);
            if (w.Termination != WatchTermination.None) return null;
            if (w.Cursor < _visibleSeq)
            {
                var ev = _ring[w.Cursor % _ring.Length];
                w.Cursor++;
                w.LastResourceVersion = ev.ResourceVersion;
                return ev;
            }
            wait = w.ArmLocked();
            return null;
        }
    }

    internal void Unregister(ObjectWatcher w)
    {
        lock (_lock)
        {
            if (_watchers.Remove(w)) w.Terminate(WatchTermination.Disposed);
        }
    }

    /// <summary>Closes the store: watchers end with <see cref="WatchTermination.StoreClosed"/>, writes get <see cref="ObjectStatus.Closed"/>. The cell is not disposed.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            for (int i = _watchers.Count - 1; i >= 0; i--) CutOffLocked(_watchers[i], WatchTermination.StoreClosed);
        }
    }

    private sealed record Entry(ObjectKey Key, long Version, byte[] Json, int Finalizers, bool Terminating);
}
