using Omega.Cells;

namespace Omega.Storage;

/// <summary>Opens cell stores.</summary>
public static class CellStore
{
    /// <summary>
    /// Opens (creating it if needed) the durable store in <see cref="StorageOptions.DataDirectory"/> and recovers the cell:
    /// the current checkpoint, then the journal after it. Throws <see cref="StorageCorruptionException"/> naming the file
    /// when a checkpoint or the middle of the journal is damaged; a torn final journal chunk is discarded with a warning.
    /// Throws <see cref="StorageLockedException"/> when another process has the directory open.
    /// </summary>
    public static ICellStore Open(StorageOptions? options = null) => FasterCellStore.Open(options ?? new StorageOptions());

    /// <summary>
    /// Opens (creating it if needed) a replica's local store as a standby of a replicated cell (issue 16): recovered like
    /// <see cref="Open"/>, but the cell is built only at <see cref="IReplicaStore.Promote"/>.
    /// </summary>
    public static IReplicaStore OpenReplica(StorageOptions options) => FasterCellStore.Open(options, follower: true);

    /// <summary>
    /// Installs a replica snapshot (<see cref="ReplicaSnapshot"/>, read whole from <paramref name="snapshot"/>) into
    /// <see cref="StorageOptions.DataDirectory"/>, which must not hold a store yet: the entries become the store of
    /// record, checkpointed at the snapshot's sequence and version, with an empty journal after it. Returns that position.
    /// Open the directory afterwards with <see cref="OpenReplica"/> (issue 16: a new or far-behind replica).
    /// Throws <see cref="InvalidDataException"/> for a malformed snapshot.
    /// </summary>
    public static (long Sequence, long CellVersion) InstallSnapshot(StorageOptions options, Stream snapshot)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(snapshot);
        var store = FasterCellStore.Open(options, follower: true);
        try
        {
            return store.LoadSnapshot(snapshot);
        }
        finally
        {
            store.Dispose();
        }
    }

    /// <summary>An in-memory store behind the same interface: nothing persists, everything is durable at once.</summary>
    public static ICellStore InMemory(CellOptions? options = null) => new InMemoryCellStore(options);
}
