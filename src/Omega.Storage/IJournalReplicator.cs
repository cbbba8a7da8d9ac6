namespace Omega.Storage;

/// <summary>
/// Where a replicated store's journal groups become durable (high availability, issue 16): the group-commit thread hands
/// every group to the replicator BEFORE it writes the group to the local journal, and advances the durable watermark
/// (<see cref="ICellStore.DurableSequence"/>, <see cref="ICellStore.DurableVersion"/>) only when the replicator returns.
/// </summary>
/// <remarks>
/// <para>Why replicate first and write locally second: a group the replicated log refused (a deposed leader is fenced)
/// must never be in the local journal either, or this replica's store would hold records no other replica has. The
/// other order (local first) could leave such a divergent tail behind. With this order the local journal is always a
/// prefix of the replicated log.</para>
/// <para>The call blocks the single group-commit thread, so one group is replicated at a time while the next one fills
/// (group commit amortises the round trip). Local FasterLog commits of earlier groups may still be flushing meanwhile
/// (<see cref="StorageOptions.GroupCommitMaxInflight"/>); a group is acknowledged only when both are done. A throw fails the journal for good: the waiters of the group and of every later
/// one get an <see cref="IOException"/>, so nothing after the last replicated group is ever acknowledged.</para>
/// </remarks>
public interface IJournalReplicator
{
    /// <summary>
    /// Makes one group durable in the replicated log and returns once it is (a quorum committed it); throws when it
    /// cannot be (fenced, unavailable past the deadline).
    /// </summary>
    /// <param name="group">The group's element stream: each element (a record or a batch frame) as <c>length:u32 LE</c> then its bytes.</param>
    /// <param name="firstSequence">The journal sequence of the group's first record.</param>
    /// <param name="lastSequence">The journal sequence of the group's last record.</param>
    /// <param name="lastCellVersion">The cell version after the group's last record.</param>
    void Replicate(ReadOnlySpan<byte> group, long firstSequence, long lastSequence, long lastCellVersion);
}
