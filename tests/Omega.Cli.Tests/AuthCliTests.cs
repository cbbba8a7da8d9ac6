using System.Text.RegularExpressions;
using Omega.CrashHost;

namespace Omega.Cli.Tests;

/// <summary>
/// Credentials through the real CLI (issue 11): secure by default, the admin token file, token create/list/revoke,
/// the audit log, and credentials and revocations surviving a SIGKILL of <c>omega serve</c>.
/// </summary>
public sealed class AuthCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private static string Id(string token) => Regex.Match(token, "^omega1\\.([0-9a-f]{16})\\.").Groups[1].Value;

    [Fact]
    public async Task Credentials_and_revocations_survive_kill_9_and_the_audit_log_keeps_the_operator_actions()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-auth-" + Guid.NewGuid().ToString("N"));
        try
        {
            string admin = Path.Combine(data, "admin.token");
            string keep, revoked;
            using (var serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90)))
            {
                string ep = serve.EndPoint.ToString();
                Assert.Contains("created the admin token", serve.Output, StringComparison.Ordinal);
                if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(admin));
                var tenant = await OmegaProcess.RunAsync(Timeout, "tenant", "create", "team-a", "--connect", ep, "--insecure", "--token-file", admin);
                Assert.True(tenant.ExitCode == 0, tenant.Stdout + tenant.Stderr);
                var a = await OmegaProcess.RunAsync(Timeout, "token", "create", "--role", "submitter", "--tenant", "team-a", "--connect", ep, "--insecure", "--token-file", admin);
                var b = await OmegaProcess.RunAsync(Timeout, "token", "create", "--role", "submitter", "--tenant", "team-a", "--connect", ep, "--insecure", "--token-file", admin);
                Assert.True(a.ExitCode == 0 && b.ExitCode == 0, a.Stderr + b.Stderr);
                keep = a.Stdout.Trim();
                revoked = b.Stdout.Trim();
                var rv = await OmegaProcess.RunAsync(Timeout, "token", "revoke", Id(revoked), "--connect", ep, "--insecure", "--token-file", admin);
                Assert.True(rv.ExitCode == 0, rv.Stdout + rv.Stderr);
                // Acknowledged means durable: kill -9 right after the answers.
                await serve.KillAsync();
            }
            using (var again = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90)))
            {
                string ep = again.EndPoint.ToString();
                Assert.DoesNotContain("created the admin token", again.Output, StringComparison.Ordinal);
                var ok = await OmegaProcess.RunAsync(Timeout, "inspect", "Jobs", "--connect", ep, "--insecure", "--token", keep);
                Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
                var refused = await OmegaProcess.RunAsync(Timeout, "inspect", "Jobs", "--connect", ep, "--insecure", "--token", revoked);
                Assert.Equal(1, refused.ExitCode);
                Assert.Contains("CredentialRevoked", refused.Stderr, StringComparison.Ordinal);
                // A submitter may not manage credentials: PermissionDenied with its reason, exit 1.
                var denied = await OmegaProcess.RunAsync(Timeout, "token", "list", "--connect", ep, "--insecure", "--token", keep);
                Assert.Equal(1, denied.ExitCode);
                Assert.Contains("PermissionDenied (RoleNotAllowed)", denied.Stderr, StringComparison.Ordinal);

                var list = await OmegaProcess.RunAsync(Timeout, "token", "list", "--connect", ep, "--insecure", "--token-file", admin);
                Assert.True(list.ExitCode == 0, list.Stdout + list.Stderr);
                Assert.Contains(list.Stdout.Split('\n'), l => l.StartsWith(Id(revoked), StringComparison.Ordinal) && l.Contains("REVOKED", StringComparison.Ordinal));
                Assert.Contains(list.Stdout.Split('\n'), l => l.StartsWith(Id(keep), StringComparison.Ordinal) && !l.Contains("REVOKED", StringComparison.Ordinal));
                var audit = await OmegaProcess.RunAsync(Timeout, "audit", "--connect", ep, "--insecure", "--token-file", admin);
                Assert.True(audit.ExitCode == 0, audit.Stdout + audit.Stderr);
                Assert.Contains($"RevokeToken {Id(revoked)}: ok", audit.Stdout, StringComparison.Ordinal);
                Assert.Contains("Operate CreateTenant team-a: ok", audit.Stdout, StringComparison.Ordinal);
                Assert.Contains("Hello: CredentialRevoked", audit.Stdout, StringComparison.Ordinal);
                Assert.Contains("ListTokens: denied: RoleNotAllowed", audit.Stdout, StringComparison.Ordinal);
            }
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task Serve_refuses_clients_without_a_credential_and_no_auth_is_an_explicit_warned_opt_out()
    {
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        using (var serve = new OmegaChild("serve", "--in-memory", "--listen", endpoint))
        {
            await serve.WaitForAsync("listening on", Timeout);
            string pin = ServeTests.PinOf(serve.Output);
            var none = await OmegaProcess.RunAsync(Timeout, "stats", "--connect", endpoint, "--pin", pin);
            Assert.Equal(1, none.ExitCode);
            Assert.Contains("Unauthenticated", none.Stderr, StringComparison.Ordinal);
            var malformed = await OmegaProcess.RunAsync(Timeout, "stats", "--connect", endpoint, "--pin", pin, "--token", "hunter2");
            Assert.Equal(2, malformed.ExitCode);
            Assert.Contains("the token is not of the form", malformed.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("WARNING", serve.Output, StringComparison.Ordinal);
            Assert.Equal(0, await serve.StopAsync(Timeout));
        }
        using (var open = new OmegaChild("serve", "--in-memory", "--listen", endpoint, "--no-auth"))
        {
            await open.WaitForAsync("listening on", Timeout);
            // Awaited, not read at once: stdout and stderr are separate pipes read by separate callbacks, so the
            // "listening on" line (stdout) can be collected before the warning (stderr) that was written earlier.
            await open.WaitForAsync("stderr: omega serve: WARNING: --no-auth", Timeout);
            var ok = await OmegaProcess.RunAsync(Timeout, "stats", "--connect", endpoint, "--pin", ServeTests.PinOf(open.Output));
            Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
            Assert.Equal(0, await open.StopAsync(Timeout));
        }
    }
}
