using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// A stored credential: never its secret, only SHA-256 of it. Mutable fields (revoked, uses left) change under the
/// <see cref="AuthService"/> lock; <see cref="Revoked"/> is also read without it on every request (volatile).
/// </summary>
internal sealed class Credential
{
    public required string Id;
    public required byte[] Hash;
    public CredentialRole Role;
    public string Subject = "";
    public OperatorScopes Scopes;
    public string[] Tenants = [];
    public long CreatedUnixMs;
    public long ExpiresUnixMs;
    public int UsesLeft;
    public long AgentTtlMs;
    public volatile bool Revoked;
    public string CreatedBy = "";

    // Connections authenticated with this credential now (guarded by the AuthService lock): revocation closes them.
    public readonly HashSet<FrameConnection> Connections = new();

    public bool ExpiredAt(long nowUnixMs) => ExpiresUnixMs != 0 && nowUnixMs >= ExpiresUnixMs;

    public bool Has(OperatorScopes scope) => Role == CredentialRole.Operator && ((Scopes & scope) == scope || (Scopes & OperatorScopes.BreakGlass) != 0);

    /// <summary>How the credential is named in Welcome and the audit log: <c>role:subject[scopes]</c>.</summary>
    public string Principal => Role switch
    {
        CredentialRole.Operator => $"operator:{Subject}[{ScopeNames(Scopes)}]",
        CredentialRole.Scheduler when Tenants.Length > 0 => $"scheduler:{Subject}[{string.Join(',', Tenants)}]",
        _ => $"{RoleName(Role)}:{Subject}",
    };

    public string Who => $"{Principal}({Id})";

    public CredentialInfo Info => new(Id, Role, Subject, Scopes, Tenants, CreatedUnixMs, ExpiresUnixMs, UsesLeft, Revoked, CreatedBy);

    public static string RoleName(CredentialRole r) => r switch
    {
        CredentialRole.Agent => "agent",
        CredentialRole.Scheduler => "scheduler",
        CredentialRole.Operator => "operator",
        CredentialRole.Submitter => "submitter",
        CredentialRole.Join => "join",
        _ => ((byte)r).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public static string ScopeNames(OperatorScopes s)
    {
        var parts = new List<string>(5) { "read" };
        if ((s & OperatorScopes.Drain) != 0) parts.Add("drain");
        if ((s & OperatorScopes.Override) != 0) parts.Add("override");
        if ((s & OperatorScopes.Admin) != 0) parts.Add("admin");
        if ((s & OperatorScopes.BreakGlass) != 0) parts.Add("break-glass");
        return string.Join(',', parts);
    }

    // ---------------------------------------------------------------- record encoding (Cell security record "c/<id>")

    public const string KeyPrefix = "c/";

    private const byte FormatVersion = 1;

    /// <summary>
    /// Layout (little-endian): <c>format:u8 role:u8 scopes:i32 revoked:u8 created:i64 expires:i64 usesLeft:i32
    /// agentTtlMs:i64 hash:32 subject:str createdBy:str nTenants:i32 tenant:str*</c>, str = <c>len:i32 utf8</c>.
    /// </summary>
    public byte[] Encode()
    {
        using var ms = new MemoryStream(128);
        using var w = new BinaryWriter(ms, Encoding.UTF8);
        w.Write(FormatVersion);
        w.Write((byte)Role);
        w.Write((int)Scopes);
        w.Write(Revoked ? (byte)1 : (byte)0);
        w.Write(CreatedUnixMs);
        w.Write(ExpiresUnixMs);
        w.Write(UsesLeft);
        w.Write(AgentTtlMs);
        w.Write(Hash);
        WriteString(w, Subject);
        WriteString(w, CreatedBy);
        w.Write(Tenants.Length);
        foreach (var t in Tenants) WriteString(w, t);
        w.Flush();
        return ms.ToArray();
    }

    public static Credential Decode(string id, ReadOnlySpan<byte> v)
    {
        if (v.Length < 1 + 1 + 4 + 1 + 8 + 8 + 4 + 8 + 32 || v[0] != FormatVersion) throw new InvalidDataException($"credential record {id} has an unknown layout");
        int p = 1;
        var c = new Credential { Id = id, Hash = [] };
        c.Role = (CredentialRole)v[p++];
        c.Scopes = (OperatorScopes)BinaryPrimitives.ReadInt32LittleEndian(v[p..]); p += 4;
        c.Revoked = v[p++] != 0;
        c.CreatedUnixMs = BinaryPrimitives.ReadInt64LittleEndian(v[p..]); p += 8;
        c.ExpiresUnixMs = BinaryPrimitives.ReadInt64LittleEndian(v[p..]); p += 8;
        c.UsesLeft = BinaryPrimitives.ReadInt32LittleEndian(v[p..]); p += 4;
        c.AgentTtlMs = BinaryPrimitives.ReadInt64LittleEndian(v[p..]); p += 8;
        c.Hash = v.Slice(p, 32).ToArray(); p += 32;
        c.Subject = ReadString(v, ref p);
        c.CreatedBy = ReadString(v, ref p);
        int n = BinaryPrimitives.ReadInt32LittleEndian(v[p..]); p += 4;
        if (n is < 0 or > CreateToken.MaxTenants) throw new InvalidDataException($"credential record {id} lists {n} tenants");
        c.Tenants = new string[n];
        for (int i = 0; i < n; i++) c.Tenants[i] = ReadString(v, ref p);
        return c;
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write(b.Length);
        w.Write(b);
    }

    internal static string ReadString(ReadOnlySpan<byte> v, ref int p)
    {
        int n = BinaryPrimitives.ReadInt32LittleEndian(v[p..]);
        if (n < 0 || p + 4 + n > v.Length) throw new InvalidDataException("security record string runs past its record");
        string s = Encoding.UTF8.GetString(v.Slice(p + 4, n));
        p += 4 + n;
        return s;
    }

    // ---------------------------------------------------------------- tokens

    /// <summary>Token prefix: the format's name and version.</summary>
    public const string TokenPrefix = "omega1.";

    /// <summary>Length of a well-formed token: prefix, 16 hex digits, a dot, 43 base64url characters.</summary>
    public const int TokenLength = 7 + 16 + 1 + 43;

    /// <summary>A new random token: <c>omega1.&lt;16 hex id&gt;.&lt;43 base64url secret&gt;</c> (8 + 32 bytes from the system CSPRNG).</summary>
    public static string NewToken() => NewToken(out _, out _);

    /// <summary>A new random token, with its id and secret parts.</summary>
    public static string NewToken(out string id, out string secret)
    {
        id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        secret = System.Buffers.Text.Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));
        return TokenPrefix + id + "." + secret;
    }

    /// <summary>Splits a token into id and secret; false for any other shape (checked without looking anything up).</summary>
    public static bool TryParse(string? token, out string id, out string secret)
    {
        id = secret = "";
        if (token is null || token.Length != TokenLength || !token.StartsWith(TokenPrefix, StringComparison.Ordinal) || token[23] != '.') return false;
        for (int i = 7; i < 23; i++)
            if (!char.IsAsciiHexDigitLower(token[i]) && !char.IsAsciiDigit(token[i])) return false;
        for (int i = 24; i < TokenLength; i++)
            if (!(char.IsAsciiLetterOrDigit(token[i]) || token[i] is '-' or '_')) return false;
        id = token.Substring(7, 16);
        secret = token.Substring(24);
        return true;
    }

    public static byte[] HashSecret(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));
}
