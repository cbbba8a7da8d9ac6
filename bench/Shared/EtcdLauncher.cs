using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Omega.Bench.Shared;

/// <summary>
/// A real etcd cluster as child processes of the <c>etcd</c> binary (Debian's etcd-server 3.4), each member on free
/// loopback ports with its own data directory under one root: the one launcher of the HA test fixture
/// (tests/Omega.Replication.Tests/EtcdCluster.cs), the failover driver and the ha-soak runner (linked into each).
/// </summary>
internal sealed class EtcdLauncher : IDisposable
{
    private readonly List<Process> _members;

    private EtcdLauncher(string root, List<Process> members, IReadOnlyList<string> endpoints)
    {
        Root = root;
        _members = members;
        Endpoints = endpoints;
    }

    /// <summary>The members' client URLs.</summary>
    public IReadOnlyList<string> Endpoints { get; }

    /// <summary>The member processes (the failover driver kills them with SIGKILL at the end).</summary>
    public IReadOnlyList<Process> Members => _members;

    /// <summary>The directory holding every member's data directory.</summary>
    public string Root { get; }

    /// <summary>The etcd binary: <paramref name="given"/>, else ETCD_BIN, else the first <c>etcd</c> on PATH, else /usr/bin/etcd.</summary>
    public static string FindBinary(string? given = null) => given
        ?? Environment.GetEnvironmentVariable("ETCD_BIN")
        ?? (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "etcd")).FirstOrDefault(File.Exists)
        ?? "/usr/bin/etcd";

    /// <summary>Starts <paramref name="members"/> members (member i named <c>{prefix}{i}</c>, data in <c>root/{prefix}{i}</c>); returns at once (see <see cref="WaitHealthyAsync"/>).</summary>
    public static EtcdLauncher Start(string binary, string root, int members = 3, string prefix = "m")
    {
        if (!File.Exists(binary)) throw new FileNotFoundException($"etcd not found at {binary}: install Debian's etcd-server (.ci/run does), or set ETCD_BIN", binary);
        Directory.CreateDirectory(root);
        var ports = FreePorts(2 * members);
        string cluster = string.Join(",", Enumerable.Range(0, members).Select(i => $"{prefix}{i}=http://127.0.0.1:{ports[members + i]}"));
        var endpoints = new List<string>();
        var procs = new List<Process>();
        for (int i = 0; i < members; i++)
        {
            string client = $"http://127.0.0.1:{ports[i]}", peer = $"http://127.0.0.1:{ports[members + i]}";
            endpoints.Add(client);
            var psi = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[]
            {
                "--name", $"{prefix}{i}", "--data-dir", Path.Combine(root, $"{prefix}{i}"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", Path.GetFileName(root),
                "--logger", "zap", "--log-level", "error",
            }) psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            // Drain the pipes so a chatty member never blocks on a full pipe.
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            procs.Add(p);
        }
        return new EtcdLauncher(root, procs, endpoints);
    }

    /// <summary>
    /// Waits until every member answers etcd's <c>/health</c> with true (it has a raft leader and serves a quorum read),
    /// polling every 100 ms; throws <see cref="TimeoutException"/> after <paramref name="timeout"/> (a loaded machine needs time).
    /// </summary>
    public async Task WaitHealthyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        foreach (var e in Endpoints)
        {
            while (true)
            {
                try
                {
                    var body = await http.GetStringAsync(e + "/health").ConfigureAwait(false);
                    if (body.Contains("true", StringComparison.Ordinal)) break;
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    // not up yet
                }
                if (clock.Elapsed > timeout) throw new TimeoutException($"etcd member {e} not healthy within {timeout.TotalSeconds:0} s");
                await Task.Delay(100).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Kills every member (SIGKILL) and deletes the data directories.</summary>
    public void Dispose()
    {
        foreach (var p in _members)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            p.Dispose();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }

    /// <summary>Free loopback TCP ports (held together while chosen, so they are distinct).</summary>
    public static int[] FreePorts(int count)
    {
        var listeners = new List<TcpListener>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var l = new TcpListener(IPAddress.Loopback, 0);
                l.Start();
                listeners.Add(l);
            }
            return listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        }
        finally
        {
            foreach (var l in listeners) l.Stop();
        }
    }
}
