using System.Net;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;

namespace Omega.Wire.Tests;

/// <summary>Bindings leave the process only up to the publishable (durable) version.</summary>
public sealed class DurabilityGateTests
{
    private sealed class Watermark(Cell cell) : IPublishableVersion
    {
        public long Held;

        public long PublishableVersion => Math.Min(Volatile.Read(ref Held), cell.Version);

        public long PublishableSequence => cell.JournalSequence;
    }

    [Fact]
    public async Task A_binding_is_pushed_only_once_its_version_is_publishable()
    {
        using var cell = new Cell();
        var mark = new Watermark(cell) { Held = long.MaxValue };
        await using var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = mark });
        server.Start();
        using var agent = await RawClient.ConnectAsync(server.EndPoint);
        var reg = await agent.RegisterAsync("durable", new ResourceVector(4000, 1 << 30));
        Volatile.Write(ref mark.Held, cell.Version); // everything so far is durable; the next commit is not

        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var result = cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, 0), new NodeId(reg.NodeId), new ResourceVector(100, 100), 0)));
        Assert.True(result.IsCommitted);
        // Several round trips through the server while the commit is not durable: no push arrives, nothing is routed.
        for (uint i = 0; i < 20; i++)
        {
            await agent.SendAsync(10 + i, new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 });
            var f = await agent.ReadFrameAsync();
            Assert.Equal(MessageType.HeartbeatAck, f!.Value.Type);
            await Task.Delay(2);
        }
        Assert.Equal(0, server.BindingsRouted);

        Volatile.Write(ref mark.Held, result.CellVersion); // the journal reports it durable
        var push = await agent.ExpectAsync<Bindings>();
        Assert.Equal(result.CellVersion, push.Version);
        var e = Assert.Single(push.Entries.ToArray());
        Assert.Equal(new TaskId(1, 0), e.Task);
        Assert.Equal(BindingKind.Run, e.Kind);
    }

    [Fact]
    public async Task A_domain_loss_confirmation_is_acknowledged_only_once_its_record_is_durable()
    {
        using var cell = new Cell();
        cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 1 << 30), failureDomain: "rack-1"));
        var mark = new Watermark(cell) { Held = cell.Version }; // everything so far is durable; the confirmation will not be
        await using var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = mark });
        server.Start();
        using var op = await RawClient.ConnectAsync(server.EndPoint);
        await op.HandshakeAsync(PeerRole.Scheduler, "operator");
        await op.SendAsync(5, new Operate { Kind = OperateKind.ConfirmDomainLost, Target = "rack-1", Reason = "flooded", Author = "alice" });
        var conf = await WaitForConfirmation(cell);
        // Round trips on the same connection while the record is not durable: their replies come, the confirmation's does not.
        for (uint i = 0; i < 10; i++)
        {
            await op.SendAsync(10 + i, new QueryJob { JobId = 0 });
            var f = await op.ReadFrameAsync();
            Assert.Equal(MessageType.JobStatusReply, f!.Value.Type);
            Assert.Equal(10 + i, f.Value.Rid);
            server.PumpBindings();
        }
        Volatile.Write(ref mark.Held, conf.Version); // the journal reports it durable
        var f2 = await op.ReadFrameAsync();
        Assert.Equal((MessageType.OperateReply, 5u), (f2!.Value.Type, f2.Value.Rid));
    }

    private static async Task<DomainLossConfirmation> WaitForConfirmation(Cell cell)
    {
        await Wait.UntilAsync(() => cell.DomainLosses.Count == 1, "the server applies the confirmation");
        return cell.DomainLosses[0];
    }
}
