namespace Omega.Cells;

/// <summary>The outcome of reading a node from a snapshot.</summary>
public enum SnapshotRead : byte
{
    /// <summary>The node was read as of the snapshot's version.</summary>
    Ok = 0,

    /// <summary>The node did not exist at the snapshot's version.</summary>
    NotFound = 1,

    /// <summary>The node changed too many times since the snapshot was taken; take a new snapshot (re-sync).</summary>
    TooOld = 2,
}

/// <summary>A node as seen in a snapshot.</summary>
/// <param name="Id">The node id.</param>
/// <param name="Spec">Its spec: name, capacity, labels, failure domain.</param>
/// <param name="Allocated">Resources held by live bindings.</param>
/// <param name="Status">Its schedulability.</param>
/// <param name="Version">
/// The node's version: it counts placements on the node and changes to its spec or status (not releases, which only add
/// room; this matches the Omega paper's coarse-grained rule). Put it in a claim's expected version for coarse detection.
/// </param>
/// <param name="TaskCount">The number of tasks bound to the node.</param>
public readonly record struct NodeView(NodeId Id, NodeSpec Spec, ResourceVector Allocated, NodeStatus Status, long Version, int TaskCount)
{
    /// <summary>The node's capacity.</summary>
    public ResourceVector Capacity => Spec.Capacity;

    /// <summary>Capacity minus allocated.</summary>
    public ResourceVector Free => Spec.Capacity - Allocated;

    /// <summary>True when the node accepts new claims.</summary>
    public bool IsSchedulable => Status == NodeStatus.Schedulable;

    /// <summary>True when <paramref name="request"/> fits in the node's free resources.</summary>
    public bool Fits(ResourceVector request) => ResourceVector.Fits(Allocated, request, Spec.Capacity);
}

/// <summary>
/// A consistent, read-only view of the cell's nodes at one cell version. Acquiring one is O(1), takes no lock and never
/// blocks committers; it never shows part of a transaction. It is a small value: copy it freely, keep it as long as needed.
/// </summary>
public readonly struct CellSnapshot
{
    private readonly NodeSlot[] _slots;

    internal CellSnapshot(NodeSlot[] slots, int nodeCount, long version)
    {
        _slots = slots;
        NodeCount = nodeCount;
        Version = version;
    }

    /// <summary>The cell version this snapshot shows.</summary>
    public long Version { get; }

    /// <summary>The number of node ids allocated at this version (removed nodes included; ids are dense).</summary>
    public int NodeCount { get; }

    /// <summary>Reads node <paramref name="id"/> as of this snapshot.</summary>
    public SnapshotRead TryGetNode(NodeId id, out NodeView view)
    {
        if ((uint)id.Value >= (uint)NodeCount)
        {
            view = default;
            return SnapshotRead.NotFound;
        }
        var r = _slots[id.Value].Read(Version, out var e);
        view = r == SnapshotRead.Ok ? new NodeView(id, e.Spec!, e.Allocated, e.Status, e.Version, e.TaskCount) : default;
        if (r == SnapshotRead.Ok && e.Status == NodeStatus.Removed) return SnapshotRead.NotFound;
        return r;
    }
}
