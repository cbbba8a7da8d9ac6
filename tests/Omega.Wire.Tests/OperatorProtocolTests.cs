using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>Operator requests over the wire: role checks, bounds, and the replies' shape.</summary>
public sealed class OperatorProtocolTests
{
    [Fact]
    public async Task An_agent_connection_may_not_send_operator_requests()
    {
        await using var fx = ServerFixture.Start(engine: true);
        using var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Agent, "agent");
        await c.SendAsync(2, new Operate { Kind = OperateKind.DrainNode, Target = "n0" });
        var e = await c.ReadErrorAsync();
        Assert.NotNull(e);
        Assert.Equal(ErrorCode.WrongRole, e.Value.Code);
    }

    [Fact]
    public async Task Inspect_bounds_are_enforced_and_nodes_are_listed()
    {
        await using var fx = ServerFixture.Start(engine: true, seed: cell =>
        {
            for (int i = 0; i < 3; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 8L << 30), "fd0"));
        });
        using var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, "ops");
        await c.SendAsync(2, new Inspect { Target = InspectTarget.Nodes, Limit = 0 });
        var e = await c.ReadErrorAsync();
        Assert.NotNull(e);
        Assert.Equal(ErrorCode.InvalidRequest, e.Value.Code);

        await c.SendAsync(3, new Inspect { Target = InspectTarget.Nodes, Limit = 2 });
        var r = await c.ExpectAsync<InspectReply>();
        Assert.Equal(3, r.Total);
        Assert.Equal(2, r.Lines.Count);
        Assert.StartsWith("n0 ", r.Lines[0], StringComparison.Ordinal);

        // Drain by name changes the node's status; an unknown name is a value, not an error frame.
        await c.SendAsync(4, new Operate { Kind = OperateKind.DrainNode, Target = "n1" });
        Assert.Equal(OperateStatus.Ok, (await c.ExpectAsync<OperateReply>()).Status);
        Assert.True(fx.Cell.TryGetNodeId("n1", out var id));
        fx.Cell.Snapshot().TryGetNode(id, out var view);
        Assert.Equal(NodeStatus.Draining, view.Status);
        await c.SendAsync(5, new Operate { Kind = OperateKind.DrainNode, Target = "nope" });
        Assert.Equal(OperateStatus.UnknownNode, (await c.ExpectAsync<OperateReply>()).Status);
        // No durable store behind this server: a checkpoint is Unsupported.
        await c.SendAsync(6, new Operate { Kind = OperateKind.Checkpoint });
        Assert.Equal(OperateStatus.Unsupported, (await c.ExpectAsync<OperateReply>()).Status);
    }
}
