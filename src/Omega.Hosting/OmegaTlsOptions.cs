namespace Omega.Hosting;

/// <summary>How the TCP server's listener is secured (<see cref="OmegaTlsOptions.Mode"/>).</summary>
public enum OmegaTlsMode
{
    /// <summary>
    /// A plaintext listener: anyone on the path can read and forge traffic. The default of this library type, so that
    /// an in-process host needs no certificate; the <c>omega</c> command uses it only with an explicit <c>--insecure</c>.
    /// </summary>
    Plaintext = 0,

    /// <summary>TLS 1.3 with the certificate and key in <see cref="OmegaTlsOptions.CertificateFile"/> and <see cref="OmegaTlsOptions.KeyFile"/> (PEM).</summary>
    Certificate = 1,

    /// <summary>
    /// TLS 1.3 with a self-signed certificate made on first start and kept (<c>server.crt</c>, <c>server.key</c>) in
    /// <see cref="OmegaTlsOptions.SelfSignedDirectory"/>; clients trust it by that file or by its pin
    /// (<see cref="OmegaRuntime.TlsCertificatePin"/>).
    /// </summary>
    SelfSigned = 2,
}

/// <summary>
/// TLS settings of the host's listener (configuration section <c>Omega:Tls</c>; docs/security.md). Validated at start:
/// files must exist and the mode must agree with what is set.
/// </summary>
public sealed class OmegaTlsOptions
{
    /// <summary>Plaintext (the library default), a certificate from files, or a self-signed one. See <see cref="OmegaTlsMode"/>.</summary>
    public OmegaTlsMode Mode { get; set; } = OmegaTlsMode.Plaintext;

    /// <summary>The server certificate (PEM; a chain may follow the leaf). Required in <see cref="OmegaTlsMode.Certificate"/>.</summary>
    public string? CertificateFile { get; set; }

    /// <summary>The certificate's private key (PEM, unencrypted PKCS#8, SEC1 or PKCS#1). Required in <see cref="OmegaTlsMode.Certificate"/>.</summary>
    public string? KeyFile { get; set; }

    /// <summary>
    /// mTLS: a PEM file of the authorities client certificates must chain to. When set, a client without such a
    /// certificate fails the TLS handshake. Only with TLS on.
    /// </summary>
    public string? ClientCaFile { get; set; }

    /// <summary>
    /// Where <see cref="OmegaTlsMode.SelfSigned"/> keeps its certificate. Null: the <c>tls</c> folder of the data
    /// directory, or for an in-memory cell <c>omega-tls/{CellName}-{port}</c> under the temporary folder.
    /// </summary>
    public string? SelfSignedDirectory { get; set; }

    /// <summary>TLS handshakes that may be in progress at once (see <c>TlsServerOptions.MaxConcurrentHandshakes</c>). Default 512.</summary>
    public int MaxConcurrentHandshakes { get; set; } = 512;
}
