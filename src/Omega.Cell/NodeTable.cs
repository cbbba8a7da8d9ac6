using System.Runtime.CompilerServices;

namespace Omega.Cells;

/// <summary>One published version of a node, as snapshot readers see it.</summary>
internal struct NodeEntry
{
    /// <summary>
    /// The cell version at which this entry became current; doubles as the entry's seqlock word.
    /// 0 = never written, -1 = being written.
    /// </summary>
    public long Stamp;
    public ResourceVector Allocated;
    public NodeSpec? Spec;
    public long Version;
    public int TaskCount;
    public NodeStatus Status;
}

/// <summary>A fixed ring of the newest <see cref="NodeSlot.Depth"/> versions of a node.</summary>
[InlineArray(NodeSlot.Depth)]
internal struct NodeRing
{
    private NodeEntry _e0;
}

/// <summary>
/// A node's multi-version slot. The single writer (the committer, under the commit lock) writes the next ring entry and
/// then advances <see cref="Head"/>; readers pick the newest entry whose stamp is not newer than their snapshot.
/// </summary>
/// <remarks>
/// Why a ring of versions rather than copy-on-write arrays: publishing a commit must not allocate (the hot path's budget is
/// zero bytes) and must not copy anything proportional to the cell. A ring costs one entry write per touched node.
/// The price is that a snapshot older than <see cref="Depth"/> changes of a node can no longer read that node
/// (<see cref="SnapshotRead.TooOld"/>), and the reader re-syncs, which is what an optimistic scheduler does anyway.
/// </remarks>
internal struct NodeSlot
{
    public const int Depth = 4;
    public const int Mask = Depth - 1;

    public long Head;
    public NodeRing Ring;

    /// <summary>Writer only. Publishes a new version of the node with the given stamp.</summary>
    public void Publish(long stamp, in NodeLive live)
    {
        long next = Head + 1;
        ref NodeEntry e = ref Ring[(int)(next & Mask)];
        // Invalidate first with a full fence so no reader can pair the old stamp with new data.
        Interlocked.Exchange(ref e.Stamp, -1);
        e.Allocated = live.Allocated;
        e.Spec = live.Spec;
        e.Version = live.Version;
        e.TaskCount = live.TaskCount;
        e.Status = live.Status;
        // Release: the data above is visible before the stamp that validates it.
        Volatile.Write(ref e.Stamp, stamp);
        Volatile.Write(ref Head, next);
    }

    /// <summary>Reads the newest version of the node whose stamp is at most <paramref name="snapshotVersion"/>.</summary>
    public SnapshotRead Read(long snapshotVersion, out NodeEntry entry)
    {
        // Retry a few times if a writer overwrote the entry under us; the writer never holds an entry for long.
        for (int attempt = 0; attempt < 64; attempt++)
        {
            long head = Volatile.Read(ref Head);
            bool sawEmpty = false, torn = false;
            for (int k = 0; k < Depth; k++)
            {
                ref NodeEntry e = ref Ring[(int)((head - k) & Mask)];
                long s1 = Volatile.Read(ref e.Stamp);
                if (s1 == 0) { sawEmpty = true; break; }
                if (s1 < 0) { torn = true; continue; }
                if (s1 > snapshotVersion) continue;
                entry = e;
                // Full fence: the copy above must complete before the stamp is read again (seqlock validation).
                Interlocked.MemoryBarrier();
                if (Volatile.Read(ref e.Stamp) != s1) { torn = true; break; }
                return SnapshotRead.Ok;
            }
            if (!torn)
            {
                entry = default;
                return sawEmpty ? SnapshotRead.NotFound : SnapshotRead.TooOld;
            }
            Thread.SpinWait(1);
        }
        entry = default;
        return SnapshotRead.TooOld;
    }
}

/// <summary>The writer's private, current state of a node. Only the committer reads or writes it, under the commit lock.</summary>
internal struct NodeLive
{
    public NodeSpec? Spec;
    public ResourceVector Allocated;
    public long Version;
    public int TaskCount;
    public NodeStatus Status;

    // Per-transaction bookkeeping, so that coarse-grained checks compare against the version before the transaction
    // and an all-or-nothing rollback can restore it.
    public long TxnStamp;
    public long PreTxnVersion;
    public long PreTxnStamp;
}
