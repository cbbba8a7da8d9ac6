using System.Globalization;

namespace Omega.Cli.Tests;

/// <summary>
/// docs/cli.md's error promises (issue 10, defect 9): every expected failure is one line on stderr with a documented exit
/// code (2 usage, 1 a resource that is unavailable), never a stack trace or a page of help.
/// </summary>
public sealed class CliErrorTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private static void AssertOneLine(OmegaProcess.Result r, int exitCode, string expected)
    {
        Assert.True(r.ExitCode == exitCode, $"exit {r.ExitCode}, expected {exitCode}\nstdout: {r.Stdout}\nstderr: {r.Stderr}");
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData("unknown command or option '--bogus'", "serve", "--bogus")]
    [InlineData("unknown command or option 'no-such-command'", "no-such-command")]
    [InlineData("'abc'", "loadgen", "--seconds", "abc")]
    [InlineData("'--job' is required", "submit")]
    [InlineData("'task' missing", "explain")]
    public async Task A_usage_error_is_one_line_and_exit_code_2_without_the_help_page(string expected, params string[] args)
    {
        var r = await OmegaProcess.RunAsync(Timeout, args);
        AssertOneLine(r, 2, expected);
        Assert.Contains("--help'", r.Stderr, StringComparison.Ordinal); // says where the options are listed
        Assert.DoesNotContain("Description:", r.Stdout + r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_metrics_port_out_of_range_is_a_usage_error()
    {
        var r = await OmegaProcess.RunAsync(Timeout, "serve", "--in-memory", "--listen", $"127.0.0.1:{OmegaChild.FreePort()}", "--metrics-port", "70000");
        AssertOneLine(r, 2, "--metrics-port must be between 1 and 65535");
    }

    [Theory]
    [InlineData("serve")]
    [InlineData("loadgen")]
    public async Task A_metrics_port_in_use_is_one_line_and_exit_code_1(string command)
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        string port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);
        string[] args = command == "serve"
            ? ["serve", "--in-memory", "--listen", $"127.0.0.1:{OmegaChild.FreePort()}", "--metrics-port", port]
            : ["loadgen", "--nodes", "10", "--seconds", "1", "--metrics-port", port];
        var r = await OmegaProcess.RunAsync(Timeout, args);
        AssertOneLine(r, 1, $"cannot serve metrics on port {port}");
    }

    [Fact]
    public async Task A_data_directory_in_use_is_one_line_and_exit_code_1_and_run_does_not_empty_it()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-locked-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var first = new OmegaChild("serve", "--data", data, "--listen", $"127.0.0.1:{OmegaChild.FreePort()}");
            await first.WaitForAsync("listening on", Timeout);

            var second = await OmegaProcess.RunAsync(Timeout, "serve", "--data", data, "--listen", $"127.0.0.1:{OmegaChild.FreePort()}");
            AssertOneLine(second, 1, "is in use by another process");

            // omega run empties its --data first: never a store another process has open.
            var run = await OmegaProcess.RunAsync(Timeout, "run", "--data", data, "--seconds", "1", "--agents", "1");
            AssertOneLine(run, 1, "is in use by another process");
            Assert.True(Directory.Exists(Path.Combine(data, "journal")), "omega run deleted a store in use");

            Assert.Equal(0, await first.StopAsync(Timeout));
            Assert.Contains("checkpointed", first.Output, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task Connect_takes_a_host_name_resolved_through_dns()
    {
        int port = OmegaChild.FreePort();
        using var serve = new OmegaChild("serve", "--in-memory", "--listen", $"127.0.0.1:{port}");
        await serve.WaitForAsync("listening on", Timeout);
        // Verified by the self-signed certificate's file: the name checked is localhost, which the certificate names.
        string ca = ServeTests.CertificateOf(serve.Output);
        string tok = ServeTests.TokenFileOf(serve.Output);
        // localhost resolves to ::1 and 127.0.0.1 here; the server listens on the IPv4 one only, so this also proves each
        // resolved address is tried in turn.
        string connect = $"localhost:{port}";

        var agents = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(2), "agents", "--connect", connect, "--ca", ca, "--token-file", tok, "--count", "2", "--seconds", "1", "--seed", "1");
        Assert.True(agents.ExitCode == 0, agents.Stdout + agents.Stderr);
        Assert.Contains("2 registered", agents.Stdout, StringComparison.Ordinal);
        var submit = await OmegaProcess.RunAsync(Timeout, "submit", "--connect", connect, "--ca", ca, "--token-file", tok, "--job", "7", "--cores", "1");
        Assert.True(submit.ExitCode == 0, submit.Stdout + submit.Stderr);
        var jobs = await OmegaProcess.RunAsync(Timeout, "inspect", "Jobs", "--connect", connect, "--ca", ca, "--token-file", tok);
        Assert.True(jobs.ExitCode == 0, jobs.Stdout + jobs.Stderr);
        Assert.Contains(jobs.Stdout.Split('\n'), l => l.StartsWith("j7 ", StringComparison.Ordinal));

        // A name that does not resolve is an unreachable server (exit 1), not a usage error.
        var nowhere = await OmegaProcess.RunAsync(Timeout, "stats", "--connect", $"no-such-host.invalid:{port}", "--ca", ca, "--token-file", tok);
        AssertOneLine(nowhere, 1, "cannot reach the server at no-such-host.invalid:");
        // And an address that is neither a name nor an address is a usage error.
        AssertOneLine(await OmegaProcess.RunAsync(Timeout, "stats", "--connect", "local host:7077"), 2, "--connect must be HOST:PORT");
        Assert.Equal(0, await serve.StopAsync(Timeout));
    }

    [Fact]
    public async Task Serve_in_memory_does_not_claim_a_checkpoint_on_exit()
    {
        using var serve = new OmegaChild("serve", "--in-memory", "--listen", $"127.0.0.1:{OmegaChild.FreePort()}");
        await serve.WaitForAsync("listening on", Timeout);
        Assert.Equal(0, await serve.StopAsync(Timeout));
        Assert.Contains("in-memory: nothing kept", serve.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("checkpoint", serve.Output.Split("stopping")[1], StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_negative_job_id_is_a_usage_error_before_connecting()
    {
        // Nothing listens at the endpoint: a usage error must be found first, whether or not a server is reachable.
        var r = await OmegaProcess.RunAsync(Timeout, "submit", "--job", "-5", "--connect", $"127.0.0.1:{OmegaChild.FreePort()}");
        AssertOneLine(r, 2, "--job must not be negative");
        // The ids a submit accepts are the ids explain can name: j5/0 parses, j-5/0 is not an id.
        AssertOneLine(await OmegaProcess.RunAsync(Timeout, "explain", "j-5/0"), 2, "is not a task id");
    }
}
