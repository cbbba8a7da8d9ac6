using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Omega.Transport;

/// <summary>
/// TLS on a <see cref="FrameServer"/>'s listener (docs/protocol.md, section 1): TLS 1.3 only, the server's certificate,
/// and optionally client-certificate authentication (mTLS). Set on <see cref="TransportOptions.ServerTls"/>; null there
/// means a plaintext listener.
/// </summary>
public sealed class TlsServerOptions
{
    /// <summary>
    /// The server's certificate, with its private key (<see cref="TlsCertificates.LoadPemCertificate"/> loads one from
    /// PEM files; <see cref="TlsCertificates.CreateSelfSigned"/> makes one).
    /// </summary>
    public required X509Certificate2 Certificate { get; init; }

    /// <summary>
    /// When set, every client must present a certificate that chains to one of these authorities (mTLS); a client
    /// without one, or with one from another authority, fails the TLS handshake. Null: no client certificate is asked for.
    /// </summary>
    public X509Certificate2Collection? ClientCertificateAuthorities { get; init; }

    /// <summary>
    /// TLS handshakes that may be in progress at once. A handshaking peer makes the server hold a TLS record buffer
    /// (up to 16 KiB + 256 + 5 bytes) and cryptographic state before it has proved anything; further accepted
    /// connections wait (holding only their socket) for a slot, still under the handshake timeout. Default 512.
    /// </summary>
    public int MaxConcurrentHandshakes { get; init; } = 512;
}

/// <summary>
/// How a client checks the server it connects to (docs/protocol.md, section 1). Exactly one way applies, in this order:
/// <see cref="SkipVerification"/>, <see cref="PinnedPublicKeySha256"/>, <see cref="TrustedAuthorities"/>, and
/// otherwise the operating system's trusted roots with the host name checked. Set on
/// <see cref="TransportOptions.ClientTls"/>; null there means plaintext.
/// </summary>
public sealed class TlsClientOptions
{
    /// <summary>Certificates of the authorities (or the self-signed server certificate itself) the server's certificate must chain to; the host name is checked too.</summary>
    public X509Certificate2Collection? TrustedAuthorities { get; init; }

    /// <summary>
    /// The SHA-256 of the server certificate's SubjectPublicKeyInfo, as 64 hex digits (<see cref="TlsCertificates.PublicKeyPin"/>;
    /// <c>omega serve</c> prints it). When set, only the key is checked: chain and host name are not.
    /// </summary>
    public string? PinnedPublicKeySha256 { get; init; }

    /// <summary>Accept any server certificate (the channel is encrypted but the server is not authenticated). Explicit only: for tests and first contact.</summary>
    public bool SkipVerification { get; init; }

    /// <summary>The client's certificate, with its private key, for a server that requires mTLS.</summary>
    public X509Certificate2? ClientCertificate { get; init; }

    /// <summary>
    /// The name sent as SNI and checked against the certificate. Null: the host of the endpoint connected to (its
    /// address, for an IP endpoint).
    /// </summary>
    public string? TargetHost { get; init; }
}

/// <summary>Why a client refused (or failed) the TLS handshake with a server (<see cref="TransportSecurityException.Failure"/>).</summary>
public enum TlsFailure
{
    /// <summary>The server's certificate does not chain to a trusted authority (the CA file, or the system roots).</summary>
    UntrustedCertificate = 1,

    /// <summary>The server's public key does not match the pin.</summary>
    PinMismatch = 2,

    /// <summary>The certificate chains to a trusted authority but does not name the host connected to.</summary>
    NameMismatch = 3,

    /// <summary>The TLS handshake failed for another reason: the server speaks plaintext, refused our client certificate, or offers no TLS 1.3.</summary>
    HandshakeFailed = 4,

    /// <summary>The TLS handshake did not complete within the handshake timeout.</summary>
    Timeout = 5,
}

/// <summary>
/// A client refused the server's identity or could not complete TLS with it. Nothing was sent over the connection (no
/// Omega frame leaves before the server is verified). An <see cref="IOException"/>, so callers that retry on I/O errors
/// keep doing so; callers that want to fail fast test for this type.
/// </summary>
public sealed class TransportSecurityException(TlsFailure failure, string message, Exception? inner = null) : IOException(message, inner)
{
    /// <summary>What failed.</summary>
    public TlsFailure Failure { get; } = failure;
}

/// <summary>The TLS constants of the protocol.</summary>
public static class TlsProtocol
{
    /// <summary>
    /// The ALPN protocol id a server offers and a client asks for: <c>omega</c>. The protocol version is still agreed in
    /// Hello (docs/protocol.md, section 3), so the id does not change with it. A client that sends no ALPN is accepted.
    /// </summary>
    public const string ApplicationProtocolName = "omega";

    internal static readonly List<SslApplicationProtocol> ApplicationProtocols = [new SslApplicationProtocol(ApplicationProtocolName)];

    /// <summary>The first byte of a TLS handshake record (content type 22): how a server tells a TLS peer from a plaintext one.</summary>
    internal const byte HandshakeRecordType = 0x16;
}
