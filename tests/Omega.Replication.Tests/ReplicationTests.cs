using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Omega.Cells;
using Omega.Storage;
using Xunit.Abstractions;

using static Omega.Replication.Tests.TestWait;

namespace Omega.Replication.Tests;

/// <summary>Election, fencing, standby catch-up and takeover against a real 3-member etcd (in process).</summary>
[Collection(EtcdCollection.Name)]
public sealed class ReplicationTests : IAsyncLifetime
{
    private readonly EtcdCluster _etcd;
    private readonly ITestOutputHelper _out;
    private readonly string _cluster = "t" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<ReplicaNode> _nodes = new();
    private readonly List<ICellStore> _promoted = new();
    private readonly List<string> _dirs = new();

    public ReplicationTests(EtcdCluster etcd, ITestOutputHelper output)
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

    private async Task<ReplicaNode> StartReplica(string name, Action<ReplicationOptions>? configure = null)
    {
        // A 5 s lease: these tests depose leaders by revoking their lease (immediate), so the TTL only guards against a
        // keepalive starved on a loaded machine; the SIGKILL test (ServeReplicaTests) runs the product's 2 s.
        var o = new ReplicationOptions { Cluster = _cluster, ReplicaName = name, AdvertiseAddress = $"127.0.0.1:{name.GetHashCode() & 0x7fff}", PollInterval = TimeSpan.FromMilliseconds(50), LeaseTtlSeconds = 5 };
        foreach (var e in _etcd.Endpoints) o.Endpoints.Add(e);
        configure?.Invoke(o);
        string dir = Path.Combine(Path.GetTempPath(), "omega-repl-" + Guid.NewGuid().ToString("N")[..8]);
        _dirs.Add(dir);
        var node = new ReplicaNode(o, new StorageOptions { DataDirectory = dir, GroupCommitWindow = TimeSpan.FromMilliseconds(1), CheckpointInterval = null });
        _nodes.Add(node);
        await node.StartAsync();
        return node;
    }

    private async Task<ICellStore> Lead(ReplicaNode node, TimeSpan timeout)
    {
        var s = await node.Leadership.WaitAsync(timeout);
        _promoted.Add(s);
        return s;
    }

    private static (SchedulerLease Lease, NodeId Node) Prepare(ICellStore store)
    {
        var node = store.Cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000, 1L << 40)));
        var lease = store.Cell.AcquireLease("sched", TimeSpan.FromMinutes(5)).Lease;
        return (lease, node);
    }

    private static Transaction Bind(SchedulerLease lease, NodeId node, int i)
    {
        var tx = new Transaction(lease).Add(new Claim(new TaskId(i, 0), node, new ResourceVector(10, 1 << 20), 0));
        tx.Key = new IdempotencyKey(7, (ulong)i + 1);
        return tx;
    }

    [Fact]
    public async Task One_replica_leads_and_the_other_names_its_advertised_address()
    {
        var a = await StartReplica("a");
        var store = await Lead(a, TimeSpan.FromSeconds(15));
        var b = await StartReplica("b");
        await Until(() => b.Gate.LeaderAddress is not null, TimeSpan.FromSeconds(10), "b to see the leader");
        Assert.True(a.Gate.IsLeader);
        Assert.False(b.Gate.IsLeader);
        Assert.Equal(a.Gate.LeaderAddress, b.Gate.LeaderAddress);
        Assert.True(a.Epoch > 0);
        Assert.Equal(a.Epoch, b.Gate.Epoch);
        Assert.False(b.Leadership.IsCompleted);
        // The epoch is the election key's create revision, as etcd reports it.
        using var c = _etcd.Client();
        var kv = (await c.GetAsync($"/omega/{_cluster}/leader")).Kvs.Single();
        Assert.Equal(a.Epoch, kv.CreateRevision);
        Assert.Equal("a\n" + a.Gate.LeaderAddress, kv.Value.ToStringUtf8());
        Assert.True(store.IsPersistent);
    }

    [Fact]
    public async Task Acknowledged_commits_are_in_etcd_and_a_standby_applies_them()
    {
        var a = await StartReplica("a");
        var store = await Lead(a, TimeSpan.FromSeconds(15));
        var b = await StartReplica("b");
        var (lease, node) = Prepare(store);
        for (int i = 0; i < 200; i++)
        {
            var r = await store.CommitDurableAsync(Bind(lease, node, i));
            Assert.Equal(TransactionStatus.Committed, r.Status);
        }
        Assert.True(a.EntriesWritten > 0);
        long leaderSeq = store.DurableSequence;
        Assert.Equal(store.Cell.JournalSequence, leaderSeq);
        await Until(() => b.Store.AppliedSequence >= leaderSeq, TimeSpan.FromSeconds(10), "b to apply the leader's log");
        Assert.Equal(store.Cell.Version, b.Store.AppliedVersion);
        Assert.True(b.AppliedRevision > 0);

        // Hand over: a resigns; b catches up and its cell holds every acknowledged binding.
        await a.ResignAsync();
        var bStore = await Lead(b, TimeSpan.FromSeconds(10));
        Assert.Equal(200, bStore.Cell.AllocationCount);
        for (int i = 0; i < 200; i++) Assert.True(bStore.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"binding {i} lost in the takeover");
        Assert.True(b.Epoch > 0);
    }

    [Fact]
    public async Task A_deposed_leaders_writes_fail_at_etcd_and_it_stops_acknowledging()
    {
        var a = await StartReplica("a");
        var aStore = await Lead(a, TimeSpan.FromSeconds(15));
        var (lease, node) = Prepare(aStore);
        for (int i = 0; i < 20; i++) await aStore.CommitDurableAsync(Bind(lease, node, i));
        long oldEpoch = a.Epoch;
        var b = await StartReplica("b");

        // Depose a behind its back: its lease is revoked at etcd (as when it was paused past the TTL).
        using var c = _etcd.Client();
        await c.LeaseRevokeAsync(new LeaseRevokeRequest { ID = a.LeaseId });
        var bStore = await Lead(b, TimeSpan.FromSeconds(10));
        Assert.True(b.Epoch > oldEpoch);

        // Fencing is etcd's: a writer still holding the old epoch (never told it lost) is refused by the compare.
        var stale = new EtcdLogShipper(b.Client, new ReplicationOptions { Cluster = _cluster, Endpoints = { _etcd.Endpoints[0] } },
            ByteString.CopyFromUtf8($"/omega/{_cluster}/leader"), oldEpoch, _ => { });
        // (the payload is opaque to the shipper: one 1-byte element)
        var fenced = Assert.Throws<ReplicationFencedException>(() => stale.Replicate(new byte[] { 1, 0, 0, 0, 0 }, 1_000_000, 1_000_000, 1));
        Assert.Contains("fenced", fenced.Message, StringComparison.Ordinal);
        Assert.Empty((await c.GetAsync($"/omega/{_cluster}/log/{1_000_000:D19}")).Kvs);

        // The deposed replica acknowledges nothing more: its commit never becomes durable.
        var late = aStore.CommitDurableAsync(Bind(lease, node, 999));
        await Assert.ThrowsAnyAsync<IOException>(async () => await late.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(a.Gate.IsLeader);
        Assert.True(a.Deposed.IsCancellationRequested);
        // ... and the new leader's cell has the acknowledged commits, not the refused one.
        Assert.Equal(20, bStore.Cell.AllocationCount);
        Assert.False(bStore.Cell.TryGetAllocation(new TaskId(999, 0), out _));
        // The new leader keeps going.
        var (bl, bn) = (bStore.Cell.AcquireLease("sched-b", TimeSpan.FromMinutes(5)).Lease, node);
        var ok = await bStore.CommitDurableAsync(Bind(bl, bn, 500)).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(TransactionStatus.Committed, ok.Status);
    }

    [Fact]
    public async Task Takeover_after_a_lease_lapses_is_within_seconds_and_loses_no_acknowledged_commit()
    {
        var a = await StartReplica("a");
        var aStore = await Lead(a, TimeSpan.FromSeconds(15));
        var b = await StartReplica("b");
        var c2 = await StartReplica("c");
        var (lease, node) = Prepare(aStore);
        var acked = new List<int>();
        Exception? writerEnd = null;
        using var cts = new CancellationTokenSource();
        // A writer committing until the leader dies; only what was acknowledged counts.
        var writer = Task.Run(async () =>
        {
            for (int i = 0; !cts.IsCancellationRequested; i++)
            {
                try
                {
                    var r = await aStore.CommitDurableAsync(Bind(lease, node, i));
                    if (r.Status == TransactionStatus.Committed) lock (acked) acked.Add(i);

                }
                catch (IOException e)
                {
                    writerEnd = e; // the leader stopped acknowledging (deposed): expected once its lease is revoked below
                    return;
                }
            }
        });
        await Until(() =>
        {
            if (writer.IsFaulted) throw new Xunit.Sdk.XunitException("writer failed: " + writer.Exception);
            // Deposed before the test revoked anything: say why instead of timing out (CI once starved the keepalive).
            if (writer.IsCompleted) throw new Xunit.Sdk.XunitException($"the leader stopped acknowledging after {acked.Count} commits: {writerEnd}");
            lock (acked) return acked.Count >= 100;
        }, TimeSpan.FromSeconds(60), "100 acknowledged commits");
        // "Kill" a: revoke its lease (its process would be gone; its keepalive cannot save it).
        using var c = _etcd.Client();
        var clock = Stopwatch.StartNew();
        await c.LeaseRevokeAsync(new LeaseRevokeRequest { ID = a.LeaseId });
        var winner = await Task.WhenAny(b.Leadership, c2.Leadership).WaitAsync(TimeSpan.FromSeconds(10));
        var took = clock.Elapsed;
        var newStore = await winner;
        _promoted.Add(newStore);
        await cts.CancelAsync();
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
        _out.WriteLine($"takeover {took.TotalMilliseconds:0} ms after the lease was revoked; {acked.Count} commits acknowledged");
        Assert.True(took < TimeSpan.FromSeconds(3), $"takeover took {took}");
        lock (acked)
            foreach (int i in acked) Assert.True(newStore.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"acknowledged binding {i} lost");
        // Exactly one of b, c leads.
        Assert.True(b.Gate.IsLeader ^ c2.Gate.IsLeader);
    }

    [Fact]
    public async Task An_AcquireLease_retried_after_a_failover_gets_no_second_token_and_the_first_still_renews()
    {
        // A scheduler's grant was acknowledged (durable, so in etcd) but its reply lost; it retries at the new leader.
        var a = await StartReplica("a");
        var aStore = await Lead(a, TimeSpan.FromSeconds(15));
        var b = await StartReplica("b");
        var first = aStore.Cell.AcquireLease("sched", TimeSpan.FromMinutes(5));
        Assert.Equal(Omega.Cells.LeaseStatus.Granted, first.Status);
        await aStore.WaitForDurableAsync(aStore.Cell.JournalSequence).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        await a.ResignAsync();
        var bStore = await Lead(b, TimeSpan.FromSeconds(30));

        // The retry is refused while the first grant lives: no second token for the same scheduler identity.
        var retry = bStore.Cell.AcquireLease("sched", TimeSpan.FromMinutes(5));
        Assert.Equal(Omega.Cells.LeaseStatus.HeldByAnother, retry.Status);
        Assert.Equal(default, retry.Lease.Token);
        Assert.True((retry.HeldUntil - first.Lease.ExpiresAt).Duration() < TimeSpan.FromSeconds(1), $"held until {retry.HeldUntil}, granted until {first.Lease.ExpiresAt}");
        // The grant it did receive (had the reply arrived) is the one the new leader honours: same id and token.
        var renewed = bStore.Cell.RenewLease(first.Lease, TimeSpan.FromMinutes(5));
        Assert.Equal(Omega.Cells.LeaseStatus.Renewed, renewed.Status);
        Assert.Equal(first.Lease.Token, renewed.Lease.Token);
        // A later grant of another name gets a strictly larger token than any grant before the failover.
        var other = bStore.Cell.AcquireLease("other", TimeSpan.FromMinutes(5));
        Assert.Equal(Omega.Cells.LeaseStatus.Granted, other.Status);
        Assert.True(other.Lease.Token.Value > first.Lease.Token.Value);
    }
}
