using System.CommandLine;
using System.Security.Cryptography;
using Omega.Agent;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Cli;

/// <summary>
/// The TLS flags of every command that connects to a server (operator commands, <c>omega agents</c>,
/// <c>omega loadgen --connect</c>): TLS is on and the server is verified by default. <c>--ca FILE</c> trusts a CA (or a
/// self-signed server certificate) and checks the host name; <c>--pin SHA256</c> trusts one public key;
/// <c>--insecure-skip-verify</c> encrypts without verifying; <c>--insecure</c> speaks plaintext (to a server started with
/// <c>--insecure</c>); <c>--client-cert</c>/<c>--client-key</c> for a server that requires mTLS. Without a flag, the
/// environment's <c>OMEGA_CA</c>, <c>OMEGA_TLS_PIN</c>, <c>OMEGA_CLIENT_CERT</c> and <c>OMEGA_CLIENT_KEY</c> apply;
/// without those, the system's trusted roots.
/// </summary>
internal sealed class ClientTls
{
    public Option<string?> Ca { get; } = new("--ca") { Description = "Verify the server by this PEM CA file (or the self-signed certificate omega serve printed). Env: OMEGA_CA." };
    public Option<string?> Pin { get; } = new("--pin") { Description = "Verify the server by the SHA-256 pin of its public key (omega serve prints it). Env: OMEGA_TLS_PIN or OMEGA_PIN." };
    public Option<bool> SkipVerify { get; } = new("--insecure-skip-verify") { Description = "TLS without verifying the server (encrypted, not authenticated)." };
    public Option<bool> Insecure { get; } = new("--insecure") { Description = "Plaintext, no TLS: only for a server started with --insecure." };
    public Option<string?> ClientCert { get; } = new("--client-cert") { Description = "PEM client certificate, for a server that requires mTLS (--client-ca). Env: OMEGA_CLIENT_CERT." };
    public Option<string?> ClientKey { get; } = new("--client-key") { Description = "PEM private key of --client-cert. Env: OMEGA_CLIENT_KEY." };
    public Option<string?> ServerName { get; } = new("--server-name") { Description = "The name to expect in the server's certificate (default: the host of --connect)." };
    public Option<string?> Token { get; } = new("--token") { Description = "The bearer credential (omega1.…) to present; omega serve writes the first one to DATA/admin.token. Env: OMEGA_TOKEN." };
    public Option<string?> TokenFile { get; } = new("--token-file") { Description = "Read the credential from this file (e.g. DATA/admin.token). Env: OMEGA_TOKEN_FILE." };

    /// <summary>Adds the flags to <paramref name="command"/> and returns them.</summary>
    public static ClientTls AddTo(Command command)
    {
        var t = new ClientTls();
        command.Options.Add(t.Ca);
        command.Options.Add(t.Pin);
        command.Options.Add(t.SkipVerify);
        command.Options.Add(t.Insecure);
        command.Options.Add(t.ClientCert);
        command.Options.Add(t.ClientKey);
        command.Options.Add(t.ServerName);
        command.Options.Add(t.Token);
        command.Options.Add(t.TokenFile);
        return t;
    }

    /// <summary>
    /// The credential to present (docs/protocol.md, section 12): <c>--token</c>, else <c>--token-file</c>, else the
    /// environment's <c>OMEGA_TOKEN</c>, else <c>OMEGA_TOKEN_FILE</c>; null when none is given (a server with
    /// authentication on then refuses the connection with Unauthenticated). A usage error for both flags at once, an
    /// unreadable file, or a token that is not of the form <c>omega1.&lt;id&gt;.&lt;secret&gt;</c>.
    /// </summary>
    public bool TryResolveToken(ParseResult r, out string? token, out string? error)
    {
        token = null;
        error = null;
        string? flag = r.GetValue(Token), file = r.GetValue(TokenFile);
        if (flag is not null && file is not null)
        {
            error = "choose one of --token and --token-file";
            return false;
        }
        if (flag is null && file is null)
        {
            flag = Environment.GetEnvironmentVariable("OMEGA_TOKEN") is { Length: > 0 } t ? t : null;
            file = flag is null && Environment.GetEnvironmentVariable("OMEGA_TOKEN_FILE") is { Length: > 0 } f ? f : null;
        }
        if (file is not null)
        {
            try { flag = File.ReadAllText(file).Trim(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                error = $"cannot read the token file {file}: {e.Message}";
                return false;
            }
        }
        if (flag is null) return true;
        flag = flag.Trim();
        if (!Omega.Server.AuthService.IsWellFormedToken(flag))
        {
            error = "the token is not of the form omega1.<16 hex digits>.<43 characters> (omega token create prints one; omega serve writes the first to DATA/admin.token)";
            return false;
        }
        token = flag;
        return true;
    }

    /// <summary>
    /// The transport options the flags ask for, or a usage error (one line on stderr from the caller, exit code 2):
    /// conflicting flags, a missing file, a malformed pin, a key that does not match its certificate.
    /// </summary>
    public bool TryResolve(ParseResult r, out TransportOptions transport, out string? error)
    {
        transport = new TransportOptions();
        error = null;
        string? ca = r.GetValue(Ca), pin = r.GetValue(Pin), cert = r.GetValue(ClientCert), key = r.GetValue(ClientKey);
        bool skip = r.GetValue(SkipVerify), insecure = r.GetValue(Insecure);
        int chosen = (ca is null ? 0 : 1) + (pin is null ? 0 : 1) + (skip ? 1 : 0) + (insecure ? 1 : 0);
        if (chosen > 1)
        {
            error = "choose one of --ca, --pin, --insecure-skip-verify and --insecure";
            return false;
        }
        if (insecure)
        {
            if (cert is not null || key is not null) error = "--client-cert and --client-key need TLS; drop --insecure";
            return error is null;
        }
        // The environment stands in for flags that were not given (never against one that was).
        if (chosen == 0)
        {
            ca = Environment.GetEnvironmentVariable("OMEGA_CA") is { Length: > 0 } envCa ? envCa : null;
            // OMEGA_PIN is the short spelling (issue 17); OMEGA_TLS_PIN, the first one, wins when both are set.
            string? envPin = Environment.GetEnvironmentVariable("OMEGA_TLS_PIN") is { Length: > 0 } longPin ? longPin
                : Environment.GetEnvironmentVariable("OMEGA_PIN") is { Length: > 0 } shortPin ? shortPin : null;
            pin = ca is null ? envPin : null;
        }
        if (cert is null && key is null)
        {
            cert = Environment.GetEnvironmentVariable("OMEGA_CLIENT_CERT") is { Length: > 0 } c ? c : null;
            key = Environment.GetEnvironmentVariable("OMEGA_CLIENT_KEY") is { Length: > 0 } k ? k : null;
        }
        if ((cert is null) != (key is null))
        {
            error = "--client-cert and --client-key go together";
            return false;
        }
        try
        {
            string? canonicalPin = null;
            if (pin is not null && !TlsCertificates.TryParsePin(pin, out canonicalPin))
            {
                error = $"--pin must be 64 hex digits (the SHA-256 of the server's public key), not '{pin}'";
                return false;
            }
            if (ca is not null && !File.Exists(ca))
            {
                error = $"--ca file not found: {ca}";
                return false;
            }
            transport.ClientTls = new TlsClientOptions
            {
                SkipVerification = skip,
                PinnedPublicKeySha256 = canonicalPin,
                TrustedAuthorities = ca is null ? null : TlsCertificates.LoadAuthorities(ca),
                ClientCertificate = cert is null ? null : TlsCertificates.LoadPemCertificate(cert, key!),
                TargetHost = r.GetValue(ServerName),
            };
            return true;
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            error = $"cannot load the TLS files: {e.Message}";
            return false;
        }
    }

    /// <summary>
    /// One line for a failed connection that names what to do: a refused certificate, a TLS/plaintext mismatch, or
    /// nothing listening.
    /// </summary>
    public static string Explain(Exception e, string where) => e switch
    {
        TransportSecurityException { Failure: TlsFailure.UntrustedCertificate or TlsFailure.PinMismatch or TlsFailure.NameMismatch } t =>
            $"refused the server at {where}: {t.Failure}: {t.Message} (pass --ca FILE or --pin SHA256; omega serve prints both)",
        TransportSecurityException t => $"TLS with the server at {where} failed: {t.Message} (--insecure if the server runs with --insecure)",
        AgentRequestException { Code: ErrorCode.TlsRequired } => $"the server at {where} requires TLS: drop --insecure",
        AgentRequestException { Code: ErrorCode.Unauthenticated } a => $"the server at {where} refused the credential: Unauthenticated: {a.Message} (pass --token or --token-file; omega serve wrote the first one to DATA/admin.token)",
        AgentRequestException { Code: ErrorCode.CredentialRevoked or ErrorCode.CredentialExpired or ErrorCode.JoinTokenExhausted } a => $"the server at {where} refused the credential: {a.Code}: {a.Message}",
        _ => $"cannot reach the server at {where}: {e.Message}",
    };
}
