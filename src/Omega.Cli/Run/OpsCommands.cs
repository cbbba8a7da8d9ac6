using System.CommandLine;
using System.Globalization;
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
        var output = Output.Option();
        var cmd = new Command("doctor", "Post-incident cleanup check: live overrides, emergency quotas, leaked (expired, unreleased) reservations and recovery budgets still borrowed. Exit 0 when clean, 3 when something needs cleanup.") { connect, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => !Output.TryParse("doctor", r.GetValue(output), out var format) ? Task.FromResult(2) : ControlCommands.WithClientAsync("doctor", r.GetValue(connect)!, tls, r, async c =>
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
            findings += live.Count;
            var quotas = live.Where(o => o.Spec.Type == OverrideType.EmergencyQuota).ToList();

            var (_, holds) = await c.InspectAsync(InspectTarget.Reservations, 10_000, cancel).ConfigureAwait(false);
            var leaked = holds.Where(l => l.EndsWith("expired=true", StringComparison.Ordinal)).ToList();
            findings += leaked.Count;

            // A recovery budget is still borrowed while failover replicas sit in its region (status.consumers > 0, their
            // resources in status.consumed): the reserve then protects the next incident only in part (not at all once it
            // is Exhausted), and nothing gives it back by itself, because a failover replica stays where it runs when its
            // home region returns. Cleanup: move those replicas home (or end them). Regional budget leases are not
            // findings: leasing is how regions spend in normal operation, renewed continuously and returned on stop.
            var borrowed = new List<RecoveryBudget>();
            ErrorCode? budgetsUnknown = null;
            try
            {
                next = null;
                do
                {
                    var page = await c.ListAsync(RecoveryBudget.KindName, null, null, 500, next, cancel).ConfigureAwait(false);
                    borrowed.AddRange(page.Items.OfType<RecoveryBudget>().Where(b => b.Status.Consumers > 0));
                    next = page.Continue;
                }
                while (next is not null);
            }
            catch (AgentRequestException e)
            {
                // A server older than recovery budgets does not know the kind: say "unknown" rather than "none".
                budgetsUnknown = e.Code;
            }
            findings += borrowed.Count;

            Output.Emit(format, "DoctorReport", w =>
            {
                w.WriteBoolean("clean", findings == 0);
                w.WriteNumber("findings", findings);
                w.WriteStartArray("liveOverrides");
                foreach (var o in live)
                {
                    w.WriteStartObject();
                    w.WriteString("name", o.Metadata.Name);
                    w.WriteString("type", o.Spec.Type.ToString());
                    w.WriteString("target", o.Spec.Target);
                    if (o.ExpiresAt is { } e) w.WriteString("expires", e.ToString("O", ci)); else w.WriteNull("expires");
                    w.WriteBoolean("pastTtl", o.ExpiresAt is { } e2 && e2 <= now);
                    w.WriteString("author", o.Spec.Author);
                    w.WriteString("reason", o.Spec.Reason);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("emergencyQuotas");
                foreach (var o in quotas)
                {
                    w.WriteStartObject();
                    w.WriteString("tenant", o.Spec.Target);
                    Output.Resources(w, "extra", o.Spec.Extra.ToVector());
                    w.WriteString("override", o.Metadata.Name);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("leakedReservations");
                foreach (var l in leaked) w.WriteStringValue(l);
                w.WriteEndArray();
                if (budgetsUnknown is null)
                {
                    w.WriteStartArray("borrowedRecoveryBudgets");
                    foreach (var b in borrowed)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", b.Metadata.Name);
                        w.WriteString("region", b.Spec.Region);
                        w.WriteNumber("consumers", b.Status.Consumers);
                        Output.Resources(w, "consumed", b.Status.Consumed.ToVector());
                        Output.Resources(w, "allocated", b.Status.Allocated.ToVector());
                        w.WriteBoolean("exhausted", b.Status.Exhausted);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                else w.WriteNull("borrowedRecoveryBudgets");
            }, _ =>
            {
                Console.WriteLine($"live overrides: {live.Count}");
                foreach (var o in live)
                {
                    bool overdue = o.ExpiresAt is { } e && e <= now;
                    Console.WriteLine($"  override/{o.Metadata.Name} {o.Spec.Type} {o.Spec.Target} expires {o.ExpiresAt?.ToString("O", ci)}{(overdue ? " (PAST ITS TTL, not yet reverted)" : "")} by {o.Spec.Author}: {o.Spec.Reason}");
                }
                Console.WriteLine($"emergency quotas: {quotas.Count}");
                foreach (var o in quotas)
                    Console.WriteLine($"  tenant {o.Spec.Target}: +{o.Spec.Extra.ToVector()} (override/{o.Metadata.Name})");
                Console.WriteLine($"leaked reservations (expired, not released): {leaked.Count}");
                foreach (var l in leaked) Console.WriteLine("  " + l);
                Console.WriteLine(budgetsUnknown is { } code
                    ? $"recovery budgets still borrowed: unknown (this server has no RecoveryBudget kind: {code})"
                    : $"recovery budgets still borrowed: {borrowed.Count}");
                foreach (var b in borrowed)
                    Console.WriteLine(string.Create(ci, $"  recoverybudget/{b.Metadata.Name} {b.Spec.Region}: {b.Status.Consumers} failover replica(s) consume {b.Status.Consumed.ToVector()} of {b.Status.Allocated.ToVector()}{(b.Status.Exhausted ? " (EXHAUSTED)" : "")}: move them home"));
                Console.WriteLine(findings == 0 ? "doctor: clean" : $"doctor: {findings} item(s) need cleanup");
            });
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
        var output = Output.Option();
        var cmd = new Command("break-glass", "Issue a short-lived operator credential with the break-glass scope (every request it makes is audited). Needs an admin credential.") { connect, name, reason, ttl, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("break-glass", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (!TokenCommands.TryParseDuration(r.GetValue(ttl), out var t) || t is null)
            {
                Console.Error.WriteLine("omega break-glass: --ttl is like 15m or 1h");
                return Task.FromResult(2);
            }
            return ControlCommands.WithClientAsync("break-glass", r.GetValue(connect)!, tls, r, async c =>
            {
                var (id, token, expires) = await c.CreateTokenAsync(CredentialRole.Operator, r.GetValue(name)!, OperatorScopes.BreakGlass, t, reason: r.GetValue(reason), cancellationToken: cancel).ConfigureAwait(false);
                if (format.IsDocument())
                {
                    TokenCommands.PrintCreated(id, token, CredentialRole.Operator, r.GetValue(name)!, OperatorScopes.BreakGlass, expires, format);
                    return 0;
                }
                Console.Error.WriteLine($"omega break-glass: credential {id} (operator {r.GetValue(name)}, break-glass) expires {DateTimeOffset.FromUnixTimeMilliseconds(expires).ToString("u", CultureInfo.InvariantCulture)}; every request it makes is audited; the token is shown once:");
                Console.WriteLine(token);
                return 0;
            }, cancel);
        });
        return cmd;
    }
}
