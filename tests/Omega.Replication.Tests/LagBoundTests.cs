using System.Diagnostics;
using System.Net;
using Etcdserverpb;
using Google.Protobuf;
using Omega.Cells;
using Omega.Server;
using Omega.Storage;
using Xunit.Abstractions;

using static Omega.Replication.Tests.TestWait;

namespace Omega.Replication.Tests;

/// <summary>
/// The standby lag bound (issue 16; <see cref="ReplicationOptions.MaxStandbyLagRecords"/>): a standby further behind the
/// log's end than the bound bootstraps from the leader's snapshot instead of replaying the tail, even when the log was
/// never trimmed past it; with no leader it replays the (then static) log and leads once within the bound.
/// </summary>
[Collection(EtcdCollection.Name)]
public sealed class LagBoundTests : IAsyncLifetime
{
    private readonly EtcdCluster _etcd;
    private readonly ITestOutputHelper _out;
    private readonly string _cluster = "l" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<ReplicaNode> _nodes = new();
    private readonly List<ICellStore> _promoted = new();
    private readonly List<OmegaServer> _servers = new();
    private readonly List<string> _dirs = new();

    public LagBoundTests(EtcdCluster etcd, ITestOutputHelper output)
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
        // The log is never trimmed here (everything retained): what sends a standby to a snapshot is its lag alone. One
        // page of 64 entries per tail round, so a standby looks at its lag after its first page. A 5 s lease as in
        // ReplicationTests (the leader resigns explicitly).
        var o = new ReplicationOptions
        {
            Cluster = _cluster, ReplicaName = name, AdvertiseAddress = $"127.0.0.1:{port}", PollInterval = TimeSpan.FromMilliseconds(50), LeaseTtlSeconds = 5,
            RetainEntries = 100_000, MaxRetainEntries = 100_000, MaxStandbyLagRecords = 30, TailPagesPerRound = 1,
            // This test is about the lag, not about etcd's latency: a write slowed past the product's 5 s by a loaded
            // machine must not depose the leader (CI's 2 cores run every test project at once).
            ShipTimeout = TimeSpan.FromSeconds(30),
        };
        foreach (var e in _etcd.Endpoints) o.Endpoints.Add(e);
        configure?.Invoke(o);
        string dir = Path.Combine(Path.GetTempPath(), "omega-lag-" + Guid.NewGuid().ToString("N")[..8]);
        _dirs.Add(dir);
        var node = new ReplicaNode(o, new StorageOptions { DataDirectory = dir, GroupCommitWindow = TimeSpan.FromMilliseconds(1), CheckpointInterval = null });
        _nodes.Add(node);
        await node.StartAsync();
        return node;
    }

    private static Transaction Bind(SchedulerLease lease, NodeId node, int i)
    {
        var tx = new Transaction(lease).Add(new Claim(new TaskId(i, 0), node, new ResourceVector(10, 1 << 20), 0));
        tx.Key = new IdempotencyKey(11, (ulong)i + 1);
        return tx;
    }

    /// <summary>A replica's applied sequence; -1 while a snapshot install swaps its store (Store throws then).</summary>
    private static long Applied(ReplicaNode n)
    {
        try
        {
            return n.Store.AppliedSequence;
        }
        catch (InvalidOperationException)
        {
            return -1;
        }
    }

    private async Task<long> LogStart()
    {
        using var c = _etcd.Client();
        var r = await c.GetAsync(new RangeRequest { Key = ByteString.CopyFromUtf8($"/omega/{_cluster}/log/"), RangeEnd = ByteString.CopyFromUtf8($"/omega/{_cluster}/log0"), Limit = 1, KeysOnly = true });
        if (r.Kvs.Count == 0) return 0;
        string key = r.Kvs[0].Key.ToStringUtf8();
        return long.Parse(key[^19..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The leader with 150 acknowledged commits (one log entry each), serving snapshots without authentication.</summary>
    private async Task<(ReplicaNode Leader, ICellStore Store, OmegaServer Server, List<int> Acked, NodeId Node)> LeaderWithLog(int port, bool serve)
    {
        var a = await StartReplica("a", port);
        var aStore = await a.Leadership.WaitAsync(TimeSpan.FromSeconds(30));
        _promoted.Add(aStore);
        OmegaServer? server = null;
        if (serve)
        {
            server = new OmegaServer(aStore.Cell, null, new IPEndPoint(IPAddress.Loopback, port), new ServerOptions
            {
                Name = a.Name, Leadership = a.Gate, Snapshots = new ReplicaSnapshotSource(a.Store), Publisher = null, LifecyclePeriod = null,
            });
            _servers.Add(server);
            server.Start();
        }
        var node = aStore.Cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000, 1L << 40)));
        var lease = aStore.Cell.AcquireLease("sched", TimeSpan.FromMinutes(10)).Lease;
        var acked = new List<int>();
        for (int i = 0; i < 150; i++)
        {
            var r = await aStore.CommitDurableAsync(Bind(lease, node, i)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(TransactionStatus.Committed, r.Status);
            acked.Add(i);
        }
        return (a, aStore, server!, acked, node);
    }

    [Fact]
    public async Task A_standby_further_behind_than_the_lag_bound_bootstraps_from_a_snapshot_though_the_log_still_holds_its_tail()
    {
        var ports = EtcdCluster.FreePorts(2);
        var (a, aStore, server, acked, node) = await LeaderWithLog(ports[0], serve: true);
        long leaderSeq = aStore.DurableSequence;
        Assert.True(leaderSeq > 150, $"leader at {leaderSeq}");

        // b starts empty: ~150 records behind, the bound is 30; its first round applies one page of 64 entries, after
        // which it is still ~90 behind. The log starts at sequence 1, so replaying would work:
        // the bound alone must send it to the snapshot.
        var b = await StartReplica("b", ports[1]);
        await Until(() => Applied(b) >= leaderSeq, TimeSpan.FromSeconds(90), "b to reach the leader's sequence");
        Assert.True(await LogStart() <= 1, "the log was trimmed: this test is about the lag bound, not the trim");
        _out.WriteLine($"b: {b.SnapshotsInstalled} snapshot(s), applied {b.Store.AppliedSequence}, lag {b.LagRecords}");
        Assert.Equal(1, b.SnapshotsInstalled);
        Assert.False(b.Gate.IsLeader);
        Assert.Equal(aStore.Cell.Version, b.Store.AppliedVersion);

        // It tails from the snapshot: a later commit reaches it through the log, and its lag is within the bound.
        var lease = aStore.Cell.AcquireLease("sched-2", TimeSpan.FromMinutes(10)).Lease;
        var more = await aStore.CommitDurableAsync(Bind(lease, node, 1000)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(TransactionStatus.Committed, more.Status);
        acked.Add(1000);
        leaderSeq = aStore.DurableSequence;
        await Until(() => Applied(b) >= leaderSeq, TimeSpan.FromSeconds(60), "b to apply the later commit from the log");
        Assert.Equal(1, b.SnapshotsInstalled);
        Assert.True(b.LagRecords <= 30, $"b's lag {b.LagRecords}");

        // Takeover: b holds every acknowledged commit.
        await server.DisposeAsync();
        _servers.Remove(server);
        await a.ResignAsync();
        var bStore = await b.Leadership.WaitAsync(TimeSpan.FromSeconds(30));
        _promoted.Add(bStore);
        Assert.Equal(acked.Count, bStore.Cell.AllocationCount);
        foreach (int i in acked) Assert.True(bStore.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"acknowledged binding {i} lost");
    }

    [Fact]
    public async Task A_standby_beyond_the_lag_bound_with_no_leader_replays_the_static_log_and_then_leads_with_every_commit()
    {
        var ports = EtcdCluster.FreePorts(2);
        var (a, aStore, _, acked, _) = await LeaderWithLog(ports[0], serve: false);
        long leaderSeq = aStore.DurableSequence;
        await a.ResignAsync();

        // No leader, so no snapshot: the bound must not leave the cell leaderless. The log does not grow, b replays it,
        // and campaigns once within the bound.
        var b = await StartReplica("b", ports[1]);
        var bStore = await b.Leadership.WaitAsync(TimeSpan.FromSeconds(90));
        _promoted.Add(bStore);
        Assert.Equal(0, b.SnapshotsInstalled);
        Assert.True(bStore.DurableSequence >= leaderSeq, $"b leads at {bStore.DurableSequence}, the log ended at {leaderSeq}");
        Assert.Equal(acked.Count, bStore.Cell.AllocationCount);
        foreach (int i in acked) Assert.True(bStore.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"acknowledged binding {i} lost");
    }
}
