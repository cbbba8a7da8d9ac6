namespace Omega.Server;

/// <summary>
/// Authentication and authorization of an <see cref="OmegaServer"/> (issue 11; docs/protocol.md, section 12). Setting
/// <see cref="ServerOptions.Authentication"/> turns it on: every connection must present a credential in its Hello and
/// every request is checked against the credential's role and scope. Null (the library default, as plaintext is for TLS)
/// leaves the server open to anyone who reaches its port; <c>omega serve</c> and <c>omega run</c> turn it on.
/// </summary>
public sealed class AuthOptions
{
    /// <summary>Audit entries kept; the oldest are deleted beyond it. Default 10,000.</summary>
    public int AuditRetention { get; set; } = 10_000;

    /// <summary>Credentials stored at most (revoked and expired included until dropped at the limit). Default 100,000.</summary>
    public int MaxCredentials { get; set; } = 100_000;

    /// <summary>Denials and refused handshakes written to the audit log per second at most (the rest are counted). Default 64.</summary>
    public int AuditDenialsPerSecond { get; set; } = 64;

    /// <summary>Longest time to live of a join token. Default 24 h.</summary>
    public TimeSpan MaxJoinTokenTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Most uses of a join token. Default 100,000.</summary>
    public int MaxJoinTokenUses { get; set; } = 100_000;

    /// <summary>
    /// How often connections whose credential expired are closed without waiting for their next request; null leaves
    /// it to explicit <see cref="AuthService.SweepExpired"/> calls (tests). Default 1 s.
    /// </summary>
    public TimeSpan? ExpirySweepPeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>regops (issue 13): the longest TTL of a break-glass credential created over the wire (default 4 h; a TTL and a reason are required).</summary>
    public TimeSpan MaxBreakGlassTtl { get; set; } = TimeSpan.FromHours(4);
}

/// <summary>A credential that <see cref="AuthService.CheckBearer"/> accepted (never its secret).</summary>
/// <param name="CredentialId">The credential's id (the middle part of the token).</param>
/// <param name="Who">How the audit log names it: <c>role:subject[scopes](id)</c>.</param>
/// <param name="Role">Its role (always operator today).</param>
/// <param name="Scopes">Its scopes (read always included).</param>
/// <param name="ExpiresUnixMs">When it expires, Unix milliseconds; 0 for never.</param>
public sealed record BearerIdentity(string CredentialId, string Who, Omega.Protocol.CredentialRole Role, Omega.Protocol.OperatorScopes Scopes, long ExpiresUnixMs);
