using Omega.Server;
using Omega.Storage;

namespace Omega.Replication;

/// <summary>
/// Serves replica snapshots (docs/protocol.md, "Replica snapshots") from the leader's store: the host sets it as
/// <see cref="ServerOptions.Snapshots"/> of the leader's server. Files go to <c>DATA/snapshots/</c>.
/// </summary>
public sealed class ReplicaSnapshotSource : ISnapshotSource
{
    private readonly IReplicaStore _store;

    /// <summary>Serves snapshots of <paramref name="store"/> (the promoted replica store of the leader).</summary>
    public ReplicaSnapshotSource(IReplicaStore store)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        Directory = Path.Combine(store.DataDirectory, "snapshots");
    }

    /// <inheritdoc />
    public string Directory { get; }

    /// <inheritdoc />
    public (long Sequence, long CellVersion) WriteSnapshot(Stream destination) => _store.WriteSnapshot(destination);
}
