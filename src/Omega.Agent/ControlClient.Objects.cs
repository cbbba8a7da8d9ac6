using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Agent;

/// <summary>One change delivered by <see cref="ControlClient.WatchAsync"/>.</summary>
/// <param name="Type">Added, Modified or Deleted.</param>
/// <param name="ResourceVersion">The change's resourceVersion: resume a watch from the last one processed.</param>
/// <param name="Object">The object after the change (for Deleted: its last state).</param>
public sealed record ObjectWatchEvent(WatchEventType Type, long ResourceVersion, ApiObject Object);

/// <summary>
/// The control-plane object API over the wire (docs/protocol.md, section 8, "Objects"): the same operations as the
/// embedded <see cref="ObjectStore"/>, for tools and controllers outside the engine's process. Refusals throw
/// <see cref="AgentRequestException"/> with the server's code (<see cref="ErrorCode.ObjectConflict"/>,
/// <see cref="ErrorCode.ObjectNotFound"/>, ...); a write returns only once the server has made it durable.
/// </summary>
public sealed partial class ControlClient
{
    /// <summary>Watch events buffered in this process per watch before the watch is ended as too slow (its memory bound).</summary>
    public const int WatchBufferEvents = 4096;

    private readonly ConcurrentDictionary<uint, Channel<(MessageType Type, byte[] Body)>> _streams = new();

    /// <summary>Creates <paramref name="obj"/>; returns it as stored (uid, generation 1, resourceVersion). <c>ObjectExists</c> if the key holds one.</summary>
    public async Task<ApiObject> CreateAsync(ApiObject obj, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var (t, b) = await RequestAsync(new CreateObject { Body = new ObjectWrite { Object = ObjectCodec.Serialize(obj) } }, cancellationToken).ConfigureAwait(false);
        return DecodeObject(Expect<ObjectReply>(t, b).Object);
    }

    /// <summary>
    /// Updates spec and metadata of <paramref name="obj"/> (its status is ignored); <c>metadata.resourceVersion</c> is the
    /// precondition (0: unconditional). <c>ObjectConflict</c> when it is stale.
    /// </summary>
    public async Task<ApiObject> UpdateAsync(ApiObject obj, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var (t, b) = await RequestAsync(new UpdateObject { Body = new ObjectWrite { Object = ObjectCodec.Serialize(obj) } }, cancellationToken).ConfigureAwait(false);
        return DecodeObject(Expect<ObjectReply>(t, b).Object);
    }

    /// <summary>Replaces the status of the stored object with <paramref name="obj"/>'s (a controller's write); precondition as for <see cref="UpdateAsync"/>.</summary>
    public async Task<ApiObject> UpdateStatusAsync(ApiObject obj, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var (t, b) = await RequestAsync(new UpdateObjectStatus { Body = new ObjectWrite { Object = ObjectCodec.Serialize(obj) } }, cancellationToken).ConfigureAwait(false);
        return DecodeObject(Expect<ObjectReply>(t, b).Object);
    }

    /// <summary>
    /// Creates the object, or updates it when its key exists (<c>omega apply</c>). A non-zero
    /// <c>metadata.resourceVersion</c> in <paramref name="obj"/> is the update's precondition; 0 means "the version just
    /// read". With 0, a conflict means someone wrote in between (a controller writing the object's status, most often), so
    /// the object is read again and the update retried, up to <see cref="ApplyConflictRetries"/> times: the manifest's
    /// spec wins over whatever was written in between, as it would had it arrived a moment later. With a non-zero version
    /// a conflict is the caller's precondition failing and is thrown at once. Finalizers and owner references of the
    /// stored object are kept when <paramref name="obj"/> lists none, so applying a manifest does not strip a
    /// controller's finalizer.
    /// </summary>
    public async Task<(ApiObject Object, bool Created)> ApplyAsync(ApiObject obj, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(obj);
        try
        {
            return (await CreateAsync(obj, cancellationToken).ConfigureAwait(false), true);
        }
        catch (AgentRequestException e) when (e.Code == ErrorCode.ObjectExists)
        {
            // Exists: fall through to an update.
        }
        bool pinned = obj.Metadata.ResourceVersion != 0;
        for (int attempt = 0; ; attempt++)
        {
            var current = await GetAsync(obj.Key, cancellationToken).ConfigureAwait(false)
                ?? throw new AgentRequestException(ErrorCode.ObjectConflict, $"{obj.Key} was deleted while being applied");
            var next = ObjectCodec.Clone(obj);
            if (!pinned) next.Metadata.ResourceVersion = current.Metadata.ResourceVersion;
            if (next.Metadata.Finalizers.Count == 0) next.Metadata.Finalizers = [.. current.Metadata.Finalizers];
            if (next.Metadata.OwnerReferences.Count == 0) next.Metadata.OwnerReferences = [.. current.Metadata.OwnerReferences];
            try
            {
                return (await UpdateAsync(next, cancellationToken).ConfigureAwait(false), false);
            }
            // Only the version this call read went stale: read again. Bounded, so a writer that never pauses cannot hold
            // an apply forever; the caller then sees the conflict.
            catch (AgentRequestException e) when (e.Code == ErrorCode.ObjectConflict && !pinned && attempt < ApplyConflictRetries)
            {
            }
        }
    }

    /// <summary>How many times <see cref="ApplyAsync"/> reads again and retries an update whose just-read version went
    /// stale (a manifest without a resourceVersion) before it reports the conflict.</summary>
    public const int ApplyConflictRetries = 8;

    /// <summary>Reads one object; null when there is none with that key.</summary>
    public async Task<ApiObject?> GetAsync(ObjectKey key, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new GetObject { Kind = key.Kind, Tenant = key.Tenant, Name = key.Name }, cancellationToken).ConfigureAwait(false);
        if (t == MessageType.Error && Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(b), out var e, out _) && e.Code == ErrorCode.ObjectNotFound) return null;
        return DecodeObject(Expect<ObjectReply>(t, b).Object);
    }

    /// <summary>
    /// One page of objects of <paramref name="kind"/> and <paramref name="tenant"/> (null: all) whose labels hold every
    /// pair of <paramref name="labelSelector"/>. Pass the page's <see cref="ListResult.Continue"/> back for the next page
    /// (a page may be short, even empty, while it is not null); watch from the first page's
    /// <see cref="ListResult.ResourceVersion"/> to follow changes.
    /// </summary>
    public async Task<ListResult> ListAsync(string? kind = null, string? tenant = null, IReadOnlyDictionary<string, string>? labelSelector = null,
        int limit = 500, string? continueToken = null, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new ListObjects
        {
            Kind = kind ?? "", Tenant = tenant ?? "", Limit = limit, Continue = continueToken ?? "",
            LabelSelector = labelSelector is { Count: > 0 } ? new Dictionary<string, string>(labelSelector) : null,
        }, cancellationToken).ConfigureAwait(false);
        var r = Expect<ObjectList>(t, b);
        var items = new List<ApiObject>(r.Items.Count);
        foreach (var item in r.Items) items.Add(DecodeObject(item));
        return new ListResult(items, r.ResourceVersion, r.Continue.Length == 0 ? null : r.Continue);
    }

    /// <summary>
    /// Deletes <paramref name="key"/> (precondition <paramref name="expectedResourceVersion"/>, 0: unconditional).
    /// <see cref="ObjectResult.Removed"/> is false when the object has finalizers and is only marked terminating.
    /// </summary>
    public async Task<ObjectResult> DeleteAsync(ObjectKey key, long expectedResourceVersion = 0, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new DeleteObject { Kind = key.Kind, Tenant = key.Tenant, Name = key.Name, ResourceVersion = expectedResourceVersion }, cancellationToken).ConfigureAwait(false);
        var r = Expect<ObjectReply>(t, b);
        return new ObjectResult(ObjectStatus.Ok, DecodeObject(r.Object)) { Removed = r.Removed };
    }

    /// <summary>
    /// Every change after <paramref name="fromResourceVersion"/> of objects of <paramref name="kind"/> and
    /// <paramref name="tenant"/> (null: all), in order, none twice, only durable ones, until cancelled. Ends by throwing
    /// <see cref="AgentRequestException"/>: <see cref="ErrorCode.WatchExpired"/> (list again), <see cref="ErrorCode.WatchTooSlow"/>
    /// (resume from the last event's version; also when this process buffered <see cref="WatchBufferEvents"/> events
    /// its consumer has not taken), or <see cref="ErrorCode.None"/> when the connection closed. Disposing the enumerator
    /// stops the watch on the server.
    /// </summary>
    public async IAsyncEnumerable<ObjectWatchEvent> WatchAsync(long fromResourceVersion, string? kind = null, string? tenant = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var c = _connection ?? throw new AgentRequestException(ErrorCode.None, "not connected");
        uint rid = Interlocked.Increment(ref _nextRid);
        var stream = Channel.CreateBounded<(MessageType Type, byte[] Body)>(new BoundedChannelOptions(WatchBufferEvents) { SingleReader = true, SingleWriter = true });
        _streams[rid] = stream;
        bool ended = false;
        try
        {
            if (!c.Send(rid, new WatchObjects { FromResourceVersion = fromResourceVersion, Kind = kind ?? "", Tenant = tenant ?? "" }))
                throw new AgentRequestException(ErrorCode.None, "connection closed");
            c.Flush();
            var reader = stream.Reader;
            while (true)
            {
                if (!reader.TryRead(out var frame))
                {
                    if (!await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        ended = true;
                        await reader.Completion.ConfigureAwait(false); // rethrows why the stream ended
                        yield break;
                    }
                    continue;
                }
                if (frame.Type == MessageType.Error)
                {
                    ended = true;
                    Expect<WatchEventMessage>(frame.Type, frame.Body); // throws the server's typed error
                }
                var ev = Expect<WatchEventMessage>(frame.Type, frame.Body);
                yield return new ObjectWatchEvent((WatchEventType)ev.EventType, ev.ResourceVersion, DecodeObject(ev.Object));
            }
        }
        finally
        {
            _streams.TryRemove(rid, out _);
            // The consumer stopped (or this process gave up): stop the server's side too, unless it already ended there.
            if (!ended && !c.IsClosing)
            {
                try
                {
                    // Not the consumer's token: it is usually what ended the enumeration.
                    await RequestAsync(new StopWatch { Watch = rid }, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is AgentRequestException or TimeoutException)
                {
                    // Best effort: the connection closing stops it as well.
                }
            }
        }
    }

    // On the connection's processing loop: never blocks. A full buffer ends the watch here (bounded memory) with the
    // same typed error the server uses for a slow watcher; the consumer resumes from its last event.
    private void Deliver(uint rid, Channel<(MessageType Type, byte[] Body)> stream, MessageType type, byte[] body)
    {
        if (stream.Writer.TryWrite((type, body))) return;
        if (_streams.TryRemove(rid, out _))
            stream.Writer.TryComplete(new AgentRequestException(ErrorCode.WatchTooSlow, $"watch {rid}: {WatchBufferEvents} events buffered and not consumed; resume from the last event's resourceVersion"));
    }

    private static ApiObject DecodeObject(ReadOnlyMemory<byte> json)
        => ObjectCodec.Deserialize(json.Span, out var error) ?? throw new AgentRequestException(ErrorCode.MalformedBody, $"the server sent an object this client cannot read: {error}");
}
