using Etcdserverpb;
using Google.Protobuf;
using Omega.Storage;
using Xunit.Abstractions;

using static Omega.Replication.Tests.TestWait;

namespace Omega.Replication.Tests;

/// <summary>
/// A replica restarted on its data directory revokes the etcd lease its dead predecessor left (docs/high-availability.md,
/// "A restarted replica revokes its predecessor's lease"), so a crashed leader that its supervisor restarts hands the
/// election over at once instead of after the lease's TTL.
/// </summary>
[Collection(EtcdCollection.Name)]
public sealed class PredecessorLeaseTests : IAsyncLifetime
{
    private readonly EtcdCluster _etcd;
    private readonly ITestOutputHelper _out;
    private readonly string _cluster = "p" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<ReplicaNode> _nodes = new();
    private readonly List<ICellStore> _promoted = new();
    private readonly List<string> _dirs = new();

    public PredecessorLeaseTests(EtcdCluster etcd, ITestOutputHelper output)
    {
        _etcd = etcd;
        _out = output;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var n in _nodes) await n.DisposeAsync();
        foreach (var s in _promoted) s.Dispose();
        foreach (var d in _dirs)
        {
            try
            {
                Directory.Delete(d, true);
            }
            catch (IOException)
            {
                // best effort
            }
        }
    }

    private async Task<ReplicaNode> StartReplica(string name, string dir)
    {
        var o = new ReplicationOptions { Cluster = _cluster, ReplicaName = name, AdvertiseAddress = $"127.0.0.1:{20000 + name[0]}", PollInterval = TimeSpan.FromMilliseconds(50), LeaseTtlSeconds = 5 };
        foreach (var e in _etcd.Endpoints) o.Endpoints.Add(e);
        var node = new ReplicaNode(o, new StorageOptions { DataDirectory = dir, GroupCommitWindow = TimeSpan.FromMilliseconds(1), CheckpointInterval = null });
        _nodes.Add(node);
        await node.StartAsync();
        return node;
    }

    private string NewDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-pred-" + Guid.NewGuid().ToString("N")[..8]);
        _dirs.Add(dir);
        return dir;
    }

    [Fact]
    public async Task A_replica_restarted_on_a_dead_leaders_directory_revokes_its_lease_and_the_election_goes_on_long_before_the_TTL()
    {
        using var etcd = _etcd.Client();
        // The dead predecessor: it led with a 120 s lease (its election key attached to it, written exactly as a campaign
        // writes it) and recorded the lease in its data directory, then died. Nothing renews the lease; without the
        // revocation the key would stay for 120 s and nobody could lead before then.
        string dirA = NewDir();
        Directory.CreateDirectory(dirA);
        long ghost = (await etcd.LeaseGrantAsync(new LeaseGrantRequest { TTL = 120 })).ID;
        var key = ByteString.CopyFromUtf8($"/omega/{_cluster}/leader");
        await etcd.PutAsync(new PutRequest { Key = key, Value = ByteString.CopyFromUtf8("a\n127.0.0.1:1"), Lease = ghost });
        await File.WriteAllTextAsync(Path.Combine(dirA, ReplicaNode.LeaseFileName), ghost.ToString(System.Globalization.CultureInfo.InvariantCulture));

        // A standby sees the dead leader and cannot win.
        var b = await StartReplica("b", NewDir());
        await Until(() => b.Gate.LeaderAddress == "127.0.0.1:1", TimeSpan.FromSeconds(20), "b to see the dead leader's key");
        Assert.False(b.Leadership.IsCompleted);

        // Its supervisor restarts it on its directory: the new process holds the directory's lock, so the lease it finds
        // there belongs to a dead process, and it revokes it. One of the two replicas leads well before the 120 s TTL.
        var a = await StartReplica("a", dirA);
        var won = await Task.WhenAny(a.Leadership, b.Leadership).WaitAsync(TimeSpan.FromSeconds(30));
        _promoted.Add(await won);
        var ttl = await etcd.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = ghost });
        Assert.Equal(-1, ttl.TTL); // revoked: etcd no longer knows it
        var leader = won == a.Leadership ? a : b;
        var kv = (await etcd.GetAsync(new RangeRequest { Key = key })).Kvs.Single();
        Assert.Equal(leader.Epoch, kv.CreateRevision);
        Assert.Equal(leader.LeaseId, kv.Lease);
        _out.WriteLine($"{leader.Name} leads at epoch {leader.Epoch}; the predecessor's lease {ghost} was revoked");

        // The new process recorded its own lease for its successor.
        await Until(() => File.ReadAllText(Path.Combine(dirA, ReplicaNode.LeaseFileName)).Trim() == a.LeaseId.ToString(System.Globalization.CultureInfo.InvariantCulture) && a.LeaseId != 0,
            TimeSpan.FromSeconds(20), "a to record its own lease in its directory");
        Assert.NotNull(leader.Gate.Timeline);
        Assert.True(leader.Gate.Timeline!.WonUtc <= leader.Gate.Timeline.PromotedUtc);
    }
}
