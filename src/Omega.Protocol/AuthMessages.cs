using MessagePack;

namespace Omega.Protocol;

// Authentication messages (issue 11; docs/protocol.md, section 12). Same conventions as every body: a map with integer
// keys, unknown keys skipped, missing keys default.

/// <summary>A credential as <c>ListTokens</c> shows it (never its secret).</summary>
/// <param name="Id">The credential id (16 hex digits).</param>
/// <param name="Role">Its role.</param>
/// <param name="Subject">Node name, scheduler identity, tenant name or label.</param>
/// <param name="Scopes">Operator scopes (operators only).</param>
/// <param name="Tenants">A scheduler's tenant list (empty: any tenant).</param>
/// <param name="CreatedUnixMs">When it was created, Unix milliseconds.</param>
/// <param name="ExpiresUnixMs">When it expires, Unix milliseconds; 0 = never.</param>
/// <param name="UsesLeft">Join tokens: uses left.</param>
/// <param name="Revoked">True once revoked.</param>
/// <param name="CreatedBy">The principal that created it.</param>
public sealed record CredentialInfo(string Id, CredentialRole Role, string Subject, OperatorScopes Scopes, IReadOnlyList<string> Tenants,
    long CreatedUnixMs, long ExpiresUnixMs, int UsesLeft, bool Revoked, string CreatedBy);

/// <summary>One entry of the audit log.</summary>
/// <param name="Seq">Its sequence number (grows by one per entry, never reused).</param>
/// <param name="UnixMs">When, Unix milliseconds.</param>
/// <param name="Who">The principal and credential id, or <c>unauthenticated</c> and the peer's address.</param>
/// <param name="Action">The request (<c>Operate DrainNode</c>, <c>CreateToken</c>, <c>Hello</c>, ...).</param>
/// <param name="Target">What it was about.</param>
/// <param name="Result"><c>ok</c>, an outcome, or <c>denied: reason</c>.</param>
public sealed record AuditEntry(long Seq, long UnixMs, string Who, string Action, string Target, string Result);

internal struct Join : IWireMessage<Join>
{
    public string Node;

    public static MessageType Type => MessageType.Join;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Node ?? "");
    }

    public static Join Read(ref MessagePackReader r)
    {
        var m = new Join { Node = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Node = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}


internal struct JoinReply : IWireMessage<JoinReply>
{
    public string Token;
    public string CredentialId;
    public long ExpiresUnixMs;

    public static MessageType Type => MessageType.JoinReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Token ?? "");
        w.Write(1); w.Write(CredentialId ?? "");
        w.Write(2); w.Write(ExpiresUnixMs);
    }

    public static JoinReply Read(ref MessagePackReader r)
    {
        var m = new JoinReply { Token = "", CredentialId = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Token = Codec.ReadString(ref r, 1024); break;
                case 1: m.CredentialId = Codec.ReadString(ref r, 1024); break;
                case 2: m.ExpiresUnixMs = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct CreateToken : IWireMessage<CreateToken>
{
    public CredentialRole Role;
    public string Subject;
    public OperatorScopes Scopes;
    public long TtlMs;
    public int Uses;
    public IReadOnlyList<string>? Tenants;
    public long AgentTtlMs;
    // regops (issue 13), key 7: why a break-glass credential is issued (required for one; recorded in the audit log).
    public string? Reason;

    /// <summary>Most tenants a scheduler credential may list.</summary>
    public const int MaxTenants = 1024;

    public static MessageType Type => MessageType.CreateToken;

    public readonly void Write(ref MessagePackWriter w)
    {
        var tenants = Tenants ?? Array.Empty<string>();
        int n = 5 + (tenants.Count > 0 ? 1 : 0) + (AgentTtlMs != 0 ? 1 : 0) + (string.IsNullOrEmpty(Reason) ? 0 : 1);
        w.WriteMapHeader(n);
        w.Write(0); w.Write((byte)Role);
        w.Write(1); w.Write(Subject ?? "");
        w.Write(2); w.Write((int)Scopes);
        w.Write(3); w.Write(TtlMs);
        w.Write(4); w.Write(Uses);
        if (tenants.Count > 0)
        {
            w.Write(5); w.WriteArrayHeader(tenants.Count);
            foreach (var t in tenants) w.Write(t);
        }
        if (AgentTtlMs != 0) { w.Write(6); w.Write(AgentTtlMs); }
        if (!string.IsNullOrEmpty(Reason)) { w.Write(7); w.Write(Reason); }
    }

    public static CreateToken Read(ref MessagePackReader r)
    {
        var m = new CreateToken { Subject = "", Tenants = Array.Empty<string>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Role = (CredentialRole)r.ReadByte(); break;
                case 1: m.Subject = Codec.ReadString(ref r, 1024); break;
                case 2: m.Scopes = (OperatorScopes)r.ReadInt32(); break;
                case 3: m.TtlMs = r.ReadInt64(); break;
                case 4: m.Uses = r.ReadInt32(); break;
                case 5:
                    int count = Codec.ReadArray(ref r, MaxTenants);
                    var list = new string[count];
                    for (int j = 0; j < count; j++) list[j] = Codec.ReadString(ref r);
                    Codec.EndContainer(ref r);
                    m.Tenants = list;
                    break;
                case 6: m.AgentTtlMs = r.ReadInt64(); break;
                case 7: m.Reason = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TokenCreated : IWireMessage<TokenCreated>
{
    public string Id;
    public string Token;
    public long ExpiresUnixMs;

    public static MessageType Type => MessageType.TokenCreated;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Id ?? "");
        w.Write(1); w.Write(Token ?? "");
        w.Write(2); w.Write(ExpiresUnixMs);
    }

    public static TokenCreated Read(ref MessagePackReader r)
    {
        var m = new TokenCreated { Id = "", Token = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Id = Codec.ReadString(ref r, 1024); break;
                case 1: m.Token = Codec.ReadString(ref r, 1024); break;
                case 2: m.ExpiresUnixMs = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}


internal struct ListTokens : IWireMessage<ListTokens>
{
    public int Limit;

    public static MessageType Type => MessageType.ListTokens;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Limit);
    }

    public static ListTokens Read(ref MessagePackReader r)
    {
        var m = new ListTokens();
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Limit = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TokenList : IWireMessage<TokenList>
{
    /// <summary>Most entries a TokenList or AuditLog carries.</summary>
    public const int MaxEntries = 10_000;

    public int Total;
    public IReadOnlyList<CredentialInfo> Credentials;

    public static MessageType Type => MessageType.TokenList;

    public readonly void Write(ref MessagePackWriter w)
    {
        var list = Credentials ?? Array.Empty<CredentialInfo>();
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Total);
        w.Write(1); w.WriteArrayHeader(list.Count);
        foreach (var c in list)
        {
            w.WriteMapHeader(10);
            w.Write(0); w.Write(c.Id);
            w.Write(1); w.Write((byte)c.Role);
            w.Write(2); w.Write(c.Subject);
            w.Write(3); w.Write((int)c.Scopes);
            w.Write(4); w.WriteArrayHeader(c.Tenants.Count);
            foreach (var t in c.Tenants) w.Write(t);
            w.Write(5); w.Write(c.CreatedUnixMs);
            w.Write(6); w.Write(c.ExpiresUnixMs);
            w.Write(7); w.Write(c.UsesLeft);
            w.Write(8); w.Write(c.Revoked);
            w.Write(9); w.Write(c.CreatedBy);
        }
    }

    public static TokenList Read(ref MessagePackReader r)
    {
        var m = new TokenList { Credentials = Array.Empty<CredentialInfo>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Total = r.ReadInt32(); break;
                case 1:
                    int count = Codec.ReadArray(ref r, MaxEntries);
                    var list = new CredentialInfo[count];
                    for (int j = 0; j < count; j++) list[j] = ReadCredential(ref r);
                    Codec.EndContainer(ref r);
                    m.Credentials = list;
                    break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }

    private static CredentialInfo ReadCredential(ref MessagePackReader r)
    {
        string id = "", subject = "", by = "";
        CredentialRole role = default;
        OperatorScopes scopes = default;
        string[] tenants = [];
        long created = 0, expires = 0;
        int uses = 0;
        bool revoked = false;
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: id = Codec.ReadString(ref r); break;
                case 1: role = (CredentialRole)r.ReadByte(); break;
                case 2: subject = Codec.ReadString(ref r, 1024); break;
                case 3: scopes = (OperatorScopes)r.ReadInt32(); break;
                case 4:
                    int count = Codec.ReadArray(ref r, CreateToken.MaxTenants);
                    tenants = new string[count];
                    for (int j = 0; j < count; j++) tenants[j] = Codec.ReadString(ref r);
                    Codec.EndContainer(ref r);
                    break;
                case 5: created = r.ReadInt64(); break;
                case 6: expires = r.ReadInt64(); break;
                case 7: uses = r.ReadInt32(); break;
                case 8: revoked = r.ReadBoolean(); break;
                case 9: by = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return new CredentialInfo(id, role, subject, scopes, tenants, created, expires, uses, revoked, by);
    }
}

internal struct RevokeToken : IWireMessage<RevokeToken>
{
    public string Id;

    public static MessageType Type => MessageType.RevokeToken;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Id ?? "");
    }

    public static RevokeToken Read(ref MessagePackReader r)
    {
        var m = new RevokeToken { Id = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Id = Codec.ReadString(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TokenRevoked : IWireMessage<TokenRevoked>
{
    public string Id;
    public int Closed;

    public static MessageType Type => MessageType.TokenRevoked;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Id ?? "");
        w.Write(1); w.Write(Closed);
    }

    public static TokenRevoked Read(ref MessagePackReader r)
    {
        var m = new TokenRevoked { Id = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Id = Codec.ReadString(ref r); break;
                case 1: m.Closed = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct ReadAudit : IWireMessage<ReadAudit>
{
    public int Limit;
    public long After;

    public static MessageType Type => MessageType.ReadAudit;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(After > 0 ? 2 : 1);
        w.Write(0); w.Write(Limit);
        if (After > 0) { w.Write(1); w.Write(After); }
    }

    public static ReadAudit Read(ref MessagePackReader r)
    {
        var m = new ReadAudit();
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Limit = r.ReadInt32(); break;
                case 1: m.After = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct AuditLog : IWireMessage<AuditLog>
{
    public int Total;
    public IReadOnlyList<AuditEntry> Entries;

    public static MessageType Type => MessageType.AuditLog;

    public readonly void Write(ref MessagePackWriter w)
    {
        var list = Entries ?? Array.Empty<AuditEntry>();
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Total);
        w.Write(1); w.WriteArrayHeader(list.Count);
        foreach (var e in list)
        {
            w.WriteMapHeader(6);
            w.Write(0); w.Write(e.Seq);
            w.Write(1); w.Write(e.UnixMs);
            w.Write(2); w.Write(e.Who);
            w.Write(3); w.Write(e.Action);
            w.Write(4); w.Write(e.Target);
            w.Write(5); w.Write(e.Result);
        }
    }

    public static AuditLog Read(ref MessagePackReader r)
    {
        var m = new AuditLog { Entries = Array.Empty<AuditEntry>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Total = r.ReadInt32(); break;
                case 1:
                    int count = Codec.ReadArray(ref r, TokenList.MaxEntries);
                    var list = new AuditEntry[count];
                    for (int j = 0; j < count; j++)
                    {
                        long seq = 0, at = 0;
                        string who = "", action = "", target = "", result = "";
                        int k = Codec.ReadMap(ref r);
                        for (int f = 0; f < k; f++)
                        {
                            switch (Codec.ReadKey(ref r))
                            {
                                case 0: seq = r.ReadInt64(); break;
                                case 1: at = r.ReadInt64(); break;
                                case 2: who = Codec.ReadString(ref r, 1024); break;
                                case 3: action = Codec.ReadString(ref r, 1024); break;
                                case 4: target = Codec.ReadString(ref r, 1024); break;
                                case 5: result = Codec.ReadString(ref r, 1024); break;
                                default: Codec.Skip(ref r); break;
                            }
                        }
                        Codec.EndContainer(ref r);
                        list[j] = new AuditEntry(seq, at, who, action, target, result);
                    }
                    Codec.EndContainer(ref r);
                    m.Entries = list;
                    break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
