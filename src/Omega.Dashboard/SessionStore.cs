using System.Security.Cryptography;
using Omega.Protocol;

namespace Omega.Dashboard;

/// <summary>A signed-in browser: who it is, what it may do, and the token its state-changing requests must echo.</summary>
internal sealed class DashboardSession
{
    public required string Id;
    public required string CredentialId;
    public required string Who;
    public required OperatorScopes Scopes;
    public required string Csrf;
    public required long ExpiresAtMs;
    public long LastUsedMs;

    // Break-glass carries every scope, as it does on the wire (Credential.Has).
    public bool Has(OperatorScopes scope) => (Scopes & scope) == scope || (Scopes & OperatorScopes.BreakGlass) != 0;
}

/// <summary>
/// Sessions in memory only: a restart signs everyone out, which is the safe direction (no session secret on disk).
/// Bounded in number (the least recently used goes first), ending at an absolute lifetime, after an idle timeout, and
/// the moment the credential behind them is revoked or expires (checked by the caller on every request).
/// </summary>
internal sealed class SessionStore(DashboardOptions options, TimeProvider time)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, DashboardSession> _sessions = new(StringComparer.Ordinal);

    private long NowMs => time.GetUtcNow().ToUnixTimeMilliseconds();

    public int Count
    {
        get { lock (_lock) return _sessions.Count; }
    }

    public DashboardSession Create(string credentialId, string who, OperatorScopes scopes, long credentialExpiresMs)
    {
        long now = NowMs;
        long expires = now + (long)options.SessionLifetime.TotalMilliseconds;
        if (credentialExpiresMs != 0) expires = Math.Min(expires, credentialExpiresMs);
        var s = new DashboardSession
        {
            // 256 random bits each: the cookie cannot be guessed, and the CSRF token is independent of it.
            Id = NewSecret(), CredentialId = credentialId, Who = who, Scopes = scopes, Csrf = NewSecret(), ExpiresAtMs = expires, LastUsedMs = now,
        };
        lock (_lock)
        {
            PurgeLocked(now);
            while (_sessions.Count >= Math.Max(1, options.MaxSessions))
            {
                DashboardSession? oldest = null;
                foreach (var x in _sessions.Values)
                    if (oldest is null || x.LastUsedMs < oldest.LastUsedMs) oldest = x;
                _sessions.Remove(oldest!.Id);
            }
            _sessions[s.Id] = s;
        }
        return s;
    }

    /// <summary>The live session for a cookie value (touching it), or null when unknown, expired or idle too long.</summary>
    public DashboardSession? Get(string? id)
    {
        if (string.IsNullOrEmpty(id)) return null;
        long now = NowMs;
        lock (_lock)
        {
            if (!_sessions.TryGetValue(id, out var s)) return null;
            if (now >= s.ExpiresAtMs || now - s.LastUsedMs >= (long)options.SessionIdleTimeout.TotalMilliseconds)
            {
                _sessions.Remove(id);
                return null;
            }
            s.LastUsedMs = now;
            return s;
        }
    }

    public void Remove(string id)
    {
        lock (_lock) _sessions.Remove(id);
    }

    private void PurgeLocked(long now)
    {
        List<string>? dead = null;
        foreach (var s in _sessions.Values)
            if (now >= s.ExpiresAtMs || now - s.LastUsedMs >= (long)options.SessionIdleTimeout.TotalMilliseconds) (dead ??= new()).Add(s.Id);
        if (dead is not null) foreach (var d in dead) _sessions.Remove(d);
    }

    public static string NewSecret() => System.Buffers.Text.Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    /// <summary>Constant-time comparison of two secrets (a CSRF token against the session's).</summary>
    public static bool SecretEquals(string? a, string b)
        => a is not null && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(a), System.Text.Encoding.ASCII.GetBytes(b));
}
