using System.CommandLine;
using System.Globalization;
using Omega.Protocol;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega token create|list|revoke|generate</c> and <c>omega audit</c> (docs/protocol.md, section 12;
/// docs/security.md, section 2): credentials and the audit log of a running server. Every command but
/// <c>generate</c> connects with a credential of operator scope admin (<c>--token-file DATA/admin.token</c>).
/// </summary>
internal static class TokenCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Token();
        yield return Audit();
    }

    private static Command Token()
    {
        var cmd = new Command("token", "Create, list and revoke credentials (bearer tokens) of a running server.");
        {
            var connect = ControlCommands.ConnectOption();
            var role = new Option<string>("--role") { Description = "agent, scheduler, operator, submitter or join.", Required = true };
            var node = new Option<string?>("--node") { Description = "agent: the one node it may act for." };
            var name = new Option<string?>("--name") { Description = "scheduler: its identity (lease name); operator/join: a label." };
            var tenant = new Option<string?>("--tenant") { Description = "submitter: its tenant." };
            var tenants = new Option<string[]>("--tenants") { Description = "scheduler: the tenants it may place for (repeatable; default any).", AllowMultipleArgumentsPerToken = true };
            var scopes = new Option<string?>("--scopes") { Description = "operator: comma-separated read, drain, override, admin, break-glass (default read)." };
            var ttl = new Option<string?>("--ttl") { Description = "Time to live: 90s, 15m, 12h, 30d (required for join; default none)." };
            var uses = new Option<int>("--uses") { Description = "join: how many agents may join with it.", DefaultValueFactory = _ => 1 };
            var agentTtl = new Option<string?>("--agent-ttl") { Description = "join: time to live of each agent credential it issues (default none)." };
            var output = Output.Option();
            var create = new Command("create", "Create a credential and print its token once (it cannot be read back).")
            {
                connect, role, node, name, tenant, tenants, scopes, ttl, uses, agentTtl, output,
            };
            var tls = ClientTls.AddTo(create);
            create.SetAction((r, cancel) =>
            {
                if (!Output.TryParse("token create", r.GetValue(output), out var format)) return Task.FromResult(2);
                if (!TryParseRole(r.GetValue(role)!, out var cr)) return Usage("token create", $"--role must be agent, scheduler, operator, submitter or join, not '{r.GetValue(role)}'");
                string subject = cr switch
                {
                    CredentialRole.Agent => r.GetValue(node) ?? "",
                    CredentialRole.Submitter => r.GetValue(tenant) ?? "",
                    _ => r.GetValue(name) ?? "",
                };
                if (cr == CredentialRole.Agent && subject.Length == 0) return Usage("token create", "--role agent needs --node NODE");
                if (cr == CredentialRole.Scheduler && subject.Length == 0) return Usage("token create", "--role scheduler needs --name IDENTITY");
                if (cr == CredentialRole.Submitter && subject.Length == 0) return Usage("token create", "--role submitter needs --tenant TENANT");
                if (!TryParseScopes(r.GetValue(scopes), out var sc)) return Usage("token create", "--scopes is a comma-separated list of read, drain, override, admin, break-glass");
                if (!TryParseDuration(r.GetValue(ttl), out var t) || !TryParseDuration(r.GetValue(agentTtl), out var at)) return Usage("token create", "--ttl and --agent-ttl are like 90s, 15m, 12h or 30d");
                if (cr == CredentialRole.Join && t is null) return Usage("token create", "--role join needs --ttl (at most 24h)");
                int u = r.GetValue(uses);
                return ControlCommands.WithClientAsync("token create", r.GetValue(connect)!, tls, r, async c =>
                {
                    var (id, token, expires) = await c.CreateTokenAsync(cr, subject, sc, t, cr == CredentialRole.Join ? u : 0, r.GetValue(tenants), at, cancellationToken: cancel).ConfigureAwait(false);
                    if (format.IsDocument())
                    {
                        PrintCreated(id, token, cr, subject, sc, expires, format);
                        return 0;
                    }
                    Console.Error.WriteLine($"omega token create: credential {id} ({cr.ToString().ToLowerInvariant()} {subject}){(expires == 0 ? "" : ", expires " + DateTimeOffset.FromUnixTimeMilliseconds(expires).ToString("u", CultureInfo.InvariantCulture))}; the token is shown once:");
                    Console.WriteLine(token);
                    return 0;
                }, cancel);
            });
            cmd.Subcommands.Add(create);
        }
        {
            var connect = ControlCommands.ConnectOption();
            var output = Output.Option();
            var list = new Command("list", "List credentials: id, role, subject, scopes, expiry, uses left, revoked (never a secret).") { connect, output };
            var tls = ClientTls.AddTo(list);
            list.SetAction((r, cancel) => !Output.TryParse("token list", r.GetValue(output), out var format) ? Task.FromResult(2) : ControlCommands.WithClientAsync("token list", r.GetValue(connect)!, tls, r, async c =>
            {
                var (total, creds) = await c.ListTokensAsync(cancellationToken: cancel).ConfigureAwait(false);
                if (format.IsDocument())
                {
                    Output.Print(Output.Document("CredentialList", w =>
                    {
                        w.WriteNumber("total", total);
                        w.WriteStartArray("items");
                        foreach (var x in creds)
                        {
                            w.WriteStartObject();
                            w.WriteString("id", x.Id);
                            w.WriteString("role", x.Role.ToString().ToLowerInvariant());
                            w.WriteString("subject", x.Subject);
                            if (x.Role == CredentialRole.Operator) w.WriteString("scopes", ScopeText(x.Scopes));
                            if (x.Role == CredentialRole.Join) w.WriteNumber("usesLeft", x.UsesLeft);
                            w.WriteStartArray("tenants");
                            foreach (var t in x.Tenants) w.WriteStringValue(t);
                            w.WriteEndArray();
                            Output.Time(w, "created", x.CreatedUnixMs);
                            Output.Time(w, "expires", x.ExpiresUnixMs);
                            w.WriteBoolean("revoked", x.Revoked);
                            w.WriteString("createdBy", x.CreatedBy);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    }), format);
                    return 0;
                }
                foreach (var x in creds)
                {
                    string expires = x.ExpiresUnixMs == 0 ? "never" : DateTimeOffset.FromUnixTimeMilliseconds(x.ExpiresUnixMs).ToString("u", CultureInfo.InvariantCulture);
                    string extra = x.Role switch
                    {
                        CredentialRole.Operator => $" scopes={ScopeText(x.Scopes)}",
                        CredentialRole.Join => $" uses_left={x.UsesLeft}",
                        CredentialRole.Scheduler when x.Tenants.Count > 0 => $" tenants={string.Join(',', x.Tenants)}",
                        _ => "",
                    };
                    // wide: the creation time too.
                    string created = format == OutputFormat.Wide ? " created=" + DateTimeOffset.FromUnixTimeMilliseconds(x.CreatedUnixMs).ToString("u", CultureInfo.InvariantCulture) : "";
                    Console.WriteLine($"{x.Id} {x.Role.ToString().ToLowerInvariant()} {x.Subject}{extra} expires={expires}{(x.Revoked ? " REVOKED" : "")} by={x.CreatedBy}{created}");
                }
                return 0;
            }, cancel));
            cmd.Subcommands.Add(list);
        }
        {
            var connect = ControlCommands.ConnectOption();
            var id = new Argument<string>("id") { Description = "The credential id (16 hex digits, from omega token list)." };
            var output = Output.Option();
            var revoke = new Command("revoke", "Revoke a credential: refused from its next request on, its open connections closed; durable before the answer.") { connect, id, output };
            var tls = ClientTls.AddTo(revoke);
            revoke.SetAction((r, cancel) => !Output.TryParse("token revoke", r.GetValue(output), out var format) ? Task.FromResult(2) : ControlCommands.WithClientAsync("token revoke", r.GetValue(connect)!, tls, r, async c =>
            {
                int closed = await c.RevokeTokenAsync(r.GetValue(id)!, cancel).ConfigureAwait(false);
                Output.Emit(format, "CredentialRevoked", w =>
                {
                    w.WriteString("id", r.GetValue(id));
                    w.WriteNumber("connectionsClosed", closed);
                }, _ => Console.WriteLine($"credential {r.GetValue(id)} revoked; {closed} open connection(s) closed"));
                return 0;
            }, cancel));
            cmd.Subcommands.Add(revoke);
        }
        {
            var output = Output.Option();
            var generate = new Command("generate", "Print a new random token without contacting a server (for omega serve --admin-token-file).") { output };
            generate.SetAction(r =>
            {
                if (!Output.TryParse("token generate", r.GetValue(output), out var format)) return 2;
                string token = Omega.Server.AuthService.GenerateToken();
                Output.Emit(format, "GeneratedToken", w => w.WriteString("token", token), _ => Console.WriteLine(token));
                return 0;
            });
            cmd.Subcommands.Add(generate);
        }
        return cmd;
    }

    private static Command Audit()
    {
        var connect = ControlCommands.ConnectOption();
        var limit = new Option<int>("--limit") { Description = "The last N entries (1-10,000).", DefaultValueFactory = _ => 100 };
        var after = new Option<long>("--after") { Description = "Only entries with a sequence number above this." };
        var output = Output.Option();
        var cmd = new Command("audit", "Show the durable audit log: operator actions, joins, break-glass requests and denied requests (who, what, when, result).") { connect, limit, after, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("audit", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (r.GetValue(limit) is < 1 or > 10_000) return Usage("audit", "--limit must be 1-10,000");
            return ControlCommands.WithClientAsync("audit", r.GetValue(connect)!, tls, r, async c =>
            {
                var (total, entries) = await c.ReadAuditAsync(r.GetValue(limit), r.GetValue(after), cancel).ConfigureAwait(false);
                if (format.IsDocument())
                {
                    Output.Print(Output.Document("AuditLog", w =>
                    {
                        w.WriteNumber("total", total);
                        w.WriteStartArray("items");
                        foreach (var e in entries)
                        {
                            w.WriteStartObject();
                            w.WriteNumber("seq", e.Seq);
                            Output.Time(w, "time", e.UnixMs);
                            w.WriteString("who", e.Who);
                            w.WriteString("action", e.Action);
                            w.WriteString("target", e.Target);
                            w.WriteString("result", e.Result);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    }), format);
                    return 0;
                }
                foreach (var e in entries)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{e.Seq} {DateTimeOffset.FromUnixTimeMilliseconds(e.UnixMs):yyyy-MM-ddTHH:mm:ss.fffZ} {e.Who} {e.Action}{(e.Target.Length > 0 ? " " + e.Target : "")}: {e.Result}"));
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"omega audit: {entries.Count} of {total:N0} entries kept"));
                return 0;
            }, cancel);
        });
        return cmd;
    }

    /// <summary>A created credential as a document (<c>token create</c>, <c>break-glass</c>): the token is in it, shown once.</summary>
    internal static void PrintCreated(string id, string token, CredentialRole role, string subject, OperatorScopes scopes, long expires, OutputFormat format)
        => Output.Print(Output.Document("Credential", w =>
        {
            w.WriteString("id", id);
            w.WriteString("role", role.ToString().ToLowerInvariant());
            w.WriteString("subject", subject);
            if (role == CredentialRole.Operator) w.WriteString("scopes", ScopeText(scopes));
            Output.Time(w, "expires", expires);
            w.WriteString("token", token);
        }), format);

    private static Task<int> Usage(string command, string message)
    {
        Console.Error.WriteLine($"omega {command}: {message}");
        return Task.FromResult(2);
    }

    internal static bool TryParseRole(string s, out CredentialRole role)
    {
        role = s.ToLowerInvariant() switch
        {
            "agent" => CredentialRole.Agent,
            "scheduler" => CredentialRole.Scheduler,
            "operator" => CredentialRole.Operator,
            "submitter" => CredentialRole.Submitter,
            "join" => CredentialRole.Join,
            _ => (CredentialRole)255,
        };
        return (byte)role != 255;
    }

    internal static bool TryParseScopes(string? s, out OperatorScopes scopes)
    {
        scopes = OperatorScopes.Read;
        if (string.IsNullOrWhiteSpace(s)) return true;
        foreach (var part in s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            switch (part.ToLowerInvariant())
            {
                case "read": scopes |= OperatorScopes.Read; break;
                case "drain": scopes |= OperatorScopes.Drain; break;
                case "override": scopes |= OperatorScopes.Override; break;
                case "admin": scopes |= OperatorScopes.Admin; break;
                case "break-glass": scopes |= OperatorScopes.BreakGlass; break;
                case "all": scopes |= OperatorScopes.All; break;
                default: return false;
            }
        }
        return true;
    }

    private static string ScopeText(OperatorScopes s)
    {
        var parts = new List<string> { "read" };
        if ((s & OperatorScopes.Drain) != 0) parts.Add("drain");
        if ((s & OperatorScopes.Override) != 0) parts.Add("override");
        if ((s & OperatorScopes.Admin) != 0) parts.Add("admin");
        if ((s & OperatorScopes.BreakGlass) != 0) parts.Add("break-glass");
        return string.Join(',', parts);
    }

    internal static bool TryParseDuration(string? s, out TimeSpan? d)
    {
        d = null;
        if (string.IsNullOrWhiteSpace(s)) return true;
        s = s.Trim();
        char unit = s[^1];
        if (!double.TryParse(s[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v) || v <= 0) return false;
        d = unit switch
        {
            's' => TimeSpan.FromSeconds(v),
            'm' => TimeSpan.FromMinutes(v),
            'h' => TimeSpan.FromHours(v),
            'd' => TimeSpan.FromDays(v),
            _ => null,
        };
        return d is not null && d.Value <= TimeSpan.FromDays(3650);
    }
}
