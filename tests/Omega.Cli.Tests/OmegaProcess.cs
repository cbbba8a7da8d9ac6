using System.Diagnostics;

namespace Omega.Cli.Tests;

/// <summary>Runs the real <c>omega</c> command (the built omega.dll) as a child process and captures what it prints.</summary>
internal static class OmegaProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "omega.dll");

    public static Task<Result> RunAsync(TimeSpan timeout, params string[] args) => RunWithEnvironmentAsync(timeout, [], args);

    /// <summary>As <see cref="RunAsync"/>, with extra environment variables for the child (for example <c>OMEGA_ADDR</c>).</summary>
    public static async Task<Result> RunWithEnvironmentAsync(TimeSpan timeout, (string Name, string Value)[] environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"omega {string.Join(' ', args)} did not finish within {timeout}; stdout so far: {await stdout}");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}

/// <summary>
/// A long-running <c>omega</c> child process (a server) whose stdout and stderr lines are gathered as they arrive, so a
/// test can wait for a line, run other commands against it, then stop it as a service manager would.
/// </summary>
internal sealed class OmegaChild : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _out = new();

    /// <summary>
    /// <c>omega serve --listen LISTEN EXTRA...</c>: the one place that starts a server for these tests, so a flag every
    /// serve needs (such as plaintext's <c>--insecure</c> once TLS is the default) is added here only.
    /// </summary>
    public static OmegaChild Serve(string listen, params string[] extra) => new(["serve", "--listen", listen, .. extra]);

    public OmegaChild(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(OmegaProcess.Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data, "");
        _process.ErrorDataReceived += (_, e) => Append(e.Data, "stderr: ");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    private void Append(string? line, string prefix)
    {
        if (line is null) return;
        lock (_out) _out.Append(prefix).AppendLine(line);
    }

    /// <summary>Everything printed so far (stderr lines prefixed <c>stderr: </c>).</summary>
    public string Output { get { lock (_out) return _out.ToString(); } }

    /// <summary>Waits until <paramref name="text"/> has been printed; fails fast if the process exits first.</summary>
    public async Task WaitForAsync(string text, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited) throw new InvalidOperationException($"omega exited ({_process.ExitCode}) before printing '{text}':\n{Output}");
            try { await Task.Delay(50, cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"no '{text}' within {timeout}:\n{Output}"); }
        }
    }

    /// <summary>SIGTERM, then the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit(); // drains the asynchronous output readers
        return _process.ExitCode;
    }

    /// <summary>SIGKILL (Process.Kill on Linux), then waits until the process is gone (its locks released).</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited) _process.Kill();
        await _process.WaitForExitAsync();
    }

    public static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
