using System.Text.Json.Serialization;
using Omega.Cells;

namespace Omega.ControlPlane;

/// <summary>The outcome code of an object store operation (documented in docs/control-plane.md, "Error codes").</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ObjectStatus>))]
public enum ObjectStatus : byte
{
    /// <summary>Done (and durable, for a write).</summary>
    Ok = 0,

    /// <summary>No object with that key.</summary>
    NotFound = 1,

    /// <summary>Create of a key that exists.</summary>
    AlreadyExists = 2,

    /// <summary>The resourceVersion precondition failed (Kubernetes' 409): re-read and retry.</summary>
    Conflict = 3,

    /// <summary>Schema or validation failure; the message names the field.</summary>
    Invalid = 4,

    /// <summary>The encoded object is over <see cref="ObjectStoreOptions.MaxObjectBytes"/>.</summary>
    TooLarge = 5,

    /// <summary><see cref="ObjectStoreOptions.MaxObjects"/> or <see cref="ObjectStoreOptions.MaxTotalBytes"/> reached.</summary>
    TooManyObjects = 6,

    /// <summary>A spec change of an object that is being deleted.</summary>
    Terminating = 7,

    /// <summary>The store is disposed.</summary>
    Closed = 8,
}

/// <summary>The result of an object store operation.</summary>
/// <param name="Status">The outcome.</param>
/// <param name="Object">The object as stored after the operation (a private copy), or null.</param>
/// <param name="Message">Why, when not <see cref="ObjectStatus.Ok"/>.</param>
public sealed record ObjectResult(ObjectStatus Status, ApiObject? Object = null, string? Message = null)
{
    /// <summary>True when <see cref="Status"/> is <see cref="ObjectStatus.Ok"/>.</summary>
    public bool IsOk => Status == ObjectStatus.Ok;

    /// <summary>The object's resourceVersion after the operation (0 when none).</summary>
    public long ResourceVersion => Object?.Metadata.ResourceVersion ?? 0;

    /// <summary>
    /// For a delete: true when the object is gone; false when it is only marked terminating (it had finalizers and
    /// <see cref="Object"/> carries its deletionTimestamp).
    /// </summary>
    public bool Removed { get; init; }
}

/// <summary>A page of objects and the store version it was read at (watch from there to continue without gaps).</summary>
/// <param name="Items">The objects (private copies), ordered by key.</param>
/// <param name="ResourceVersion">The store's resourceVersion at the read: <c>Watch(ResourceVersion)</c> continues from it.</param>
/// <param name="Continue">The key to pass as <c>continueAfter</c> for the next page, or null when this is the last.</param>
public sealed record ListResult(IReadOnlyList<ApiObject> Items, long ResourceVersion, string? Continue);

/// <summary>Limits and settings of an <see cref="ObjectStore"/> (defaults documented in docs/control-plane.md).</summary>
public sealed class ObjectStoreOptions
{
    /// <summary>
    /// Deliberately broken variants for the deterministic simulation's checker tests; the store honours
    /// <see cref="Buggify.AckBeforeDurable"/>. Default none (docs/testing.md).
    /// </summary>
    public Buggify Buggify { get; set; }

    /// <summary>Most objects held.</summary>
    public int MaxObjects { get; set; } = 100_000;

    /// <summary>Largest encoded object, in bytes.</summary>
    public int MaxObjectBytes { get; set; } = 256 * 1024;

    /// <summary>Most bytes of encoded objects held in total.</summary>
    public long MaxTotalBytes { get; set; } = 512L << 20;

    /// <summary>Events kept for watch (the history window).</summary>
    public int HistoryCapacity { get; set; } = 4096;

    /// <summary>Most concurrent watchers.</summary>
    public int MaxWatchers { get; set; } = 1024;

    /// <summary>How many events a watcher may fall behind the head before it is cut off (its buffer bound).</summary>
    public int MaxWatcherLag { get; set; } = 1024;

    /// <summary>The clock for creation and deletion timestamps.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;
}

/// <summary>Waits until a cell version is durable. The host plugs in its store's durable watermark.</summary>
public interface IDurabilityWaiter
{
    /// <summary>Completes when every journal record up to cell version <paramref name="cellVersion"/> is durable.</summary>
    ValueTask WaitDurableAsync(long cellVersion, CancellationToken cancellationToken);
}

/// <summary>Ready-made durability waiters.</summary>
public static class DurabilityWaiter
{
    /// <summary>For an in-memory cell: everything is "durable" at once.</summary>
    public static IDurabilityWaiter Immediate { get; } = new ImmediateWaiter();

    /// <summary>Adapts a delegate, for example <c>(v, ct) =&gt; cellStore.WaitForVersionAsync(v, ct)</c>.</summary>
    public static IDurabilityWaiter From(Func<long, CancellationToken, ValueTask> wait)
    {
        ArgumentNullException.ThrowIfNull(wait);
        return new DelegateWaiter(wait);
    }

    private sealed class ImmediateWaiter : IDurabilityWaiter
    {
        public ValueTask WaitDurableAsync(long cellVersion, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    private sealed class DelegateWaiter(Func<long, CancellationToken, ValueTask> wait) : IDurabilityWaiter
    {
        public ValueTask WaitDurableAsync(long cellVersion, CancellationToken cancellationToken) => wait(cellVersion, cancellationToken);
    }
}

/// <summary>What happened to an object.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WatchEventType>))]
public enum WatchEventType : byte
{
    /// <summary>Created.</summary>
    Added = 0,

    /// <summary>Updated (spec, metadata or status; also marked terminating).</summary>
    Modified = 1,

    /// <summary>Removed (the JSON is the object's last state, at the deletion's resourceVersion).</summary>
    Deleted = 2,
}

/// <summary>One change, as a watcher receives it.</summary>
/// <param name="Type">What happened.</param>
/// <param name="ResourceVersion">The change's resourceVersion (a cell version; strictly increasing along a watch).</param>
/// <param name="Key">The object's key.</param>
/// <param name="Json">The object's full JSON document after the change (shared: do not mutate).</param>
public sealed record WatchEvent(WatchEventType Type, long ResourceVersion, ObjectKey Key, ReadOnlyMemory<byte> Json)
{
    /// <summary>Decodes the object (a private copy).</summary>
    public ApiObject Decode() => ObjectCodec.Deserialize(Json.Span, out var e) ?? throw new FormatException(e);
}

/// <summary>The outcome of starting a watch.</summary>
public enum WatchStatus : byte
{
    /// <summary>Started.</summary>
    Ok = 0,

    /// <summary>The requested version is older than the history window (Kubernetes' 410 Gone): list again.</summary>
    Expired = 1,

    /// <summary><see cref="ObjectStoreOptions.MaxWatchers"/> watchers are open.</summary>
    TooManyWatchers = 2,

    /// <summary>The requested version is in the future (after the store's current version).</summary>
    InvalidVersion = 3,

    /// <summary>The store is disposed.</summary>
    Closed = 4,
}

/// <summary>Why a watch ended.</summary>
public enum WatchTermination : byte
{
    /// <summary>It has not ended.</summary>
    None = 0,

    /// <summary>The watcher fell more than <see cref="ObjectStoreOptions.MaxWatcherLag"/> events behind and was cut off: resume from <see cref="ObjectWatcher.LastResourceVersion"/>.</summary>
    TooSlow = 1,

    /// <summary>The consumer disposed it.</summary>
    Disposed = 2,

    /// <summary>The store was disposed.</summary>
    StoreClosed = 3,
}

/// <summary>Which objects a watch or list covers.</summary>
/// <param name="Kind">Only this kind (null: every kind).</param>
/// <param name="Tenant">Only this tenant (null: every tenant).</param>
public readonly record struct ObjectFilter(string? Kind = null, string? Tenant = null)
{
    /// <summary>True when <paramref name="key"/> passes the filter.</summary>
    public bool Matches(ObjectKey key)
        => (Kind is null || string.Equals(Kind, key.Kind, StringComparison.Ordinal))
           && (Tenant is null || string.Equals(Tenant, key.Tenant, StringComparison.Ordinal));
}
