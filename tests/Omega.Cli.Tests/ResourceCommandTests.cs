using System.Text.Json;

namespace Omega.Cli.Tests;

/// <summary>
/// The kubectl-style grammar (docs/cli.md, "Resources") against a real <c>omega serve</c>, every command a child process:
/// apply a YAML manifest, read it back as JSON and YAML, describe, re-apply, conflict, delete, not found.
/// </summary>
public sealed class ResourceCommandTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private const string Manifest = """
        # a service of two replicas
        apiVersion: omega/v1
        kind: Workload
        metadata:
          name: web
          tenant: default
          labels:
            app: web
        spec:
          type: Service
          replicas: REPLICAS
          priority: 1
          resources:
            cpuMillis: 500
            memoryBytes: 268435456
          nodeSelector:
            zone: "01"
        """;

    [Fact]
    public async Task Apply_get_describe_delete_a_workload_with_typed_exit_codes()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-apply-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        try
        {
            // Secure by default: TLS and credentials; serve writes the admin token to DATA/admin.token.
            string data = Path.Combine(dir, "data");
            using var serve = OmegaChild.Serve(endpoint, "--data", data);
            await serve.WaitForAsync("listening on", Timeout);
            // OMEGA_ADDR is the default for --connect (no command below names the server); TLS is on by default and the
            // clients verify serve's self-signed certificate by the pin it printed, also from the environment; they
            // authenticate with the admin token (OMEGA_TOKEN_FILE, the environment form of --token-file).
            var env = new[] { ("OMEGA_ADDR", endpoint), ("OMEGA_TLS_PIN", ServeTests.PinOf(serve.Output)), ("OMEGA_TOKEN_FILE", Path.Combine(data, "admin.token")) };
            string file = Path.Combine(dir, "workload.yaml");
            await File.WriteAllTextAsync(file, Manifest.Replace("REPLICAS", "2", StringComparison.Ordinal));

            var applied = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", file);
            Assert.True(applied.ExitCode == 0, applied.Stdout + applied.Stderr);
            Assert.Contains("workload/web created", applied.Stdout, StringComparison.Ordinal);

            // -o json is one JSON document: a List whose items are the objects.
            var got = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "workloads", "-o", "json");
            Assert.True(got.ExitCode == 0, got.Stdout + got.Stderr);
            using (var doc = JsonDocument.Parse(got.Stdout))
            {
                Assert.Equal("List", doc.RootElement.GetProperty("kind").GetString());
                var item = Assert.Single(doc.RootElement.GetProperty("items").EnumerateArray());
                Assert.Equal("web", item.GetProperty("metadata").GetProperty("name").GetString());
                Assert.Equal("web", item.GetProperty("metadata").GetProperty("labels").GetProperty("app").GetString());
                Assert.Equal(1, item.GetProperty("metadata").GetProperty("generation").GetInt64());
                Assert.Equal(2, item.GetProperty("spec").GetProperty("replicas").GetInt32());
                Assert.Equal("01", item.GetProperty("spec").GetProperty("nodeSelector").GetProperty("zone").GetString()); // quoted YAML stays a string
                Assert.True(doc.RootElement.GetProperty("resourceVersion").GetInt64() >= item.GetProperty("metadata").GetProperty("resourceVersion").GetInt64());
            }

            // Re-applying a changed manifest updates it: a new generation.
            await File.WriteAllTextAsync(file, Manifest.Replace("REPLICAS", "3", StringComparison.Ordinal));
            var reapplied = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", file);
            Assert.True(reapplied.ExitCode == 0, reapplied.Stdout + reapplied.Stderr);
            Assert.Contains("workload/web configured", reapplied.Stdout, StringComparison.Ordinal);
            Assert.Contains("generation 2", reapplied.Stdout, StringComparison.Ordinal);

            var one = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "workload", "web", "-o", "yaml");
            Assert.True(one.ExitCode == 0, one.Stdout + one.Stderr);
            Assert.Contains("replicas: 3", one.Stdout, StringComparison.Ordinal);
            var table = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "workloads", "-o", "wide");
            Assert.Contains(table.Stdout.Split('\n'), l => l.StartsWith("web ", StringComparison.Ordinal) && l.Contains("Service", StringComparison.Ordinal));

            var described = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "describe", "workload", "web");
            Assert.True(described.ExitCode == 0, described.Stdout + described.Stderr);
            foreach (var part in new[] { "Name:              web", "Generation:        2", "ObservedGeneration:", "Spec:", "replicas: 3", "Status:", "Conditions:" })
                Assert.Contains(part, described.Stdout, StringComparison.Ordinal);

            // A manifest carrying a stale resourceVersion is a conflict: exit 6, and nothing changes.
            await File.WriteAllTextAsync(Path.Combine(dir, "stale.json"),
                """{"apiVersion":"omega/v1","kind":"Workload","metadata":{"name":"web","tenant":"default","resourceVersion":1},"spec":{"replicas":9,"resources":{"cpuMillis":1}}}""");
            var stale = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", Path.Combine(dir, "stale.json"));
            Assert.True(stale.ExitCode == 6, stale.Stdout + stale.Stderr);
            Assert.Contains("ObjectConflict", stale.Stderr, StringComparison.Ordinal);

            var deleted = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "delete", "workload", "web");
            Assert.True(deleted.ExitCode == 0, deleted.Stdout + deleted.Stderr);
            Assert.Contains("workload/web", deleted.Stdout, StringComparison.Ordinal);
            if (deleted.Stdout.Contains("deleted", StringComparison.Ordinal))
            {
                var gone = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "workload", "web");
                Assert.True(gone.ExitCode == 5, gone.Stdout + gone.Stderr);
            }
            var missing = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "delete", "workload", "nothing");
            Assert.True(missing.ExitCode == 5, missing.Stdout + missing.Stderr);

            // Engine listings through the same verb; bad input is a usage error before anything is sent.
            var nodes = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "nodes", "-o", "json");
            Assert.True(nodes.ExitCode == 0, nodes.Stdout + nodes.Stderr);
            using (var doc = JsonDocument.Parse(nodes.Stdout)) Assert.Equal("NodeList", doc.RootElement.GetProperty("kind").GetString());
            await File.WriteAllTextAsync(Path.Combine(dir, "bad.yaml"), "kind: Workload\n  : : [\n");
            Assert.Equal(2, (await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", Path.Combine(dir, "bad.yaml"))).ExitCode);
            Assert.Equal(2, (await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "pods")).ExitCode);

            Assert.Equal(0, await serve.StopAsync(Timeout));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
