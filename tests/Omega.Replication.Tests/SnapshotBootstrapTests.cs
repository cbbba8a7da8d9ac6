using System.Diagnostics;
using System.Net;
using Etcdserverpb;
using Google.Protobuf;
using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Storage;
using Xunit.Abstractions;

using static Omega.Replication.Tests.TestWait;

namespace Omega.Replication.Tests;

/// <summary>
/// Snapshot bootstrap (issue 16; docs/protocol.md, "Replica snapshots"): a replica started after the log in etcd was
/// trimmed past its (empty) store pulls a snapshot from the leader over the Omega protocol, verifies and installs it,
/// tails etcd from its sequence, and can take over with every acknowledged commit.
/// </summary>
[Collection(EtcdCollection.Name)]
public sealed class SnapshotBootstrapTests : IAsyncLifetime
{
    private readonly EtcdCluster _etcd;
    private readonly ITestOutputHelper _out;
    private readonly string _cluster = "s" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<ReplicaNode> _nodes = new();
    private readonly List<ICellStore> _promoted = new();
    private readonly List<OmegaServer> _servers = new();
    private readonly List<string> _dirs = new();

    public SnapshotBootstrapTests(EtcdCluster etcd, ITestOutputHelper output)
    {
        _etcd = etcd;
        _out = output;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var s in _servers) await s.DisposeAsync();
        foreach (var n in _nodes) await n.DisposeAsync();
        foreach (var s in _promoted) s.Dispose();
        foreach (var d in _dirs)
        {
            foreach (var dir in new[] { d, d + ".installing", d + ".replaced" })
            {
                try
                {
                    if (Directory.Exists(dir)) Directory.Delete(dir, true);
                }
                catch (IOException)
                {
                    // best effort
                }
            }
        }
    }

    private async Task<ReplicaNode> StartReplica(string name, int port, Action<ReplicationOptions>? configure = null)
    {
        // Trim hard: keep 2 entries behind the leader, at most 5, every 200 ms, so that a few dozen commits put the log's
        // start far past sequence 1. A 5 s lease, as in ReplicationTests (the leader resigns explicitly below).
        var o = new ReplicationOptions
        {
            Cluster = _cluster, ReplicaName = name, AdvertiseAddress = $"127.0.0.1:{port}", PollInterval = TimeSpan.FromMilliseconds(50), LeaseTtlSeconds = 5,
            RetainEntries = 2, MaxRetainEntries = 5, TrimInterval = TimeSpan.FromMilliseconds(200), ProgressInterval = TimeSpan.FromMilliseconds(100),
        };
        foreach (var e in _etcd.Endpoints) o.Endpoints.Add(e);
        configure?.Invoke(o);
        string dir = Path.Combine(Path.GetTempPath(), "omega-snap-" + Guid.NewGuid().ToString("N")[..8]);
        _dirs.Add(dir);
        var node = new ReplicaNode(o, new StorageOptions { DataDirectory = dir, GroupCommitWindow = TimeSpan.FromMilliseconds(1), CheckpointInterval = null });
        _nodes.Add(node);
        await node.StartAsync();
        return node;
    }

    private static Transaction Bind(SchedulerLease lease, NodeId node, int i)
    {
        var tx = new Transaction(lease).Add(new Claim(new TaskId(i, 0), node, new ResourceVector(10, 1 << 20), 0));
        tx.Key = new IdempotencyKey(9, (ulong)i + 1);
        return tx;
    }

    /// <summary>The leader <paramref name="a"/> serving over TCP on <paramref name="port"/>, with authentication on.</summary>
    private OmegaServer Serve(ReplicaNode a, ICellStore store, int port)
    {
        var server = new OmegaServer(store.Cell, null, new IPEndPoint(IPAddress.Loopback, port), new ServerOptions
        {
            Name = a.Name, Leadership = a.Gate, Snapshots = new ReplicaSnapshotSource(a.Store), Authentication = new AuthOptions(),
            Publisher = null, LifecyclePeriod = null,
        });
        _servers.Add(server);
        server.Start();
        return server;
    }

    private async Task<long> LogStart()
    {
        using var c = _etcd.Client();
        var r = await c.GetAsync(new RangeRequest { Key = ByteString.CopyFromUtf8($"/omega/{_cluster}/log/"), RangeEnd = ByteString.CopyFromUtf8($"/omega/{_cluster}/log0"), Limit = 1, KeysOnly = true });
        if (r.Kvs.Count == 0) return 0;
        string key = r.Kvs[0].Key.ToStringUtf8();
        return long.Parse(key[^19..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_replica_started_after_the_log_was_trimmed_catches_up_by_snapshot_and_takes_over_with_every_acknowledged_commit()
    {
        var ports = EtcdCluster.FreePorts(2);
        ReplicationOptions? aOptions = null;
        var a = await StartReplica("a", ports[0], o => aOptions = o);
        var aStore = await a.Leadership.WaitAsync(TimeSpan.FromSeconds(30));
        _promoted.Add(aStore);
        var server = Serve(a, aStore, ports[0]);
        // The replica's credential: an operator with the admin scope (a snapshot holds every credential's hash).
        string replicaToken = server.Auth.CreateCredential(CredentialRole.Operator, "replica", OperatorScopes.Admin, createdBy: "test");
        string readOnlyToken = server.Auth.CreateCredential(CredentialRole.Operator, "viewer", OperatorScopes.Read, createdBy: "test");
        var node = aStore.Cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000, 1L << 40)));
        var lease = aStore.Cell.AcquireLease("sched", TimeSpan.FromMinutes(10)).Lease;
        var acked = new List<int>();
        // One commit per group, so one log entry each: 60 entries, of which the trim keeps at most 5.
        for (int i = 0; i < 60; i++)
        {
            var r = await aStore.CommitDurableAsync(Bind(lease, node, i)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(TransactionStatus.Committed, r.Status);
            acked.Add(i);
        }
        long start = 0;
        var trimClock = Stopwatch.StartNew();
        while ((start = await LogStart()) <= 30)
        {
            if (trimClock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"the leader did not trim the log past sequence 30 in 60 s (it starts at {start})");
            await Task.Delay(50);
        }
        _out.WriteLine($"log in etcd starts at sequence {start}; leader at {aStore.DurableSequence}");

        // Without the admin scope the leader refuses (and nothing is held for it).
        await using (var viewer = await ControlClient.ConnectAsync(server.EndPoint, null, "viewer", readOnlyToken))
        {
            var denied = await Assert.ThrowsAsync<AgentRequestException>(() => viewer.BeginSnapshotAsync("viewer", 0));
            Assert.Equal(ErrorCode.PermissionDenied, denied.Code);
        }

        // A new replica on an empty directory: its sequence 1 is long gone from etcd.
        var c = await StartReplica("c", ports[1], o => o.SnapshotToken = replicaToken);
        await Until(() => c.SnapshotsInstalled >= 1, TimeSpan.FromSeconds(90), "c to install a snapshot from the leader");
        Assert.True(c.Store.AppliedSequence >= start - 1, $"c installed sequence {c.Store.AppliedSequence}, the log starts at {start}");
        Assert.False(c.Gate.IsLeader);

        // It tails etcd from the snapshot's sequence: later commits reach it through the log.
        // From here the leader keeps the log (the options are read at every trim): with at most 5 entries kept, the
        // commits below could be trimmed past c before its next poll on a loaded machine, and c would then rightly
        // bootstrap a second time instead of tailing (CI saw it). Three transactions of ten claims: three log entries.
        aOptions!.MaxRetainEntries = 100_000;
        aOptions.RetainEntries = 100_000;
        for (int batch = 0; batch < 3; batch++)
        {
            var tx = new Transaction(lease);
            for (int i = 60 + (batch * 10); i < 70 + (batch * 10); i++) tx.Add(new Claim(new TaskId(i, 0), node, new ResourceVector(10, 1 << 20), 0));
            tx.Key = new IdempotencyKey(9, 1000 + (ulong)batch);
            var r = await aStore.CommitDurableAsync(tx).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(TransactionStatus.Committed, r.Status);
            for (int i = 60 + (batch * 10); i < 70 + (batch * 10); i++) acked.Add(i);
        }
        long leaderSeq = aStore.DurableSequence;
        await Until(() => c.Store.AppliedSequence >= leaderSeq, TimeSpan.FromSeconds(60), "c to apply the leader's later log");
        Assert.Equal(aStore.Cell.Version, c.Store.AppliedVersion);
        Assert.Equal(1, c.SnapshotsInstalled);

        // The leader resigns; c takes over with every acknowledged commit, and the credentials came with the snapshot.
        await server.DisposeAsync();
        _servers.Remove(server);
        await a.ResignAsync();
        var cStore = await c.Leadership.WaitAsync(TimeSpan.FromSeconds(30));
        _promoted.Add(cStore);
        Assert.Equal(acked.Count, cStore.Cell.AllocationCount);
        foreach (int i in acked) Assert.True(cStore.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"acknowledged binding {i} lost");
        Assert.Equal(aStore.Cell.AuthRecordCount, cStore.Cell.AuthRecordCount);
        var more = await cStore.CommitDurableAsync(Bind(cStore.Cell.AcquireLease("sched-c", TimeSpan.FromMinutes(5)).Lease, node, 500)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(TransactionStatus.Committed, more.Status);
    }
}
