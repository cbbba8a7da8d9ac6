using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Omega.CrashHost;

/// <summary>A real <c>omega serve</c> child process (the built omega.dll), its output collected, killable with SIGKILL.</summary>
internal sealed class ServeProcess : IDisposable
{
    private readonly Process _p;
    private readonly List<string> _lines = new();

    public IPEndPoint EndPoint { get; }

    private ServeProcess(Process p, IPEndPoint endPoint)
    {
        _p = p;
        EndPoint = endPoint;
    }

    public string Output { get { lock (_lines) return string.Join('\n', _lines); } }

    public bool HasExited => _p.HasExited;

    /// <summary>Starts <c>omega serve</c> on a free loopback port with <paramref name="extraArgs"/> and waits until it listens.</summary>
    public static Task<ServeProcess> StartAsync(string omegaDll, string dataDir, TimeSpan timeout, params string[] extraArgs)
        => StartCoreAsync(omegaDll, dataDir, timeout, auth: false, extraArgs);

    /// <summary>As <see cref="StartAsync"/>, but with authentication on (serve's default): clients need DATA/admin.token.</summary>
    public static Task<ServeProcess> StartWithAuthAsync(string omegaDll, string dataDir, TimeSpan timeout, params string[] extraArgs)
        => StartCoreAsync(omegaDll, dataDir, timeout, auth: true, extraArgs);

    private static async Task<ServeProcess> StartCoreAsync(string omegaDll, string dataDir, TimeSpan timeout, bool auth, string[] extraArgs)
    {
        var ep = new IPEndPoint(IPAddress.Loopback, FreePort());
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(omegaDll);
        // The driver's raw-protocol client speaks plaintext; TLS itself is covered by the TLS tests, so ask for it explicitly.
        foreach (var a in new[] { "serve", "--listen", ep.ToString(), "--data", dataDir, "--insecure" }) psi.ArgumentList.Add(a);
        // Likewise credentials: the driver is about durable acknowledgements (leases, registrations, commits), not about
        // who may send them, so it asks for --no-auth explicitly; credentials across kill -9 have their own test
        // (Omega.Cli.Tests AuthCliTests), which starts the server through StartWithAuthAsync.
        if (!auth) psi.ArgumentList.Add("--no-auth");
        foreach (var a in extraArgs) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start omega serve");
        var s = new ServeProcess(p, ep);
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (s._lines) s._lines.Add(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (s._lines) s._lines.Add("stderr: " + e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + timeout;
        while (!s.Output.Contains("listening on", StringComparison.Ordinal))
        {
            if (p.HasExited)
            {
                await p.WaitForExitAsync();
                string output = s.Output;
                s.Dispose();
                throw new InvalidOperationException($"omega serve exited ({p.ExitCode}) before listening:\n{output}");
            }
            if (DateTime.UtcNow > deadline)
            {
                string output = s.Output;
                s.Dispose();
                throw new TimeoutException($"omega serve did not listen within {timeout}:\n{output}");
            }
            await Task.Delay(20);
        }
        return s;
    }

    /// <summary>SIGKILL (Process.Kill on Linux) and wait for the exit.</summary>
    public async Task KillAsync()
    {
        if (!_p.HasExited) _p.Kill();
        await _p.WaitForExitAsync();
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        try
        {
            if (!_p.HasExited) _p.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        _p.Dispose();
    }
}
