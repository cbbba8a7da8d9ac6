using System.Net;
using System.Text.Json;
using Omega.Agent;

namespace Omega.Cli.Tests;

/// <summary>
/// The control plane in a real <c>omega serve</c> (issue 12, cpfin): a policy promoted with <c>omega policy apply</c>
/// places a workload; after SIGKILL and a restart, <c>omega explain workload/NAME --generation G</c> still finds the
/// generation's decisions (the archive is durable), <c>omega rollout history</c> still shows the promoted revision,
/// and <c>omega get bindings</c> shows the restored bindings.
/// </summary>
public sealed class ServeControlPlaneTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task Explain_and_rollout_history_work_after_SIGKILL_of_omega_serve_because_decisions_and_revisions_are_durable()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-serve-cp-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        int port = OmegaChild.FreePort();
        string ep = $"127.0.0.1:{port}";
        string[] serveArgs = ["--data", Path.Combine(dir, "data"), "--insecure", "--no-auth", "--tenant", "shop"];
        string[] conn = ["--connect", ep, "--insecure"];
        try
        {
            await using var agent = new AgentClient(new AgentOptions
            {
                Server = new IPEndPoint(IPAddress.Loopback, port), NodeName = "node-s", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 9,
                ReadyAfter = TimeSpan.FromMilliseconds(50), ReconnectMax = TimeSpan.FromMilliseconds(200),
            });
            string policy = Path.Combine(dir, "policy.json"), manifest = Path.Combine(dir, "web.yaml");
            await File.WriteAllTextAsync(policy, """{"weights":{"bin-packing":3}}""");
            await File.WriteAllTextAsync(manifest, """
                kind: Workload
                metadata: { name: web, tenant: shop }
                spec: { replicas: 2, resources: { cpuMillis: 250, memoryBytes: 268435456 } }
                """);
            using (var serve = OmegaChild.Serve(ep, serveArgs))
            {
                await serve.WaitForAsync("listening on", Timeout);
                await agent.StartAsync().WaitAsync(Timeout);
                var r = await OmegaProcess.RunAsync(Timeout, ["policy", "apply", "-f", policy, .. conn]);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + serve.Output); // served by omega serve now (not ControlPlaneUnavailable)
                r = await OmegaProcess.RunAsync(Timeout, ["apply", "-f", manifest, .. conn]);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
                await UntilAsync(async () =>
                {
                    var got = await OmegaProcess.RunAsync(Timeout, ["get", "workload", "web", "--tenant", "shop", "-o", "json", .. conn]);
                    using var doc = JsonDocument.Parse(got.Stdout);
                    return doc.RootElement.GetProperty("status").GetProperty("ready").GetInt32() == 2;
                }, "two ready replicas");
                // The decisions reach the archive in the background; explain shows them once written (and durable).
                await UntilAsync(async () => (await OmegaProcess.RunAsync(Timeout, ["explain", "workload/web", "--generation", "1", "--tenant", "shop", .. conn])).ExitCode == 0, "decisions archived");
                await serve.KillAsync();
            }

            using (var again = OmegaChild.Serve(ep, serveArgs))
            {
                await again.WaitForAsync("listening on", Timeout);
                var r = await OmegaProcess.RunAsync(Timeout, ["explain", "workload/web", "--generation", "1", "--tenant", "shop", .. conn]);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + again.Output);
                Assert.Contains("with policy r1", r.Stdout, StringComparison.Ordinal);
                r = await OmegaProcess.RunAsync(Timeout, ["rollout", "history", .. conn]);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
                Assert.Contains("revision 1 active", r.Stdout, StringComparison.Ordinal);
                r = await OmegaProcess.RunAsync(Timeout, ["get", "bindings", "--tenant", "shop", .. conn]);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
                Assert.Contains("web.r0", r.Stdout, StringComparison.Ordinal);
                Assert.Contains("web.r1", r.Stdout, StringComparison.Ordinal);
                Assert.Contains("node-s", r.Stdout, StringComparison.Ordinal);
                await again.StopAsync(Timeout);
            }
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            try { await Task.Delay(100, cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"timed out waiting for: {what}"); }
        }
    }
}
