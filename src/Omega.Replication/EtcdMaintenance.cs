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

    /// <summary>
    /// Defragments the member at <paramref name="endpoint"/> (it serves nothing meanwhile), whatever its role; returns how
    /// long it took. Prefer <see cref="DefragmentMemberAsync"/>, which never defragments the raft leader.
    /// </summary>
    public static async Task<TimeSpan> DefragmentAsync(string endpoint, CancellationToken cancellationToken = default)
    {
        using var c = new EtcdClient(endpoint);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await c.DefragmentAsync(new DefragmentRequest(), deadline: DateTime.UtcNow.AddMinutes(5), cancellationToken: cancellationToken).ConfigureAwait(false);
        return clock.Elapsed;
    }

    /// <summary>
    /// Defragments the member at <paramref name="endpoint"/> the safe way (docs/high-availability.md, "etcd's space"):
    /// when it is etcd's raft leader, leadership is first moved to another member of <paramref name="endpoints"/>, and
    /// the defragmentation waits until it has moved. Returns how long the defragmentation itself took.
    /// </summary>
    /// <remarks>
    /// Why: a defragmentation holds the member's backend for seconds (2.5-3.3 s measured at a 170 MB backend), and etcd's
    /// raft leader waits for its apply to catch up before it renews a lease; every member forwards lease renewals to the
    /// raft leader. So defragmenting the raft leader holds every replica's keepalive for that long, and a 2 s lease
    /// lapses (the round-7 soak's depositions). A defragmented follower delays nobody's renewal: the replicas keep a
    /// keepalive stream to every member. Run it for one member at a time, never concurrently.
    /// </remarks>
    /// <param name="endpoints">Every member's client URL (the candidates to take the raft leadership).</param>
    /// <param name="endpoint">The member to defragment (one of <paramref name="endpoints"/>).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    public static async Task<TimeSpan> DefragmentMemberAsync(IReadOnlyList<string> endpoints, string endpoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        using (var c = new EtcdClient(endpoint))
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                var s = await c.StatusAsync(new StatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken).ConfigureAwait(false);
                if (s.Leader != s.Header.MemberId) break;
                ulong target = 0;
                foreach (var other in endpoints)
                {
                    if (string.Equals(other, endpoint, StringComparison.Ordinal)) continue;
                    try
                    {
                        using var o = new EtcdClient(other);
                        var os = await o.StatusAsync(new StatusRequest(), deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: cancellationToken).ConfigureAwait(false);
                        target = os.Header.MemberId;
                        break;
                    }
                    catch (Grpc.Core.RpcException)
                    {
                        // that member is down: try the next
                    }
                }
                if (target == 0) throw new InvalidOperationException($"etcd member {endpoint} is the raft leader and no other member answers: not defragmenting it");
                await c.MoveLeaderAsync(new MoveLeaderRequest { TargetID = target }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken).ConfigureAwait(false);
                if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException($"etcd member {endpoint} is still the raft leader after 30 s of moving the leadership away");
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
            }
        }
        return await DefragmentAsync(endpoint, cancellationToken).ConfigureAwait(false);
    }
}
