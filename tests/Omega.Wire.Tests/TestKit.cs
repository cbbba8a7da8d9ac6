using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>
/// A cell, optionally an engine, and a server on a loopback port. Authentication is OFF unless <c>auth: true</c> (the
/// library default): the tests that use the kit without it are about framing, limits, lifecycle, binding and
/// durability, not credentials; AuthTests, and the hostile and fuzz suites' authenticated variants, turn it on.
/// </summary>
internal sealed class ServerFixture : IAsyncDisposable
{
    public Cell Cell = null!;

    /// <summary>With <c>auth: true</c>: an operator credential with every scope (the one <c>omega serve</c> writes at first start).</summary>
    public string AdminToken = "";
    public SchedulingEngine? Engine;
    public OmegaServer Server = null!;
    public FakeTimeProvider? Fake;

    public IPEndPoint EndPoint => Server.EndPoint;

    /// <summary>Endpoints of running fixtures that speak TLS: <see cref="RawClient.ConnectAsync"/> speaks TLS to them unless told otherwise.</summary>
    internal static readonly ConcurrentDictionary<IPEndPoint, bool> TlsEndPoints = new();

    public bool Tls { get; private set; }

    /// <summary>
    /// Fixtures with authentication on, by endpoint: a <see cref="RawClient"/> handshake without an explicit token
    /// presents a valid credential of the right kind (see <see cref="DefaultToken"/>), so suites written before
    /// credentials (hostile input, fuzzing) run authenticated unchanged.
    /// </summary>
    internal static readonly ConcurrentDictionary<IPEndPoint, ServerFixture> AuthEndPoints = new();

    private readonly ConcurrentDictionary<string, string> _defaultTokens = new();

    /// <summary>A credential for a raw client's Hello: an agent credential for the node named <paramref name="name"/>, or a scheduler credential <c>raw-scheduler</c>.</summary>
    public string DefaultToken(PeerRole role, string name)
        => role == PeerRole.Agent
            ? _defaultTokens.GetOrAdd("agent/" + name, n => Server.Auth.CreateCredential(CredentialRole.Agent, n[6..]))
            : _defaultTokens.GetOrAdd("scheduler", _ => Server.Auth.CreateCredential(CredentialRole.Scheduler, "raw-scheduler"));

    /// <summary>
    /// Starts a server; with <paramref name="tls"/> its listener speaks TLS 1.3 with <see cref="TestTls.Server"/> (and
    /// <paramref name="mtls"/> requires client certificates of <see cref="TestTls.Ca"/>).
    /// </summary>
    public static ServerFixture Start(Action<ServerOptions>? configure = null, bool engine = false, bool fakeTime = false, bool startWorkers = true, Action<Cell>? seed = null, Action<SchedulingOptions>? scheduling = null,
        bool tls = false, bool mtls = false, bool auth = false)
    {
        var fx = new ServerFixture();
        var time = fakeTime ? (fx.Fake = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero))) : (TimeProvider)TimeProvider.System;
        fx.Cell = new Cell(new CellOptions { Time = time, Name = "wire-test" });
        seed?.Invoke(fx.Cell);
        if (engine)
        {
            var so = new SchedulingOptions { Time = time, Seed = 42 };
            so.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5) });
            scheduling?.Invoke(so);
            fx.Engine = new SchedulingEngine(fx.Cell, so);
            if (startWorkers) fx.Engine.Start();
        }
        var options = new ServerOptions { Name = "test", Time = time };
        options.Transport.Time = time;
        if (fakeTime)
        {
            // Tests drive timeouts and leases by hand: timers would fire on every Advance.
            options.Transport.SweepInterval = TimeSpan.FromDays(1);
            options.LifecyclePeriod = null;
        }
        // Expired credentials: with fake time the tests sweep by hand (AuthService.SweepExpired).
        if (auth) options.Authentication = new AuthOptions { ExpirySweepPeriod = fakeTime ? null : TimeSpan.FromSeconds(1) };
        if (tls || mtls) options.Transport.ServerTls = new TlsServerOptions { Certificate = TestTls.Server, ClientCertificateAuthorities = mtls ? [TestTls.Ca] : null };
        configure?.Invoke(options);
        fx.Server = new OmegaServer(fx.Cell, fx.Engine, new IPEndPoint(IPAddress.Loopback, 0), options);
        fx.Tls = options.Transport.ServerTls is not null;
        if (fx.Tls) TlsEndPoints[fx.Server.EndPoint] = true;
        if (auth)
        {
            fx.AdminToken = fx.Server.Auth.CreateCredential(CredentialRole.Operator, "admin", OperatorScopes.All);
            AuthEndPoints[fx.Server.EndPoint] = fx;
        }
        fx.Server.Start();
        return fx;
    }

    /// <summary>Client transport options that verify this fixture's server (by <see cref="TestTls.Ca"/>) when it speaks TLS.</summary>
    public TransportOptions ClientTransport(X509Certificate2? clientCertificate = null)
        => new() { ClientTls = Tls ? new TlsClientOptions { TrustedAuthorities = [TestTls.Ca], ClientCertificate = clientCertificate } : null };

    public async ValueTask DisposeAsync()
    {
        TlsEndPoints.TryRemove(Server.EndPoint, out _);
        AuthEndPoints.TryRemove(Server.EndPoint, out _);
        await Server.DisposeAsync();
        if (Engine is not null) await Engine.DisposeAsync();
        Cell.Dispose();
    }
}

/// <summary>
/// Certificates made once per test process (ECDSA P-256, by the same code paths as production): a CA, a server
/// certificate it issued for localhost/127.0.0.1, a client certificate it issued, and a second, unrelated CA with its own
/// server and client certificates (the "wrong" ones).
/// </summary>
internal static class TestTls
{
    private static readonly Lazy<(X509Certificate2 Ca, X509Certificate2 Server, X509Certificate2 Client)> s_good = new(() => Issue("omega-test-ca"));
    private static readonly Lazy<(X509Certificate2 Ca, X509Certificate2 Server, X509Certificate2 Client)> s_other = new(() => Issue("other-ca"));

    public static X509Certificate2 Ca => s_good.Value.Ca;
    public static X509Certificate2 Server => s_good.Value.Server;
    public static X509Certificate2 Client => s_good.Value.Client;
    public static X509Certificate2 OtherCa => s_other.Value.Ca;
    public static X509Certificate2 OtherServer => s_other.Value.Server;
    public static X509Certificate2 OtherClient => s_other.Value.Client;

    private static (X509Certificate2, X509Certificate2, X509Certificate2) Issue(string caName)
    {
        using var caKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=" + caName, caKey, System.Security.Cryptography.HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caReq.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caReq.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var caWithKey = caReq.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(2));
        var ca = X509CertificateLoader.LoadCertificate(caWithKey.RawData);
        return (ca, Leaf(caWithKey, "localhost", server: true), Leaf(caWithKey, "node-client", server: false));
    }

    private static X509Certificate2 Leaf(X509Certificate2 ca, string name, bool server)
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=" + name, key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        if (server) { san.AddIpAddress(IPAddress.Loopback); san.AddIpAddress(IPAddress.IPv6Loopback); }
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new System.Security.Cryptography.Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        var now = DateTimeOffset.UtcNow;
        using var pub = req.Create(ca, now.AddMinutes(-5), now.AddDays(1), System.Security.Cryptography.RandomNumberGenerator.GetBytes(12));
        using var withKey = pub.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }
}

/// <summary>
/// A raw loopback connection for hostile input: sends any bytes, reads frames, detects the server closing. Against a
/// fixture that speaks TLS it speaks TLS too (verifying the server by <see cref="TestTls.Ca"/>), unless <c>tls: false</c>
/// forces plaintext: the hostile bytes then travel inside TLS records, as an attacker who completed TLS would send them.
/// </summary>
internal sealed class RawClient : IDisposable
{
    private readonly Socket _s;
    private readonly Stream? _tls;
    private byte[] _buf = new byte[1 << 16];
    private int _len;

    private readonly IPEndPoint _ep;

    private RawClient(Socket s, Stream? tls, IPEndPoint ep)
    {
        _s = s;
        _tls = tls;
        _ep = ep;
    }

    public Socket Socket => _s;

    public static async Task<RawClient> ConnectAsync(IPEndPoint ep, int receiveBuffer = 0, bool? tls = null, X509Certificate2? clientCertificate = null)
    {
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer > 0) s.ReceiveBufferSize = receiveBuffer;
        await s.ConnectAsync(ep);
        if (!(tls ?? ServerFixture.TlsEndPoints.ContainsKey(ep))) return new RawClient(s, null, ep);
        var ssl = new SslStream(new NetworkStream(s, ownsSocket: false));
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && TlsValidation.ChainsTo(cert, [TestTls.Ca], clientAuth: false),
            ClientCertificateContext = clientCertificate is null ? null : SslStreamCertificateContext.Create(clientCertificate, null, offline: true),
        });
        return new RawClient(s, ssl, ep);
    }

    public async Task SendAsync(byte[] bytes)
    {
        if (_tls is not null)
        {
            try { await _tls.WriteAsync(bytes); }
            catch (IOException e) { throw new SocketException((int)SocketError.ConnectionReset, e.Message); }
            return;
        }
        int sent = 0;
        while (sent < bytes.Length) sent += await _s.SendAsync(bytes.AsMemory(sent), SocketFlags.None);
    }

    /// <summary>Ends the sending direction (TLS: close_notify first) and keeps reading.</summary>
    public async Task ShutdownSendAsync()
    {
        if (_tls is SslStream ssl)
        {
            try { await ssl.ShutdownAsync(); } catch (IOException) { }
        }
        try { _s.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
    }

    public Task SendAsync<T>(uint rid, T msg) where T : IWireMessage<T> => SendAsync(Codec.FrameBytes(rid, msg));

    /// <summary>Next frame, or null when the server closed the connection. Fails the test after the timeout.</summary>
    public async Task<(MessageType Type, uint Rid, byte[] Body)?> ReadFrameAsync(int timeoutMs = 10_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        while (true)
        {
            if (_len >= 9)
            {
                uint length = BinaryPrimitives.ReadUInt32BigEndian(_buf);
                if (_len >= 4 + length)
                {
                    var type = (MessageType)_buf[4];
                    uint rid = BinaryPrimitives.ReadUInt32BigEndian(_buf.AsSpan(5));
                    var body = _buf.AsSpan(9, (int)length - 5).ToArray();
                    Buffer.BlockCopy(_buf, 4 + (int)length, _buf, 0, _len - 4 - (int)length);
                    _len -= 4 + (int)length;
                    return (type, rid, body);
                }
                if (4 + length > _buf.Length) Array.Resize(ref _buf, (int)(4 + length));
            }
            int n;
            try { n = _tls is null ? await _s.ReceiveAsync(_buf.AsMemory(_len), SocketFlags.None, cts.Token) : await _tls.ReadAsync(_buf.AsMemory(_len), cts.Token); }
            catch (SocketException) { return null; }
            catch (IOException) { return null; }
            catch (OperationCanceledException) { throw new TimeoutException("no frame from the server within the timeout"); }
            if (n == 0) return null;
            _len += n;
        }
    }

    /// <summary>Reads until an Error frame (returned) or the close (null); other frames are skipped.</summary>
    public async Task<ErrorMessage?> ReadErrorAsync()
    {
        while (true)
        {
            var f = await ReadFrameAsync();
            if (f is null) return null;
            if (f.Value.Type == MessageType.Error)
            {
                Assert.True(Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var e, out var err), err);
                return e;
            }
        }
    }

    /// <summary>True once the server has closed the connection (all further frames are drained).</summary>
    public async Task<bool> WaitClosedAsync()
    {
        while (true)
        {
            var f = await ReadFrameAsync();
            if (f is null) return true;
        }
    }

    public async Task<T> ExpectAsync<T>() where T : IWireMessage<T>
    {
        var f = await ReadFrameAsync();
        Assert.NotNull(f);
        if (f.Value.Type == MessageType.Error)
        {
            Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var e, out _);
            Assert.Fail($"expected {T.Type}, got error {e.Code}: {e.Message}");
        }
        Assert.Equal(T.Type, f.Value.Type);
        Assert.True(Codec.TryDecode<T>(new ReadOnlySequence<byte>(f.Value.Body), out var m, out var err), err);
        return m!;
    }

    /// <summary>
    /// Like <see cref="ExpectAsync{T}"/>, but frames the server may push unasked at any time (binding pushes) are read
    /// past: an agent's node can be handed bindings by any scheduler, so a reply is not always the next frame.
    /// </summary>
    public async Task<T> ExpectPastPushesAsync<T>() where T : IWireMessage<T>
    {
        while (true)
        {
            var f = await ReadFrameAsync();
            Assert.NotNull(f);
            if (f.Value.Type == MessageType.Bindings) continue;
            if (f.Value.Type == MessageType.Error)
            {
                Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var e, out _);
                Assert.Fail($"expected {T.Type}, got error {e.Code}: {e.Message}");
            }
            Assert.Equal(T.Type, f.Value.Type);
            Assert.True(Codec.TryDecode<T>(new ReadOnlySequence<byte>(f.Value.Body), out var m, out var err), err);
            return m!;
        }
    }

    public async Task<Welcome> HandshakeAsync(PeerRole role, string name = "raw", string? token = null)
    {
        token ??= ServerFixture.AuthEndPoints.TryGetValue(_ep, out var fx) ? fx.DefaultToken(role, name) : null;
        await SendAsync(1, new Hello { Version = Omega.Protocol.Frame.ProtocolVersion, Role = role, Name = name, Token = token });
        return await ExpectAsync<Welcome>();
    }

    public async Task<Registered> RegisterAsync(string node, ResourceVector capacity, long resumeFrom = 0, string? token = null)
    {
        await HandshakeAsync(PeerRole.Agent, node, token);
        await SendAsync(2, new Register { Node = node, Capacity = capacity, FailureDomain = "fd", ResumeFrom = resumeFrom });
        return await ExpectAsync<Registered>();
    }

    public void Dispose()
    {
        _tls?.Dispose();
        _s.Dispose();
    }

    public static byte[] Frame(byte type, uint rid, ReadOnlySpan<byte> body)
    {
        var b = new byte[9 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(5 + body.Length));
        b[4] = type;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(5), rid);
        body.CopyTo(b.AsSpan(9));
        return b;
    }

    public static byte[] Prefix(uint length) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, length); return b; }
}

internal static class Wait
{
    /// <summary>Polls a condition until it holds (fails the test after the timeout): no fixed sleeps.</summary>
    /// <summary>As below, with the failure message computed at the timeout (so it can show the state reached).</summary>
    public static async Task UntilAsync(Func<bool> condition, Func<string> what, int timeoutMs = 15_000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) Assert.Fail($"timed out after {timeoutMs} ms waiting for: {what()}");
            await Task.Delay(5);
        }
    }

    public static async Task UntilAsync(Func<bool> condition, string what, int timeoutMs = 15_000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) Assert.Fail($"timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }
}
