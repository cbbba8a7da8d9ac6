namespace Omega.Cli.Tests;

/// <summary>
/// Transport security at the command line: <c>omega serve</c> is TLS by default with a self-signed certificate whose pin
/// it prints; clients verify it by default and refuse a server they cannot verify; <c>--insecure</c> is explicit on both
/// sides and the server warns about it.
/// </summary>
public sealed class TlsCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private static void AssertFails(OmegaProcess.Result r, string expected)
    {
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stdout}{r.Stderr}");
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Serve_prints_its_self_signed_pin_and_clients_work_with_it_and_refuse_without()
    {
        int port = OmegaChild.FreePort();
        string endpoint = $"127.0.0.1:{port}";
        using var serve = new OmegaChild("serve", "--in-memory", "--listen", endpoint);
        await serve.WaitForAsync("listening on", Timeout);
        Assert.Contains("TLS 1.3 with", serve.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("WARNING", serve.Output, StringComparison.Ordinal);
        string pin = ServeTests.PinOf(serve.Output);
        string tok = ServeTests.TokenFileOf(serve.Output);

        var ok = await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--pin", pin, "--token-file", tok, "--job", "1", "--cores", "1");
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
        Assert.Contains("submitted", ok.Stdout, StringComparison.Ordinal);

        // Verification is the default: no CA and no pin means the system roots, which do not know a self-signed certificate.
        AssertFails(await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--job", "2"), "UntrustedCertificate");
        string wrongPin = new string('0', 64);
        AssertFails(await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--pin", wrongPin, "--job", "3"), "PinMismatch");
        AssertFails(await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--insecure", "--job", "4"), "requires TLS: drop --insecure");
        // The refused submissions changed nothing: only job 1 exists.
        var jobs = await OmegaProcess.RunAsync(Timeout, "inspect", "Jobs", "--connect", endpoint, "--insecure-skip-verify", "--token-file", tok);
        Assert.True(jobs.ExitCode == 0, jobs.Stdout + jobs.Stderr);
        Assert.Contains(jobs.Stdout.Split('\n'), l => l.StartsWith("j1 ", StringComparison.Ordinal));
        Assert.DoesNotContain(jobs.Stdout.Split('\n'), l => l.StartsWith("j2 ", StringComparison.Ordinal) || l.StartsWith("j3 ", StringComparison.Ordinal) || l.StartsWith("j4 ", StringComparison.Ordinal));
        // Usage errors in the TLS flags come before any connection.
        var both = await OmegaProcess.RunAsync(Timeout, "stats", "--connect", endpoint, "--pin", pin, "--token-file", tok, "--insecure");
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("choose one of", both.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, await serve.StopAsync(Timeout));
    }

    [Fact]
    public async Task Serve_insecure_warns_and_speaks_plaintext_only_to_clients_that_ask_for_it()
    {
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        using var serve = new OmegaChild("serve", "--in-memory", "--listen", endpoint, "--insecure");
        await serve.WaitForAsync("listening on", Timeout);
        var warnings = serve.Output.Split('\n').Where(l => l.Contains("WARNING", StringComparison.Ordinal)).ToList();
        Assert.Single(warnings);
        Assert.StartsWith("stderr: omega serve: WARNING: --insecure", warnings[0], StringComparison.Ordinal);
        Assert.DoesNotContain("certificate pin", serve.Output, StringComparison.Ordinal);
        // Plaintext does not switch credentials off: the admin token is still needed (only --no-auth would).
        string tok = ServeTests.TokenFileOf(serve.Output);

        var ok = await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--insecure", "--token-file", tok, "--job", "1");
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
        // A client that expects TLS does not silently fall back to plaintext.
        AssertFails(await OmegaProcess.RunAsync(Timeout, "submit", "--connect", endpoint, "--job", "2"), "TLS with the server at");
        // Plaintext cannot be mixed with certificates on the server either.
        var mixed = await OmegaProcess.RunAsync(Timeout, "serve", "--in-memory", "--insecure", "--client-ca", "/nonexistent.pem");
        Assert.Equal(2, mixed.ExitCode);
        Assert.Contains("--insecure (plaintext) cannot be combined", mixed.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, await serve.StopAsync(Timeout));
    }
}
