namespace Omega.Storage;

/// <summary>
/// A replica's local FASTER store in a replicated (high-availability) deployment, issue 16. A standby opens it with
/// <see cref="CellStore.OpenReplica"/>: recovery restores the local checkpoint and journal as usual, but the cell is not
/// built yet; the groups tailed from the replicated log are applied (<see cref="Apply"/>) to the restore in memory and
/// appended to the local journal, so that a restart or a takeover replays only the tail after
/// <see cref="AppliedSequence"/>. Winning the election, the replica catches up and calls <see cref="Promote"/>: the
/// cell is completed and from then on every group is replicated (<see cref="IJournalReplicator"/>) before it counts as
/// durable.
/// </summary>
public interface IReplicaStore : IDisposable
{
    /// <summary>True once <see cref="Promote"/> ran (the store then serves as <see cref="ICellStore"/>).</summary>
    bool IsPromoted { get; }

    /// <summary>The journal sequence applied so far (what the local store holds, in memory; the local journal follows).</summary>
    long AppliedSequence { get; }

    /// <summary>The cell version applied so far.</summary>
    long AppliedVersion { get; }

    /// <summary>The sequence the local journal has made durable on this replica's disk (a restart resumes after it).</summary>
    long LocalDurableSequence { get; }

    /// <summary>What opening the local store found.</summary>
    RecoveryReport Recovery { get; }

    /// <summary>
    /// Applies one group from the replicated log (the element stream <see cref="IJournalReplicator.Replicate"/> was
    /// given). Elements at or below <see cref="AppliedSequence"/> are skipped; a gap throws <see cref="InvalidDataException"/>.
    /// Single-threaded with <see cref="Promote"/>.
    /// </summary>
    void Apply(ReadOnlySpan<byte> group);

    /// <summary>
    /// Completes the cell from everything applied, and replicates every later group through <paramref name="replicator"/>
    /// (null: none; for tests of the local store). Returns the store as an <see cref="ICellStore"/>.
    /// </summary>
    ICellStore Promote(IJournalReplicator? replicator);

    /// <summary>Applies the local journal to the local store, checkpoints it and truncates the local journal.</summary>
    ValueTask CheckpointAsync(CancellationToken cancellationToken = default);

    /// <summary>This replica's data directory.</summary>
    string DataDirectory { get; }

    /// <summary>
    /// Writes a snapshot of the store of record (<see cref="ReplicaSnapshot"/>, docs/protocol.md "Replica snapshots") to
    /// <paramref name="destination"/> (seekable), after applying the local journal to it, and returns its position. Holds
    /// the store's checkpoint lock for the copy (checkpoints wait; commits do not). For a leader serving a new replica.
    /// </summary>
    (long Sequence, long CellVersion) WriteSnapshot(Stream destination);
}
