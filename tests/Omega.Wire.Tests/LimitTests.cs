using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>Timeout and count limits, with time injected (FakeTimeProvider) so nothing sleeps.</summary>
public sealed class LimitTests
{
    private static async Task<(RawClient Good, int Node)> GoodAgentAsync(ServerFixture fx)
    {
        var good = await RawClient.ConnectAsync(fx.EndPoint);
        var reg = await good.RegisterAsync("good", new ResourceVector(1000, 1 << 20));
        return (good, reg.NodeId);
    }

    private static async Task HeartbeatAsync(RawClient good, int node, uint rid)
    {
        await good.SendAsync(rid, new Heartbeat { NodeId = node, LastVersion = 0 });
        await good.ExpectAsync<HeartbeatAck>();
    }

    [Fact]
    public async Task Slowloris_partial_frame_is_closed_by_the_idle_timeout()
    {
        await using var fx = ServerFixture.Start(o => o.Transport.IdleTimeout = TimeSpan.FromSeconds(30), fakeTime: true);
        var (good, node) = await GoodAgentAsync(fx);
        using var _ = good;
        long v = fx.Cell.Version;
        using var slow = await RawClient.ConnectAsync(fx.EndPoint);
        await slow.HandshakeAsync(PeerRole.Agent, "slowloris");
        var frame = Codec.FrameBytes(2, new Heartbeat { NodeId = node, LastVersion = 0 });
        // Dribble all but the last byte over "time": bytes arrive, but no frame ever completes.
        for (int i = 0; i < frame.Length - 1; i++)
        {
            await slow.SendAsync(frame[i..(i + 1)]);
            fx.Fake!.Advance(TimeSpan.FromSeconds(3));
        }
        Assert.True(frame.Length * 3 > 30, "the dribble must outlast the idle timeout");
        await HeartbeatAsync(good, node, 10); // the good agent keeps talking
        fx.Server.SweepConnections();
        Assert.Equal(ErrorCode.IdleTimeout, (await slow.ReadErrorAsync())?.Code);
        Assert.True(await slow.WaitClosedAsync());
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.IdleTimeout) == 1, "idle disconnect counted");
        await HeartbeatAsync(good, node, 11);
        Assert.Equal(v, fx.Cell.Version);
    }

    [Fact]
    public async Task No_hello_within_the_handshake_timeout_is_closed()
    {
        await using var fx = ServerFixture.Start(o => o.Transport.HandshakeTimeout = TimeSpan.FromSeconds(5), fakeTime: true);
        var (good, node) = await GoodAgentAsync(fx);
        using var _ = good;
        using var silent = await RawClient.ConnectAsync(fx.EndPoint);
        await Wait.UntilAsync(() => fx.Server.ConnectionCount == 2, "both connections accepted");
        fx.Server.SweepConnections();
        Assert.Equal(2, fx.Server.ConnectionCount); // not yet
        fx.Fake!.Advance(TimeSpan.FromSeconds(6));
        fx.Server.SweepConnections();
        Assert.Equal(ErrorCode.HandshakeTimeout, (await silent.ReadErrorAsync())?.Code);
        Assert.True(await silent.WaitClosedAsync());
        await HeartbeatAsync(good, node, 3);
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.HandshakeTimeout) == 1, "handshake-timeout disconnect counted");
    }

    [Fact]
    public async Task Connections_above_the_limit_get_ServerBusy()
    {
        await using var fx = ServerFixture.Start(o => o.Transport.MaxConnections = 2);
        var (good, node) = await GoodAgentAsync(fx);
        using var _ = good;
        using var second = await RawClient.ConnectAsync(fx.EndPoint);
        await second.HandshakeAsync(PeerRole.Scheduler);
        using var third = await RawClient.ConnectAsync(fx.EndPoint);
        Assert.Equal(ErrorCode.ServerBusy, (await third.ReadErrorAsync())?.Code);
        Assert.True(await third.WaitClosedAsync());
        Assert.Equal(1, fx.Server.TransportMetrics.Disconnects(DisconnectReason.ServerBusy));
        await HeartbeatAsync(good, node, 4);
    }

    private sealed class HeldPublisher(Cell cell) : IPublishableVersion
    {
        public long Held = long.MaxValue;

        public long PublishableVersion => Math.Min(Held, cell.Version);

        public long PublishableSequence => cell.JournalSequence;
    }

    [Fact]
    public async Task Requests_in_flight_above_the_limit_get_TooManyRequestsInFlight_and_replies_wait_for_durability()
    {
        var cell = new Cell();
        var node = cell.AddNode(new NodeSpec("n0", new ResourceVector(100_000, 1L << 40)));
        var held = new HeldPublisher(cell) { Held = cell.Version };
        await using var server = new OmegaServer(cell, null, new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            new ServerOptions { Publisher = held, Transport = new TransportOptions { MaxRequestsInFlight = 3 } });
        server.Start();
        using var c = await RawClient.ConnectAsync(server.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler);
        await c.SendAsync(2, new AcquireLease { Name = "ext", DurationMs = 60_000 });
        var lease = await c.ExpectAsync<LeaseReply>();
        held.Held = cell.Version; // the lease grant is durable
        for (uint i = 0; i < 4; i++)
        {
            var claim = new WireClaim(new TaskId(7, (int)i), node.Value, new ResourceVector(10, 10), 0, 0, 0, null);
            await c.SendAsync(10 + i, new Commit { SchedulerId = lease.SchedulerId, Token = lease.Token, Claims = [claim] });
        }
        // Three commits are applied but held (not durable); the fourth is refused.
        var e = await c.ReadErrorAsync();
        Assert.Equal(ErrorCode.TooManyRequestsInFlight, e?.Code);
        Assert.Equal(3, cell.AllocationCount);
        Assert.Equal(1, server.TransportMetrics.ErrorsSent(ErrorCode.TooManyRequestsInFlight));
        // Durability catches up: the held replies are released, in order.
        held.Held = long.MaxValue;
        for (uint i = 0; i < 3; i++)
        {
            var r = await c.ExpectAsync<CommitReply>();
            Assert.Equal(TransactionStatus.Committed, r.Status);
        }
    }
}
