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
            // The takeover probes: one per replica, each pinned to its replica (no redirect followed, 20 ms between tries), all
            // asked at once. The first commit acknowledged by a process other than the victim ends the measurement, so a
            // paused leader's silence holds only its own probe, never the figure (round 8's SIGSTOP cycles carried up to
            // 1 s, or 2-3 s when a standby redirected the probe back to the paused leader, of a serial probe's reply timeout).
            var probes = replicas.Select(r => new FailoverScheduler([r.EndPoint], "fo-probe-" + r.Name, TimeSpan.FromMilliseconds(1000), followRedirects: false, maxBackOffMs: 20)).ToArray();
            schedulerList.AddRange(probes);
            ulong probeSeq = 0;
            await using var etcdWatch = new LeaderKeyWatch(etcd.Endpoints, "/omega/default/leader");
            var breakdown = new List<Steps>();
            var nodes = await schedulerList[0].NodesAsync(stop.Token).ConfigureAwait(false);
            var nodeIds = nodes.Where(kv => kv.Key.StartsWith("fo-", StringComparison.Ordinal)).Select(kv => kv.Value).ToArray();
            Console.WriteLine($"failover: etcd up, 3 replicas, {agentList.Count} agents registered, {nodeIds.Length} nodes");

            var load = schedulerList.Where(x => !probes.Contains(x)).Select((sched, i) => Task.Run(async () =>
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
                DateTime killedUtc;
                long victimEpoch = etcdWatch.Current;
                lock (supervisorLock)
                {
                    victim = leader.Process!;
                    victimPid = victim.Id; // read now: the supervisor disposes the Process once it has exited
                    killedAt = Stopwatch.GetTimestamp();
                    killedUtc = DateTime.UtcNow;
                    if (pause) { SysKill(victim.Id, SigStop); leader.Paused = true; }
                    else SysKill(victim.Id, SigKill);
                }
                // Takeover: from the kill to the first commit a probe gets acknowledged by another replica. The probe waits at
                // most 1 s for any reply, so a paused leader costs it little; the load's schedulers wait 2 s.
                var (took, by, winner) = await ProbeTakeoverAsync(probes, replicas, killedAt, leader, victimPid, nodeIds[0], ++probeSeq).ConfigureAwait(false);
                takeovers.Add(took);
                if (double.IsPositiveInfinity(took)) violations.Add($"cycle {cycle}: no replica accepted a commit within 60 s of the kill");
                long tookAt = killedAt + (long)(took * Stopwatch.Frequency);
                // Where the takeover's time went (printed under the cycle line): etcd's view, the winner's own timeline, and
                // when the load's schedulers and every agent were back.
                var steps = new Steps(pause, took);
                steps.KeyGone = etcdWatch.FirstAfter(killedAt, rev => rev != victimEpoch) is { } gone ? Since(killedAt, gone) : double.NaN;
                steps.NewKey = etcdWatch.FirstAfter(killedAt, rev => rev != victimEpoch && rev != 0) is { } created ? Since(killedAt, created) : double.NaN;
                if (winner is not null) ReadTimeline(winner, killedUtc, steps);
                steps.RevokedByRestart = !pause && LogSays(leader, "revoked lease");
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
                // The clients' side, after the zombie's SIGCONT (which keeps round 8's timing: 0.2-2 s after the takeover):
                // when all agents were registered with the new leader (awaited up to 10 s), and the load's first ack.
                var winnerEp = winner?.EndPoint;
                await WaitUntilAsync(() => agentList.All(a => a.IsConnected && Equals(a.ConnectedTo, winnerEp)), TimeSpan.FromSeconds(10)).ConfigureAwait(false);
                steps.Agents = agentList.All(a => a.IsConnected && Equals(a.ConnectedTo, winnerEp)) ? Since(killedAt, Stopwatch.GetTimestamp()) : double.NaN;
                foreach (var x in ackLog)
                    if (x.At > killedAt && x.Pid != victimPid && (double.IsNaN(steps.Load) || Since(killedAt, x.At) < steps.Load)) steps.Load = Since(killedAt, x.At);
                breakdown.Add(steps);
                if (zombieAcks > 0) violations.Add($"cycle {cycle}: the deposed leader {leader.Name} acknowledged {zombieAcks} commit(s) after the takeover");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"cycle {cycle}/{s.Cycles}: {(pause ? "SIGSTOP" : "SIGKILL")} {leader.Name}, takeover {took:0.000} s{by}, acked {acked.Count}"));
                Console.WriteLine("  " + steps.Line());
                if (!doubles.IsEmpty) break;
            }
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(load).ConfigureAwait(false);
            await supervisor.ConfigureAwait(false);

            // Checks, against the final leader.
            var finalLeader = await LeaderAsync(addresses, TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            foreach (var d in doubles) violations.Add("double binding: " + d);
            var tokens = schedulerList.SelectMany(x => x.GrantedTokens).ToList();
            if (tokens.Count != tokens.Distinct().Count()) violations.Add($"a lease token was granted twice: {string.Join(",", tokens)}; grants: {string.Join("; ", schedulerList.Select(x => x.Name + ": " + string.Join(", ", x.Grants)))}");
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
            Steps.PrintSummary(breakdown);
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
    /// Every replica's probe asks at once; the first such acknowledgement wins and the others are stopped (and awaited: a
    /// probe is used by one loop at a time). Returns the time, who took over (for the cycle line) and the winner.
    /// </summary>
    private static async Task<(double Seconds, string By, Replica? Winner)> ProbeTakeoverAsync(FailoverScheduler[] probes, IReadOnlyList<Replica> replicas, long killedAt,
        Replica old, int victimPid, int node, ulong seq)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var won = new TaskCompletionSource<(double, string, Replica?)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var loops = new Task[probes.Length];
        for (int i = 0; i < probes.Length; i++)
        {
            var probe = probes[i];
            var at = replicas[i];
            ulong lane = (ulong)i;
            loops[i] = Task.Run(async () =>
            {
                ulong attempt = 0;
                while (!limit.IsCancellationRequested)
                {
                    // A fresh task per attempt: an attempt that timed out may have been applied by the new leader already.
                    attempt++;
                    ulong key = (seq * 3 + lane) * 10_000 + attempt;
                    var task = new TaskId(900_000_000L + (long)key, 0);
                    CommitReply reply;
                    EndPoint from;
                    try
                    {
                        (reply, from) = await probe.CommitAsync([new WireClaim(task, node, new ResourceVector(1, 1), 0, 0, 0, null)], 0xFEED, key, limit.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    long now = Stopwatch.GetTimestamp();
                    if (reply.Status == TransactionStatus.Committed)
                    {
                        int pid = at.Process is { } p ? SafePid(p) : 0;
                        if (!from.Equals(old.EndPoint))
                        {
                            won.TrySetResult((Stopwatch.GetElapsedTime(killedAt, now).TotalSeconds, $" (by {from})", at));
                            return;
                        }
                        if (pid != 0 && pid != victimPid)
                        {
                            won.TrySetResult((Stopwatch.GetElapsedTime(killedAt, now).TotalSeconds, $" (by {old.Name} restarted)", at));
                            return;
                        }
                    }
                    try { await Task.Delay(5, limit.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException) { return; }
                }
            });
        }
        var all = Task.WhenAll(loops);
        await Task.WhenAny(won.Task, all).ConfigureAwait(false);
        await limit.CancelAsync().ConfigureAwait(false);
        await all.ConfigureAwait(false);
        // No winner within a minute: reported as a violation.
        return won.Task.IsCompleted ? won.Task.Result : (double.PositiveInfinity, "", null);
    }

    private static double Since(long from, long to) => (double)(to - from) / Stopwatch.Frequency;

    /// <summary>Whether the newest log of the process on <paramref name="r"/> holds <paramref name="text"/>.</summary>
    private static bool LogSays(Replica r, string text)
    {
        string log = Path.Combine(r.Data, $"serve-{r.Starts - 1}.log");
        try
        {
            using var f = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(f);
            return reader.ReadToEnd().Contains(text, StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads the winner's "takeover steps" line (omega serve prints the steps' UTC times once it leads) and converts each
    /// to seconds after the kill. The replica process and the driver share the machine's clock.
    /// </summary>
    private static void ReadTimeline(Replica winner, DateTime killedUtc, Steps steps)
    {
        string log = Path.Combine(winner.Data, $"serve-{winner.Starts - 1}.log");
        string? line = null;
        try
        {
            using var f = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(f);
            while (reader.ReadLine() is { } l) if (l.StartsWith("omega serve: takeover steps (UTC):", StringComparison.Ordinal)) line = l;
        }
        catch (IOException)
        {
            return;
        }
        if (line is null) return;
        double At(string label)
        {
            int i = line.IndexOf(label + " ", StringComparison.Ordinal);
            if (i < 0) return double.NaN;
            string t = line.Substring(i + label.Length + 1, 12);
            if (!TimeSpan.TryParseExact(t, @"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture, out var tod)) return double.NaN;
            var when = killedUtc.Date + tod;
            if (when - killedUtc > TimeSpan.FromHours(12)) when -= TimeSpan.FromDays(1); // the kill just before midnight
            return (when - killedUtc).TotalSeconds;
        }
        steps.SeenHeld = At("key last seen held");
        steps.Won = At("won");
        steps.CaughtUp = At("caught up");
        steps.Promoted = At("promoted");
        steps.Serving = At("serving");
        int rec = line.IndexOf(" records)", StringComparison.Ordinal);
        int open = rec < 0 ? -1 : line.LastIndexOf('(', rec);
        if (open >= 0 && long.TryParse(line.AsSpan(open + 1, rec - open - 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out long n)) steps.Records = n;
    }

    /// <summary>One cycle's takeover, step by step, in seconds after the kill (NaN: not seen).</summary>
    private sealed class Steps(bool pause, double takeover)
    {
        public bool Pause { get; } = pause;
        public double Takeover { get; } = takeover;
        public double KeyGone = double.NaN, NewKey = double.NaN, SeenHeld = double.NaN, Won = double.NaN, CaughtUp = double.NaN,
            Promoted = double.NaN, Serving = double.NaN, Load = double.NaN, Agents = double.NaN;
        public long Records = -1;
        public bool RevokedByRestart;

        public string Line() => string.Create(CultureInfo.InvariantCulture,
            $"steps (s after the kill): key gone {F(KeyGone)}{(RevokedByRestart ? " (lease revoked by the restarted victim)" : "")}, new key {F(NewKey)}; winner: key last seen held {F(SeenHeld)}, won {F(Won)}, caught up {F(CaughtUp)} ({Records} records), promoted {F(Promoted)}, serving {F(Serving)}; first probe ack {F(Takeover)}, load's first ack {F(Load)}, all agents on the new leader {F(Agents)}");

        private static string F(double x) => double.IsNaN(x) ? "?" : x.ToString("0.000", CultureInfo.InvariantCulture);

        /// <summary>Per signal, per step: p50 and max over the cycles (the steps as intervals, each from the previous one).</summary>
        public static void PrintSummary(List<Steps> all)
        {
            foreach (bool pause in new[] { false, true })
            {
                var c = all.Where(x => x.Pause == pause).ToList();
                if (c.Count == 0) continue;
                Console.WriteLine($"failover: takeover steps, {(pause ? "SIGSTOP" : "SIGKILL")} ({c.Count} cycles; p50 / max, seconds; each step from the previous one):");
                Row("kill -> election key gone (lease lapsed or revoked)", c.Select(x => x.KeyGone));
                Row("key gone -> winner's campaign won", c.Select(x => x.Won - x.KeyGone));
                Row("won -> caught up (log tail replayed)", c.Select(x => x.CaughtUp - x.Won));
                Row("caught up -> promoted (local journal flushed)", c.Select(x => x.Promoted - x.CaughtUp));
                Row("promoted -> serving (stack started)", c.Select(x => x.Serving - x.Promoted));
                Row("serving -> first probe ack", c.Select(x => x.Takeover - x.Serving));
                Row("kill -> first probe ack (takeover)", c.Select(x => x.Takeover));
                Row("kill -> load's first ack", c.Select(x => x.Load));
                Row("kill -> all agents on the new leader", c.Select(x => x.Agents));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"failover:   cycles whose key was freed by the restarted victim's revocation: {c.Count(x => x.RevokedByRestart)}"));
            }
        }

        private static void Row(string name, IEnumerable<double> values)
        {
            var v = values.Where(x => !double.IsNaN(x) && !double.IsInfinity(x)).OrderBy(x => x).ToList();
            Console.WriteLine(v.Count == 0
                ? $"failover:   {name,-52} -"
                : string.Create(CultureInfo.InvariantCulture, $"failover:   {name,-52} {v[v.Count / 2],7:0.000} / {v[^1],7:0.000}  (n={v.Count})"));
        }
    }

    /// <summary>
    /// Polls the election key every 20 ms (from the driver's own etcd client) and keeps every change of its create revision
    /// (0: no key) with the time seen: when the old leader's key went and the new one came, as etcd saw it.
    /// </summary>
    private sealed class LeaderKeyWatch : IAsyncDisposable
    {
        private readonly dotnet_etcd.EtcdClient _client;
        private readonly Google.Protobuf.ByteString _key;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<(long At, long Revision)> _changes = new();
        private readonly Task _loop;

        public LeaderKeyWatch(IReadOnlyList<string> endpoints, string key)
        {
            _client = new dotnet_etcd.EtcdClient(string.Join(",", endpoints));
            _key = Google.Protobuf.ByteString.CopyFromUtf8(key);
            _loop = Task.Run(LoopAsync);
        }

        /// <summary>The key's create revision at the last look (0: none).</summary>
        public long Current
        {
            get
            {
                lock (_changes) return _changes.Count == 0 ? 0 : _changes[^1].Revision;
            }
        }

        /// <summary>The time of the first change after <paramref name="after"/> to a revision matching <paramref name="match"/>.</summary>
        public long? FirstAfter(long after, Func<long, bool> match)
        {
            lock (_changes)
                foreach (var (at, rev) in _changes)
                    if (at > after && match(rev)) return at;
            return null;
        }

        private async Task LoopAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    var r = await _client.GetAsync(new Etcdserverpb.RangeRequest { Key = _key }, deadline: DateTime.UtcNow.AddSeconds(2), cancellationToken: _stop.Token).ConfigureAwait(false);
                    long rev = r.Kvs.Count == 1 ? r.Kvs[0].CreateRevision : 0;
                    long now = Stopwatch.GetTimestamp();
                    lock (_changes)
                        if (_changes.Count == 0 || _changes[^1].Revision != rev) _changes.Add((now, rev));
                    await Task.Delay(20, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) { return; }
                catch (Grpc.Core.RpcException) { }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _loop.ConfigureAwait(false);
            _client.Dispose();
            _stop.Dispose();
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
