using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// A real <c>omega serve</c> child process (the omega.dll built beside this bench) on a free loopback port with a
/// durable FASTER data directory of its own, deleted on dispose. Started with <c>--no-auth</c> (the runners measure the
/// transport and the control plane, not credential checks; the output says so) and either <c>--insecure</c>
/// (plaintext) or the default TLS 1.3 with serve's self-signed certificate, whose pin is read from serve's output.
/// </summary>
internal sealed partial class ServeChild : IDisposable
{
    private readonly Process _p;
    private readonly List<string> _lines = new();
    private readonly string _dataDir;

    private ServeChild(Process p, IPEndPoint endPoint, string dataDir)
    {
        _p = p;
        EndPoint = endPoint;
        _dataDir = dataDir;
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>The server certificate's public-key pin (TLS), else null.</summary>
    public string? Pin { get; private set; }

    public int ProcessId => _p.Id;

    public string Output { get { lock (_lines) return string.Join('\n', _lines); } }

    /// <summary>The mode line printed by the runners: transport and credentials.</summary>
    public string Describe => $"omega serve (pid {_p.Id}) on {EndPoint}, {(Pin is null ? "plaintext (--insecure)" : "TLS 1.3, self-signed, clients pin sha256:" + Pin[..12] + "…")}, credentials off (--no-auth), durable FASTER store in {_dataDir}";

    [GeneratedRegex(@"certificate pin sha256:(?<pin>[0-9a-fA-F]{64})")]
    private static partial Regex PinLine();

    /// <summary>The omega.dll beside this bench (same configuration), or <paramref name="explicitPath"/>.</summary>
    public static string FindOmega(string? explicitPath)
    {
        if (explicitPath is not null) return Path.GetFullPath(explicitPath);
        string baseDir = AppContext.BaseDirectory;
        return Path.Combine(baseDir.Replace(Path.Combine("bench", "Omega.Benchmarks"), Path.Combine("src", "Omega.Cli"), StringComparison.Ordinal), "omega.dll");
    }

    public static async Task<ServeChild> StartAsync(string omegaDll, bool tls, IEnumerable<string> extraArgs, TimeSpan timeout)
    {
        if (!File.Exists(omegaDll)) throw new FileNotFoundException($"omega.dll not found at {omegaDll}: build src/Omega.Cli -c Release, or pass --omega PATH");
        string dir = Path.Combine(Path.GetTempPath(), $"omega-bench-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        var ep = new IPEndPoint(IPAddress.Loopback, FreePort());
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(omegaDll);
        foreach (var a in new[] { "serve", "--listen", ep.ToString(), "--data", dir, "--no-auth" }) psi.ArgumentList.Add(a);
        if (!tls) psi.ArgumentList.Add("--insecure");
        foreach (var a in extraArgs) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start omega serve");
        var s = new ServeChild(p, ep, dir);
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (s._lines) s._lines.Add(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (s._lines) s._lines.Add("stderr: " + e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (!s.Output.Contains("listening on", StringComparison.Ordinal))
        {
            if (p.HasExited || clock.Elapsed > timeout)
            {
                string output = s.Output;
                s.Dispose();
                throw new InvalidOperationException($"omega serve did not start listening:\n{output}");
            }
            await Task.Delay(20);
        }
        if (tls)
        {
            var m = PinLine().Match(s.Output);
            if (!m.Success) { string output = s.Output; s.Dispose(); throw new InvalidOperationException($"no certificate pin in serve's output:\n{output}"); }
            s.Pin = m.Groups["pin"].Value;
        }
        return s;
    }

    /// <summary>Client TLS settings that verify this server by its pin (null: plaintext).</summary>
    public Omega.Transport.TlsClientOptions? ClientTls => Pin is null ? null : new Omega.Transport.TlsClientOptions { PinnedPublicKeySha256 = Pin };

    /// <summary>The server's CPU time so far (user + system), from /proc; NaN when unreadable.</summary>
    public double CpuSeconds()
    {
        try
        {
            _p.Refresh();
            return _p.TotalProcessorTime.TotalSeconds;
        }
        catch (InvalidOperationException) { return double.NaN; }
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
            _p.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
        }
        _p.Dispose();
        try { Directory.Delete(_dataDir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
