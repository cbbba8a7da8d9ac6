using Microsoft.Extensions.Logging;

namespace Omega.Replication;

/// <summary>The replication log events (event ids 1300-1319 and 1320-1339 belong to Omega.Replication).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1300, EventName = "ReplicaOpened", Level = LogLevel.Information,
        Message = "Replica {Replica} of cluster {Cluster}: local store at sequence {Sequence} (v{Version}); tailing the log in etcd")]
    public static partial void ReplicaOpened(ILogger logger, string replica, string cluster, long sequence, long version);

    [LoggerMessage(EventId = 1301, EventName = "LeaderObserved", Level = LogLevel.Information,
        Message = "Replica {Replica}: the leader is {Leader} at {Address} (epoch {Epoch})")]
    public static partial void LeaderObserved(ILogger logger, string replica, string leader, string address, long epoch);

    [LoggerMessage(EventId = 1302, EventName = "Elected", Level = LogLevel.Information,
        Message = "Replica {Replica} won the election: epoch {Epoch}; caught up to sequence {Sequence} (v{Version}) in {CatchUpMs:0.0} ms; leading")]
    public static partial void Elected(ILogger logger, string replica, long epoch, long sequence, long version, double catchUpMs);

    [LoggerMessage(EventId = 1303, EventName = "Deposed", Level = LogLevel.Error,
        Message = "Replica {Replica} lost the leadership of epoch {Epoch}: {Reason}")]
    public static partial void Deposed(ILogger logger, string replica, long epoch, string reason);

    [LoggerMessage(EventId = 1304, EventName = "SessionLost", Level = LogLevel.Warning,
        Message = "Replica {Replica}: etcd session (lease {Lease}) lost: {Reason}")]
    public static partial void SessionLost(ILogger logger, string replica, long lease, string reason);

    [LoggerMessage(EventId = 1305, EventName = "Trimmed", Level = LogLevel.Debug,
        Message = "Replica {Replica}: trimmed the log below sequence {Below} ({Deleted} entries)")]
    public static partial void Trimmed(ILogger logger, string replica, long below, long deleted);

    [LoggerMessage(EventId = 1306, EventName = "Compacted", Level = LogLevel.Debug,
        Message = "Replica {Replica}: compacted etcd to revision {Revision}")]
    public static partial void Compacted(ILogger logger, string replica, long revision);

    [LoggerMessage(EventId = 1307, EventName = "EtcdError", Level = LogLevel.Warning,
        Message = "Replica {Replica}: etcd {Operation} failed: {Error}")]
    public static partial void EtcdError(ILogger logger, string replica, string operation, string error);

    [LoggerMessage(EventId = 1308, EventName = "TailFailed", Level = LogLevel.Error,
        Message = "Replica {Replica}: cannot follow the log: {Error}")]
    public static partial void TailFailed(ILogger logger, string replica, string error);

    [LoggerMessage(EventId = 1309, EventName = "SnapshotNeeded", Level = LogLevel.Warning,
        Message = "Replica {Replica} is behind the trimmed log ({Reason}); asking the leader at {Leader} for a snapshot")]
    public static partial void SnapshotNeeded(ILogger logger, string replica, string reason, string leader);

    [LoggerMessage(EventId = 1310, EventName = "SnapshotInstalled", Level = LogLevel.Information,
        Message = "Replica {Replica} installed snapshot {Snapshot} from {Leader}: sequence {Sequence} (v{Version}), {Bytes} bytes, SHA-256 checked, in {Ms:0} ms; tailing the log from it")]
    public static partial void SnapshotInstalled(ILogger logger, string replica, long snapshot, string leader, long sequence, long version, long bytes, double ms);

    [LoggerMessage(EventId = 1311, EventName = "SnapshotFailed", Level = LogLevel.Warning,
        Message = "Replica {Replica}: snapshot from {Leader} failed, retrying: {Error}")]
    public static partial void SnapshotFailed(ILogger logger, string replica, string leader, string error);

    [LoggerMessage(EventId = 1312, EventName = "SnapshotNoLeader", Level = LogLevel.Information,
        Message = "Replica {Replica} is behind the trimmed log and no leader is known yet to send a snapshot; waiting")]
    public static partial void SnapshotNoLeader(ILogger logger, string replica);

    [LoggerMessage(EventId = 1313, EventName = "LagBeyondBound", Level = LogLevel.Warning,
        Message = "Replica {Replica} is {Lag} records behind the log's end, beyond the bound of {Bound}: not a candidate; asking the leader for a snapshot instead of replaying")]
    public static partial void LagBeyondBound(ILogger logger, string replica, long lag, long bound);

    // ---- ha16 (issue 16, round 9): 1324-1339 ----
    [LoggerMessage(EventId = 1324, EventName = "TakeoverSteps", Level = LogLevel.Warning,
        Message = "Replica {Replica} takeover of epoch {Epoch} (UTC): election key last seen held {LastSeenHeld}, won {Won}, caught up in {CatchUpMs:0} ms ({Records} records), promoted in {PromoteMs:0} ms")]
    public static partial void TakeoverSteps(ILogger logger, string replica, long epoch, string lastSeenHeld, string won, double catchUpMs, long records, double promoteMs);

    [LoggerMessage(EventId = 1325, EventName = "PredecessorLeaseRevoked", Level = LogLevel.Warning,
        Message = "Replica {Replica} revoked lease {Lease} of the previous process on its data directory (dead: the directory's lock was free), so its election key, if it led, is free now")]
    public static partial void PredecessorLeaseRevoked(ILogger logger, string replica, long lease);

    [LoggerMessage(EventId = 1326, EventName = "PredecessorLeaseNotRevoked", Level = LogLevel.Information,
        Message = "Replica {Replica}: lease {Lease} of the previous process on its data directory was not revoked: {Error}")]
    public static partial void PredecessorLeaseNotRevoked(ILogger logger, string replica, long lease, string error);
}
