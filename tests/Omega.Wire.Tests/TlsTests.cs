using System.Net;
using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>
/// Transport security over real TLS 1.3 on loopback with certificates made in the test: the client's server check (CA,
/// pin, name), mTLS, the handshake and idle timeouts on TLS, and plaintext peers on either side.
/// </summary>
public sealed class TlsTests
{
    private static readonly ResourceVector Node = new(8000, 64L << 30);

    private sealed class NullHandler : IFrameHandler
    {
        public int Frames;
        public void OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;
        public void OnFrame(FrameConnection connection, in Frame frame) => Interlocked.Increment(ref Frames);
        public void OnDisconnected(FrameConnection connection, DisconnectReason reason) { }
    }

    private static async Task<TransportSecurityException> RefusedAsync(ServerFixture fx, TlsClientOptions tls)
    {
        var e = await Assert.ThrowsAsync<TransportSecurityException>(() =>
            FrameClient.ConnectAsync(fx.EndPoint, new NullHandler(), new TransportOptions { ClientTls = tls }, new TransportMetrics("t")));
        // No Omega frame crossed: the check happens inside the TLS handshake, before Hello could be sent.
        Assert.Equal(0, fx.Server.TransportMetrics.FramesReceived);
        return e;
    }

    [Fact]
    public async Task Client_refuses_a_server_whose_certificate_is_not_from_its_CA()
    {
        await using var fx = ServerFixture.Start(tls: true);
        var e = await RefusedAsync(fx, new TlsClientOptions { TrustedAuthorities = [TestTls.OtherCa] });
        Assert.Equal(TlsFailure.UntrustedCertificate, e.Failure);
        // And with no CA at all: the system roots do not know the test CA either.
        Assert.Equal(TlsFailure.UntrustedCertificate, (await RefusedAsync(fx, new TlsClientOptions())).Failure);
    }

    [Fact]
    public async Task Client_refuses_a_server_whose_key_does_not_match_the_pin()
    {
        await using var fx = ServerFixture.Start(tls: true);
        var e = await RefusedAsync(fx, new TlsClientOptions { PinnedPublicKeySha256 = TlsCertificates.PublicKeyPin(TestTls.OtherServer) });
        Assert.Equal(TlsFailure.PinMismatch, e.Failure);
    }

    [Fact]
    public async Task Client_refuses_a_certificate_from_its_CA_for_another_name()
    {
        await using var fx = ServerFixture.Start(tls: true);
        var e = await RefusedAsync(fx, new TlsClientOptions { TrustedAuthorities = [TestTls.Ca], TargetHost = "omega.example.org" });
        Assert.Equal(TlsFailure.NameMismatch, e.Failure);
    }

    [Fact]
    public async Task Agent_start_fails_with_the_typed_error_against_an_untrusted_server()
    {
        await using var fx = ServerFixture.Start(tls: true);
        await using var agent = new AgentClient(new AgentOptions
        {
            Server = fx.EndPoint, NodeName = "n1", Capacity = Node, Seed = 3,
            Transport = new TransportOptions { ClientTls = new TlsClientOptions { PinnedPublicKeySha256 = TlsCertificates.PublicKeyPin(TestTls.OtherServer) } },
        });
        var e = await Assert.ThrowsAsync<TransportSecurityException>(() => agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(TlsFailure.PinMismatch, e.Failure);
        Assert.Equal(0, fx.Cell.NodeCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Agent_and_control_client_work_end_to_end_with_the_right_CA_or_pin(bool mtls)
    {
        await using var fx = ServerFixture.Start(engine: true, tls: true, mtls: mtls);
        await using var agent = new AgentClient(new AgentOptions
        {
            Server = fx.EndPoint, NodeName = "tls-node", Capacity = Node, Seed = 5, FailureDomain = "rack-1",
            Transport = fx.ClientTransport(mtls ? TestTls.Client : null),
        });
        await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(NodeStatus.Schedulable, await agent.HeartbeatAsync());
        // The operator tool pins the server's key instead of trusting its CA.
        var pinned = new TransportOptions { ClientTls = new TlsClientOptions { PinnedPublicKeySha256 = TlsCertificates.PublicKeyPin(TestTls.Server), ClientCertificate = mtls ? TestTls.Client : null } };
        await using (var control = await ControlClient.ConnectAsync(fx.EndPoint, pinned, "tls-test"))
        {
            var (status, reason) = await control.SubmitJobAsync(new JobSpec(new JobId(7), new TenantId(0), 1, 2, new ResourceVector(1000, 1 << 20)));
            Assert.True(status == 0, reason);
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var got = new List<AgentBinding> { await agent.Bindings.ReadAsync(cts.Token), await agent.Bindings.ReadAsync(cts.Token) };
        foreach (var b in got)
        {
            // The engine's commit reached the agent over TLS, and the agent's reports come back the same way.
            Assert.True(fx.Cell.TryGetAllocation(b.Task, out var a));
            Assert.Equal(a.Generation, b.Generation);
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Running));
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Completed));
        }
        Assert.Equal(0, fx.Cell.AllocationCount);
        Assert.Equal(0, fx.Server.TransportMetrics.Disconnects(DisconnectReason.TlsHandshakeFailed));
    }

    [Fact]
    public async Task External_scheduler_commits_over_TLS()
    {
        await using var fx = ServerFixture.Start(tls: true);
        var n = fx.Cell.AddNode(new NodeSpec("n1", Node));
        using var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, "ext");
        await c.SendAsync(2, new AcquireLease { Name = "ext", DurationMs = 60_000 });
        var lease = await c.ExpectAsync<LeaseReply>();
        Assert.Equal((byte)LeaseStatus.Granted, lease.Status);
        fx.Cell.Snapshot().TryGetNode(n, out var view);
        await c.SendAsync(3, new Commit
        {
            SchedulerId = lease.SchedulerId, Token = lease.Token, Mode = 0, Detection = 1,
            Claims = [new WireClaim(new TaskId(1, 0), n.Value, new ResourceVector(1000, 1 << 20), view.Version, 0, 0, null)],
        });
        var reply = await c.ExpectAsync<CommitReply>();
        Assert.Equal(TransactionStatus.Committed, reply.Status);
        Assert.True(fx.Cell.TryGetAllocation(new TaskId(1, 0), out _));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Mtls_refuses_a_client_without_a_certificate_or_with_one_from_another_CA(bool otherCa)
    {
        await using var fx = ServerFixture.Start(tls: true, mtls: true);
        long v = fx.Cell.Version;
        var tls = new TlsClientOptions { TrustedAuthorities = [TestTls.Ca], ClientCertificate = otherCa ? TestTls.OtherClient : null };
        var handler = new NullHandler();
        // TLS 1.3 finishes the client's side before the server has judged the client's certificate, so the refusal
        // shows either as a failed connect or as the connection closing before any frame arrives.
        FrameConnection? c = null;
        try { c = await FrameClient.ConnectAsync(fx.EndPoint, handler, new TransportOptions { ClientTls = tls }, new TransportMetrics("t")); }
        catch (IOException) { }
        if (c is not null)
        {
            c.Send(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "intruder" });
            c.Flush();
            await c.Closed.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(0, Volatile.Read(ref handler.Frames));
        }
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.TlsHandshakeFailed) == 1, "refused client counted as a failed TLS handshake");
        Assert.Equal(0, fx.Server.TransportMetrics.FramesReceived);
        Assert.Equal(v, fx.Cell.Version);
        // A client with a certificate of the right CA is still served.
        using var good = await RawClient.ConnectAsync(fx.EndPoint, clientCertificate: TestTls.Client);
        await good.RegisterAsync("good", Node);
    }

    [Fact]
    public async Task Handshake_timeout_closes_a_peer_that_never_starts_or_never_finishes_TLS()
    {
        await using var fx = ServerFixture.Start(o => o.Transport.HandshakeTimeout = TimeSpan.FromSeconds(5), fakeTime: true, tls: true);
        using var silent = await RawClient.ConnectAsync(fx.EndPoint, tls: false);
        using var stalled = await RawClient.ConnectAsync(fx.EndPoint, tls: false);
        // The start of a TLS record header, then nothing: the handshake has begun and waits for the rest.
        await stalled.SendAsync([0x16, 0x03, 0x01]);
        await Wait.UntilAsync(() => fx.Server.ConnectionCount == 2, "both connections accepted");
        fx.Server.SweepConnections();
        Assert.Equal(2, fx.Server.ConnectionCount);
        fx.Fake!.Advance(TimeSpan.FromSeconds(6));
        fx.Server.SweepConnections();
        // Closed without an error frame: there is no TLS channel to carry one.
        Assert.True(await silent.WaitClosedAsync());
        Assert.True(await stalled.WaitClosedAsync());
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.HandshakeTimeout) == 2, "both counted as handshake timeouts");
        Assert.Equal(0, fx.Server.ConnectionCount);
    }

    [Fact]
    public async Task Hello_timeout_and_idle_timeout_still_hold_after_the_TLS_handshake()
    {
        await using var fx = ServerFixture.Start(o =>
        {
            o.Transport.HandshakeTimeout = TimeSpan.FromSeconds(5);
            o.Transport.IdleTimeout = TimeSpan.FromSeconds(30);
        }, fakeTime: true, tls: true);
        using var noHello = await RawClient.ConnectAsync(fx.EndPoint);
        using var idle = await RawClient.ConnectAsync(fx.EndPoint);
        await idle.HandshakeAsync(PeerRole.Scheduler, "idle");
        fx.Fake!.Advance(TimeSpan.FromSeconds(6));
        fx.Server.SweepConnections();
        // TLS is up on this one, so its timeout comes as the typed error, encrypted.
        Assert.Equal(ErrorCode.HandshakeTimeout, (await noHello.ReadErrorAsync())?.Code);
        Assert.True(await noHello.WaitClosedAsync());
        fx.Fake.Advance(TimeSpan.FromSeconds(30));
        fx.Server.SweepConnections();
        Assert.Equal(ErrorCode.IdleTimeout, (await idle.ReadErrorAsync())?.Code);
        Assert.True(await idle.WaitClosedAsync());
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.IdleTimeout) == 1, "idle disconnect counted");
    }

    [Fact]
    public async Task Plaintext_client_against_a_TLS_server_gets_TlsRequired_and_the_server_goes_on()
    {
        await using var fx = ServerFixture.Start(tls: true);
        using var good = await RawClient.ConnectAsync(fx.EndPoint);
        var reg = await good.RegisterAsync("good", Node);
        using (var plain = await RawClient.ConnectAsync(fx.EndPoint, tls: false))
        {
            await plain.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "plain" });
            Assert.Equal(ErrorCode.TlsRequired, (await plain.ReadErrorAsync())?.Code);
            Assert.True(await plain.WaitClosedAsync());
        }
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.TlsRequired) == 1, "plaintext peer counted");
        Assert.Equal(1, fx.Server.TransportMetrics.ErrorsSent(ErrorCode.TlsRequired));
        await good.SendAsync(9, new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 });
        Assert.Equal(NodeStatus.Schedulable, (await good.ExpectAsync<HeartbeatAck>()).Status);
        // The agent library turns the plaintext refusal into a failed start, not an endless retry.
        await using var agent = new AgentClient(new AgentOptions { Server = fx.EndPoint, NodeName = "plain-agent", Capacity = Node, Seed = 1 });
        var e = await Assert.ThrowsAsync<AgentRequestException>(() => agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(ErrorCode.TlsRequired, e.Code);
    }

    [Fact]
    public async Task TLS_client_against_a_plaintext_server_fails_with_the_typed_error()
    {
        await using var fx = ServerFixture.Start();
        var e = await Assert.ThrowsAsync<TransportSecurityException>(() =>
            FrameClient.ConnectAsync(fx.EndPoint, new NullHandler(), new TransportOptions { ClientTls = new TlsClientOptions { SkipVerification = true } }, new TransportMetrics("t")));
        Assert.Equal(TlsFailure.HandshakeFailed, e.Failure);
        // The server saw a frame prefix far above its pre-handshake limit: a typed refusal, counted, nothing crashed.
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.Disconnects(DisconnectReason.FrameTooLarge) == 1, "oversized prefix counted");
    }

    [Fact]
    public async Task Handshakes_in_progress_are_bounded_and_a_waiting_client_proceeds_once_a_slot_frees()
    {
        await using var fx = ServerFixture.Start(o => o.Transport.ServerTls = new TlsServerOptions { Certificate = TestTls.Server, MaxConcurrentHandshakes = 1 }, tls: true);
        using var stalled = await RawClient.ConnectAsync(fx.EndPoint, tls: false);
        await stalled.SendAsync([0x16, 0x03, 0x01]);
        await Wait.UntilAsync(() => fx.Server.ConnectionCount == 1, "stalled handshake accepted");
        var waiting = RawClient.ConnectAsync(fx.EndPoint);
        // Give the waiting client every chance to (wrongly) get through while the only slot is held.
        await Task.WhenAny(waiting, Task.Delay(300));
        Assert.False(waiting.IsCompleted, "a second handshake ran although the only slot was held");
        stalled.Dispose();
        using var c = await waiting.WaitAsync(TimeSpan.FromSeconds(15));
        await c.RegisterAsync("after-slot", Node);
    }

    [Fact]
    public void Pins_are_read_as_operators_write_them()
    {
        string pin = TlsCertificates.PublicKeyPin(TestTls.Server);
        Assert.Matches("^[0-9a-f]{64}$", pin);
        string colons = string.Join(':', Enumerable.Range(0, 32).Select(i => pin.Substring(2 * i, 2).ToUpperInvariant()));
        Assert.True(TlsCertificates.TryParsePin("sha256:" + colons, out var parsed));
        Assert.Equal(pin, parsed);
        Assert.False(TlsCertificates.TryParsePin(pin[..63], out _));
        Assert.False(TlsCertificates.TryParsePin(pin[..63] + "g", out _));
    }

    [Fact]
    public async Task A_self_signed_certificate_written_as_PEM_serves_TLS_and_is_trusted_by_file_or_pin()
    {
        var dir = Directory.CreateTempSubdirectory("omega-tls-");
        try
        {
            using var made = TlsCertificates.CreateSelfSignedForHost();
            string cert = Path.Combine(dir.FullName, "server.crt"), key = Path.Combine(dir.FullName, "server.key");
            TlsCertificates.WritePem(made, cert, key);
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
            using var loaded = TlsCertificates.LoadPemCertificate(cert, key);
            await using var fx = ServerFixture.Start(o => o.Transport.ServerTls = new TlsServerOptions { Certificate = loaded });
            foreach (var tls in new[]
            {
                new TlsClientOptions { TrustedAuthorities = TlsCertificates.LoadAuthorities(cert) },
                new TlsClientOptions { PinnedPublicKeySha256 = TlsCertificates.PublicKeyPin(made) },
                new TlsClientOptions { TrustedAuthorities = TlsCertificates.LoadAuthorities(cert), TargetHost = "localhost" },
            })
            {
                await using var control = await ControlClient.ConnectAsync(fx.EndPoint, new TransportOptions { ClientTls = tls }, "pem");
                await control.QueryJobAsync(new JobId(1));
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
