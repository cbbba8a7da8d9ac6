using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Omega.Transport;

/// <summary>Client side of the transport: opens a connection to a <see cref="FrameServer"/> with the same loops and limits.</summary>
public static class FrameClient
{
    private static long s_nextId;

    /// <summary>
    /// Connects and starts the connection's loops. <paramref name="server"/> is an <see cref="IPEndPoint"/> or a
    /// <see cref="DnsEndPoint"/> (a host name, resolved here through DNS; each resolved address is tried in order until
    /// one accepts). Throws <see cref="SocketException"/> if the name does not resolve or no address is reachable.
    /// With <see cref="TransportOptions.ClientTls"/> set, the TLS handshake completes and the server is verified before
    /// this returns (within <see cref="TransportOptions.HandshakeTimeout"/>); a server that fails verification, or a
    /// failed handshake, throws <see cref="TransportSecurityException"/> and nothing was sent over the connection.
    /// </summary>
    public static async Task<FrameConnection> ConnectAsync(EndPoint server, IFrameHandler handler, TransportOptions options, TransportMetrics metrics, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(options);
        var s = await ConnectSocketAsync(server, options, cancellationToken).ConfigureAwait(false);
        SslStream? ssl = null;
        if (options.ClientTls is { } tls)
        {
            try { ssl = await AuthenticateAsync(s, server, tls, options, cancellationToken).ConfigureAwait(false); }
            catch
            {
                s.Dispose();
                throw;
            }
        }
        var c = new FrameConnection(Interlocked.Increment(ref s_nextId), s, handler, options, metrics, stream: ssl);
        c.Start();
        return c;
    }

    /// <summary>The client's side of the TLS handshake: TLS 1.3, ALPN, SNI, and the server check <see cref="TlsClientOptions"/> chose.</summary>
    private static async Task<SslStream> AuthenticateAsync(Socket socket, EndPoint server, TlsClientOptions tls, TransportOptions options, CancellationToken cancellationToken)
    {
        string host = tls.TargetHost ?? server switch
        {
            DnsEndPoint d => d.Host,
            IPEndPoint ip => ip.Address.ToString(),
            _ => "",
        };
        var check = new ServerCheck(tls);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        var authentication = new SslClientAuthenticationOptions
        {
            TargetHost = host,
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = TlsProtocol.ApplicationProtocols,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = check.Validate,
            ClientCertificateContext = tls.ClientCertificate is { } mine ? SslStreamCertificateContext.Create(mine, additionalCertificates: null, offline: true) : null,
        };
        using var timeout = new CancellationTokenSource(options.HandshakeTimeout, options.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            await ssl.AuthenticateAsClientAsync(authentication, linked.Token).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or OperationCanceledException or System.ComponentModel.Win32Exception or System.Security.Cryptography.CryptographicException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested) throw;
            string where = Describe(server);
            if (check.Failure is { } f) throw new TransportSecurityException(f, $"{where}: {check.Detail}", ex);
            if (ex is OperationCanceledException)
                throw new TransportSecurityException(TlsFailure.Timeout, $"{where}: no TLS handshake within {options.HandshakeTimeout.TotalSeconds:0.#} s", ex);
            throw new TransportSecurityException(TlsFailure.HandshakeFailed,
                $"{where}: TLS handshake failed ({ex.Message}); is the server plaintext (then connect without TLS), or does it require a client certificate?", ex);
        }
    }

    /// <summary>One connection's server check; remembers why it refused, for the typed exception.</summary>
    private sealed class ServerCheck(TlsClientOptions tls)
    {
        public TlsFailure? Failure { get; private set; }

        public string Detail { get; private set; } = "";

        public bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
        {
            if (tls.SkipVerification) return true;
            if (certificate is null) return Refuse(TlsFailure.UntrustedCertificate, "the server sent no certificate");
            if (tls.PinnedPublicKeySha256 is { } pinText)
            {
                using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                string actual = TlsCertificates.PublicKeyPin(leaf);
                return TlsCertificates.TryParsePin(pinText, out var pin) && string.Equals(pin, actual, StringComparison.Ordinal)
                    || Refuse(TlsFailure.PinMismatch, $"the server's public key {actual} does not match the pin {pinText}");
            }
            if (tls.TrustedAuthorities is { } authorities)
            {
                if (!TlsValidation.ChainsTo(certificate, authorities, clientAuth: false))
                    return Refuse(TlsFailure.UntrustedCertificate, $"the server's certificate ({certificate.Subject}) does not chain to the given CA");
                // The chain is ours to judge (custom roots); the name check is the platform's, against the target host.
                if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                    return Refuse(TlsFailure.NameMismatch, $"the server's certificate does not name the host connected to");
                return true;
            }
            if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                return Refuse(TlsFailure.NameMismatch, "the server's certificate does not name the host connected to");
            if (errors != SslPolicyErrors.None)
                return Refuse(TlsFailure.UntrustedCertificate, $"the server's certificate ({certificate.Subject}) is not trusted by this system ({errors}); pass its CA or pin it");
            return true;
        }

        private bool Refuse(TlsFailure failure, string detail)
        {
            Failure = failure;
            Detail = detail;
            return false;
        }
    }

    /// <summary>
    /// Opens and closes one TCP connection to <paramref name="server"/> (resolving a host name as
    /// <see cref="ConnectAsync"/> does): a tool's fail-fast reachability check before it starts clients that would retry
    /// forever. Throws <see cref="SocketException"/> when nothing is reachable there.
    /// </summary>
    public static async Task ProbeAsync(EndPoint server, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        using var s = await ConnectSocketAsync(server, new TransportOptions(), cancellationToken).ConfigureAwait(false);
    }

    private static async Task<Socket> ConnectSocketAsync(EndPoint server, TransportOptions options, CancellationToken cancellationToken)
    {
        if (server is not DnsEndPoint dns) return await ConnectOneAsync(server, server.AddressFamily, options, cancellationToken).ConfigureAwait(false);
        // Resolve ourselves rather than hand the DnsEndPoint to Socket: a socket is created per address family, so a name
        // that resolves to both ::1 and 127.0.0.1 (localhost) works whether or not the host has IPv6 enabled.
        var addresses = await Dns.GetHostAddressesAsync(dns.Host, cancellationToken).ConfigureAwait(false);
        if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
        SocketException? last = null;
        foreach (var address in addresses)
        {
            try
            {
                return await ConnectOneAsync(new IPEndPoint(address, dns.Port), address.AddressFamily, options, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                last = e;
            }
        }
        throw last!;
    }

    private static async Task<Socket> ConnectOneAsync(EndPoint server, AddressFamily family, TransportOptions options, CancellationToken cancellationToken)
    {
        var s = new Socket(family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (options.SocketBufferSize > 0) { s.SendBufferSize = options.SocketBufferSize; s.ReceiveBufferSize = options.SocketBufferSize; }
            await s.ConnectAsync(server, cancellationToken).ConfigureAwait(false);
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Parses a server address as an operator writes it: <c>ADDRESS:PORT</c> (<c>127.0.0.1:7077</c>, <c>[::1]:7077</c>),
    /// giving an <see cref="IPEndPoint"/>, or <c>HOST:PORT</c> (<c>localhost:7077</c>, <c>omega.example.org:7077</c>),
    /// giving a <see cref="DnsEndPoint"/> that <see cref="ConnectAsync"/> resolves. The port is required and must be
    /// 1-65535. No I/O happens here: an unknown host is found out on connect.
    /// </summary>
    public static bool TryParseEndPoint(string? text, out EndPoint? endpoint)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(text)) return false;
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1) return false;
        if (!int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535) return false;
        string host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
        if (IPAddress.TryParse(host, out var address))
        {
            endpoint = new IPEndPoint(address, port);
            return true;
        }
        // A host name: letters, digits, '-', '.' (what Uri accepts as a DNS name); anything else is a typo, not a name.
        if (host.Contains(':', StringComparison.Ordinal) || Uri.CheckHostName(host) != UriHostNameType.Dns) return false;
        endpoint = new DnsEndPoint(host, port);
        return true;
    }

    /// <summary>
    /// Parses a list of server addresses separated by commas (the replicas of a highly available deployment,
    /// <c>a:7077,b:7077,c:7077</c>; one address is a list of one), each as <see cref="TryParseEndPoint"/> reads it. Spaces
    /// around an address are ignored; an empty element, a malformed address or more than 64 addresses make the whole list
    /// invalid. Duplicates are kept once, in first-seen order.
    /// </summary>
    public static bool TryParseEndPoints(string? text, out IReadOnlyList<EndPoint> endpoints)
    {
        endpoints = [];
        if (string.IsNullOrWhiteSpace(text)) return false;
        var parts = text.Split(',');
        if (parts.Length > 64) return false;
        var list = new List<EndPoint>(parts.Length);
        foreach (var part in parts)
        {
            if (!TryParseEndPoint(part.Trim(), out var e)) return false;
            if (!list.Contains(e!)) list.Add(e!);
        }
        endpoints = list;
        return true;
    }

    /// <summary>An endpoint as an operator wrote it: <c>host:port</c> for a <see cref="DnsEndPoint"/> (its own ToString prefixes the address family).</summary>
    public static string Describe(EndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        return endpoint is DnsEndPoint d ? string.Create(CultureInfo.InvariantCulture, $"{d.Host}:{d.Port}") : endpoint.ToString() ?? "";
    }
}
