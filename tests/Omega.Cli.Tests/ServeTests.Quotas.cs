namespace Omega.Cli.Tests;

// Issue 12: `omega quota set` / `omega quota list` against `omega serve`, typed errors, and durability across kill -9.
public sealed partial class ServeTests
{
    [Fact]
    public async Task Quota_set_and_list_over_the_cli_typed_refusals_and_the_acknowledged_quota_survives_kill_9()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-quotas-" + Guid.NewGuid().ToString("N"));
        string endpoint = $"127.0.0.1:{FreePort()}";
        string pin = "";
        try
        {
            using (var serve = new Running("serve", "--listen", endpoint, "--data", data, "--tenant", "team"))
            {
                await serve.WaitForAsync("listening on", TimeSpan.FromSeconds(60));
                pin = PinOf(serve.Output);
                var usage = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "set", "team", "--cores", "4", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.Equal(2, usage.ExitCode);
                Assert.Contains("--cores and --memory-gib go together", usage.Stderr, StringComparison.Ordinal);

                var unknown = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "set", "nosuch", "--cores", "1", "--memory-gib", "1", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.Equal(1, unknown.ExitCode);
                Assert.Contains("UnknownTenant", unknown.Stderr, StringComparison.Ordinal);

                var above = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "set", "team", "--cores", "1", "--memory-gib", "1", "--guaranteed-cores", "2", "--guaranteed-memory-gib", "1", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.Equal(1, above.ExitCode);
                Assert.Contains("GuaranteeAboveLimit", above.Stderr, StringComparison.Ordinal);
                Assert.DoesNotContain("   at ", above.Stderr, StringComparison.Ordinal);

                var set = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "set", "team", "--cores", "8", "--memory-gib", "16", "--guaranteed-cores", "2", "--guaranteed-memory-gib", "4", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.True(set.ExitCode == 0, set.Stdout + set.Stderr);
                Assert.Contains("limit 8c/16GiB, guarantee 2c/4GiB", set.Stdout, StringComparison.Ordinal);
                Assert.False(serve.HasExited, serve.Output);
            } // SIGKILL: the acknowledged quota must be in the journal.

            using (var serve = new Running("serve", "--listen", endpoint, "--data", data))
            {
                await serve.WaitForAsync("listening on", TimeSpan.FromSeconds(60));
                var list = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "list", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.True(list.ExitCode == 0, list.Stderr);
                var line = list.Stdout.Split('\n').Single(l => l.StartsWith("team ", StringComparison.Ordinal));
                Assert.Contains("8c/16GiB", line, StringComparison.Ordinal);
                Assert.Contains("2c/4GiB", line, StringComparison.Ordinal);
                Assert.Contains("unmet guarantees 2c/4GiB", list.Stdout, StringComparison.Ordinal);
                // Clearing keeps the other value.
                var clear = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "quota", "set", "team", "--no-guarantee", "--connect", endpoint, "--pin", pin, "--token-file", Path.Combine(data, "admin.token"));
                Assert.True(clear.ExitCode == 0, clear.Stdout + clear.Stderr);
                Assert.Contains("limit unchanged, guarantee none", clear.Stdout, StringComparison.Ordinal);
            }
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }
}
