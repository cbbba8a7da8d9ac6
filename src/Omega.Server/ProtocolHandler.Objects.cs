using Omega.ControlPlane;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

/// <summary>One open watch of a connection: the store's cursor and the task that pumps its events to the socket.</summary>
internal sealed class ObjectWatch(uint requestId, ObjectWatcher watcher, long from)
{
    public uint RequestId { get; } = requestId;

    public ObjectWatcher Watcher { get; } = watcher;

    public CancellationTokenSource Cancel { get; } = new();

    // Written by the pump only; read by StopWatch under the session lock after the pump ended, or racily for a reply
    // (a version the pump had reached is as good a resume point as a later one).
    public long LastSent = from;

    // Guarded by the session lock: the StopWatch request to answer when the pump ends (0: none), and whether it ended.
    public uint StopRequestId;
    public bool Ended;
}

/// <summary>
/// The control-plane object messages (docs/protocol.md, section 8, "Objects"): writes are acknowledged only when the
/// store's write task completes, which is after its journal record is durable; the connection's processing loop never
/// waits for that (a pending write keeps its request in flight and is answered from the completion).
/// </summary>
internal sealed partial class ProtocolHandler
{
    private const int DefaultListLimit = 500;
    private const int MaxListLimit = 10_000;
    private const int MaxExaminedPerList = 10_000;
    private static readonly TimeSpan WatchPausePoll = TimeSpan.FromMilliseconds(5);

    /// <returns>False when the reply is sent later (a write waiting for durability, an open watch, a stop in progress).</returns>
    private bool HandleObjectMessage(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (_options.Objects is not { } store)
        {
            c.SendError(rid, ErrorCode.UnknownMessageType, $"{frame.Type}: this server runs no object store");
            return true;
        }
        switch (frame.Type)
        {
            case MessageType.CreateObject:
                return Decode<CreateObject>(c, rid, frame, out var create) ? Write(c, s, rid, store, create.Body.Object, frame.Type) : true;
            case MessageType.UpdateObject:
                return Decode<UpdateObject>(c, rid, frame, out var update) ? Write(c, s, rid, store, update.Body.Object, frame.Type) : true;
            case MessageType.UpdateObjectStatus:
                return Decode<UpdateObjectStatus>(c, rid, frame, out var status) ? Write(c, s, rid, store, status.Body.Object, frame.Type) : true;
            case MessageType.DeleteObject:
                if (!Decode<DeleteObject>(c, rid, frame, out var del)) return true;
                if (!_authz.ObjectTenant(c, s, rid, frame.Type, del.Kind, del.Tenant, del.Name)) return true;
                if (del.ResourceVersion < 0)
                {
                    c.SendError(rid, ErrorCode.InvalidRequest, "DeleteObject: resource_version must not be negative");
                    return true;
                }
                // regops (issue 13): removing an override early is an operator action like creating one: audited.
                return del.Kind == Override.KindName
                    ? Complete(c, rid, AuditedOverride(s, frame.Type, del.Name, "", store.DeleteAsync(new ObjectKey(del.Kind, del.Tenant, del.Name), del.ResourceVersion)))
                    : Complete(c, rid, store.DeleteAsync(new ObjectKey(del.Kind, del.Tenant, del.Name), del.ResourceVersion));
            case MessageType.GetObject:
                if (!Decode<GetObject>(c, rid, frame, out var get)) return true;
                if (!_authz.ObjectTenant(c, s, rid, frame.Type, get.Kind, get.Tenant, get.Name)) return true;
                if (CellViews.IsView(get.Kind))
                {
                    // Reservations and bindings are the cell's own state: a read-only view computed now (docs/control-plane.md).
                    var view = CellViews.Get(_cell, store, get.Kind, get.Tenant, get.Name, _options.Time.GetUtcNow());
                    SendResult(c, rid, view is null ? new ObjectResult(ObjectStatus.NotFound, null, $"{get.Kind} {get.Tenant}/{get.Name} not found")
                        : new ObjectResult(ObjectStatus.Ok, view, null));
                    return true;
                }
                SendResult(c, rid, store.Get(new ObjectKey(get.Kind, get.Tenant, get.Name)));
                return true;
            case MessageType.ListObjects:
                if (Decode<ListObjects>(c, rid, frame, out var list) && _authz.ObjectTenant(c, s, rid, frame.Type, list.Kind, list.Tenant, ""))
                {
                    if (CellViews.IsView(list.Kind)) HandleViewList(c, rid, store, list);
                    else HandleList(c, rid, store, list);
                }
                return true;
            case MessageType.WatchObjects:
                return !Decode<WatchObjects>(c, rid, frame, out var watch) || !_authz.ObjectTenant(c, s, rid, frame.Type, watch.Kind, watch.Tenant, "")
                    || HandleWatch(c, s, rid, store, watch);
            default:
                return !Decode<StopWatch>(c, rid, frame, out var stop) || HandleStopWatch(c, s, rid, stop.Watch);
        }
    }

    private bool Write(FrameConnection c, Session s, uint rid, ObjectStore store, ReadOnlyMemory<byte> json, MessageType type)
    {
        // Bounded before parsing: a parse allocates in proportion to the document.
        if (json.Length > _options.MaxObjectRequestBytes)
        {
            c.SendError(rid, ErrorCode.ObjectTooLarge, $"{type}: the object document is {json.Length} bytes, over the limit of {_options.MaxObjectRequestBytes}");
            return true;
        }
        var obj = ObjectCodec.Deserialize(json.Span, out var error);
        if (obj is null)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"{type}: {error}");
            return true;
        }
        // The tenant is the document's metadata.tenant (part of the key the store writes under).
        if (!_authz.ObjectTenant(c, s, rid, type, obj.Key.Kind, obj.Key.Tenant, obj.Key.Name)) return true;
        // regops (issue 13): an override's author is the authenticated principal, never what the client claims.
        if (obj is Override ov && type != MessageType.UpdateObjectStatus) ov.Spec.Author = s.Who;
        return obj is Override o && type != MessageType.UpdateObjectStatus
            ? Complete(c, rid, AuditedOverride(s, type, o.Metadata.Name, $"{o.Spec.Type} {o.Spec.Target} for {o.Spec.TtlSeconds} s: {o.Spec.Reason}", WriteTo(store, obj, type)))
            : Complete(c, rid, WriteTo(store, obj, type));
    }

    private static ValueTask<ObjectResult> WriteTo(ObjectStore store, ApiObject obj, MessageType type) => type switch
    {
        MessageType.CreateObject => store.CreateAsync(obj),
        MessageType.UpdateObject => store.UpdateAsync(obj),
        _ => store.UpdateStatusAsync(obj),
    };

    // Every override write is in the durable audit log with its outcome (who, what, on what, for how long, why).
    private async ValueTask<ObjectResult> AuditedOverride(Session s, MessageType type, string name, string what, ValueTask<ObjectResult> pending)
    {
        // Completes synchronously when the store does (a refusal, or an in-memory store): the reply path stays the same.
        var r = await pending.ConfigureAwait(false);
        AuditOverride(s, type, name, what, r);
        return r;
    }

    private void AuditOverride(Session s, MessageType type, string name, string what, ObjectResult r)
        => _authz.Audit(s, type.ToString(), $"{Override.KindName}/{name}", (r.IsOk ? $"ok rv {r.ResourceVersion}" : $"{r.Status}: {r.Message}") + (what.Length == 0 ? "" : "; " + what));

    /// <summary>Replies now if the store's task is done (a refusal, or durable already); otherwise from its completion.</summary>
    private static bool Complete(FrameConnection c, uint rid, ValueTask<ObjectResult> pending)
    {
        if (pending.IsCompletedSuccessfully)
        {
            SendResult(c, rid, pending.Result);
            return true;
        }
        _ = ReplyWhenDoneAsync(c, rid, pending);
        return false;
    }

    private static async Task ReplyWhenDoneAsync(FrameConnection c, uint rid, ValueTask<ObjectResult> pending)
    {
        ObjectResult result;
        try
        {
            result = await pending.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The durability wait failed (the store is closing, or an I/O error): the write may or may not survive, so it
            // must not be acknowledged. ShuttingDown closes the connection: the client treats it as a lost reply and
            // reads the object again after reconnecting.
            result = new ObjectResult(ObjectStatus.Closed, null, $"the write's durability is unknown: {e.Message}");
        }
        SendResult(c, rid, result);
        c.Flush();
        c.EndRequest();
    }

    private static void SendResult(FrameConnection c, uint rid, ObjectResult r)
    {
        if (r.IsOk && r.Object is { } obj)
        {
            c.Send(rid, new ObjectReply { Object = ObjectCodec.Serialize(obj), ResourceVersion = r.ResourceVersion, Removed = r.Removed });
            return;
        }
        c.SendError(rid, ToErrorCode(r.Status), r.Message ?? r.Status.ToString());
    }

    /// <summary>The one mapping of store outcomes to wire errors (docs/protocol.md, "Objects", Errors).</summary>
    internal static ErrorCode ToErrorCode(ObjectStatus status) => status switch
    {
        ObjectStatus.NotFound => ErrorCode.ObjectNotFound,
        ObjectStatus.AlreadyExists => ErrorCode.ObjectExists,
        ObjectStatus.Conflict => ErrorCode.ObjectConflict,
        ObjectStatus.Invalid => ErrorCode.InvalidRequest,
        ObjectStatus.TooLarge => ErrorCode.ObjectTooLarge,
        ObjectStatus.TooManyObjects => ErrorCode.TooManyObjects,
        ObjectStatus.Terminating => ErrorCode.ObjectTerminating,
        _ => ErrorCode.ShuttingDown,
    };

    private void HandleList(FrameConnection c, uint rid, ObjectStore store, in ListObjects m)
    {
        int limit = m.Limit == 0 ? DefaultListLimit : m.Limit;
        if (limit is < 1 or > MaxListLimit)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"ListObjects: limit must be 0-{MaxListLimit}");
            return;
        }
        var filter = new ObjectFilter(m.Kind.Length == 0 ? null : m.Kind, m.Tenant.Length == 0 ? null : m.Tenant);
        var selector = m.LabelSelector is { Count: > 0 } sel ? sel : null;
        string? cursor = m.Continue.Length == 0 ? null : m.Continue;
        // The reply must fit the client's frame: leave room for the header and the continue token.
        long room = _options.Transport.MaxFrameLength - 2048;
        long bytes = 0;
        int examined = 0;
        long version = -1;
        var items = new List<ReadOnlyMemory<byte>>(Math.Min(limit, 256));
        string? next = null;
        while (true)
        {
            // Without a selector every object read is returned, so read exactly what is still wanted.
            int want = selector is null ? limit - items.Count : Math.Min(1000, MaxExaminedPerList - examined);
            var page = store.List(filter, want, cursor);
            // The first read's version: every change after it is in a watch from it, including changes to objects a later
            // read shows (a replayed change is harmless to an informer; a missed one would not be).
            if (version < 0) version = page.ResourceVersion;
            var got = page.Items;
            bool stop = false, atEnd = false;
            for (int i = 0; i < got.Count; i++)
            {
                var obj = got[i];
                if (selector is null || Matches(obj.Metadata.Labels, selector))
                {
                    var json = ObjectCodec.Serialize(obj);
                    // Over the frame: this object starts the next page (the cursor stays on the previous key).
                    if (items.Count > 0 && bytes + json.Length + 8 > room) { stop = true; break; }
                    items.Add(json);
                    bytes += json.Length + 8;
                }
                cursor = obj.Key.ToString();
                examined++;
                if (items.Count == limit || examined >= MaxExaminedPerList)
                {
                    stop = true;
                    atEnd = i == got.Count - 1 && page.Continue is null;
                    break;
                }
            }
            if (stop) { next = atEnd ? null : cursor; break; }
            if (page.Continue is null) { next = null; break; }
            cursor = page.Continue;
        }
        c.Send(rid, new ObjectList { ResourceVersion = version, Items = items, Continue = next ?? "" });
    }

    // A list of a view kind (Reservation, Binding): computed from the cell, paged by tenant/name like stored objects.
    private void HandleViewList(FrameConnection c, uint rid, ObjectStore store, in ListObjects m)
    {
        int limit = m.Limit == 0 ? DefaultListLimit : m.Limit;
        if (limit is < 1 or > MaxListLimit)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"ListObjects: limit must be 0-{MaxListLimit}");
            return;
        }
        var (page, next, version) = CellViews.List(_cell, store, m.Kind, m.Tenant.Length == 0 ? null : m.Tenant, limit, m.Continue.Length == 0 ? null : m.Continue, _options.Time.GetUtcNow());
        long room = _options.Transport.MaxFrameLength - 2048;
        long bytes = 0;
        var items = new List<ReadOnlyMemory<byte>>(page.Count);
        var selector = m.LabelSelector is { Count: > 0 } sel ? sel : null;
        foreach (var obj in page)
        {
            if (selector is not null && !Matches(obj.Metadata.Labels, selector)) continue;
            var json = ObjectCodec.Serialize(obj);
            if (items.Count > 0 && bytes + json.Length + 8 > room)
            {
                // Over the frame: this object starts the next page.
                next = CellViews.Cursor(page[page.IndexOf(obj) - 1]);
                break;
            }
            items.Add(json);
            bytes += json.Length + 8;
        }
        c.Send(rid, new ObjectList { ResourceVersion = version, Items = items, Continue = next ?? "" });
    }

    private static bool Matches(Dictionary<string, string> labels, Dictionary<string, string> selector)
    {
        foreach (var (k, v) in selector)
            if (!labels.TryGetValue(k, out var have) || !string.Equals(have, v, StringComparison.Ordinal)) return false;
        return true;
    }

    // ------------------------------------------------------------------ watch

    private bool HandleWatch(FrameConnection c, Session s, uint rid, ObjectStore store, in WatchObjects m)
    {
        if (rid == 0 || m.FromResourceVersion < 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "WatchObjects: the request id names the watch and must not be 0; from_resource_version must not be negative");
            return true;
        }
        lock (s)
        {
            s.Watches ??= new();
            if (s.Watches.ContainsKey(rid))
            {
                c.SendError(rid, ErrorCode.InvalidRequest, $"WatchObjects: watch {rid} is already open on this connection");
                return true;
            }
            if (s.Watches.Count >= _options.MaxWatchesPerConnection)
            {
                c.SendError(rid, ErrorCode.ResourceExhausted, $"WatchObjects: this connection already has its maximum of {_options.MaxWatchesPerConnection} open watches");
                return true;
            }
        }
        var filter = new ObjectFilter(m.Kind.Length == 0 ? null : m.Kind, m.Tenant.Length == 0 ? null : m.Tenant);
        var st = store.Watch(m.FromResourceVersion, filter, out var watcher);
        switch (st)
        {
            case WatchStatus.Ok: break;
            case WatchStatus.Expired:
                c.SendError(rid, ErrorCode.WatchExpired, $"resourceVersion {m.FromResourceVersion} is older than the history window (which starts after {store.HistoryFloor}): list again and watch from the list's version");
                return true;
            case WatchStatus.TooManyWatchers:
                c.SendError(rid, ErrorCode.ResourceExhausted, "WatchObjects: the server holds its maximum number of watches");
                return true;
            case WatchStatus.InvalidVersion:
                c.SendError(rid, ErrorCode.InvalidRequest, $"WatchObjects: resourceVersion {m.FromResourceVersion} is in the future (the cell is at {_cell.Version})");
                return true;
            default:
                c.SendError(rid, ErrorCode.ShuttingDown, "the object store is closed");
                return true;
        }
        var w = new ObjectWatch(rid, watcher!, m.FromResourceVersion);
        lock (s) s.Watches!.Add(rid, w);
        // Stepped (the simulation): pumped by StepWatches at the moments the seed picks.
        if (_options.Stepped) return false;
        // Off the processing loop: the first reads may replay thousands of events from the history.
        _ = Task.Run(() => PumpAsync(c, s, w));
        return false;
    }

    /// <summary>
    /// Moves one watch's events to the connection until it ends, then sends its one final frame (an error, or the
    /// WatchStopped of a StopWatch) and ends the watch's request. Frames are flushed when the watcher has nothing more
    /// ready, so a burst of events goes out in one socket write.
    /// </summary>
    private async Task PumpAsync(FrameConnection c, Session s, ObjectWatch w)
    {
        bool bufferFull = false;
        try
        {
            while (!c.IsClosing)
            {
                var read = w.Watcher.ReadAsync(w.Cancel.Token);
                if (!read.IsCompleted) c.Flush();
                WatchEvent? ev;
                try
                {
                    ev = await read.ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                if (ev is null) break;
                // The connection's outbound buffer is shared with every other reply, and the transport disconnects the whole
                // connection above its cap. So the watch pauses while the peer has this much unread: its events wait in the
                // store's ring (no copy), where the store's lag bound ends the watch, typed and resumable, if the peer does
                // not catch up. Polling: the transport has no drained signal, and a paused watch is the rare case.
                if (c.UnsentBytes > _options.MaxWatchBufferBytes) c.Flush(); // a replay sends without waiting: hand it to the socket first
                while (c.UnsentBytes > _options.MaxWatchBufferBytes && !c.IsClosing && w.Watcher.Termination == WatchTermination.None)
                {
                    try { await Task.Delay(WatchPausePoll, w.Cancel.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException) { break; }
                }
                if (c.IsClosing || w.Cancel.IsCancellationRequested) break;
                if (w.Watcher.Termination != WatchTermination.None) { bufferFull = true; break; }
                c.Send(w.RequestId, new WatchEventMessage { EventType = (WireWatchEventType)ev.Type, ResourceVersion = ev.ResourceVersion, Object = ev.Json });
                w.LastSent = ev.ResourceVersion;
            }
        }
        finally
        {
            EndWatch(c, s, w, bufferFull);
        }
    }

    /// <summary>
    /// The simulation's watch pump (<see cref="ServerOptions.Stepped"/>): moves every event ready now of every open watch
    /// of <paramref name="c"/> to it, and ends the watches that ended (with the same final frames as the pump task).
    /// </summary>
    internal static void StepWatches(FrameConnection c)
    {
        if (c.State is not Session s) return;
        List<ObjectWatch> open;
        lock (s)
        {
            if (s.Watches is null || s.Watches.Count == 0) return;
            open = new List<ObjectWatch>(s.Watches.Values);
        }
        foreach (var w in open)
        {
            bool ended = false;
            while (!c.IsClosing && !w.Cancel.IsCancellationRequested)
            {
                var ev = w.Watcher.TryRead(out ended);
                if (ev is null) break;
                c.Send(w.RequestId, new WatchEventMessage { EventType = (WireWatchEventType)ev.Type, ResourceVersion = ev.ResourceVersion, Object = ev.Json });
                w.LastSent = ev.ResourceVersion;
            }
            if (ended || c.IsClosing || w.Cancel.IsCancellationRequested) EndWatch(c, s, w, bufferFull: false);
        }
        c.Flush();
    }

    // The end of a watch: its one final frame (an error, or the WatchStopped of a StopWatch) and the end of its request.
    private static void EndWatch(FrameConnection c, Session s, ObjectWatch w, bool bufferFull)
    {
        var termination = w.Watcher.Termination;
        w.Watcher.Dispose();
        uint stopRid;
        lock (s)
        {
            s.Watches?.Remove(w.RequestId);
            w.Ended = true;
            stopRid = w.StopRequestId;
        }
        if (stopRid != 0)
        {
            c.Send(stopRid, new WatchStopped { Watch = w.RequestId, LastResourceVersion = w.LastSent, Stopped = true });
            c.EndRequest();
        }
        else if (!c.IsClosing)
        {
            if (bufferFull || termination == WatchTermination.TooSlow)
                c.SendError(w.RequestId, ErrorCode.WatchTooSlow, $"watch {w.RequestId}: fell too far behind; resume from resourceVersion {w.LastSent}");
            else if (termination == WatchTermination.StoreClosed)
                c.SendError(w.RequestId, ErrorCode.ShuttingDown, "the object store is closed");
        }
        c.EndRequest();
        c.Flush();
        w.Cancel.Dispose();
    }

    /// <returns>False when the stop is answered by the watch's pump (after its last event).</returns>
    private static bool HandleStopWatch(FrameConnection c, Session s, uint rid, uint watch)
    {
        ObjectWatch? w = null;
        lock (s)
        {
            if (s.Watches is not null && s.Watches.TryGetValue(watch, out var found) && !found.Ended && found.StopRequestId == 0 && rid != 0)
            {
                found.StopRequestId = rid;
                w = found;
            }
        }
        if (w is null)
        {
            c.Send(rid, new WatchStopped { Watch = watch, LastResourceVersion = 0, Stopped = false });
            return true;
        }
        // Cancelling after the lock: the pump may be ending on its own right now (and dispose the source); either way it
        // answers this stop.
        try { w.Cancel.Cancel(); }
        catch (ObjectDisposedException) { }
        return false;
    }

    private static void StopAllWatches(Session s, bool stepped)
    {
        List<ObjectWatch>? open = null;
        lock (s)
        {
            if (s.Watches is null) return;
            open = new List<ObjectWatch>(s.Watches.Values);
        }
        foreach (var w in open)
        {
            try { w.Cancel.Cancel(); }
            catch (ObjectDisposedException) { } // its pump ended meanwhile
            // Stepped: no pump will look at a closed connection again; free the store's watcher slot now.
            if (stepped) w.Watcher.Dispose();
        }
    }
}
