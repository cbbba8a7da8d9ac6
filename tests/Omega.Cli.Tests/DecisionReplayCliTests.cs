using System.Text.RegularExpressions;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 18, item 4, through the CLI only (every step a child process on a real data directory): <c>omega serve</c> with
/// a fleet of agents places a workload's replicas; a policy revision is applied after the placements; serve stops; then
/// <c>omega replay decision</c> lists the kept decision records, replays one and all of them to the same choice from the
/// journal, shows what revision 1 would have chosen instead, and reports errors with typed exit codes.
/// </summary>
public sealed partial class DecisionReplayCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private const string Manifest = """
        apiVersion: omega/v1
        kind: Workload
        metadata:
          name: web
          tenant: default
        spec:
          type: Service
          replicas: 5
          priority: 1
          resources:
            cpuMillis: 3000
            memoryBytes: 1073741824
        """;

    [GeneratedRegex(@"^(default/\S+)\s+workload web g\d+ slot \d+ r(\d+)", RegexOptions.Multiline)]
    private static partial Regex RecordId();

    [GeneratedRegex(@"""bound"":\s*5\b")]
    private static partial Regex Bound();

    [GeneratedRegex(@"task 0 -> \S+ \(\S+\) score")]
    private static partial Regex TaskChoice();

    [Fact]
    public async Task Serve_place_stop_then_replay_decision_reaches_the_recorded_choice_and_a_later_policy_shows_the_difference()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-replay-" + Guid.NewGuid().ToString("N"));
        string data = Path.Combine(dir, "data");
        Directory.CreateDirectory(dir);
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        try
        {
            using (var serve = OmegaChild.Serve(endpoint, "--data", data))
            {
                await serve.WaitForAsync("listening on", Timeout);
                string pin = ServeTests.PinOf(serve.Output), token = Path.Combine(data, "admin.token");
                var env = new[] { ("OMEGA_ADDR", endpoint), ("OMEGA_TLS_PIN", pin), ("OMEGA_TOKEN_FILE", token) };
                // Eight 4-core nodes over three racks: 3-core replicas fit one per node, so every decision weighs several nodes.
                using var agents = new OmegaChild("agents", "--connect", endpoint, "--pin", pin, "--token-file", token, "--count", "8", "--cores", "4",
                    "--memory-gib", "16", "--racks", "3", "--seconds", "300", "--seed", "7");
                await agents.WaitForAsync("8 registered", Timeout);
                string file = Path.Combine(dir, "web.yaml");
                await File.WriteAllTextAsync(file, Manifest);
                var applied = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "apply", "-f", file);
                Assert.True(applied.ExitCode == 0, applied.Stdout + applied.Stderr);
                using var cts = new CancellationTokenSource(Timeout);
                while (true)
                {
                    var got = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "get", "workload", "web", "-o", "json");
                    if (got.ExitCode == 0 && Bound().IsMatch(got.Stdout)) break;
                    if (cts.IsCancellationRequested) Assert.Fail("the replicas were not bound in time: " + got.Stdout + got.Stderr);
                    await Task.Delay(200, CancellationToken.None);
                }
                // After the placements: a policy that packs instead of spreading (revision 1).
                string policy = Path.Combine(dir, "policy.json");
                await File.WriteAllTextAsync(policy, """{"weights":{"bin-packing":5,"domain-spread":0,"group-spread":0}}""");
                var pol = await OmegaProcess.RunWithEnvironmentAsync(Timeout, env, "policy", "apply", "-f", policy, "--connect", endpoint);
                Assert.True(pol.ExitCode == 0, pol.Stdout + pol.Stderr);
                // While serve holds the directory, replay refuses to open it (the journal is being written).
                var busy = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "--list", "--data", data);
                Assert.True(busy.ExitCode == 1, busy.Stdout + busy.Stderr);
                Assert.Contains("in use by a running server", busy.Stderr, StringComparison.Ordinal);
                Assert.Equal(0, await serve.StopAsync(Timeout));
                await agents.KillAsync();
            }

            var list = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "--list", "--data", data);
            Assert.True(list.ExitCode == 0, list.Stdout + list.Stderr);
            var ids = RecordId().Matches(list.Stdout).Select(m => m.Groups[1].Value).ToList();
            Assert.True(ids.Count >= 5, list.Stdout);
            // Under load a replica can be placed again after the test saw five bound (e.g. a node's lease lapsed while the
            // machine stalled): that decision was made under r1. The single replay takes the last r0 decision, and the
            // --policy-revision 1 replay expects r1 decisions to be the same and only r0 ones to differ.
            var r0 = RecordId().Matches(list.Stdout).Where(m => m.Groups[2].Value == "0").Select(m => m.Groups[1].Value).ToList();
            Assert.True(r0.Count >= 5, list.Stdout);
            Assert.DoesNotContain("(no inputs)", list.Stdout, StringComparison.Ordinal);

            var one = await OmegaProcess.RunAsync(Timeout, "replay", "decision", r0[^1], "--data", data);
            Assert.True(one.ExitCode == 0, one.Stdout + one.Stderr);
            // The whole output on failure: a DIFFERENT verdict names the inputs that diverged (seen once under load, cause not found yet).
            Assert.True(one.Stdout.Contains("SAME: the scheduler's code on the reconstructed state under policy r0 reaches the recorded choice", StringComparison.Ordinal), one.Stdout + one.Stderr);
            Assert.Matches(@"read snapshot v\d+ with policy r0", one.Stdout);
            Assert.True(TaskChoice().IsMatch(one.Stdout), one.Stdout);

            var all = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "--all", "--data", data);
            Assert.True(all.ExitCode == 0, all.Stdout + all.Stderr);
            Assert.Contains($"{ids.Count} replayed: {ids.Count} same, 0 different", all.Stdout, StringComparison.Ordinal);

            // What revision 1 (applied after the placements) would have chosen: exit 1 and the differences named.
            var other = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "--all", "--data", data, "--policy-revision", "1");
            Assert.True(other.ExitCode == 1, other.Stdout + other.Stderr);
            Assert.Contains("policy: recorded r0, replayed under r1", other.Stdout, StringComparison.Ordinal);
            Assert.Contains($"{ids.Count} replayed: {ids.Count - r0.Count} same, {r0.Count} different", other.Stdout, StringComparison.Ordinal);

            var missing = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "default/no-such", "--data", data);
            Assert.True(missing.ExitCode == 1, missing.Stdout + missing.Stderr);
            Assert.Contains("no decision record 'default/no-such'", missing.Stderr, StringComparison.Ordinal);
            var gone = await OmegaProcess.RunAsync(Timeout, "replay", "decision", ids[0], "--data", data, "--policy-revision", "9");
            Assert.True(gone.ExitCode == 1, gone.Stdout + gone.Stderr);
            Assert.Contains("policy revision 9 is not in the store", gone.Stdout, StringComparison.Ordinal);
            var usage = await OmegaProcess.RunAsync(Timeout, "replay", "decision", "--data", data);
            Assert.True(usage.ExitCode == 2, usage.Stdout + usage.Stderr);
            Assert.Contains("give one of ID, --all or --list", usage.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
