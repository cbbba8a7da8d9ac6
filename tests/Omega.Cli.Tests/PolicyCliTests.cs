using System.Net;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Scheduling.Pipeline;
using Omega.Server;

namespace Omega.Cli.Tests;

/// <summary>The policy, rollout and explain-workload verbs and submit's placement flags, as child processes.</summary>
public sealed class PolicyCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    [Theory]
    [InlineData("--selector must be KEY=VALUE, not 'zone'", "submit", "--job", "1", "--selector", "zone")]
    [InlineData("--anti-affinity must be node or domain, not 'rack'", "submit", "--job", "1", "--anti-affinity", "rack")]
    public async Task Bad_placement_flags_are_usage_errors(string expected, params string[] args)
    {
        var r = await OmegaProcess.RunAsync(Timeout, args);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Policy_apply_rollout_history_undo_and_explain_workload_against_a_server()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-policy-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        using var cell = new Cell();
        using var store = new ObjectStore(cell);
        using var revisions = new PolicyRevisions(store, new PolicySource());
        await using var archive = new DecisionArchive(store);
        var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Name = "t", Policies = revisions, Decisions = archive });
        server.Start();
        try
        {
            string ep = server.EndPoint.ToString();
            string bad = Path.Combine(dir, "bad.json"), one = Path.Combine(dir, "one.json"), two = Path.Combine(dir, "two.json");
            await File.WriteAllTextAsync(bad, """{"weights":{"bin-packing":-3}}""");
            await File.WriteAllTextAsync(one, """{"kind":"SchedulerPolicy","spec":{"weights":{"bin-packing":2}}}""");
            await File.WriteAllTextAsync(two, """{"filters":{"taints":false}}""");

            var r = await OmegaProcess.RunAsync(Timeout, "policy", "apply", "-f", bad, "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 2, r.Stderr);
            Assert.Contains("weights.bin-packing", r.Stderr, StringComparison.Ordinal);

            r = await OmegaProcess.RunAsync(Timeout, "policy", "apply", "-f", one, "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            r = await OmegaProcess.RunAsync(Timeout, "policy", "apply", "-f", two, "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Equal(2, revisions.ActiveRevision);

            r = await OmegaProcess.RunAsync(Timeout, "rollout", "history", "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Contains("revision 2 active", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("revision 1 superseded", r.Stdout, StringComparison.Ordinal);

            r = await OmegaProcess.RunAsync(Timeout, "rollout", "undo", "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Equal(1, revisions.ActiveRevision);
            // Undo goes to the revision active before the current one: after an undo, that is the one undone (like kubectl).
            r = await OmegaProcess.RunAsync(Timeout, "rollout", "undo", "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Equal(2, revisions.ActiveRevision);
            r = await OmegaProcess.RunAsync(Timeout, "rollout", "undo", "--to-revision", "7", "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 1, r.Stdout + r.Stderr);
            Assert.Contains("RevisionNotFound", r.Stderr, StringComparison.Ordinal);

            r = await OmegaProcess.RunAsync(Timeout, "explain", "workload/web", "--generation", "1", "--connect", ep, "--insecure");
            Assert.True(r.ExitCode == 1, r.Stdout + r.Stderr);
            Assert.Contains("no decision record is kept for generation 1", r.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            await server.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }
}
