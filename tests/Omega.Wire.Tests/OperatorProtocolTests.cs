using Omega.Agent;
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

    [Fact]
    public async Task A_listing_of_ten_thousand_long_node_lines_fits_one_frame_and_says_how_many_exist()
    {
        // 10,000 nodes whose lines run to ~250 bytes: 2.5 MB of text, over the 1 MiB frame the client accepts. Before the
        // byte cap the server sent it anyway and the client closed the connection with FrameTooLarge.
        string pad = new string('x', 120);
        await using var fx = ServerFixture.Start(engine: true, seed: cell =>
        {
            for (int i = 0; i < 10_000; i++) cell.AddNode(new NodeSpec($"node-{i:D5}-{pad}", new ResourceVector(4000, 8L << 30), "fd0"));
        });
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, "ops");
        var (total, lines) = await c.InspectAsync(InspectTarget.Nodes, InspectReply.MaxLines);
        Assert.Equal(10_000, total);
        Assert.InRange(lines.Count, 1, 9_999);
        Assert.StartsWith("node-00000-", lines[0], StringComparison.Ordinal);
        // The connection is still good.
        var (again, one) = await c.InspectAsync(InspectTarget.Nodes, 1);
        Assert.Equal(10_000, again);
        Assert.Single(one);
    }
}
