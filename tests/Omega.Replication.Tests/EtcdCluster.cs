using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using dotnet_etcd;
using Etcdserverpb;

namespace Omega.Replication.Tests;

/// <summary>
/// A real 3-member etcd cluster for the tests: child processes of /usr/bin/etcd (Debian's etcd-server; .ci/run installs
/// it) on free loopback ports, each in its own temporary directory, killed and deleted at dispose. Tests isolate
/// themselves by cluster name (<see cref="ReplicationOptions.Cluster"/>), so one etcd serves the whole class.
/// </summary>
public sealed class EtcdCluster : IAsyncLifetime
{
    private readonly List<Process> _members = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "omega-etcd-" + Guid.NewGuid().ToString("N")[..8]);

    /// <summary>The members' client URLs.</summary>
    public IReadOnlyList<string> Endpoints { get; private set; } = Array.Empty<string>();

    /// <summary>The etcd binary (ETCD_BIN overrides).</summary>
    public static string Binary => Environment.GetEnvironmentVariable("ETCD_BIN")
        ?? (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "etcd")).FirstOrDefault(File.Exists)
        ?? "/usr/bin/etcd";

    public async Task InitializeAsync()
    {
        if (!File.Exists(Binary)) throw new InvalidOperationException($"etcd not found at {Binary}: install Debian's etcd-server (.ci/run does)");
        const int n = 3;
        var ports = FreePorts(2 * n);
        var peers = string.Join(",", Enumerable.Range(0, n).Select(i => $"m{i}=http://127.0.0.1:{ports[n + i]}"));
        var endpoints = new List<string>();
        for (int i = 0; i < n; i++)
        {
            string dir = Path.Combine(_root, $"m{i}");
            Directory.CreateDirectory(dir);
            string client = $"http://127.0.0.1:{ports[i]}";
            string peer = $"http://127.0.0.1:{ports[n + i]}";
            endpoints.Add(client);
            var psi = new ProcessStartInfo(Binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[]
            {
                "--name", $"m{i}", "--data-dir", dir,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", peers, "--initial-cluster-state", "new", "--initial-cluster-token", Path.GetFileName(_root),
                "--logger", "zap", "--log-level", "error",
            }) psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            // Drain the pipes so a chatty member never blocks on a full pipe.
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            _members.Add(p);
        }
        Endpoints = endpoints;
        // Healthy when a linearizable read succeeds through every member (the cluster has a raft leader).
        var deadline = Stopwatch.StartNew();
        foreach (var e in endpoints)
        {
            using var c = new EtcdClient(e);
            while (true)
            {
                try
                {
                    await c.GetAsync(new RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("health") }, deadline: DateTime.UtcNow.AddSeconds(2));
                    break;
                }
                // (a deadline can surface as a cancelled task rather than an RpcException; a loaded machine needs time)
                catch (Exception failure) when (failure is Grpc.Core.RpcException or OperationCanceledException && deadline.Elapsed < TimeSpan.FromSeconds(90))
                {
                    await Task.Delay(100);
                }
            }
        }
    }

    /// <summary>A client on all members.</summary>
    public EtcdClient Client() => new(string.Join(",", Endpoints));

    public Task DisposeAsync()
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
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
        return Task.CompletedTask;
    }

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

[CollectionDefinition(Name)]
public sealed class EtcdCollection : ICollectionFixture<EtcdCluster>
{
    public const string Name = "etcd";
}
