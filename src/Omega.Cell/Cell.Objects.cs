namespace Omega.Cells;

/// <summary>
/// An opaque control-plane object as the cell keeps it (issue 12): the encoded document, the cell version of its last
/// write (its resourceVersion) and the cell version of the write that created it (its uid).
/// </summary>
/// <param name="Key">The object's key (the control plane uses <c>kind/tenant/name</c>).</param>
/// <param name="Value">The encoded object, as written (never mutated after the write).</param>
/// <param name="Version">The cell version of the object's last write.</param>
/// <param name="Created">The cell version of the write that created the object.</param>
public sealed record StoredObject(string Key, byte[] Value, long Version, long Created);

/// <summary>The outcome of <see cref="Cell.PutObject"/> and <see cref="Cell.DeleteObject"/>.</summary>
public enum ObjectWriteStatus : byte
{
    /// <summary>Written: the record is in the journal at the returned version.</summary>
    Written = 0,

    /// <summary>The expected version was 0 (create) but the key exists; nothing was written.</summary>
    Exists = 1,

    /// <summary>The key does not exist (update or delete); nothing was written.</summary>
    NotFound = 2,

    /// <summary>The key's version is not the expected one; nothing was written.</summary>
    VersionMismatch = 3,

    /// <summary>Empty key, or key or value over the cell's limits; nothing was written.</summary>
    Invalid = 4,
}

// Object records (issue 12): the control plane's API objects are written into the cell's one journal, so objects and
// cell changes share one total order, one durable watermark and one restore path. The cell does not interpret the
// bytes; it only versions them and checks the writer's expected version (a compare-and-set under the commit lock, so
// no record can skip the resourceVersion precondition even if a caller races).
public sealed partial class Cell
{
    /// <summary>Longest object key accepted, in UTF-16 characters.</summary>
    public const int MaxObjectKeyLength = 512;

    /// <summary>Largest object value accepted, in bytes (the control plane enforces its own, smaller limit).</summary>
    public const int MaxObjectValueBytes = 1 << 20;

    /// <summary>Expected version meaning "any": the write does not check the stored version.</summary>
    public const long AnyObjectVersion = -1;

    private readonly Dictionary<string, StoredObject> _objects = new(StringComparer.Ordinal);

    /// <summary>The number of objects held.</summary>
    public int ObjectCount
    {
        get
        {
            using (Serial()) return _objects.Count;
        }
    }

    /// <summary>
    /// Writes (creates or replaces) the object <paramref name="key"/>. The write gets a cell version of its own, returned in
    /// <paramref name="version"/>; acknowledge it once that version is durable (the durable watermark), like a commit.
    /// </summary>
    /// <param name="key">The object key.</param>
    /// <param name="value">The encoded object (copied).</param>
    /// <param name="expectedVersion">0: the key must not exist (create); &gt; 0: the key must be at this version;
    /// <see cref="AnyObjectVersion"/>: no check.</param>
    /// <param name="version">The version of the write (0 when nothing was written).</param>
    /// <param name="created">The creation version of the object (this version for a create).</param>
    public ObjectWriteStatus PutObject(string key, ReadOnlySpan<byte> value, long expectedVersion, out long version, out long created)
    {
        version = 0;
        created = 0;
        if (string.IsNullOrEmpty(key) || key.Length > MaxObjectKeyLength || value.Length > MaxObjectValueBytes) return ObjectWriteStatus.Invalid;
        var copy = value.ToArray();
        using (Serial())
        {
            _objects.TryGetValue(key, out var existing);
            var check = CheckExpected(existing, expectedVersion);
            if (check != ObjectWriteStatus.Written) return check;
            long v = _vw.Published + 1;
            created = existing?.Created ?? v;
            _objects[key] = new StoredObject(key, copy, v, created);
            // A version of its own (no node changes at it): the durable watermark then tells when the record is safe.
            Volatile.Write(ref _vw.Published, v);
            version = v;
            if (_journal is not null)
            {
                var w = BeginRecord(CellRecordKind.ObjectPut, v);
                w.String(key);
                w.I64(created);
                w.I32(copy.Length);
                w.Bytes(copy);
                EndRecord(v);
            }
            return ObjectWriteStatus.Written;
        }
    }

    /// <summary>Deletes the object <paramref name="key"/> (expected version as for <see cref="PutObject"/>, 0 not allowed).</summary>
    public ObjectWriteStatus DeleteObject(string key, long expectedVersion, out long version)
    {
        version = 0;
        if (string.IsNullOrEmpty(key) || key.Length > MaxObjectKeyLength || expectedVersion == 0) return ObjectWriteStatus.Invalid;
        using (Serial())
        {
            _objects.TryGetValue(key, out var existing);
            if (existing is null) return ObjectWriteStatus.NotFound;
            var check = CheckExpected(existing, expectedVersion);
            if (check != ObjectWriteStatus.Written) return check;
            long v = _vw.Published + 1;
            _objects.Remove(key);
            Volatile.Write(ref _vw.Published, v);
            version = v;
            if (_journal is not null)
            {
                var w = BeginRecord(CellRecordKind.ObjectDelete, v);
                w.String(key);
                EndRecord(v);
            }
            return ObjectWriteStatus.Written;
        }
    }

    private static ObjectWriteStatus CheckExpected(StoredObject? existing, long expectedVersion)
    {
        if (expectedVersion == AnyObjectVersion) return ObjectWriteStatus.Written;
        if (expectedVersion == 0) return existing is null ? ObjectWriteStatus.Written : ObjectWriteStatus.Exists;
        if (existing is null) return ObjectWriteStatus.NotFound;
        return existing.Version == expectedVersion ? ObjectWriteStatus.Written : ObjectWriteStatus.VersionMismatch;
    }

    /// <summary>Reads the object <paramref name="key"/>.</summary>
    public bool TryGetObject(string key, out StoredObject? stored)
    {
        using (Serial()) return _objects.TryGetValue(key, out stored);
    }

    /// <summary>A copy of every object held, in no particular order (O(objects): for loading, not for a hot path).</summary>
    public IReadOnlyList<StoredObject> GetObjects()
    {
        using (Serial()) return [.. _objects.Values];
    }

    /// <summary>Recovery: installs the objects a restorer found (before the cell is shared).</summary>
    internal void RestoreObjects(Dictionary<string, StoredObject> objects)
    {
        using (Serial())
        {
            foreach (var (k, o) in objects) _objects[k] = o;
        }
    }
}
