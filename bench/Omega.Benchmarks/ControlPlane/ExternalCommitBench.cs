using System.Diagnostics;
using System.Globalization;
using Omega.Agent;
using Omega.Protocol;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// Issue 11: commit latency of an external scheduler over TLS against plaintext, same run, alternating. Each run starts
/// a fresh <c>omega serve</c> child (durable FASTER store, --no-auth; plaintext with --insecure, or serve's default TLS
/// 1.3 verified by pin), registers <c>--agents</c> node agents (in this process, same transport as the schedulers, each
/// acknowledging its bindings running), connects <c>--schedulers</c> external schedulers (scheduler role, AcquireLease,
/// Sync), and then each sends Commit transactions of <c>--claims</c> claims at its share of <c>--rate</c> commits/s
/// (0: closed loop) with at most <c>--depth</c> in flight. Latency is Commit sent → CommitReply received (the reply
/// leaves the server only once the commit is durable), recorded after <c>--warmup</c> seconds for <c>--seconds</c>.
/// Runs alternate plaintext, TLS, TLS, plaintext, … (rep k starts with the transport rep k−1 ended with).
/// <code>extcommit --reps 3 --seconds 20 --rate 2000 --schedulers 4 --depth 8 --claims 1 --agents 100 [--omega PATH]</code>
/// </summary>
internal static class ExternalCommitBench
{
    private sealed record Config(int Reps, int Seconds, int Warmup, double Rate, int Schedulers, int Depth, int Claims, int Agents, string Omega);

    private sealed record RunResult(int Rep, bool Tls, long Commits, long NotCommitted, double Seconds, LatencySummary Latency, double ServerCpu, long Bindings, double RegisterSeconds);

    public static int Run(string[] args)
    {
        var o = BenchOutput.Options(args);
        var c = new Config(o.Int("reps", 3), o.Int("seconds", 20), o.Int("warmup", 3), o.Double("rate", 2000), o.Int("schedulers", 4),
            o.Int("depth", 8), o.Int("claims", 1), o.Int("agents", 100), ServeChild.FindOmega(o.GetValueOrDefault("omega")));
        var facts = BenchOutput.Environment("extcommit");
        Console.WriteLine($"omega: {c.Omega}; {c.Agents} agents, {c.Schedulers} external schedulers, {c.Claims} claim(s) per commit (fine detection, incremental), " +
            $"{(c.Rate > 0 ? $"{c.Rate:F0} commits/s offered" : "closed loop")}, depth {c.Depth} per scheduler; warm-up {c.Warmup} s, measured {c.Seconds} s; {c.Reps} reps, transports alternate");
        var results = new List<RunResult>();
        bool tls = false;
        for (int rep = 1; rep <= c.Reps; rep++)
        {
            for (int k = 0; k < 2; k++)
            {
                var r = OneRun(c, rep, tls).GetAwaiter().GetResult();
                results.Add(r);
                Console.WriteLine($"rep {rep} {(r.Tls ? "TLS      " : "plaintext")}: {r.Commits} commits in {BenchOutput.F(r.Seconds)} s ({BenchOutput.F(r.Commits / r.Seconds, "F0")}/s), " +
                    $"latency {r.Latency.Human}, not committed {r.NotCommitted}, server CPU {BenchOutput.F(r.ServerCpu / r.Seconds, "F2")} cores, agents got {r.Bindings} bindings, agents registered in {BenchOutput.F(r.RegisterSeconds)} s");
                if (k == 0) tls = !tls;
            }
        }

        Console.WriteLine();
        var rows = results.Select(r => new[] { r.Rep.ToString(CultureInfo.InvariantCulture), r.Tls ? "TLS" : "plaintext", BenchOutput.F(r.Commits / r.Seconds, "F0"),
            r.Latency.Ms(r.Latency.P50Us), r.Latency.Ms(r.Latency.P99Us), r.Latency.Ms(r.Latency.MaxUs), BenchOutput.F(r.ServerCpu / r.Seconds, "F2") }).ToList();
        var plain = results.Where(r => !r.Tls).ToList();
        var secure = results.Where(r => r.Tls).ToList();
        double Median(IEnumerable<double> v) { var s = v.OrderBy(x => x).ToArray(); return s.Length == 0 ? double.NaN : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
        double pP50 = Median(plain.Select(r => (double)r.Latency.P50Us)), pP99 = Median(plain.Select(r => (double)r.Latency.P99Us));
        double tP50 = Median(secure.Select(r => (double)r.Latency.P50Us)), tP99 = Median(secure.Select(r => (double)r.Latency.P99Us));
        rows.Add(["median", "plaintext", BenchOutput.F(Median(plain.Select(r => r.Commits / r.Seconds)), "F0"), BenchOutput.F(pP50 / 1000), BenchOutput.F(pP99 / 1000), "", ""]);
        rows.Add(["median", "TLS", BenchOutput.F(Median(secure.Select(r => r.Commits / r.Seconds)), "F0"), BenchOutput.F(tP50 / 1000), BenchOutput.F(tP99 / 1000), "", ""]);
        BenchOutput.Table(["rep", "transport", "commits/s", "p50 ms", "p99 ms", "max ms", "server cores"], rows);
        Console.WriteLine($"TLS / plaintext (medians): p50 {BenchOutput.F(tP50 / pP50, "F2")}x, p99 {BenchOutput.F(tP99 / pP99, "F2")}x");

        facts["server"] = "omega serve child, durable FASTER store, --no-auth; plaintext = --insecure, TLS = serve's self-signed TLS 1.3 verified by pin";
        facts["agents"] = c.Agents; facts["schedulers"] = c.Schedulers; facts["claims_per_commit"] = c.Claims;
        facts["offered_commits_per_s"] = c.Rate; facts["depth"] = c.Depth; facts["seconds"] = c.Seconds; facts["warmup_s"] = c.Warmup;
        facts["runs"] = results.Select(r => new Dictionary<string, object>
        {
            ["rep"] = r.Rep, ["transport"] = r.Tls ? "tls" : "plaintext", ["commits"] = r.Commits, ["not_committed"] = r.NotCommitted,
            ["commits_per_s"] = Math.Round(r.Commits / r.Seconds), ["latency"] = r.Latency.Json, ["server_cores"] = Math.Round(r.ServerCpu / r.Seconds, 3),
        }).ToList();
        facts["median_plaintext_p50_us"] = pP50; facts["median_plaintext_p99_us"] = pP99;
        facts["median_tls_p50_us"] = tP50; facts["median_tls_p99_us"] = tP99;
        facts["ratio_tls_to_plaintext_p50"] = Math.Round(tP50 / pP50, 3); facts["ratio_tls_to_plaintext_p99"] = Math.Round(tP99 / pP99, 3);
        BenchOutput.Json(facts);
        return results.All(r => r.Commits > 0) ? 0 : 1;
    }

    private static async Task<RunResult> OneRun(Config c, int rep, bool tls)
    {
        using var serve = await ServeChild.StartAsync(c.Omega, tls, ["--node-lease", "60"], TimeSpan.FromMinutes(2));
        Console.WriteLine($"rep {rep}: {serve.Describe}");
        var transport = new Omega.Transport.TransportOptions { ClientTls = serve.ClientTls, MaxFrameLength = 16 << 20, MaxOutboundBytes = 64 << 20 };
        long bindings = 0;
        var agents = new List<AgentClient>();
        var reg = Stopwatch.StartNew();
        for (int i = 0; i < c.Agents; i++)
        {
            agents.Add(new AgentClient(new AgentOptions
            {
                Server = serve.EndPoint,
                NodeName = $"n{i:D5}",
                Capacity = new ResourceVector(1_000_000_000, 1L << 50),
                FailureDomain = $"rack-{i % 10}",
                Seed = i,
                Transport = transport,
                OnBinding = (a, b) =>
                {
                    if (b.Kind != BindingKind.Run) return;
                    Interlocked.Increment(ref bindings);
                    a.Report(b.Task, b.Generation, TaskState.Running);
                },
            }));
        }
        for (int i = 0; i < agents.Count; i += 100) await Task.WhenAll(agents.Skip(i).Take(100).Select(a => a.StartAsync()));
        double registerSeconds = reg.Elapsed.TotalSeconds;

        var schedulers = new List<WireScheduler>();
        for (int s = 0; s < c.Schedulers; s++) schedulers.Add(await WireScheduler.ConnectAsync(serve.EndPoint, serve.ClientTls, $"ext-{s}", c.Depth));
        var nodes = await schedulers[0].NodeIdsAsync();
        if (nodes.Count < c.Agents) throw new InvalidOperationException($"only {nodes.Count} nodes in Sync");

        var latency = new LatencyRecorder();
        long commits = 0, notCommitted = 0;
        var clock = Stopwatch.StartNew();
        var measureFrom = TimeSpan.FromSeconds(c.Warmup);
        var end = measureFrom + TimeSpan.FromSeconds(c.Seconds);
        double cpuAtStart = double.NaN;
        var cpuProbe = Task.Run(async () =>
        {
            await Task.Delay(measureFrom);
            cpuAtStart = serve.CpuSeconds();
        });
        var loops = schedulers.Select((s, index) => Task.Run(() => SchedulerLoop(s, index, nodes, c, clock, measureFrom, end, latency, () => Interlocked.Increment(ref commits), () => Interlocked.Increment(ref notCommitted)))).ToList();
        await Task.WhenAll(loops);
        await cpuProbe;
        double cpu = serve.CpuSeconds() - cpuAtStart;
        foreach (var s in schedulers) await s.DisposeAsync();
        foreach (var a in agents) await a.DisposeAsync();
        return new RunResult(rep, tls, commits, notCommitted, c.Seconds, latency.Summarize(), cpu, Interlocked.Read(ref bindings), registerSeconds);
    }

    private static async Task SchedulerLoop(WireScheduler s, int index, List<int> nodes, Config c, Stopwatch clock, TimeSpan measureFrom, TimeSpan end,
        LatencyRecorder latency, Action committed, Action rejected)
    {
        var rng = new Random(1000 + index);
        using var window = new SemaphoreSlim(c.Depth);
        double interval = c.Rate > 0 ? c.Schedulers / c.Rate : 0; // seconds between this scheduler's commits
        long seq = 0;
        var inflight = new List<Task>();
        double next = 0;
        while (clock.Elapsed < end)
        {
            if (interval > 0)
            {
                next += interval;
                double wait = next - clock.Elapsed.TotalSeconds;
                // More than 50 ms behind (a stall here, or the depth limit held us): skip the missed sends rather than
                // burst to catch up, so the offered load stays what --rate says.
                if (wait < -0.05) next = clock.Elapsed.TotalSeconds;
                else if (wait > 0.001) await Task.Delay(TimeSpan.FromSeconds(wait));
            }
            await window.WaitAsync();
            var claims = new WireClaim[c.Claims];
            for (int k = 0; k < claims.Length; k++)
                claims[k] = new WireClaim(new TaskId(((long)(index + 1) << 40) | seq++, 0), nodes[rng.Next(nodes.Count)], new ResourceVector(100, 64L << 20), 0, 0, 0, null);
            long sent = Stopwatch.GetTimestamp();
            bool measured = clock.Elapsed >= measureFrom;
            inflight.Add(Send(s, claims, sent, measured, window, latency, committed, rejected));
            if (inflight.Count > 4096) inflight.RemoveAll(t => t.IsCompleted);
        }
        await Task.WhenAll(inflight);
    }

    private static async Task Send(WireScheduler s, WireClaim[] claims, long sent, bool measured, SemaphoreSlim window, LatencyRecorder latency, Action committed, Action rejected)
    {
        try
        {
            var reply = await s.CommitAsync(claims);
            if (!measured) return;
            latency.AddTicks(Stopwatch.GetTimestamp() - sent);
            if (reply.Status == TransactionStatus.Committed) committed(); else rejected();
        }
        finally
        {
            window.Release();
        }
    }
}
