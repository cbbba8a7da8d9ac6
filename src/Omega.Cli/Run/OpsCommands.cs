using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Omega.Agent;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Cli.Run;

/// <summary>
/// regops (issue 13): <c>omega doctor</c> (the post-incident cleanup check) and <c>omega break-glass</c> (a bounded,
/// audited emergency credential). Runbooks: docs/operations.md.
/// </summary>
internal static class OpsCommands
{
    /// <summary>Exit code of <c>omega doctor</c> when something needs cleanup.</summary>
    public const int ExitNeedsCleanup = 3;

    public static IEnumerable<Command> Create()
    {
        yield return Doctor();
        yield return BreakGlass();
    }

    private static Command Doctor()
    {
        var connect = ControlCommands.ConnectOption();
        var cmd = new Command("doctor", "Post-incident cleanup check: live overrides, emergency quotas, leaked (expired, unreleased) reservations and recovery budgets still borrowed. Exit 0 when clean, 3 when something needs cleanup.") { connect };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => ControlCommands.WithClientAsync("doctor", r.GetValue(connect)!, tls, r, async c =>
        {
            var ci = CultureInfo.InvariantCulture;
            var now = DateTimeOffset.UtcNow;
            int findings = 0;
            var overrides = new List<Override>();
            string? next = null;
            do
            {
                var page = await c.ListAsync(Override.KindName, null, null, 500, next, cancel).ConfigureAwait(false);
                overrides.AddRange(page.Items.OfType<Override>());
                next = page.Continue;
            }
            while (next is not null);

            var live = overrides.Where(o => o.Status.Phase != Override.PhaseExpired && o.Metadata.DeletionTimestamp is null).ToList();
            Console.WriteLine($"live overrides: {live.Count}");
            foreach (var o in live)
            {
                bool overdue = o.ExpiresAt is { } e && e <= now;
                Console.WriteLine($"  override/{o.Metadata.Name} {o.Spec.Type} {o.Spec.Target} expires {o.ExpiresAt?.ToString("O", ci)}{(overdue ? " (PAST ITS TTL, not yet reverted)" : "")} by {o.Spec.Author}: {o.Spec.Reason}");
            }
            findings += live.Count;
            var quotas = live.Where(o => o.Spec.Type == OverrideType.EmergencyQuota).ToList();
            Console.WriteLine($"emergency quotas: {quotas.Count}");
            foreach (var o in quotas)
                Console.WriteLine($"  tenant {o.Spec.Target}: +{o.Spec.Extra.ToVector()} (override/{o.Metadata.Name})");

            var (_, holds) = await c.InspectAsync(InspectTarget.Reservations, 10_000).ConfigureAwait(false);
            var leaked = holds.Where(l => l.EndsWith("expired=true", StringComparison.Ordinal)).ToList();
            Console.WriteLine($"leaked reservations (expired, not released): {leaked.Count}");
            foreach (var l in leaked) Console.WriteLine("  " + l);
            findings += leaked.Count;

            // Recovery budgets are the topology work's kind (issue 13, regtopo): read generically, so this check works
            // before and after it is merged. A budget is still borrowed when its status says so.
            int borrowed = 0;
            try
            {
                var budgets = await c.ListAsync("RecoveryBudget", null, null, 500, null, cancel).ConfigureAwait(false);
                foreach (var b in budgets.Items)
                {
                    using var doc = JsonDocument.Parse(ObjectCodec.Serialize(b));
                    if (doc.RootElement.TryGetProperty("status", out var st) && st.TryGetProperty("borrowed", out var bw)
                        && (bw.ValueKind == JsonValueKind.True || (bw.ValueKind == JsonValueKind.Number && bw.GetDouble() > 0)))
                    {
                        borrowed++;
                        Console.WriteLine($"  recoverybudget/{b.Metadata.Name}: borrowed {bw.GetRawText()}");
                    }
                }
                Console.WriteLine($"recovery budgets still borrowed: {borrowed}");
            }
            catch (AgentRequestException e)
            {
                Console.WriteLine($"recovery budgets still borrowed: unknown (this server has no RecoveryBudget kind: {e.Code})");
            }
            findings += borrowed;
            Console.WriteLine(findings == 0 ? "doctor: clean" : $"doctor: {findings} item(s) need cleanup");
            return findings == 0 ? 0 : ExitNeedsCleanup;
        }, cancel));
        return cmd;
    }

    private static Command BreakGlass()
    {
        var connect = ControlCommands.ConnectOption();
        var name = new Option<string>("--name") { Description = "Who will use it (the operator's name; in the audit log).", Required = true };
        var reason = new Option<string>("--reason") { Description = "Why (required; in the audit log).", Required = true };
        var ttl = new Option<string>("--ttl") { Description = "How long it lives: at most the server's maximum (4h by default).", DefaultValueFactory = _ => "1h" };
        var cmd = new Command("break-glass", "Issue a short-lived operator credential with the break-glass scope (every request it makes is audited). Needs an admin credential.") { connect, name, reason, ttl };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!TokenCommands.TryParseDuration(r.GetValue(ttl), out var t) || t is null)
            {
                Console.Error.WriteLine("omega break-glass: --ttl is like 15m or 1h");
                return Task.FromResult(2);
            }
            return ControlCommands.WithClientAsync("break-glass", r.GetValue(connect)!, tls, r, async c =>
            {
                var (id, token, expires) = await c.CreateTokenAsync(CredentialRole.Operator, r.GetValue(name)!, OperatorScopes.BreakGlass, t, reason: r.GetValue(reason)).ConfigureAwait(false);
                Console.Error.WriteLine($"omega break-glass: credential {id} (operator {r.GetValue(name)}, break-glass) expires {DateTimeOffset.FromUnixTimeMilliseconds(expires).ToString("u", CultureInfo.InvariantCulture)}; every request it makes is audited; the token is shown once:");
                Console.WriteLine(token);
                return 0;
            }, cancel);
        });
        return cmd;
    }
}
