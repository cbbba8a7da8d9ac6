using System.Buffers;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>
/// Each hostile case over a real loopback socket. For every case: the offender gets its typed error or is disconnected,
/// a well-behaved agent on another connection is still served, and committed cell state is unchanged.
/// </summary>
public class HostileInputTests : IAsyncLifetime
{
    /// <summary>Run every case over TLS (<see cref="HostileInputOverTlsTests"/>): the hostile bytes arrive inside TLS records.</summary>
    protected virtual bool Tls => false;

    /// <summary>
    /// Run every case with authentication on (<see cref="HostileInputAuthenticatedTests"/>): every offender presents a
    /// valid credential (raw handshakes get one from the fixture), so what it sends after the handshake is checked by
    /// the same decoders and limits, plus the authorizer.
    /// </summary>
    protected virtual bool Auth => false;

    private const int MaxFrame = 64 * 1024;
    private ServerFixture _fx = null!;
    private RawClient _good = null!;
    private int _goodNode;
    private long _versionBefore;
    private int _allocationsBefore;
    private uint _goodRid = 100;

    public async Task InitializeAsync()
    {
        _fx = ServerFixture.Start(o =>
        {
            o.Transport.MaxFrameLength = MaxFrame;
            o.Transport.MaxOutboundBytes = 4 * MaxFrame;
        }, tls: Tls, auth: Auth);
        // Committed state to protect: a node with a binding made by an in-process scheduler.
        var cell = _fx.Cell;
        var n = cell.AddNode(new NodeSpec("seeded", new ResourceVector(4000, 1 << 30)));
        var lease = cell.AcquireLease("seed-scheduler", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease).Add(new Claim(new TaskId(1, 0), n, new ResourceVector(1000, 1 << 20), 0));
        Assert.Equal(TransactionStatus.Committed, cell.Commit(tx).Status);
        _good = await RawClient.ConnectAsync(_fx.EndPoint);
        _goodNode = (await _good.RegisterAsync("good", new ResourceVector(2000, 1 << 30))).NodeId;
        _versionBefore = cell.Version;
        _allocationsBefore = cell.AllocationCount;
    }

    public async Task DisposeAsync()
    {
        _good.Dispose();
        await _fx.DisposeAsync();
        // Every connection, hostile or not, ended by itself once the server aborted it: none hung the shutdown, and no
        // connection loop died of an unexpected exception.
        var m = _fx.Server.TransportMetrics;
        Assert.True(m.LoopFaults == 0, $"a connection loop faulted: {m.LastLoopFault}");
        Assert.Equal(0, m.ShutdownStragglers);
    }

    private async Task AssertUnharmedAsync()
    {
        await _good.SendAsync(++_goodRid, new Heartbeat { NodeId = _goodNode, LastVersion = 0 });
        var ack = await _good.ExpectAsync<HeartbeatAck>();
        Assert.Equal(NodeStatus.Schedulable, ack.Status);
        Assert.Equal(_versionBefore, _fx.Cell.Version);
        Assert.Equal(_allocationsBefore, _fx.Cell.AllocationCount);
        Assert.Empty(_fx.Cell.Audit());
    }

    private async Task<RawClient> OffenderAsync(bool handshake = true)
    {
        var c = await RawClient.ConnectAsync(_fx.EndPoint);
        if (handshake) await c.HandshakeAsync(PeerRole.Agent, "offender");
        return c;
    }

    private async Task AssertStillOpenAsync(RawClient c)
    {
        // A valid request after the error is still answered on the same connection.
        await c.SendAsync(77, new QueryJob { JobId = 1 });
        var f = await c.ReadFrameAsync();
        Assert.NotNull(f);
        Assert.Equal(77u, f.Value.Rid);
    }

    [Fact]
    public async Task Truncated_frame_then_close_is_counted_and_dropped()
    {
        using var c = await OffenderAsync();
        var full = Codec.FrameBytes(5, new Heartbeat { NodeId = _goodNode, LastVersion = 1 });
        await c.SendAsync(full[..(full.Length - 3)]);
        await c.ShutdownSendAsync();
        Assert.True(await c.WaitClosedAsync());
        await Wait.UntilAsync(() => _fx.Server.TransportMetrics.Disconnects(DisconnectReason.TruncatedFrame) == 1, "truncated-frame disconnect counted");
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Length_prefix_zero_gets_FrameTooSmall_and_disconnect()
    {
        using var c = await OffenderAsync();
        await c.SendAsync(RawClient.Prefix(0));
        Assert.Equal(ErrorCode.FrameTooSmall, (await c.ReadErrorAsync())?.Code);
        Assert.True(await c.WaitClosedAsync());
        Assert.Equal(1, _fx.Server.TransportMetrics.ErrorsSent(ErrorCode.FrameTooSmall));
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Negative_length_prefix_gets_FrameTooLarge_and_disconnect()
    {
        using var c = await OffenderAsync();
        await c.SendAsync(RawClient.Prefix(unchecked((uint)-2)));
        Assert.Equal(ErrorCode.FrameTooLarge, (await c.ReadErrorAsync())?.Code);
        Assert.True(await c.WaitClosedAsync());
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Length_limit_plus_one_is_refused_but_limit_itself_is_read()
    {
        // Exactly the limit: the frame is read whole (its body is junk, so a MalformedBody error, connection open).
        using (var ok = await OffenderAsync())
        {
            var body = new byte[MaxFrame - 5];
            body[0] = 0x80; // empty map, then junk: "trailing bytes"
            await ok.SendAsync(RawClient.Frame((byte)MessageType.Heartbeat, 9, body));
            Assert.Equal(ErrorCode.MalformedBody, (await ok.ReadErrorAsync())?.Code);
            await AssertStillOpenAsync(ok);
        }
        using var c = await OffenderAsync();
        await c.SendAsync(RawClient.Prefix(MaxFrame + 1));
        Assert.Equal(ErrorCode.FrameTooLarge, (await c.ReadErrorAsync())?.Code);
        Assert.True(await c.WaitClosedAsync());
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Length_prefix_2_pow_32_minus_1_gets_FrameTooLarge_and_disconnect()
    {
        using var c = await OffenderAsync();
        await c.SendAsync([0xFF, 0xFF, 0xFF, 0xFF]);
        Assert.Equal(ErrorCode.FrameTooLarge, (await c.ReadErrorAsync())?.Code);
        Assert.True(await c.WaitClosedAsync());
        await Wait.UntilAsync(() => _fx.Server.TransportMetrics.Disconnects(DisconnectReason.FrameTooLarge) == 1, "oversized-frame disconnect counted");
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Frames_split_at_every_byte_boundary_are_reassembled()
    {
        // Authenticated: the Hello (with its 67-character token) is split at every boundary too.
        var hello = Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "split", Token = Auth ? _fx.DefaultToken(PeerRole.Scheduler, "split") : null });
        var query = Codec.FrameBytes(2, new QueryJob { JobId = 12345 });
        var all = hello.Concat(query).ToArray();
        for (int cut = 1; cut < all.Length; cut++)
        {
            using var c = await RawClient.ConnectAsync(_fx.EndPoint);
            await c.SendAsync(all[..cut]);
            await c.SendAsync(all[cut..]);
            await c.ExpectAsync<Welcome>();
            var reply = await c.ExpectAsync<JobStatusReply>();
            Assert.False(reply.Found);
        }
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Invalid_MessagePack_body_gets_MalformedBody_and_connection_survives()
    {
        using var c = await OffenderAsync();
        await c.SendAsync(RawClient.Frame((byte)MessageType.Heartbeat, 3, [0xC1, 0xC1]));
        var e = await c.ReadErrorAsync();
        Assert.Equal(ErrorCode.MalformedBody, e?.Code);
        await AssertStillOpenAsync(c);
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Nesting_bomb_gets_MalformedBody_without_deep_recursion()
    {
        using var c = await OffenderAsync();
        // {9: [[[[...]]]]} 60,000 levels deep inside an unknown field that the decoder must skip.
        var body = new byte[2 + 60_000 + 1];
        body[0] = 0x81; body[1] = 0x09;
        for (int i = 2; i < body.Length - 1; i++) body[i] = 0x91;
        body[^1] = 0xC0;
        await c.SendAsync(RawClient.Frame((byte)MessageType.Heartbeat, 4, body));
        Assert.Equal(ErrorCode.MalformedBody, (await c.ReadErrorAsync())?.Code);
        await AssertStillOpenAsync(c);
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Array_header_claiming_2_pow_31_elements_gets_MalformedBody()
    {
        using var c = await RawClient.ConnectAsync(_fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler);
        // Commit {5: array32 of 2^31 claims} with nothing behind it.
        byte[] body = [0x81, 0x05, 0xDD, 0x80, 0x00, 0x00, 0x00];
        await c.SendAsync(RawClient.Frame((byte)MessageType.Commit, 5, body));
        Assert.Equal(ErrorCode.MalformedBody, (await c.ReadErrorAsync())?.Code);
        // The same claim inside an unknown field, reached through Skip.
        byte[] body2 = [0x81, 0x0F, 0xDD, 0x80, 0x00, 0x00, 0x00];
        await c.SendAsync(RawClient.Frame((byte)MessageType.Sync, 6, body2));
        Assert.Equal(ErrorCode.MalformedBody, (await c.ReadErrorAsync())?.Code);
        // And a bin32 of length ≥ 2^31 (design.md §11: Skip() throws ArgumentOutOfRangeException on it).
        byte[] body3 = [0x81, 0x0F, 0xC6, 0x80, 0x00, 0x00, 0x01, 0x00];
        await c.SendAsync(RawClient.Frame((byte)MessageType.Sync, 7, body3));
        Assert.Equal(ErrorCode.MalformedBody, (await c.ReadErrorAsync())?.Code);
        await AssertStillOpenAsync(c);
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Unknown_message_type_gets_UnknownMessageType_and_connection_survives()
    {
        using var c = await OffenderAsync();
        await c.SendAsync(RawClient.Frame(0x7F, 8, [0x80]));
        var e = await c.ReadErrorAsync();
        Assert.Equal(ErrorCode.UnknownMessageType, e?.Code);
        // A server-to-client type sent by a client is unknown as a request too.
        await c.SendAsync(RawClient.Frame((byte)MessageType.Bindings, 9, [0x80]));
        Assert.Equal(ErrorCode.UnknownMessageType, (await c.ReadErrorAsync())?.Code);
        await AssertStillOpenAsync(c);
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Wrong_protocol_version_gets_UnsupportedVersion_and_disconnect()
    {
        using var c = await RawClient.ConnectAsync(_fx.EndPoint);
        await c.SendAsync(1, new Hello { Version = 99, Role = PeerRole.Agent, Name = "future" });
        var e = await c.ReadErrorAsync();
        Assert.Equal(ErrorCode.UnsupportedVersion, e?.Code);
        Assert.True(await c.WaitClosedAsync());
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task A_client_of_the_previous_version_gets_UnsupportedVersion_naming_this_one_and_disconnect()
    {
        // Each version adds messages and error codes an older client cannot interpret (version 4: NotLeader/NoLeader that
        // close the connection; version 5: the snapshot messages), and the server speaks exactly one version
        // (docs/protocol.md, "Changes in version 5").
        using var c = await RawClient.ConnectAsync(_fx.EndPoint);
        await c.SendAsync(1, new Hello { Version = Frame.ProtocolVersion - 1, Role = PeerRole.Scheduler, Name = "old" });
        var e = await c.ReadErrorAsync();
        Assert.Equal(ErrorCode.UnsupportedVersion, e?.Code);
        Assert.Contains($"speaks {Frame.ProtocolVersion}", e?.Message, StringComparison.Ordinal);
        Assert.True(await c.WaitClosedAsync());
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Request_before_handshake_gets_HandshakeRequired_and_disconnect()
    {
        using var c = await RawClient.ConnectAsync(_fx.EndPoint);
        await c.SendAsync(3, new Register { Node = "sneaky", Capacity = new ResourceVector(1, 1), FailureDomain = "" });
        Assert.Equal(ErrorCode.HandshakeRequired, (await c.ReadErrorAsync())?.Code);
        Assert.True(await c.WaitClosedAsync());
        Assert.False(_fx.Cell.TryGetNodeId("sneaky", out _));
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Second_handshake_gets_AlreadyHandshaken_and_connection_survives()
    {
        using var c = await OffenderAsync();
        await c.SendAsync(2, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "again" });
        Assert.Equal(ErrorCode.AlreadyHandshaken, (await c.ReadErrorAsync())?.Code);
        // The role did not change: a scheduler message is still refused for this agent connection.
        await c.SendAsync(3, new Sync());
        Assert.Equal(ErrorCode.WrongRole, (await c.ReadErrorAsync())?.Code);
        await AssertUnharmedAsync();
    }

    [Fact]
    public async Task Another_nodes_id_gets_NodeMismatch_and_changes_nothing()
    {
        using var c = await RawClient.ConnectAsync(_fx.EndPoint);
        var reg = await c.RegisterAsync("mallory", new ResourceVector(1000, 1 << 20));
        long v = _fx.Cell.Version;
        _fx.Cell.TryGetNodeId("seeded", out var seeded);
        // With credentials, naming another node is a PermissionDenied (OtherNode) of the node restriction.
        var mismatch = Auth ? ErrorCode.PermissionDenied : ErrorCode.NodeMismatch;
        await c.SendAsync(10, new Heartbeat { NodeId = _goodNode, LastVersion = 0 });
        Assert.Equal(mismatch, (await c.ReadErrorAsync())?.Code);
        // Try to complete (release) the seeded node's task by naming that node.
        _fx.Cell.TryGetAllocation(new TaskId(1, 0), out var a);
        await c.SendAsync(11, new TaskReport { NodeId = seeded.Value, Task = a.Task, Generation = a.Generation, State = TaskState.Completed, Reason = "" });
        Assert.Equal(mismatch, (await c.ReadErrorAsync())?.Code);
        // Naming its own id but someone else's task: NotBound (the task is not on this node).
        await c.SendAsync(12, new TaskReport { NodeId = reg.NodeId, Task = a.Task, Generation = a.Generation, State = TaskState.Completed, Reason = "" });
        Assert.Equal((int)TaskReportStatus.NotBound, (await c.ExpectAsync<TaskReportAck>()).Body.Value);
        await c.SendAsync(13, new Drain { Body = new StatusOnly { Value = _goodNode } });
        Assert.Equal(mismatch, (await c.ReadErrorAsync())?.Code);
        Assert.Equal(v, _fx.Cell.Version);
        Assert.True(_fx.Cell.TryGetAllocation(a.Task, out _));
        _versionBefore = v;
        await AssertUnharmedAsync();
    }

    [Fact]
    public Task Client_that_never_reads_is_disconnected_as_slow_consumer()
        // Bounded: a write stall (the server's, or this client's own TLS write) must fail the test with its reason, not
        // hang the test host.
        => NeverReadingClientAsync().WaitAsync(TimeSpan.FromMinutes(2));

    private async Task NeverReadingClientAsync()
    {
        // Enough nodes that each Sync reply is several KB.
        for (int i = 0; i < 200; i++) _fx.Cell.AddNode(new NodeSpec($"filler-{i}", new ResourceVector(1000, 1 << 20)));
        _versionBefore = _fx.Cell.Version;
        using var c = await RawClient.ConnectAsync(_fx.EndPoint, receiveBuffer: 4096);
        await c.HandshakeAsync(PeerRole.Scheduler);
        var req = Codec.FrameBytes(1, new Sync { Since = 0 });
        var metrics = _fx.Server.TransportMetrics;
        for (int i = 0; i < 20_000 && metrics.Disconnects(DisconnectReason.SlowConsumer) == 0; i++)
        {
            // A send blocks once neither side's buffers have room; the server then closes us (outbound cap, or write stall).
            try { await c.SendAsync(req).WaitAsync(TimeSpan.FromSeconds(30)); }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or TimeoutException or ObjectDisposedException) { break; }
        }
        await Wait.UntilAsync(() => metrics.Disconnects(DisconnectReason.SlowConsumer) == 1, "slow consumer disconnected");
        await AssertUnharmedAsync();
    }
}

/// <summary>Every hostile-input case again, against a TLS 1.3 listener: the limits and typed errors hold below and above TLS alike.</summary>
public sealed class HostileInputOverTlsTests : HostileInputTests
{
    protected override bool Tls => true;
}

/// <summary>
/// Every hostile-input case again over TLS with authentication on, each offender authenticated: credentials add a check,
/// they do not remove any limit or typed error.
/// </summary>
public sealed class HostileInputAuthenticatedTests : HostileInputTests
{
    protected override bool Tls => true;

    protected override bool Auth => true;
}
