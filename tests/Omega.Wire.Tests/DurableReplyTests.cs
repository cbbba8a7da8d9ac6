using System.Net;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 10, defects 4 and 8 over the wire: replies that acknowledge a change leave only once the journal record is
/// durable (a held sequence watermark stands in for a slow disk); registrations that never heartbeat are bounded and
/// expire; operators remove nodes with Operate RemoveNode.
/// </summary>
public sealed class DurableReplyTests
{
    /// <summary>Durability by hand: nothing above <see cref="Sequence"/> is durable.</summary>
    private sealed class HeldSequence(Cell cell) : IPublishableVersion
    {
        public long Sequence = long.MaxValue;

        public long PublishableVersion => cell.Version;

        public long PublishableSequence => Math.Min(Volatile.Read(ref Sequence), cell.JournalSequence);
    }

    /// <summary>A cell whose journal only counts records (the server gates on <see cref="Cell.JournalSequence"/>).</summary>
    private sealed class CountingJournal : ICellJournal
    {
        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record) { }
    }

    private static async Task<(Cell Cell, HeldSequence Held, OmegaServer Server)> StartAsync()
    {
        var cell = new Cell(new CellOptions { Name = "durable-replies" }, new CountingJournal());
        var held = new HeldSequence(cell);
        var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = held, LifecyclePeriod = null });
        server.Start();
        await Task.CompletedTask;
        return (cell, held, server);
    }

    [Fact]
    public async Task Lease_grants_renewals_registrations_drains_and_removals_are_acknowledged_only_once_durable()
    {
        var (cell, held, server) = await StartAsync();
        await using var srv = server;
        using var sched = await RawClient.ConnectAsync(server.EndPoint);
        await sched.HandshakeAsync(PeerRole.Scheduler);

        // Nothing new is durable from here.
        held.Sequence = cell.JournalSequence;
        await sched.SendAsync(2, new AcquireLease { Name = "ext", DurationMs = 60_000 });
        // A later request that changes nothing is answered at once: its reply overtaking the grant proves the grant is held.
        await sched.SendAsync(3, new Sync { Since = 0 });
        await sched.ExpectAsync<SyncReply>();
        Assert.Equal(1L, (long?)cell.GetCurrentToken("ext")?.Value);
        held.Sequence = long.MaxValue;
        var lease = await sched.ExpectAsync<LeaseReply>();
        Assert.Equal((byte)LeaseStatus.Granted, lease.Status);

        // A renewal changes no cell version, only the journal: it is held on the sequence too.
        held.Sequence = cell.JournalSequence;
        await sched.SendAsync(4, new RenewLease { SchedulerId = lease.SchedulerId, Name = "ext", Token = lease.Token, DurationMs = 60_000 });
        await sched.SendAsync(5, new Sync { Since = 0 });
        await sched.ExpectAsync<SyncReply>();
        held.Sequence = long.MaxValue;
        Assert.Equal((byte)LeaseStatus.Renewed, (await sched.ExpectAsync<LeaseReply>()).Status);

        // Registration: the node exists in memory, the Registered reply waits.
        using var agent = await RawClient.ConnectAsync(server.EndPoint);
        await agent.HandshakeAsync(PeerRole.Agent, "a");
        held.Sequence = cell.JournalSequence;
        await agent.SendAsync(2, new Register { Node = "a", Capacity = new ResourceVector(4000, 8L << 30), FailureDomain = "fd" });
        await Wait.UntilAsync(() => cell.TryGetNodeId("a", out _), "the node is added in memory");
        await sched.SendAsync(6, new Sync { Since = 0 });
        Assert.Single((await sched.ExpectAsync<SyncReply>()).Nodes);
        held.Sequence = long.MaxValue;
        var reg = await agent.ExpectAsync<Registered>();

        // Drain (agent) and removal (operator).
        held.Sequence = cell.JournalSequence;
        await agent.SendAsync(3, new Drain { Body = new StatusOnly { Value = reg.NodeId } });
        await agent.SendAsync(4, new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 });
        Assert.Equal(NodeStatus.Draining, (await agent.ExpectAsync<HeartbeatAck>()).Status);
        held.Sequence = long.MaxValue;
        Assert.Equal(0, (await agent.ExpectAsync<DrainAck>()).Body.Value);

        held.Sequence = cell.JournalSequence;
        await sched.SendAsync(7, new Operate { Kind = OperateKind.RemoveNode, Target = "a" });
        await sched.SendAsync(8, new Sync { Since = 0 });
        Assert.Equal(NodeStatus.Removed, Assert.Single((await sched.ExpectAsync<SyncReply>()).Nodes).Status);
        held.Sequence = long.MaxValue;
        var removed = await sched.ExpectAsync<OperateReply>();
        Assert.Equal(OperateStatus.Ok, removed.Status);
    }

    [Fact]
    public async Task Operate_RemoveNode_releases_the_nodes_bindings_and_an_unknown_name_is_UnknownNode()
    {
        await using var fx = ServerFixture.Start(engine: true, seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 8L << 30))));
        var lease = fx.Cell.AcquireLease("t", TimeSpan.FromMinutes(1)).Lease;
        Assert.Equal(TransactionStatus.Committed, fx.Cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, 0), new NodeId(0), new ResourceVector(100, 100), 0))).Status);
        using var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, "ops");
        await c.SendAsync(2, new Operate { Kind = OperateKind.RemoveNode, Target = "nope" });
        Assert.Equal(OperateStatus.UnknownNode, (await c.ExpectAsync<OperateReply>()).Status);
        await c.SendAsync(3, new Operate { Kind = OperateKind.RemoveNode, Target = "n0" });
        var r = await c.ExpectAsync<OperateReply>();
        Assert.Equal(OperateStatus.Ok, r.Status);
        Assert.Contains("1 binding(s) released", r.Message, StringComparison.Ordinal);
        Assert.False(fx.Cell.TryGetNodeId("n0", out _));
        Assert.False(fx.Cell.TryGetAllocation(new TaskId(1, 0), out _));
        Assert.Empty(fx.Cell.Audit());
    }

    [Fact]
    public async Task Registrations_that_never_heartbeat_are_bounded_and_removed_without_tripping_the_mass_silence_brake()
    {
        var lease = TimeSpan.FromSeconds(10);
        await using var fx = ServerFixture.Start(o => { o.NodeLease = lease; o.MaxPendingRegistrations = 3; }, fakeTime: true);
        var cap = new ResourceVector(4000, 8L << 30);
        // One real agent that heartbeats.
        using var real = await RawClient.ConnectAsync(fx.EndPoint);
        var r0 = await real.RegisterAsync("real", cap);
        await real.SendAsync(3, new Heartbeat { NodeId = r0.NodeId });
        await real.ExpectAsync<HeartbeatAck>();
        Assert.Equal(0, fx.Server.Lifecycle.PendingRegistrationCount);

        // Junk: three registrations fill the bound; a fourth new name is refused with a typed error, and nothing is added.
        var junk = new List<RawClient>();
        for (int i = 0; i < 3; i++)
        {
            var j = await RawClient.ConnectAsync(fx.EndPoint);
            junk.Add(j);
            await j.RegisterAsync($"junk-{i}", cap);
        }
        using (var extra = await RawClient.ConnectAsync(fx.EndPoint))
        {
            await extra.HandshakeAsync(PeerRole.Agent, "junk-3");
            await extra.SendAsync(2, new Register { Node = "junk-3", Capacity = cap, FailureDomain = "fd" });
            Assert.Equal(ErrorCode.TooManyPendingRegistrations, (await extra.ReadErrorAsync())?.Code);
            Assert.False(fx.Cell.TryGetNodeId("junk-3", out _));
            // An existing node re-registers whatever the bound.
            await real.SendAsync(6, new Register { Node = "real", Capacity = cap, FailureDomain = "fd" });
            Assert.Equal(r0.NodeId, (await real.ExpectAsync<Registered>()).NodeId);
        }
        Assert.Equal(3, fx.Server.Lifecycle.PendingRegistrationCount);

        // Just before the deadline nothing happens; the real agent keeps heartbeating.
        fx.Fake!.Advance(lease - TimeSpan.FromSeconds(1));
        await real.SendAsync(4, new Heartbeat { NodeId = r0.NodeId });
        await real.ExpectAsync<HeartbeatAck>();
        Assert.Equal(0, fx.Server.Lifecycle.Tick().Evicted);
        Assert.True(fx.Cell.TryGetNodeId("junk-0", out _));

        // Past it: every never-heartbeated registration is removed (they held nothing); the brake is not engaged by
        // three silent nodes out of four, because pending nodes are not counted; the real node stays.
        fx.Fake.Advance(TimeSpan.FromSeconds(2));
        await real.SendAsync(5, new Heartbeat { NodeId = r0.NodeId });
        await real.ExpectAsync<HeartbeatAck>();
        var tick = fx.Server.Lifecycle.Tick();
        Assert.False(tick.MassSilence);
        for (int i = 0; i < 3; i++) Assert.False(fx.Cell.TryGetNodeId($"junk-{i}", out _), $"junk-{i} still registered");
        Assert.Equal(3, fx.Server.Lifecycle.ExpiredRegistrationCount);
        Assert.Equal(0, fx.Server.Lifecycle.PendingRegistrationCount);
        Assert.True(fx.Cell.TryGetNodeId("real", out var realId));
        Assert.Equal(NodeStatus.Schedulable, fx.Cell.Snapshot().TryGetNode(realId, out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed);
        foreach (var j in junk) j.Dispose();
    }
}
