using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Omega.Protocol;

namespace Omega.Transport;

/// <summary>
/// The server side of TLS for one <see cref="FrameServer"/>: TLS 1.3 only, ALPN <see cref="TlsProtocol.ApplicationProtocolName"/>,
/// the certificate context built once (not per handshake), optional client-certificate validation against the
/// configured authorities, and a bound on handshakes in progress.
/// </summary>
internal sealed class TlsAcceptor : IDisposable
{
    private readonly SslServerAuthenticationOptions _authentication;
    private readonly X509Certificate2Collection? _clientAuthorities;
    private readonly SemaphoreSlim _slots;

    public TlsAcceptor(TlsServerOptions options)
    {
        _clientAuthorities = options.ClientCertificateAuthorities;
        _slots = new SemaphoreSlim(options.MaxConcurrentHandshakes, options.MaxConcurrentHandshakes);
        _authentication = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = SslStreamCertificateContext.Create(options.Certificate, additionalCertificates: null, offline: true),
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = TlsProtocol.ApplicationProtocols,
            ClientCertificateRequired = _clientAuthorities is not null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = _clientAuthorities is null ? null : ValidateClient,
        };
    }

    /// <summary>
    /// Runs the server's side of the handshake on an accepted socket. Returns the authenticated stream, or null and why
    /// not. Never throws for anything the peer does: a failed handshake is a counted disconnect, not an exception.
    /// </summary>
    public async Task<(SslStream? Stream, DisconnectReason Failure)> AcceptAsync(Socket socket, TransportMetrics metrics, TimeProvider time, CancellationToken cancel)
    {
        // Peek at the first byte before anything else: a plaintext Omega client starts with a length prefix (0x00 for
        // any frame under 16 MiB), a TLS client with a handshake record (0x16). The plaintext one gets a typed error it
        // can read, instead of a TLS alert it cannot; and a silent peer holds no handshake slot while it waits.
        var first = new byte[1];
        try
        {
            int n = await socket.ReceiveAsync(first, SocketFlags.Peek, cancel).ConfigureAwait(false);
            if (n == 0) return (null, DisconnectReason.PeerClosed);
        }
        catch (OperationCanceledException) { return (null, DisconnectReason.HandshakeTimeout); }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { return (null, DisconnectReason.SocketError); }
        if (first[0] != TlsProtocol.HandshakeRecordType)
        {
            metrics.Error(ErrorCode.TlsRequired);
            await RefusePlaintextAsync(socket, time, cancel).ConfigureAwait(false);
            return (null, DisconnectReason.TlsRequired);
        }
        try { await _slots.WaitAsync(cancel).ConfigureAwait(false); }
        catch (OperationCanceledException) { return (null, DisconnectReason.HandshakeTimeout); }
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsServerAsync(_authentication, cancel).ConfigureAwait(false);
            return (ssl, DisconnectReason.TlsHandshakeFailed);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or ObjectDisposedException or OperationCanceledException
            or System.ComponentModel.Win32Exception or System.Security.Cryptography.CryptographicException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            return (null, ex is OperationCanceledException ? DisconnectReason.HandshakeTimeout : DisconnectReason.TlsHandshakeFailed);
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>
    /// Sends TlsRequired in plaintext and half-closes, then reads and drops what the peer already sent (at most a
    /// pre-handshake frame's worth, for at most 2 s): closing with unread bytes would make the kernel reset the
    /// connection, and the peer would lose the error frame.
    /// </summary>
    private static async Task RefusePlaintextAsync(Socket socket, TimeProvider time, CancellationToken cancel)
    {
        using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(2), time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, drain.Token);
        try
        {
            var bytes = Codec.FrameBytes(0, new ErrorMessage { Code = ErrorCode.TlsRequired, Message = "this listener speaks TLS 1.3; connect with TLS" });
            await socket.SendAsync(bytes, SocketFlags.None, linked.Token).ConfigureAwait(false);
            socket.Shutdown(SocketShutdown.Send);
            var sink = new byte[1024];
            int total = 0;
            while (total < 64 * 1024)
            {
                int n = await socket.ReceiveAsync(sink, SocketFlags.None, linked.Token).ConfigureAwait(false);
                if (n == 0) break;
                total += n;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException) { }
    }

    /// <summary>Releases the handshake slots (after every connection closed).</summary>
    public void Dispose() => _slots.Dispose();

    /// <summary>mTLS: the client's certificate must chain to one of the configured authorities. Its name is not checked (a client has no host name).</summary>
    private bool ValidateClient(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null || _clientAuthorities is null) return false;
        return TlsValidation.ChainsTo(certificate, _clientAuthorities, clientAuth: true);
    }
}

/// <summary>Chain checks against an explicit set of authorities (not the system store).</summary>
internal static class TlsValidation
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    /// <summary>
    /// True when <paramref name="certificate"/> chains to one of <paramref name="authorities"/> (custom root trust: the
    /// system roots play no part), is within its validity period and allows the usage asked for. A self-signed
    /// certificate listed among the authorities trusts itself.
    /// </summary>
    public static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection authorities, bool clientAuth)
    {
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(clientAuth ? ClientAuth : ServerAuth);
        return chain.Build(leaf);
    }
}
