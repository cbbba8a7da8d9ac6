using dotnet_etcd;
using Etcdserverpb;

namespace Omega.Replication;

/// <summary>What one etcd member reports about its backend (etcd's Status and Alarm calls).</summary>
/// <param name="Endpoint">The member's client URL.</param>
/// <param name="DbSize">The backend file's size in bytes (what the space quota counts).</param>
/// <param name="DbSizeInUse">Bytes of it in use; the rest is free pages only a defragmentation gives back.</param>
/// <param name="Revision">The member's current revision.</param>
/// <param name="IsRaftLeader">True when this member is etcd's raft leader.</param>
/// <param name="Alarms">Active alarms (e.g. NOSPACE) on the cluster, as etcd names them; empty when none.</param>
public sealed record EtcdMemberStatus(string Endpoint, long DbSize, long DbSizeInUse, long Revision, bool IsRaftLeader, IReadOnlyList<string> Alarms);

/// <summary>
/// etcd maintenance for operators and the soak runner (docs/high-availability.md, "etcd's space"): a member's backend
/// size and alarms, and defragmentation. The replicas compact etcd themselves; defragmentation blocks the member it runs
/// on for its duration, so it is left to the operator (one member at a time), as etcd's own documentation advises.
/// </summary>
public static class EtcdMaintenance
{
    /// <summary>The status of the member at <paramref name="endpoint"/> (one client URL).</summary>
    public static async Task<EtcdMemberStatus> StatusAsync(string endpoint, CancellationToken cancellationToken = default)
    {
        using var c = new EtcdClient(endpoint);
        var s = await c.StatusAsync(new StatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken).ConfigureAwait(false);
        var a = await c.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Get }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken).ConfigureAwait(false);
        var alarms = new List<string>();
        foreach (var m in a.Alarms) alarms.Add($"{m.Alarm} on member {m.MemberID:x}");
        return new EtcdMemberStatus(endpoint, s.DbSize, s.DbSizeInUse, s.Header.Revision, s.Leader == s.Header.MemberId, alarms);
    }

    /// <summary>Defragments the member at <paramref name="endpoint"/> (it serves nothing meanwhile); returns how long it took.</summary>
    public static async Task<TimeSpan> DefragmentAsync(string endpoint, CancellationToken cancellationToken = default)
    {
        using var c = new EtcdClient(endpoint);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await c.DefragmentAsync(new DefragmentRequest(), deadline: DateTime.UtcNow.AddMinutes(5), cancellationToken: cancellationToken).ConfigureAwait(false);
        return clock.Elapsed;
    }
}
