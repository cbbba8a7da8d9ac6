using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Omega.Transport;

/// <summary>
/// Certificates for the transport: load PEM files, make a self-signed server certificate (ECDSA P-256, no external
/// tools), write it as PEM, and compute the public-key pin clients check with <see cref="TlsClientOptions.PinnedPublicKeySha256"/>.
/// </summary>
public static class TlsCertificates
{
    /// <summary>
    /// Loads a certificate and its private key from PEM files (the key PKCS#8, SEC1 EC or PKCS#1 RSA, unencrypted). The
    /// result is re-imported through PKCS#12 so that the key is a persisted one: SslStream refuses ephemeral keys on some
    /// platforms. Throws <see cref="CryptographicException"/> when the files do not hold a matching certificate and key.
    /// </summary>
    public static X509Certificate2 LoadPemCertificate(string certificateFile, string keyFile)
    {
        using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Loads every certificate of a PEM file (a CA bundle, or one self-signed server certificate to trust). Throws
    /// <see cref="CryptographicException"/> when the file holds none.
    /// </summary>
    public static X509Certificate2Collection LoadAuthorities(string pemFile)
    {
        var c = new X509Certificate2Collection();
        c.ImportFromPemFile(pemFile);
        if (c.Count == 0) throw new CryptographicException($"{pemFile} holds no PEM certificate");
        return c;
    }

    /// <summary>
    /// A self-signed server certificate (ECDSA P-256, SHA-256) for <paramref name="dnsNames"/> and
    /// <paramref name="addresses"/>, valid from a minute ago for <paramref name="validity"/>. Its key is persisted in
    /// the returned object (usable by SslStream); <see cref="WritePem"/> saves it.
    /// </summary>
    public static X509Certificate2 CreateSelfSigned(string subjectName, IEnumerable<string> dnsNames, IEnumerable<IPAddress> addresses, TimeSpan validity)
    {
        ArgumentNullException.ThrowIfNull(dnsNames);
        ArgumentNullException.ThrowIfNull(addresses);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=" + subjectName), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var d in dnsNames) san.AddDnsName(d);
        foreach (var a in addresses) san.AddIpAddress(a);
        request.CertificateExtensions.Add(san.Build());
        // A leaf that is also its own trust anchor: clients trust it by --ca (this file) or by --pin (its key).
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddMinutes(-1), now.Add(validity));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// The self-signed certificate <c>omega serve</c> and <c>omega run</c> make for themselves: names <c>localhost</c>
    /// and this machine's host name, addresses 127.0.0.1 and ::1 plus <paramref name="listenAddress"/> when it is a
    /// specific one, valid for a year.
    /// </summary>
    public static X509Certificate2 CreateSelfSignedForHost(IPAddress? listenAddress = null)
    {
        var names = new List<string> { "localhost" };
        string host = Dns.GetHostName();
        if (!string.IsNullOrEmpty(host) && !names.Contains(host, StringComparer.OrdinalIgnoreCase) && Uri.CheckHostName(host) == UriHostNameType.Dns) names.Add(host);
        var addresses = new List<IPAddress> { IPAddress.Loopback, IPAddress.IPv6Loopback };
        if (listenAddress is not null && !listenAddress.Equals(IPAddress.Any) && !listenAddress.Equals(IPAddress.IPv6Any) && !addresses.Contains(listenAddress))
            addresses.Add(listenAddress);
        return CreateSelfSigned("omega self-signed", names, addresses, TimeSpan.FromDays(365));
    }

    /// <summary>
    /// Writes <paramref name="certificate"/> as PEM to <paramref name="certificateFile"/> and its private key (PKCS#8)
    /// to <paramref name="keyFile"/>; the key file is created readable by the owner only (on Unix).
    /// </summary>
    public static void WritePem(X509Certificate2 certificate, string certificateFile, string keyFile)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var key = certificate.GetECDsaPrivateKey() as AsymmetricAlgorithm ?? certificate.GetRSAPrivateKey()
            ?? throw new ArgumentException("the certificate has no ECDSA or RSA private key", nameof(certificate));
        string keyPem = PemEncoding.WriteString("PRIVATE KEY", key.ExportPkcs8PrivateKey());
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        // Key first and to a temporary name: a crash never leaves a certificate whose key file is missing or partial.
        string keyTemp = $"{keyFile}.{Guid.NewGuid():N}.tmp";
        using (var w = new StreamWriter(new FileStream(keyTemp, options), new UTF8Encoding(false))) w.Write(keyPem);
        File.Move(keyTemp, keyFile, overwrite: true);
        string certTemp = $"{certificateFile}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(certTemp, certificate.ExportCertificatePem() + "\n");
        File.Move(certTemp, certificateFile, overwrite: true);
    }

    /// <summary>
    /// The pin of a certificate: SHA-256 over its DER SubjectPublicKeyInfo, as 64 lowercase hex digits. It names the
    /// key, not the certificate, so it survives re-issuing a certificate for the same key.
    /// </summary>
    public static string PublicKeyPin(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return Convert.ToHexStringLower(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
    }

    /// <summary>
    /// Reads a pin as an operator writes it: 64 hex digits, any case, optionally with <c>:</c> separators and a
    /// <c>sha256:</c> prefix. Gives the canonical form (64 lowercase hex digits).
    /// </summary>
    public static bool TryParsePin(string? text, out string pin)
    {
        pin = "";
        if (string.IsNullOrWhiteSpace(text)) return false;
        var t = text.Trim();
        if (t.StartsWith("sha256:", StringComparison.OrdinalIgnoreCase)) t = t[7..];
        t = t.Replace(":", "", StringComparison.Ordinal);
        if (t.Length != 64) return false;
        foreach (char ch in t)
            if (!char.IsAsciiHexDigit(ch)) return false;
        pin = t.ToLower(CultureInfo.InvariantCulture);
        return true;
    }
}
