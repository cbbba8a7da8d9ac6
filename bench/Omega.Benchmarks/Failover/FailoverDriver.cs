using Omega.Bench.Shared;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Omega.Agent;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Benchmarks.Failover;

/// <summary>
/// The failover driver of issue 16: a 3-member etcd and 3 Omega replicas (<c>omega serve --etcd ... --replica ...
/// --advertise ...</c>) as child processes, external schedulers committing and agents receiving bindings over TCP, all
/// given the 3 replica addresses. Each cycle waits a random time under load, then kills the leader with SIGKILL (and
/// restarts it as a standby) or pauses it with SIGSTOP and resumes it with SIGCONT a few seconds later (a zombie that
/// believes it leads: its writes must be fenced at etcd). The driver is the replicas' supervisor: a replica that exits
/// (a deposed leader does) is started again on its own data directory.
/// <para>Checked at the end: every acknowledged commit is bound in the final leader's cell (a re-commit of each
/// acknowledged claim under a new key gets TaskAlreadyBound), no task was run by two agents, no agent saw a binding twice,
/// no lease token was granted twice, no commit was acknowledged by a replica that was not the leader at the time (a
/// deposed leader's write) — each such acknowledgement would also show up as a loss —, and every agent is registered with
/// the final leader. Reported: takeover time, from the kill to the first commit acknowledged by the new leader, p50 and
/// max.</para>
/// </summary>
internal static class FailoverDriver
{
    private const int SigKill = 9, SigCont = 18, SigStop = 19;

    [DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    private static extern int SysKillRaw(int pid, int sig);

    private static void SysKill(int pid, int sig)
    {
        if (SysKillRaw(pid, sig) != 0) Console.Error.WriteLine($"failover: kill({pid}, {sig}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    private sealed record Settings(int Cycles, int Agents, int Schedulers, int Seed, string Omega, string Etcd, double NodeLease, string? Work);

    public static int Run(string[] args)
    {
        int cycles = 100, agents = 20, schedulers = 2, seed = Environment.TickCount;
        double lease = 10;
        string? omega = null, work = null;
        string etcd = Environment.GetEnvironmentVariable("ETCD_BIN") ?? "/usr/bin/etcd";
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--cycles": cycles = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--agents": agents = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--schedulers": schedulers = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--node-lease": lease = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--omega": omega = Next(); break;
                case "--etcd": etcd = Next(); break;
                case "--work": work = Next(); break;
                default:
                    Console.Error.WriteLine($"failover: unknown argument {args[i]}. Usage: failover [--cycles N] [--agents N] [--schedulers N] [--seed N] [--node-lease S] [--omega PATH/omega.dll] [--etcd PATH] [--work DIR]");
                    return 2;
            }
        }
        omega ??= FindOmega();
        if (omega is null || !File.Exists(omega))
        {
            Console.Error.WriteLine("failover: omega.dll not found: build src/Omega.Cli -c Release or pass --omega PATH");
            return 2;
        }
        if (!File.Exists(etcd))
        {
            Console.Error.WriteLine($"failover: etcd not found at {etcd} (apt-get install etcd-server, or --etcd PATH)");
            return 2;
        }
        var s = new Settings(cycles, agents, schedulers, seed, omega, etcd, lease, work);
        Console.WriteLine($"failover: {cycles} cycles, {agents} agents, {schedulers} schedulers, node lease {lease} s, seed {seed}");
        return RunAsync(s).GetAwaiter().GetResult();
    }

    private static string? FindOmega()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Omega.sln"))) dir = dir.Parent;
        return dir is null ? null : Path.Combine(dir.FullName, "src", "Omega.Cli", "bin", "Release", "net10.0", "omega.dll");
    }

    private sealed class Replica(string name, int port, string data)
    {
        public string Name { get; } = name;
        public int Port { get; } = port;
        public string Data { get; } = data;
        public IPEndPoint EndPoint { get; } = new(IPAddress.Loopback, port);
        public Process? Process { get; set; }
        public int Starts { get; set; }
        public bool Paused { get; set; }
    }

    private static async Task<int> RunAsync(Settings s)
    {
        var rng = new Random(s.Seed);
        string root = s.Work ?? Path.Combine(Path.GetTempPath(), "omega-failover-" + s.Seed.ToString(CultureInfo.InvariantCulture));
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        Directory.CreateDirectory(root);
        var etcd = EtcdLauncher.Start(s.Etcd, Path.Combine(root, "etcd"), 3, "e");
        var replicas = new List<Replica>();
        var ports = EtcdLauncher.FreePorts(3);
        for (int i = 0; i < 3; i++) replicas.Add(new Replica($"r{i}", ports[i], Path.Combine(root, $"r{i}")));
        var addresses = replicas.Select(r => (EndPoint)r.EndPoint).ToList();
        using var stop = new CancellationTokenSource();
        var violations = new List<string>();
        var takeovers = new List<double>();
        // Acknowledged claims: task → node id; commits acknowledged, by the replica that answered and when.
        var acked = new ConcurrentDictionary<TaskId, int>();
        // Who acknowledged: the endpoint AND the process behind it then. A SIGKILLed leader is restarted on the same
        // endpoint within 200 ms and may win the next election, so an endpoint alone does not tell the new leader from
        // the old one (round 7's "no takeover" cycles were that: the restarted r1 led, and the probe ignored it).
        var ackLog = new ConcurrentQueue<(long At, EndPoint From, int Pid)>();
        // Runs each agent received: task → node name (a second node for one task is a double binding).
        var runs = new ConcurrentDictionary<TaskId, string>();
        var doubles = new ConcurrentQueue<string>();
        var agentList = new List<AgentClient>();
        var schedulerList = new List<FailoverScheduler>();
        try
        {
            await etcd.WaitHealthyAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            foreach (var r in replicas) Start(s, r, etcd.Endpoints);
            // The first leader: any replica answering a control client after redirects.
            await LeaderAsync(addresses, TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            for (int i = 0; i < s.Agents; i++)
            {
                string node = $"fo-{i:D4}";
                var agent = new AgentClient(new AgentOptions
                {
                    Servers = addresses,
                    NodeName = node,
                    Capacity = new ResourceVector(1_000_000_000, 1L << 40),
                    FailureDomain = $"rack-{i % 5}",
                    Seed = s.Seed + i,
                    HandshakeReplyTimeout = TimeSpan.FromSeconds(2),
                    OnBinding = (_, b) =>
                    {
                        if (b.Kind != BindingKind.Run) return;
                        var owner = runs.GetOrAdd(b.Task, node);
                        if (owner != node) doubles.Enqueue($"{b.Task} run by {owner} and {node}");
                    },
                });
                agentList.Add(agent);
            }
            await Task.WhenAll(agentList.Select(a => a.StartAsync())).WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            for (int i = 0; i < s.Schedulers; i++) schedulerList.Add(new FailoverScheduler(addresses, $"fo-sched-{i}", TimeSpan.FromSeconds(2)));
            var probe = new FailoverScheduler(addresses, "fo-probe", TimeSpan.FromMilliseconds(1000));
            schedulerList.Add(probe);
            ulong probeSeq = 0;
            await probe.EnsureConnectedAsync(stop.Token).ConfigureAwait(false);
            var nodes = await schedulerList[0].NodesAsync(stop.Token).ConfigureAwait(false);
            var nodeIds = nodes.Where(kv => kv.Key.StartsWith("fo-", StringComparison.Ordinal)).Select(kv => kv.Value).ToArray();
            Console.WriteLine($"failover: etcd up, 3 replicas, {agentList.Count} agents registered, {nodeIds.Length} nodes");

            var load = schedulerList.Where(x => x != probe).Select((sched, i) => Task.Run(async () =>
            {
                var r = new Random(s.Seed * 31 + i);
                ulong seq = 0;
                while (!stop.IsCancellationRequested)
                {
                    seq++;
                    var task = new TaskId(1_000_000L * (i + 1) + (long)seq, 0);
                    int node = nodeIds[r.Next(nodeIds.Length)];
                    var claim = new WireClaim(task, node, new ResourceVector(1, 1), 0, 0, 0, null);
                    try
                    {
                        var (reply, from) = await sched.CommitAsync([claim], (ulong)(i + 1), seq, stop.Token).ConfigureAwait(false);
                        if (reply.Status == TransactionStatus.Committed && reply.ClaimStatuses.Span[0] == ClaimStatus.Applied)
                        {
                            acked[task] = node;
                            ackLog.Enqueue((Stopwatch.GetTimestamp(), from, ProcessAt(replicas, from)));
                        }
                    }
                    catch (OperationCanceledException) { return; }
                    await Task.Delay(r.Next(2, 10)).ConfigureAwait(false);
                }
            })).ToList();

            // Supervisor (systemd's Restart=always): a replica that exited — killed, or a leader deposed (it exits with code
            // 5; on a loaded machine also when its etcd session lapses) — starts again on its own data directory as a standby.
            var supervisorLock = new object();
            int restarts = 0;
            var supervisor = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    lock (supervisorLock)
                        foreach (var r in replicas)
                            if (r.Process is { HasExited: true }) { Start(s, r, etcd.Endpoints); restarts++; }
                    try { await Task.Delay(200, stop.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException) { return; }
                }
            });
            for (int cycle = 1; cycle <= s.Cycles; cycle++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(rng.Next(500, 3000))).ConfigureAwait(false);
                var leaderEp = await LeaderAsync(addresses, TimeSpan.FromSeconds(60)).ConfigureAwait(false);
                var leader = replicas.First(r => r.EndPoint.Equals(leaderEp));
                bool pause = cycle % 2 == 0;
                Process victim;
                int victimPid;
                long killedAt;
                lock (supervisorLock)
                {
                    victim = leader.Process!;
                    victimPid = victim.Id; // read now: the supervisor disposes the Process once it has exited
                    killedAt = Stopwatch.GetTimestamp();
                    if (pause) { SysKill(victim.Id, SigStop); leader.Paused = true; }
                    else SysKill(victim.Id, SigKill);
                }
                // Takeover: from the kill to the first commit a probe gets acknowledged by another replica. The probe waits at
                // most 1 s for any reply, so a paused leader costs it little; the load's schedulers wait 2 s.
                var (took, by) = await ProbeTakeoverAsync(probe, killedAt, leader, victimPid, nodeIds[0], ++probeSeq).ConfigureAwait(false);
                takeovers.Add(took);
                if (double.IsPositiveInfinity(took)) violations.Add($"cycle {cycle}: no replica accepted a commit within 60 s of the kill");
                long tookAt = killedAt + (long)(took * Stopwatch.Frequency);
                if (pause)
                {
                    // The zombie comes back believing it leads for a moment; its writes must fail at etcd.
                    await Task.Delay(rng.Next(200, 2000)).ConfigureAwait(false);
                    SysKill(victimPid, SigCont);
                    leader.Paused = false;
                }
                // A deposed leader (the zombie, once resumed) must not acknowledge anything after the new leader took over.
                await Task.Delay(500).ConfigureAwait(false);
                int zombieAcks = ackLog.Count(x => x.From.Equals(leader.EndPoint) && x.Pid == victimPid && x.At > tookAt);
                if (zombieAcks > 0) violations.Add($"cycle {cycle}: the deposed leader {leader.Name} acknowledged {zombieAcks} commit(s) after the takeover");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"cycle {cycle}/{s.Cycles}: {(pause ? "SIGSTOP" : "SIGKILL")} {leader.Name}, takeover {took:0.000} s{by}, acked {acked.Count}"));
                if (!doubles.IsEmpty) break;
            }
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(load).ConfigureAwait(false);
            await supervisor.ConfigureAwait(false);

            // Checks, against the final leader.
            var finalLeader = await LeaderAsync(addresses, TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            foreach (var d in doubles) violations.Add("double binding: " + d);
            var tokens = schedulerList.SelectMany(x => x.GrantedTokens).ToList();
            if (tokens.Count != tokens.Distinct().Count()) violations.Add($"a lease token was granted twice: {string.Join(",", tokens)}");
            int lost = await CountLostAsync(addresses, acked).ConfigureAwait(false);
            if (lost > 0) violations.Add($"{lost} acknowledged commit(s) lost");
            // Every acknowledged binding reached its agent (pushed by whichever leader): none missing, none elsewhere.
            await WaitUntilAsync(() => acked.Keys.All(runs.ContainsKey), TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            int unseen = acked.Keys.Count(t => !runs.ContainsKey(t));
            if (unseen > 0) violations.Add($"{unseen} acknowledged binding(s) never reached their agent");
            long dup = agentList.Sum(a => a.Duplicates);
            if (dup > 0) violations.Add($"agents saw {dup} binding frame(s) twice");
            await WaitUntilAsync(() => agentList.All(a => a.IsConnected && Equals(a.ConnectedTo, finalLeader)), TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            int away = agentList.Count(a => !(a.IsConnected && Equals(a.ConnectedTo, finalLeader)));
            if (away > 0) violations.Add($"{away} agent(s) not registered with the final leader");

            takeovers.Sort();
            double p50 = takeovers.Count == 0 ? 0 : takeovers[takeovers.Count / 2];
            double max = takeovers.Count == 0 ? 0 : takeovers[^1];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"failover: {takeovers.Count} cycles, acknowledged commits {acked.Count}, lost {lost}, double bindings {doubles.Count}, tokens granted {tokens.Count} (distinct {tokens.Distinct().Count()}), agents resumed {agentList.Count - away}/{agentList.Count}, replica restarts {restarts} (kills {(s.Cycles + 1) / 2}; the rest are leaders deposed by a lapsed etcd session or zombies stepping down), reconnects {agentList.Sum(a => a.Reconnects)}, reconciled stops {agentList.Sum(a => a.ReconciledStops)}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"failover: takeover p50 {p50:0.000} s, max {max:0.000} s (target <= 3 s)"));
            foreach (var v in violations) Console.WriteLine("VIOLATION " + v);
            return violations.Count == 0 ? 0 : 1;
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            foreach (var a in agentList) await a.DisposeAsync().ConfigureAwait(false);
            foreach (var sc in schedulerList) await sc.DisposeAsync().ConfigureAwait(false);
            foreach (var r in replicas) Kill(r.Process, r.Paused);
            foreach (var p in etcd.Members) Kill(p, false);
        }
    }

    private static void Start(Settings s, Replica r, IReadOnlyList<string> etcd)
    {
        r.Process?.Dispose();
        Directory.CreateDirectory(r.Data);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[]
        {
            s.Omega, "serve", "--listen", $"127.0.0.1:{r.Port}", "--data", r.Data, "--insecure", "--no-auth",
            "--node-lease", s.NodeLease.ToString(CultureInfo.InvariantCulture),
            "--etcd", string.Join(",", etcd), "--replica", r.Name, "--advertise", $"127.0.0.1:{r.Port}",
        }) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        string log = Path.Combine(r.Data, $"serve-{r.Starts}.log");
        var writer = TextWriter.Synchronized(new StreamWriter(log) { AutoFlush = true });
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) writer.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) writer.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        r.Process = p;
        r.Starts++;
    }

    private static void Kill(Process? p, bool paused)
    {
        if (p is null) return;
        try
        {
            if (!p.HasExited)
            {
                if (paused) SysKill(p.Id, SigCont);
                p.Kill(entireProcessTree: true);
                p.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException) { }
        p.Dispose();
    }

    /// <summary>The replica that leads now: a control client's handshake after following redirects.</summary>
    private static async Task<EndPoint> LeaderAsync(IReadOnlyList<EndPoint> replicas, TimeSpan within)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var c = await ControlClient.ConnectAsync(replicas, null, "failover-probe", null, TimeSpan.FromSeconds(1), maxRounds: 2).ConfigureAwait(false);
                return c.ConnectedTo!;
            }
            catch (Exception e) when (e is SocketException or IOException or TimeoutException or AgentRequestException or OperationCanceledException)
            {
                if (sw.Elapsed > within) throw new TimeoutException($"no leader within {within.TotalSeconds} s: {e.Message}", e);
                await Task.Delay(100).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The pid of the process serving <paramref name="at"/> now (0 when none).</summary>
    private static int ProcessAt(IReadOnlyList<Replica> replicas, EndPoint at)
    {
        foreach (var r in replicas)
            if (r.EndPoint.Equals(at))
            {
                try
                {
                    return r.Process?.Id ?? 0;
                }
                catch (InvalidOperationException)
                {
                    return 0;
                }
            }
        return 0;
    }

    /// <summary>
    /// From the kill to the first commit acknowledged by a process other than the victim: another replica, or the victim's
    /// endpoint served by a restarted process (a SIGKILLed leader restarts within 200 ms and can win the next election).
    /// Returns the time and who took over, for the cycle line.
    /// </summary>
    private static async Task<(double Seconds, string By)> ProbeTakeoverAsync(FailoverScheduler probe, long killedAt, Replica old, int victimPid, int node, ulong seq)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        ulong attempt = 0;
        while (true)
        {
            // A fresh task per attempt: an attempt that timed out may have been applied by the new leader already.
            var task = new TaskId(900_000_000L + (long)(seq * 1000 + ++attempt), 0);
            CommitReply reply;
            EndPoint from;
            try
            {
                (reply, from) = await probe.CommitAsync([new WireClaim(task, node, new ResourceVector(1, 1), 0, 0, 0, null)], 0xFEED, seq * 1000 + attempt, limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return (double.PositiveInfinity, ""); // no leader accepted a commit within a minute: reported as a violation
            }
            long at = Stopwatch.GetTimestamp();
            if (reply.Status == TransactionStatus.Committed)
            {
                if (!from.Equals(old.EndPoint)) return (Stopwatch.GetElapsedTime(killedAt, at).TotalSeconds, $" (by {from})");
                int pid = old.Process is { } p ? SafePid(p) : 0;
                if (pid != 0 && pid != victimPid) return (Stopwatch.GetElapsedTime(killedAt, at).TotalSeconds, $" (by {old.Name} restarted)");
            }
            await Task.Delay(5, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static int SafePid(Process p)
    {
        try
        {
            return p.Id;
        }
        catch (InvalidOperationException)
        {
            return 0;
        }
    }

    /// <summary>
    /// Re-commits every acknowledged claim under new keys on the final leader: each must come back TaskAlreadyBound (the
    /// binding is in the leader's cell). A claim that applies instead was lost (and is bound now).
    /// </summary>
    private static async Task<int> CountLostAsync(IReadOnlyList<EndPoint> replicas, ConcurrentDictionary<TaskId, int> acked)
    {
        await using var checker = new FailoverScheduler(replicas, "fo-checker", TimeSpan.FromSeconds(10));
        var all = acked.ToArray();
        int lost = 0;
        ulong key = 0;
        for (int i = 0; i < all.Length; i += 1000)
        {
            var claims = all.Skip(i).Take(1000).Select(kv => new WireClaim(kv.Key, kv.Value, new ResourceVector(1, 1), 0, 0, 0, null)).ToArray();
            var (reply, _) = await checker.CommitAsync(claims, 0xC0FFEE, ++key, CancellationToken.None).ConfigureAwait(false);
            var statuses = reply.ClaimStatuses.Span;
            for (int k = 0; k < statuses.Length; k++) if (statuses[k] != ClaimStatus.TaskAlreadyBound) lost++;
        }
        return lost;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan within)
    {
        var sw = Stopwatch.StartNew();
        while (!condition() && sw.Elapsed < within) await Task.Delay(50).ConfigureAwait(false);
    }

}
