using Omega.Bench.Shared;
using System.Diagnostics;
using System.Globalization;
using Omega.Benchmarks.ControlPlane;
using Omega.Cells;
using Omega.Replication;
using Omega.Storage;

namespace Omega.Benchmarks.HighAvailability;

/// <summary>
/// Issue 16: HA-mode against single-node throughput and acknowledgement latency, in ONE run on one machine with one
/// workload. The workload is the soak's (<see cref="HaSoak"/>): <c>--committers</c> closed-loop committers, each committing
/// transactions of <c>--claims</c> bindings on 64 nodes and releasing its previous transaction's bindings, every commit
/// awaited until durable. It runs in alternating phases of <c>--seconds</c> each, ABBA order repeated <c>--rounds</c>
/// times (single, HA, HA, single, ...) so a drift of the machine during the run hits both modes alike:
/// <list type="bullet">
/// <item><b>single</b>: <c>CellStore.Open</c> on a fresh local FASTER directory (durable = in the local FasterLog, fsynced);
/// what <c>omega serve</c> without <c>--etcd</c> does.</item>
/// <item><b>HA</b>: a leader <see cref="ReplicaNode"/> on a 3-member etcd (child processes, like the soak) with one
/// standby tailing it (durable = committed by etcd, a quorum, then in the leader's local FasterLog); what <c>omega serve
/// --etcd</c> does. A fresh cluster prefix and fresh directories per phase.</item>
/// </list>
/// <code>ha-compare [--seconds 30] [--rounds 2] [--committers 4] [--claims 64] [--etcd URL,URL,URL]</code>
/// Prints one line per phase (commits/s, bindings/s, ack p50/p99/max), the per-mode totals and the HA/single ratios, and one
/// <c>BENCH_JSON</c> line. Exit 0 unless a phase could not run (a leader not elected within a minute).
/// </summary>
internal static class HaCompare
{
    private sealed record Phase(string Mode, double Seconds, long Commits, long Claims, LatencySummary Latency);

    public static int Run(string[] args)
    {
        var o = BenchOutput.Options(args);
        double seconds = o.Double("seconds", 30);
        int rounds = o.Int("rounds", 2), committers = o.Int("committers", 4), claims = o.Int("claims", 64);
        var facts = BenchOutput.Environment("ha-compare");
        string root = Path.Combine(Path.GetTempPath(), "omega-ha-compare-" + Guid.NewGuid().ToString("N")[..8]);
        using var etcd = o.TryGetValue("etcd", out var urls) ? null : EtcdLauncher.Start(EtcdLauncher.FindBinary(), Path.Combine(root, "etcd"), 3, "c");
        etcd?.WaitHealthyAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult(); // the runner's main thread, not the pool
        var endpoints = etcd?.Endpoints ?? urls!.Split(',', StringSplitOptions.RemoveEmptyEntries);
        Console.WriteLine($"ha-compare: etcd {string.Join(",", endpoints)}; {committers} committers x {claims} claims; {rounds} x ABBA of {seconds} s phases");
        try
        {
            var phases = new List<Phase>();
            for (int r = 0; r < rounds; r++)
                foreach (string mode in new[] { "single", "ha", "ha", "single" })
                {
                    var p = RunPhaseAsync(mode, endpoints, root, seconds, committers, claims).GetAwaiter().GetResult();
                    phases.Add(p);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"phase {phases.Count,2} {p.Mode,-6}: {p.Commits / p.Seconds,9:0} commits/s  {p.Claims / p.Seconds,10:0} bindings/s  ack {p.Latency.Human}"));
                }
            var summary = new Dictionary<string, object>(facts);
            var totals = new Dictionary<string, (double Commits, double Claims, double P50, double P99)>();
            foreach (string mode in new[] { "single", "ha" })
            {
                var ps = phases.Where(x => x.Mode == mode).ToList();
                double secs = ps.Sum(x => x.Seconds);
                double cps = ps.Sum(x => x.Commits) / secs, bps = ps.Sum(x => x.Claims) / secs;
                // Latency: the median over the phases of each phase's percentile (phases have similar sample counts).
                double p50 = Median(ps.Select(x => (double)x.Latency.P50Us)), p99 = Median(ps.Select(x => (double)x.Latency.P99Us));
                totals[mode] = (cps, bps, p50, p99);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ha-compare: {mode,-6} {cps,9:0} commits/s  {bps,10:0} bindings/s  ack p50 {p50 / 1000:0.00} ms  p99 {p99 / 1000:0.00} ms (median of {ps.Count} phases)"));
                summary[mode] = new Dictionary<string, object> { ["commits_per_s"] = Math.Round(cps), ["bindings_per_s"] = Math.Round(bps), ["ack_p50_us"] = p50, ["ack_p99_us"] = p99, ["phases"] = ps.Count };
            }
            var (s, h) = (totals["single"], totals["ha"]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ha-compare: HA / single: throughput {h.Claims / s.Claims:0.00}x, ack p50 {h.P50 / s.P50:0.00}x, p99 {h.P99 / s.P99:0.00}x"));
            summary["throughput_ratio"] = Math.Round(h.Claims / s.Claims, 3);
            summary["committers"] = committers;
            summary["claims"] = claims;
            summary["phase_seconds"] = seconds;
            BenchOutput.Json(summary);
            return 0;
        }
        catch (TimeoutException e)
        {
            Console.Error.WriteLine($"ha-compare: {e.Message}");
            return 1;
        }
        finally
        {
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

    private static double Median(IEnumerable<double> xs)
    {
        var v = xs.OrderBy(x => x).ToList();
        return v.Count == 0 ? 0 : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static async Task<Phase> RunPhaseAsync(string mode, IReadOnlyList<string> endpoints, string root, double seconds, int committers, int claims)
    {
        string id = Guid.NewGuid().ToString("N")[..6];
        ReplicaNode? leader = null, standby = null;
        ICellStore store;
        if (mode == "single")
        {
            store = CellStore.Open(new StorageOptions { DataDirectory = Path.Combine(root, "single-" + id) });
        }
        else
        {
            ReplicationOptions Options(string name)
            {
                var r = new ReplicationOptions { Cluster = "cmp" + id, ReplicaName = name, AdvertiseAddress = "127.0.0.1:1" };
                foreach (var e in endpoints) r.Endpoints.Add(e);
                return r;
            }
            leader = new ReplicaNode(Options("a"), new StorageOptions { DataDirectory = Path.Combine(root, "ha-a-" + id) });
            await leader.StartAsync().ConfigureAwait(false);
            store = await leader.Leadership.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            standby = new ReplicaNode(Options("b"), new StorageOptions { DataDirectory = Path.Combine(root, "ha-b-" + id) });
            await standby.StartAsync().ConfigureAwait(false);
        }
        try
        {
            var cell = store.Cell;
            var nodes = new NodeId[64];
            for (int i = 0; i < nodes.Length; i++) nodes[i] = cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1L << 40, 1L << 50)));
            var latency = new LatencyRecorder();
            long commits = 0, claimCount = 0;
            // A short warm-up (JIT, the first groups) outside the measured window.
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds + 2));
            long measureFrom = Stopwatch.GetTimestamp() + 2 * Stopwatch.Frequency;
            var workers = new Task[committers];
            for (int w = 0; w < committers; w++)
            {
                int me = w;
                workers[w] = Task.Run(async () =>
                {
                    var rng = new Random(me);
                    var lease = cell.AcquireLease($"cmp-{me}", TimeSpan.FromHours(1)).Lease;
                    long job = (me + 1) * 1_000_000_000L;
                    var previous = new List<TaskId>();
                    while (!stop.IsCancellationRequested)
                    {
                        var tx = new Transaction(lease);
                        var these = new List<TaskId>(claims);
                        for (int c = 0; c < claims; c++)
                        {
                            var t = new TaskId(job, c);
                            tx.Add(new Claim(t, nodes[rng.Next(nodes.Length)], new ResourceVector(10, 1 << 20), 0));
                            these.Add(t);
                        }
                        job++;
                        long start = Stopwatch.GetTimestamp();
                        var r = await store.CommitDurableAsync(tx).ConfigureAwait(false);
                        long end = Stopwatch.GetTimestamp();
                        if (start >= measureFrom)
                        {
                            latency.AddTicks(end - start);
                            Interlocked.Increment(ref commits);
                            Interlocked.Add(ref claimCount, r.AppliedCount);
                        }
                        foreach (var t in previous) cell.Release(t);
                        previous = these;
                    }
                });
            }
            await Task.WhenAll(workers).ConfigureAwait(false);
            double measured = Math.Max(0.001, (double)(Stopwatch.GetTimestamp() - measureFrom) / Stopwatch.Frequency);
            return new Phase(mode, measured, commits, claimCount, latency.Summarize());
        }
        finally
        {
            if (standby is not null) await standby.DisposeAsync().ConfigureAwait(false);
            if (leader is not null) await leader.DisposeAsync().ConfigureAwait(false);
            store.Dispose();
        }
    }
}
