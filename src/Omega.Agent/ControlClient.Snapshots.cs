using Omega.Protocol;

namespace Omega.Agent;

/// <summary>A replica snapshot the leader holds (SnapshotBegin; docs/protocol.md, "Replica snapshots").</summary>
/// <param name="Id">The snapshot's id, for <see cref="ControlClient.ReadSnapshotAsync"/>.</param>
/// <param name="Sequence">The journal sequence it holds everything up to.</param>
/// <param name="CellVersion">The cell version after that record.</param>
/// <param name="TotalBytes">The snapshot file's length.</param>
/// <param name="Sha256">SHA-256 of the whole file (32 bytes).</param>
/// <param name="ChunkBytes">The largest chunk one read returns.</param>
/// <param name="Format">The snapshot file format (1).</param>
/// <param name="Epoch">The serving leader's fencing epoch (0 outside high availability).</param>
public sealed record SnapshotDescriptor(long Id, long Sequence, long CellVersion, long TotalBytes, byte[] Sha256, int ChunkBytes, int Format, long Epoch);

// Replica snapshots (issue 16, protocol version 5): a new or far-behind replica pulls the leader's snapshot in chunks.
public sealed partial class ControlClient
{
    /// <summary>
    /// Asks the server (the leader) for a replica snapshot; completes once the server wrote it. Needs an operator
    /// credential with the admin scope. Throws <see cref="AgentRequestException"/> with SnapshotUnavailable,
    /// SnapshotBusy, PermissionDenied, NotLeader or NoLeader.
    /// </summary>
    public async Task<SnapshotDescriptor> BeginSnapshotAsync(string replica, long appliedSequence, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new SnapshotRequest { Replica = replica ?? "", AppliedSequence = appliedSequence }, cancellationToken).ConfigureAwait(false);
        var r = Expect<SnapshotBegin>(t, b);
        if (r.Snapshot <= 0 || r.TotalBytes < 0 || r.ChunkBytes <= 0 || r.Sha256.Length != SnapshotBegin.DigestLength)
            throw new AgentRequestException(ErrorCode.MalformedBody, "SnapshotBegin: invalid id, length, chunk size or digest");
        return new SnapshotDescriptor(r.Snapshot, r.Sequence, r.CellVersion, r.TotalBytes, r.Sha256, r.ChunkBytes, r.Format, r.Epoch);
    }

    /// <summary>
    /// Reads the chunk of snapshot <paramref name="snapshot"/> at <paramref name="offset"/> (empty at the end). Several
    /// reads may be in flight at once. Throws <see cref="AgentRequestException"/> with UnknownSnapshot when the server no
    /// longer holds it (start over), or when the reply is for another offset.
    /// </summary>
    public async Task<ReadOnlyMemory<byte>> ReadSnapshotAsync(long snapshot, long offset, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new SnapshotReadRequest { Snapshot = snapshot, Offset = offset }, cancellationToken).ConfigureAwait(false);
        var r = Expect<SnapshotChunk>(t, b);
        if (r.Snapshot != snapshot || r.Offset != offset)
            throw new AgentRequestException(ErrorCode.MalformedBody, $"SnapshotChunk for snapshot {r.Snapshot} at {r.Offset}, asked {snapshot} at {offset}");
        return r.Data;
    }
}
