using System.Diagnostics;
using System.Net;
using Omega.CrashHost;
using Omega.Protocol;
using Omega.Storage;
using Xunit.Abstractions;

namespace Omega.Replication.Tests;

/// <summary>
/// <c>omega serve --etcd</c> replicas as child processes on the test etcd: the leader is SIGKILLed in the middle of
/// acknowledged commits over TCP; the standby takes over within seconds and holds every acknowledged binding.
/// </summary>
[Collection(EtcdCollection.Name)]
public sealed class ServeReplicaTests
{
    private static readonly TimeSpan Rpc = TimeSpan.FromSeconds(20);
    private readonly EtcdCluster _etcd;
    private readonly ITestOutputHelper _out;

    public ServeReplicaTests(EtcdCluster etcd, ITestOutputHelper output)
    {
        _etcd = etcd;
        _out = output;
    }

    [Fact]
    public async Task Sigkill_of_the_leader_serve_process_a_standby_leads_within_seconds_with_every_acknowledged_commit()
    {
        string root = Path.Combine(Path.GetTempPath(), "omega-ha-serve-" + Guid.NewGuid().ToString("N")[..8]);
        string cluster = "serve" + Guid.NewGuid().ToString("N")[..8];
        var ports = EtcdCluster.FreePorts(2);
        string urls = string.Join(",", _etcd.Endpoints);
        Replica Start(string name, int port) => new(name, "serve", "--listen", $"127.0.0.1:{port}", "--data", Path.Combine(root, name),
            "--etcd", urls, "--replica", name, "--advertise", $"127.0.0.1:{port}", "--ha-cluster", cluster, "--insecure", "--no-auth");
        using var a = Start("a", ports[0]);
        Replica? b = null;
        try
        {
            await a.WaitForAsync("replica a leads", TimeSpan.FromSeconds(60));
            b = Start("b", ports[1]);
            await b.WaitForAsync("standby on", TimeSpan.FromSeconds(60));

            var leader = new IPEndPoint(IPAddress.Loopback, ports[0]);
            await using var agent = await WireConn.ConnectAsync(leader, PeerRole.Agent, "n0", Rpc);
            var reg = await agent.RequestAsync<Register, Registered>(new Register { Node = "n0", Capacity = new ResourceVector(1_000_000, 1L << 42), FailureDomain = "r" }, Rpc);
            // The node heartbeats like an agent while the commits run: a registration without a heartbeat is removed
            // after the registration timeout (the 10 s node lease), and on a loaded 2-core machine the 150 commits through
            // etcd took longer than that, so commits on the removed node were Rejected (CI-style runs failed at i < 150).
            using var beating = new CancellationTokenSource();
            var heartbeats = HeartbeatAsync(agent, reg.NodeId, beating.Token);
            await using var sched = await WireConn.ConnectAsync(leader, PeerRole.Scheduler, "s", Rpc);
            var lease = await sched.RequestAsync<AcquireLease, LeaseReply>(new AcquireLease { Name = "s", DurationMs = 60_000 }, Rpc);
            Assert.Equal((byte)0, lease.Status);
            var acked = new List<int>();
            var clock = new Stopwatch();
            // Commit one binding at a time; SIGKILL the leader after the 150th acknowledgement, with commits in flight.
            var inflight = new List<Task<CommitReply>>();
            for (int i = 0; i < 400; i++)
            {
                var commit = sched.RequestAsync<Commit, CommitReply>(new Commit
                {
                    SchedulerId = lease.SchedulerId, Token = lease.Token,
                    Claims = [new WireClaim(new TaskId(i, 0), reg.NodeId, new ResourceVector(10, 1), 0, 0, 1, null)],
                }, Rpc);
                if (i < 150)
                {
                    var r = await commit;
                    Assert.True(r.Status == TransactionStatus.Committed, $"commit {i}: {r.Status} ({string.Join(",", r.ClaimStatuses.ToArray())})");
                    acked.Add(i);
                    continue;
                }
                inflight.Add(commit);
                if (i == 160)
                {
                    await beating.CancelAsync();
                    await heartbeats;
                    await a.KillAsync();
                    clock.Start();
                    break;
                }
            }
            foreach (var t in inflight)
            {
                try
                {
                    var r = await t;
                    if (r.Status == TransactionStatus.Committed) acked.Add(150 + inflight.IndexOf(t));
                }
                catch (Exception e) when (e is ConnectionLostException or TimeoutException or IOException)
                {
                    // not acknowledged: may or may not be there
                }
            }
            await b.WaitForAsync("replica b leads", TimeSpan.FromSeconds(15));
            var took = clock.Elapsed;
            _out.WriteLine($"takeover after SIGKILL: {took.TotalMilliseconds:0} ms; {acked.Count} commits acknowledged");
            // ha16: the new leader prints its takeover's steps (what the failover driver reads); b saw a's key before it won.
            await b.WaitForAsync("omega serve: takeover steps (UTC): key last seen held ", TimeSpan.FromSeconds(10));
            _out.WriteLine(b.Output.Split('\n').First(l => l.Contains("takeover steps", StringComparison.Ordinal)));
            Assert.True(took < TimeSpan.FromSeconds(5), $"takeover took {took}");
            // The new leader accepts work: a scheduler acquires a lease there (its token is beyond a's).
            await using (var s2 = await WireConn.ConnectAsync(new IPEndPoint(IPAddress.Loopback, ports[1]), PeerRole.Scheduler, "s2", Rpc))
            {
                var l2 = await s2.RequestAsync<AcquireLease, LeaseReply>(new AcquireLease { Name = "s2", DurationMs = 60_000 }, Rpc);
                Assert.Equal((byte)0, l2.Status);
                Assert.True(l2.Token > lease.Token);
            }
            // 0, or 9 if a starved keepalive deposed it meanwhile on a loaded machine: either way its directory is closed
            // cleanly and holds only what etcd acknowledged, which is what is checked next.
            int exit = await b.StopAsync(TimeSpan.FromSeconds(30));
            Assert.True(exit is 0 or 9, $"b exited {exit}:\n{b.Output}");
            // b's local copy, opened as a plain store, holds every acknowledged binding.
            using var store = CellStore.Open(new StorageOptions { DataDirectory = Path.Combine(root, "b"), CheckpointOnDispose = false });
            foreach (int i in acked) Assert.True(store.Cell.TryGetAllocation(new TaskId(i, 0), out _), $"acknowledged binding {i} lost in the takeover");
        }
        finally
        {
            b?.Dispose();
            try
            {
                Directory.Delete(root, true);
            }
            catch (IOException)
            {
                // best effort
            }
        }
    }

    /// <summary>Heartbeats node <paramref name="node"/> every second until cancelled (the connection's loss ends it too).</summary>
    private static async Task HeartbeatAsync(WireConn agent, int node, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await agent.RequestAsync<Heartbeat, HeartbeatAck>(new Heartbeat { NodeId = node, LastVersion = 0 }, Rpc);
                await Task.Delay(TimeSpan.FromSeconds(1), stop);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ConnectionLostException or TimeoutException)
        {
            // stopped, or the leader went away: nothing left to keep alive
        }
    }

    /// <summary>An <c>omega</c> child process whose output is collected line by line.</summary>
    private sealed class Replica : IDisposable
    {
        private readonly Process _p;
        private readonly System.Text.StringBuilder _lines = new();

        public Replica(string name, params string[] args)
        {
            Name = name;
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "omega.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.Environment["DOTNET_NOLOGO"] = "1";
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, e) => Add(e.Data);
            _p.ErrorDataReceived += (_, e) => Add(e.Data);
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public string Name { get; }

        private void Add(string? line)
        {
            if (line is null) return;
            lock (_lines) _lines.AppendLine(line);
        }

        public string Output
        {
            get
            {
                lock (_lines) return _lines.ToString();
            }
        }

        public async Task WaitForAsync(string text, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (!Output.Contains(text, StringComparison.Ordinal))
            {
                if (_p.HasExited) throw new InvalidOperationException($"{Name} exited ({_p.ExitCode}) before printing '{text}':\n{Output}");
                if (clock.Elapsed > timeout) throw new TimeoutException($"{Name}: no '{text}' within {timeout}:\n{Output}");
                await Task.Delay(10);
            }
        }

        public async Task KillAsync()
        {
            _p.Kill();
            await _p.WaitForExitAsync();
        }

        public async Task<int> StopAsync(TimeSpan timeout)
        {
            using (var kill = Process.Start("kill", ["-TERM", _p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
            using var cts = new CancellationTokenSource(timeout);
            await _p.WaitForExitAsync(cts.Token);
            _p.WaitForExit();
            return _p.ExitCode;
        }

        public void Dispose()
        {
            if (!_p.HasExited) _p.Kill(entireProcessTree: true);
            _p.Dispose();
        }
    }
}
