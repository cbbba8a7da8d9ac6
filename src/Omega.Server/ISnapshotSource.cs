namespace Omega.Server;

/// <summary>
/// What a leader serves replica snapshots from (issue 16; docs/protocol.md, "Replica snapshots"): the store that can
/// write a consistent copy of its store of record. Omega.Replication adapts the replica's FASTER store to it; a server
/// without one (single-node mode, a standby) answers SnapshotRequest with <c>SnapshotUnavailable</c>.
/// </summary>
public interface ISnapshotSource
{
    /// <summary>Where the server writes snapshot files (created if missing; its stale <c>snapshot-*.tmp</c> files are deleted at start).</summary>
    string Directory { get; }

    /// <summary>
    /// Writes a snapshot (the format of docs/protocol.md, "Snapshot file") to <paramref name="destination"/> and returns
    /// its journal sequence and cell version. Blocking: the server calls it on a dedicated thread, never on the
    /// transport's or the commit path's threads.
    /// </summary>
    (long Sequence, long CellVersion) WriteSnapshot(Stream destination);
}
