namespace Omega.Replication;

/// <summary>
/// When each step of one takeover happened (UTC wall clock, so a driver on the same machine can line it up with the
/// moment it killed the old leader): docs/high-availability.md, "How long a takeover takes". A takeover is: the old
/// leader's lease lapses or is revoked (etcd deletes the election key), this replica's campaign finds the key free and
/// wins (<see cref="WonUtc"/>), it replays the log's tail (<see cref="CaughtUpUtc"/>), promotes its store, flushing its
/// local journal (<see cref="PromotedUtc"/>), and the host starts the serving stack over it.
/// </summary>
/// <param name="LastSeenHeldUtc">The last time before winning that this replica saw the election key held by another
/// replica (<see cref="DateTime.MinValue"/> when it never did): the key disappeared between this and <see cref="WonUtc"/>,
/// so the difference bounds how late the standby noticed.</param>
/// <param name="WonUtc">The campaign transaction succeeded (the epoch began).</param>
/// <param name="CaughtUpUtc">The tail up to the log's end was applied.</param>
/// <param name="PromotedUtc">The store was promoted and the gate opened: commits can be acknowledged once the host's stack runs.</param>
/// <param name="RecordsReplayed">Journal records applied during the catch-up.</param>
public sealed record TakeoverTimeline(DateTime LastSeenHeldUtc, DateTime WonUtc, DateTime CaughtUpUtc, DateTime PromotedUtc, long RecordsReplayed);
