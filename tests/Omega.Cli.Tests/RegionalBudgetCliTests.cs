using System.Text.Json;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 13, item 3 on the CLI: <c>omega serve --regional-budgets</c>, a tenant's RegionalBudget applied from a manifest,
/// then read back with <c>omega get regionalbudgets</c> and <c>omega describe regionalbudget</c> once the regional budget
/// controller applied it (status limit and the Applied condition). Every command is a child process.
/// </summary>
public sealed class RegionalBudgetCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private const string Manifest = """
        apiVersion: omega/v1
        kind: RegionalBudget
        metadata:
          name: shop-budget
          tenant: shop
        spec:
          cpuMillis: 40000
          regions:
            us-east: 2000
        """;

    [Fact]
    public async Task A_RegionalBudget_applied_from_a_manifest_shows_its_applied_limit_and_caps_in_get_and_describe()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-regional-budget-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        try
        {
            string data = Path.Combine(dir, "data");
            using var serve = OmegaChild.Serve(endpoint, "--data", data, "--tenant", "shop", "--regional-budgets");
            await serve.WaitForAsync("listening on", Timeout);
            var env = new[] { ("OMEGA_ADDR", endpoint), ("OMEGA_TLS_PIN", ServeTests.PinOf(serve.Output)), ("OMEGA_TOKEN_FILE", Path.Combine(data, "admin.token")) };
            string file = Path.Combine(dir, "budget.yaml");
            await File.WriteAllTextAsync(file, Manifest);
            var applied = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", file);
            Assert.True(applied.ExitCode == 0, applied.Stdout + applied.Stderr);
            Assert.Contains("regionalbudget/shop-budget created", applied.Stdout, StringComparison.Ordinal);

            // The controller applies it within a reconcile: poll the listing (each poll a child process) until it says so.
            var deadline = DateTime.UtcNow + Timeout;
            string last = "";
            while (true)
            {
                var got = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "regionalbudgets", "--tenant", "shop", "-o", "json");
                Assert.True(got.ExitCode == 0, got.Stdout + got.Stderr);
                last = got.Stdout;
                using var doc = JsonDocument.Parse(got.Stdout);
                var item = Assert.Single(doc.RootElement.GetProperty("items").EnumerateArray());
                Assert.Equal(2000, item.GetProperty("spec").GetProperty("regions").GetProperty("us-east").GetInt64());
                if (item.TryGetProperty("status", out var st) && st.TryGetProperty("limitMillis", out var limit) && limit.GetInt64() == 40000)
                {
                    var cond = Assert.Single(st.GetProperty("conditions").EnumerateArray(), c => c.GetProperty("type").GetString() == "Applied");
                    Assert.Equal("True", cond.GetProperty("status").GetString());
                    var region = Assert.Single(st.GetProperty("regions").EnumerateArray());
                    Assert.Equal(("us-east", 2000L), (region.GetProperty("region").GetString(), region.GetProperty("capMillis").GetInt64()));
                    break;
                }
                Assert.True(DateTime.UtcNow < deadline, "the RegionalBudget was not applied within a minute: " + last);
            }

            var described = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "describe", "regionalbudget", "shop-budget", "--tenant", "shop");
            Assert.True(described.ExitCode == 0, described.Stdout + described.Stderr);
            foreach (var part in new[] { "Name:              shop-budget", "Spec:", "cpuMillis: 40000", "Status:", "limitMillis: 40000", "conditions:", "Applied", "capMillis: 2000" })
                Assert.Contains(part, described.Stdout, StringComparison.Ordinal);

            // Invalid budgets are refused by the server's schema check (exit 1 names the field), nothing stored.
            await File.WriteAllTextAsync(file, Manifest.Replace("cpuMillis: 40000", "cpuMillis: 0", StringComparison.Ordinal).Replace("shop-budget", "zero", StringComparison.Ordinal));
            var invalid = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", file);
            Assert.NotEqual(0, invalid.ExitCode);
            Assert.Contains("cpuMillis", invalid.Stdout + invalid.Stderr, StringComparison.Ordinal);

            Assert.Equal(0, await serve.StopAsync(Timeout));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
