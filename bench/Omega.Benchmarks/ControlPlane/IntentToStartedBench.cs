using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Omega.Agent;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// Issue 12, "Must show" (2): intent-to-started latency per replica over TCP. A real <c>omega serve</c> child (durable
/// FASTER store, --no-auth; plaintext unless --tls) and <c>--agent-procs</c> agent-host child processes of
/// <c>--nodes</c>/procs agents each (one TCP connection per agent; the descriptor limit is per process). The cell is filled
/// to <c>--fill</c> (plain jobs over SubmitJob, held forever), then for <c>--seconds</c> the driver creates Workload
/// objects of <c>--replicas-per-workload</c> replicas over the wire at <c>--rate</c> replica starts per second and deletes
/// each one <c>--lifetime</c> seconds after its create (so the fill stays where it is).
/// Per replica: latency = the agent's report of the replica started (its Run binding, reported running at once) − the
/// moment the driver received the workload write's acknowledgement (durable). Both are Stopwatch timestamps, and
/// Stopwatch is CLOCK_MONOTONIC, shared by every process of the machine, so the difference across processes is exact.
/// Beside it, the engine's own bind latency measured the same way in the same run: one-task plain jobs at
/// <c>--probe-rate</c> per second, SubmitJob acknowledged → agent reports started (no control plane on the path).
/// The load runs <c>--warmup</c> seconds (default: one lifetime, so creates and deletes are at their steady state)
/// before the measured <c>--seconds</c>; replicas of workloads created during the warm-up are not recorded.
/// <code>cpstart --nodes 10000 --agent-procs 4 --fill 0.7 --rate 1000 --seconds 60 [--replicas-per-workload 50] [--lifetime 20] [--probe-rate 100] [--warmup S] [--drain S] [--tls]</code>
/// Agent host (child): <c>cpstart agents --port P --count N --index I [--pin PIN] [--cores C]</c>.
/// </summary>
internal static class IntentToStartedBench
{
    private const string Tenant = "bench";

    /// <summary>Job ids at or above this are measured (workload replicas have bit 62; probes start here); below: the fill.</summary>
    internal const long ProbeJobBase = 1L << 40;

    private sealed record Config(int Nodes, int Procs, int Cores, double Fill, double Rate, int Seconds, int PerWorkload, double Lifetime, double ProbeRate,
        bool Tls, int DrainSeconds, int ReadyMs, double Warmup, string Omega);

    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "agents") return AgentHost(BenchOutput.Options(args[1..])).GetAwaiter().GetResult();
        var o = BenchOutput.Options(args);
        var c = new Config(o.Int("nodes", 10_000), o.Int("agent-procs", 4), o.Int("cores", 16), o.Double("fill", 0.70), o.Double("rate", 1000),
            o.Int("seconds", 60), o.Int("replicas-per-workload", 50), o.Double("lifetime", 20), o.Double("probe-rate", 100), o.ContainsKey("tls"),
            o.Int("drain", 20), o.Int("ready-ms", 200), o.Double("warmup", -1), ServeChild.FindOmega(o.GetValueOrDefault("omega")));
        // Default warm-up: one lifetime, so the churn (creates and deletes) is at its steady state when measuring starts.
        if (c.Warmup < 0) c = c with { Warmup = c.Lifetime };
        return RunDriver(c).GetAwaiter().GetResult();
    }

    private static async Task<int> RunDriver(Config c)
    {
        var facts = BenchOutput.Environment("cpstart");
        long capacityCores = (long)c.Nodes * c.Cores;
        long churn = (long)(c.Rate * c.Lifetime);
        // Probe tasks are never released: budget the half of them that is live, on average, during the measured phase.
        long probes0 = (long)(c.ProbeRate * (c.Warmup + c.Seconds / 2.0));
        long prefill = Math.Max(0, (long)(c.Fill * capacityCores) - churn - probes0);
        Console.WriteLine($"omega: {c.Omega}; {c.Nodes} nodes x {c.Cores} cores in {c.Procs} agent processes; fill {c.Fill:P0} = {prefill} one-core fill tasks + ~{churn} live replicas + ~{probes0} probe tasks " +
            $"(workloads of {c.PerWorkload} at {c.Rate:F0} replicas/s, each deleted {c.Lifetime:F0} s after its create); warm-up {c.Warmup:F0} s (same load, not recorded), measured {c.Seconds} s; probes {c.ProbeRate:F0}/s; agents report ready {c.ReadyMs} ms after start");
        using var serve = await ServeChild.StartAsync(c.Omega, c.Tls, ["--node-lease", "30", "--tenant", Tenant], TimeSpan.FromMinutes(2));
        Console.WriteLine(serve.Describe);

        // ------------------------------------------------------------ agents, in child processes
        var hosts = new List<Process>();
        var self = typeof(IntentToStartedBench).Assembly.Location;
        var reg = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < c.Procs; i++)
            {
                int count = c.Nodes / c.Procs + (i < c.Nodes % c.Procs ? 1 : 0);
                var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
                foreach (var a in new[] { self, "cpstart", "agents", "--port", serve.EndPoint.Port.ToString(CultureInfo.InvariantCulture), "--count", count.ToString(CultureInfo.InvariantCulture),
                    "--index", i.ToString(CultureInfo.InvariantCulture), "--cores", c.Cores.ToString(CultureInfo.InvariantCulture), "--ready-ms", c.ReadyMs.ToString(CultureInfo.InvariantCulture) })
                    psi.ArgumentList.Add(a);
                if (serve.Pin is not null) { psi.ArgumentList.Add("--pin"); psi.ArgumentList.Add(serve.Pin); }
                hosts.Add(Process.Start(psi)!);
            }
            foreach (var h in hosts)
            {
                string? line = await h.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(5));
                if (line is null || !line.StartsWith("registered", StringComparison.Ordinal)) throw new InvalidOperationException($"agent host {h.Id}: {line ?? "exited"}");
            }
            Console.WriteLine($"agents: {c.Nodes} registered in {BenchOutput.F(reg.Elapsed.TotalSeconds)} s (agent processes {string.Join(", ", hosts.Select(h => h.Id))})");

            var transport = new Omega.Transport.TransportOptions { ClientTls = serve.ClientTls, MaxFrameLength = 16 << 20, MaxRequestsInFlight = 4096 };
            await using var writer = await ControlClient.ConnectAsync(serve.EndPoint, transport, "cpstart-writer", null);
            await using var submitter = await ControlClient.ConnectAsync(serve.EndPoint, transport, "cpstart-probe", null);

            // ------------------------------------------------------------ fill
            var fillClock = Stopwatch.StartNew();
            long submitted = 0;
            for (long j = 1; submitted < prefill; j++)
            {
                int n = (int)Math.Min(1000, prefill - submitted);
                var (st, why) = await submitter.SubmitJobAsync(new JobSpec(new JobId(j), default, 0, n, new ResourceVector(1000, 1L << 30)), tenant: Tenant);
                if (st != 0) throw new InvalidOperationException($"fill job {j}: status {st} {why}");
                submitted += n;
            }
            long bound = 0;
            while (fillClock.Elapsed < TimeSpan.FromMinutes(10))
            {
                bound = await CellBindings(submitter);
                if (bound >= prefill) break;
                await Task.Delay(500);
            }
            Console.WriteLine($"fill: {bound} bindings ({BenchOutput.F(100.0 * bound / capacityCores)} % of {capacityCores} cores) in {BenchOutput.F(fillClock.Elapsed.TotalSeconds)} s");
            if (bound < prefill) throw new InvalidOperationException("the fill did not complete within 10 minutes");

            // ------------------------------------------------------------ measured phase
            var acks = new ConcurrentDictionary<long, long>();        // workload uid -> ack timestamp
            var probeAcks = new ConcurrentDictionary<long, long>();   // probe job id -> ack timestamp
            var writeLatency = new LatencyRecorder();
            long writeErrors = 0, deleteErrors = 0, probeErrors = 0;
            var pending = new ConcurrentBag<Task>();
            var clock = Stopwatch.StartNew();
            var warmup = TimeSpan.FromSeconds(c.Warmup);
            var end = warmup + TimeSpan.FromSeconds(c.Seconds);
            double cpu0 = double.NaN;
            long bindingsAtStart = -1;
            var atStart = Task.Run(async () =>
            {
                await Task.Delay(warmup);
                cpu0 = serve.CpuSeconds();
                bindingsAtStart = await CellBindings(submitter);
            });

            async Task CreateOne(int i)
            {
                string name = $"s{i:D6}";
                bool measured = clock.Elapsed >= warmup;
                long sent = Stopwatch.GetTimestamp();
                try
                {
                    var stored = await writer.CreateAsync(new Workload
                    {
                        Metadata = new ObjectMeta { Name = name, Tenant = Tenant },
                        Spec = new WorkloadSpec { Replicas = c.PerWorkload, Resources = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 1L << 30 } },
                    });
                    long ack = Stopwatch.GetTimestamp();
                    if (measured)
                    {
                        acks[stored.Metadata.Uid] = ack;
                        writeLatency.AddTicks(ack - sent);
                    }
                    await Task.Delay(TimeSpan.FromSeconds(c.Lifetime));
                    try { await writer.DeleteAsync(stored.Key); }
                    catch (AgentRequestException e)
                    {
                        if (Interlocked.Increment(ref deleteErrors) <= 3) Console.Error.WriteLine($"delete {name}: {e.Code} {e.Message}");
                    }
                }
                catch (AgentRequestException e)
                {
                    if (Interlocked.Increment(ref writeErrors) <= 3) Console.Error.WriteLine($"create {name}: {e.Code} {e.Message}");
                }
            }

            async Task ProbeOne(long job)
            {
                bool measured = clock.Elapsed >= warmup;
                try
                {
                    var (st, _) = await submitter.SubmitJobAsync(new JobSpec(new JobId(job), default, 0, 1, new ResourceVector(1000, 1L << 30)), tenant: Tenant);
                    if (st != 0) Interlocked.Increment(ref probeErrors);
                    else if (measured) probeAcks[job] = Stopwatch.GetTimestamp();
                }
                catch (AgentRequestException) { Interlocked.Increment(ref probeErrors); }
            }

            var creates = Task.Run(async () =>
            {
                double interval = c.PerWorkload / c.Rate, next = 0;
                for (int i = 0; clock.Elapsed < end; i++)
                {
                    pending.Add(CreateOne(i));
                    next += interval;
                    double wait = next - clock.Elapsed.TotalSeconds;
                    if (wait > 0.001) await Task.Delay(TimeSpan.FromSeconds(wait));
                }
            });
            var probes = Task.Run(async () =>
            {
                if (c.ProbeRate <= 0) return;
                double interval = 1 / c.ProbeRate, next = 0;
                for (long j = ProbeJobBase; clock.Elapsed < end; j++)
                {
                    pending.Add(ProbeOne(j));
                    next += interval;
                    double wait = next - clock.Elapsed.TotalSeconds;
                    if (wait > 0.001) await Task.Delay(TimeSpan.FromSeconds(wait));
                }
            });
            await Task.WhenAll(creates, probes, atStart);
            double seconds = (clock.Elapsed - warmup).TotalSeconds;
            double cpu = serve.CpuSeconds() - cpu0;
            long bindingsAtEnd = await CellBindings(submitter);
            // Let late replicas start (and the deletes of the last workloads run) before reading the agents' records.
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(c.DrainSeconds, c.Lifetime)));
            // Every create and delete answered before the connections close (else a pending delete fails as "closed").
            var all = Task.WhenAll(pending);
            if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(60))) != all) Console.Error.WriteLine("some writes still unanswered after 60 s");

            // ------------------------------------------------------------ join
            var started = new Dictionary<long, long>(); // job id -> first start timestamp
            for (int i = 0; i < hosts.Count; i++)
            {
                string file = Path.Combine(Path.GetTempPath(), $"cpstart-{Environment.ProcessId}-{i}.txt");
                await hosts[i].StandardInput.WriteLineAsync($"dump {file}");
                await hosts[i].StandardInput.FlushAsync();
                string? line = await hosts[i].StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2));
                if (line is null || !line.StartsWith("dumped", StringComparison.Ordinal)) throw new InvalidOperationException($"agent host {i}: {line}");
                foreach (var l in File.ReadLines(file))
                {
                    int sp = l.IndexOf(' ', StringComparison.Ordinal);
                    long job = long.Parse(l.AsSpan(0, sp), CultureInfo.InvariantCulture), ts = long.Parse(l.AsSpan(sp + 1), CultureInfo.InvariantCulture);
                    if (!started.TryGetValue(job, out long prev) || ts < prev) started[job] = ts;
                }
                File.Delete(file);
            }
            var intent = new LatencyRecorder();
            var engine = new LatencyRecorder();
            long early = 0, replicaStarts = 0;
            var perUid = new Dictionary<long, int>();
            foreach (var (job, ts) in started)
            {
                if (ReplicaJobs.IsReplica(job))
                {
                    long uid = ReplicaJobs.WorkloadUid(job);
                    if (!acks.TryGetValue(uid, out long ack)) continue;
                    replicaStarts++;
                    perUid[uid] = perUid.GetValueOrDefault(uid) + 1;
                    // Cannot happen unless the ack reply was slower than the whole controller → engine → agent chain.
                    if (ts < ack) { early++; intent.Add(0); } else intent.AddTicks(ts - ack);
                }
                else if (probeAcks.TryGetValue(job, out long pack)) engine.AddTicks(Math.Max(0, ts - pack));
            }
            long expected = (long)acks.Count * c.PerWorkload;
            long notStarted = acks.Keys.Sum(u => Math.Max(0, c.PerWorkload - perUid.GetValueOrDefault(u)));
            var si = intent.Summarize();
            var se = engine.Summarize();
            var sw = writeLatency.Summarize();
            double fillStart = 100.0 * bindingsAtStart / capacityCores, fillEnd = 100.0 * bindingsAtEnd / capacityCores;

            Console.WriteLine();
            BenchOutput.Table(["measure", "n", "p50 ms", "p99 ms", "max ms"],
            [
                ["intent-to-started (workload write acked -> agent reports replica started)", si.Count.ToString(CultureInfo.InvariantCulture), si.Ms(si.P50Us), si.Ms(si.P99Us), si.Ms(si.MaxUs)],
                ["engine bind (SubmitJob acked -> agent reports task started)", se.Count.ToString(CultureInfo.InvariantCulture), se.Ms(se.P50Us), se.Ms(se.P99Us), se.Ms(se.MaxUs)],
                ["workload write (create sent -> durable ack)", sw.Count.ToString(CultureInfo.InvariantCulture), sw.Ms(sw.P50Us), sw.Ms(sw.P99Us), sw.Ms(sw.MaxUs)],
            ]);
            Console.WriteLine($"replica starts: {replicaStarts} of {expected} expected ({BenchOutput.F(replicaStarts / seconds, "F0")}/s over {BenchOutput.F(seconds)} s; target {c.Rate:F0}/s); not started {notStarted}; " +
                $"workloads created {acks.Count}, create errors {writeErrors}, delete errors {deleteErrors}, probe errors {probeErrors}, acks after start {early}");
            Console.WriteLine($"cell fill: {BenchOutput.F(fillStart)} % at start, {BenchOutput.F(fillEnd)} % at end of the measured phase; server CPU {BenchOutput.F(cpu / seconds, "F2")} cores; target p99 <= 1000 ms: {(si.Count > 0 && si.P99Us <= 1_000_000 ? "met" : "NOT met")}");

            facts["server"] = serve.Describe;
            facts["transport"] = c.Tls ? "tls" : "plaintext";
            facts["credentials"] = "off (--no-auth)";
            facts["nodes"] = c.Nodes; facts["agent_procs"] = c.Procs; facts["node_cores"] = c.Cores;
            facts["fill_target"] = c.Fill; facts["fill_start_pct"] = Math.Round(fillStart, 2); facts["fill_end_pct"] = Math.Round(fillEnd, 2);
            facts["rate_target"] = c.Rate; facts["replica_starts"] = replicaStarts; facts["replica_starts_per_s"] = Math.Round(replicaStarts / seconds, 1);
            facts["expected"] = expected; facts["not_started"] = notStarted; facts["seconds"] = Math.Round(seconds, 2);
            facts["replicas_per_workload"] = c.PerWorkload; facts["lifetime_s"] = c.Lifetime;
            facts["intent_to_started"] = si.Json; facts["engine_bind"] = se.Json; facts["workload_write"] = sw.Json;
            facts["create_errors"] = writeErrors; facts["delete_errors"] = deleteErrors; facts["probe_errors"] = probeErrors;
            facts["server_cores"] = Math.Round(cpu / seconds, 3);
            BenchOutput.Json(facts);
            return si.Count > 0 ? 0 : 1;
        }
        finally
        {
            foreach (var h in hosts)
            {
                try { h.StandardInput.WriteLine("quit"); h.StandardInput.Flush(); } catch (IOException) { }
                if (!h.WaitForExit(20_000)) h.Kill(entireProcessTree: true);
                h.Dispose();
            }
        }
    }

    private static async Task<long> CellBindings(ControlClient client)
    {
        var (_, lines) = await client.InspectAsync(InspectTarget.Stats, 100);
        foreach (var l in lines)
        {
            int i = l.IndexOf("bindings=", StringComparison.Ordinal);
            if (l.StartsWith("cell ", StringComparison.Ordinal) && i >= 0)
            {
                var rest = l.AsSpan(i + "bindings=".Length);
                int sp = rest.IndexOf(' ');
                return long.Parse(sp < 0 ? rest : rest[..sp], CultureInfo.InvariantCulture);
            }
        }
        return -1;
    }

    /// <summary>
    /// The agent host: N agents, each reporting every Run binding running at once (the agent library does it, with the
    /// binding ack) and ready <c>--ready-ms</c> later; the moment each measured binding arrives is recorded. Commands on
    /// stdin: <c>dump FILE</c> (writes "job timestamp" lines, prints "dumped N"), <c>quit</c>.
    /// </summary>
    private static async Task<int> AgentHost(Dictionary<string, string> o)
    {
        int count = o.Int("count", 2500), index = o.Int("index", 0), cores = o.Int("cores", 16), readyMs = o.Int("ready-ms", 200);
        var ep = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, o.Int("port", 0));
        var tls = o.TryGetValue("pin", out var pin) ? new Omega.Transport.TlsClientOptions { PinnedPublicKeySha256 = pin } : null;
        var records = new List<(long Job, long Ts)>(1 << 16);
        var recordsLock = new Lock();
        var metrics = new Omega.Transport.TransportMetrics("cpstart-agents");
        var agents = new AgentClient[count];
        for (int i = 0; i < count; i++)
        {
            agents[i] = new AgentClient(new AgentOptions
            {
                Server = ep,
                NodeName = $"a{index}-{i:D5}",
                Capacity = new ResourceVector(cores * 1000L, cores * 4L << 30),
                FailureDomain = $"rack-{(index * count + i) % 100}",
                Seed = index * 100_000 + i,
                ReadyAfter = TimeSpan.FromMilliseconds(readyMs),
                Transport = new Omega.Transport.TransportOptions { ClientTls = tls, MaxFrameLength = 1 << 20, MaxOutboundBytes = 8 << 20 },
                OnBinding = (a, b) =>
                {
                    // With ReadyAfter set the agent has just queued this binding's running report, which leaves with this
                    // frame's acks when the processing loop flushes: this timestamp is the moment the replica is reported started.
                    if (b.Kind != BindingKind.Run || b.Task.Job.Value < ProbeJobBase) return;
                    long ts = Stopwatch.GetTimestamp();
                    lock (recordsLock) records.Add((b.Task.Job.Value, ts));
                },
            }, metrics);
        }
        for (int i = 0; i < count; i += 250)
        {
            var wave = new List<Task>();
            for (int j = i; j < Math.Min(count, i + 250); j++) wave.Add(agents[j].StartAsync());
            await Task.WhenAll(wave);
        }
        Console.WriteLine($"registered {count}");
        Console.Out.Flush();
        string? line;
        while ((line = Console.In.ReadLine()) is not null)
        {
            if (line.StartsWith("dump ", StringComparison.Ordinal))
            {
                (long Job, long Ts)[] copy;
                lock (recordsLock) copy = records.ToArray();
                await File.WriteAllLinesAsync(line[5..], copy.Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Job} {r.Ts}")));
                Console.WriteLine($"dumped {copy.Length}");
                Console.Out.Flush();
            }
            else if (line == "quit") break;
        }
        foreach (var a in agents) await a.DisposeAsync();
        return 0;
    }
}
