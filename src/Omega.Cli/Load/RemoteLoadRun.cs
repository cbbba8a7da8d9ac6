using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Omega.Agent;
using Omega.Protocol;

namespace Omega.Cli.Load;

/// <summary>
/// <c>omega loadgen --connect</c>: the same workload, submitted to a running server over the wire (SubmitJob), with the
/// server's own statistics (Inspect Stats) sampled once a second for throughput, conflicts and busyness per scheduler.
/// Task completion is the agents' job (run <c>omega agents</c> against the same server).
/// </summary>
internal static partial class RemoteLoadRun
{
    [GeneratedRegex(@"^scheduler (?<name>\S+) queue=(?<queue>\d+) busyness useful=(?<useful>[\d.]+) wasted=(?<wasted>[\d.]+) placements=(?<placed>\d+) clean=(?<clean>\d+) conflicted=(?<conflicted>\d+)( .*)?$", RegexOptions.CultureInvariant)]
    private static partial Regex SchedulerLine();

    internal readonly record struct Kind(string Name, int Queue, double Useful, double Wasted, long Placed, long Clean, long Conflicted);

    internal static async Task<Dictionary<string, Kind>> ReadStatsAsync(ControlClient client)
    {
        var (_, lines) = await client.InspectAsync(InspectTarget.Stats, 10_000).ConfigureAwait(false);
        var kinds = new Dictionary<string, Kind>(StringComparer.Ordinal);
        var ci = CultureInfo.InvariantCulture;
        foreach (var l in lines)
        {
            var m = SchedulerLine().Match(l);
            if (!m.Success) continue;
            kinds[m.Groups["name"].Value] = new Kind(m.Groups["name"].Value, int.Parse(m.Groups["queue"].Value, ci),
                double.Parse(m.Groups["useful"].Value, ci), double.Parse(m.Groups["wasted"].Value, ci),
                long.Parse(m.Groups["placed"].Value, ci), long.Parse(m.Groups["clean"].Value, ci), long.Parse(m.Groups["conflicted"].Value, ci));
        }
        return kinds;
    }

    public static async Task<int> RunAsync(EndPoint server, Omega.Transport.TransportOptions transport, string? token, double seconds, bool untilEnd, IWorkload workload, int seed, long firstJobId, CancellationToken cancel)
    {
        ControlClient client;
        try
        {
            client = await ControlClient.ConnectAsync(server, transport, "omega-loadgen", token, cancel).WaitAsync(TimeSpan.FromSeconds(10), cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or TimeoutException or AgentRequestException or IOException)
        {
            Console.Error.WriteLine($"omega loadgen: {ClientTls.Explain(e, Omega.Transport.FrameClient.Describe(server))}");
            return 1;
        }
        await using (client)
        {
            Console.WriteLine(FormattableString.Invariant($"omega loadgen: against {Omega.Transport.FrameClient.Describe(server)} over TCP, {(untilEnd ? "until the trace ends" : FormattableString.Invariant($"{seconds:0.#} s"))}, seed {seed}"));
            Console.WriteLine($"  workload: {workload.Describe}");
            var start = await ReadStatsAsync(client).ConfigureAwait(false);
            var last = start;
            long submitted = 0, rejected = 0, nextJob = firstJobId;
            var clock = Stopwatch.StartNew();
            int queued = 0;
            double nextSample = 1;
            bool have = workload.TryNext(out var next);
            try
            {
                // Until the end: every arrival submitted and the server's queues empty (each job placed or parked).
                while (!cancel.IsCancellationRequested && (untilEnd ? have || queued > 0 : clock.Elapsed.TotalSeconds < seconds))
                {
                    double now = clock.Elapsed.TotalSeconds;
                    while (have && next.At <= now)
                    {
                        var spec = new JobSpec(new JobId(nextJob++), new TenantId(next.Tenant), next.Priority, next.Tasks, next.PerTask, next.Gang);
                        var (status, _) = await client.SubmitJobAsync(spec, next.Scheduler, cancellationToken: CancellationToken.None).ConfigureAwait(false);
                        if (status == 0) submitted++; else rejected++;
                        queued = int.MaxValue; // not drained until a reading taken after this submission says so
                        have = workload.TryNext(out next);
                    }
                    if (now >= nextSample)
                    {
                        var cur = await ReadStatsAsync(client).ConfigureAwait(false);
                        long placed = 0, before = 0;
                        var parts = new List<string>();
                        foreach (var (name, k) in cur)
                        {
                            placed += k.Placed;
                            var prev = last.GetValueOrDefault(name);
                            before += prev.Placed;
                            long dClean = k.Clean - prev.Clean, dConf = k.Conflicted - prev.Conflicted;
                            parts.Add(FormattableString.Invariant($"{name} {SchedulerTally.Fraction(dClean, dConf):0.000}"));
                        }
                        Console.WriteLine(FormattableString.Invariant(
                            $"  t={now,5:0.0}s placements/s={placed - before,10:N0} queue={cur.Values.Sum(k => k.Queue),7:N0} conflict fraction: {string.Join(' ', parts)}"));
                        last = cur;
                        queued = cur.Values.Sum(k => k.Queue);
                        nextSample += 1;
                    }
                    double wait = Math.Min(have ? next.At : double.MaxValue, nextSample) - clock.Elapsed.TotalSeconds;
                    if (wait > 0) await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5, wait * 1000)), cancel).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested) { }
            catch (AgentRequestException e)
            {
                Console.Error.WriteLine($"omega loadgen: lost the server: {e.Message}");
                return 1;
            }
            double elapsed = clock.Elapsed.TotalSeconds;
            var end = await ReadStatsAsync(client).ConfigureAwait(false);
            long total = 0;
            Console.WriteLine();
            Console.WriteLine(FormattableString.Invariant($"jobs submitted {submitted:N0}, rejected {rejected:N0}"));
            foreach (var (name, k) in end)
            {
                var s0 = start.GetValueOrDefault(name);
                long p = k.Placed - s0.Placed, clean = k.Clean - s0.Clean, conf = k.Conflicted - s0.Conflicted;
                total += p;
                Console.WriteLine(FormattableString.Invariant(
                    $"[{name}] placements {p:N0}  conflict fraction {SchedulerTally.Fraction(clean, conf):0.0000} ({conf:N0} conflicted / {clean:N0} clean)  busyness {k.Useful + k.Wasted:P1} (wasted {k.Wasted:P1})"));
            }
            Console.WriteLine(FormattableString.Invariant($"placements/s {total / elapsed:N0} ({total:N0} placements in {elapsed:0.0} s, measured by the server)"));
            // The jobs this run submitted, by phase as the server reports them (pipelined queries, at most 256 in flight).
            var phases = new long[5];
            long degraded = 0;
            for (long id = firstJobId; id < nextJob; id += 256)
            {
                var batch = new List<Task<RemoteJobStatus>>(256);
                for (long j = id; j < Math.Min(nextJob, id + 256); j++) batch.Add(client.QueryJobAsync(new JobId(j), CancellationToken.None));
                foreach (var st in await Task.WhenAll(batch).ConfigureAwait(false))
                {
                    if (st.Found && st.Phase is >= 0 and < 5) phases[st.Phase]++;
                    if (st.Degraded) degraded++;
                }
            }
            Console.WriteLine(FormattableString.Invariant(
                $"jobs submitted / placed / parked / queued: {submitted:N0} / {phases[2] + phases[4]:N0} / {phases[3]:N0} / {phases[0] + phases[1]:N0}{(degraded > 0 ? $"  ({degraded:N0} degraded: bound on unreachable nodes)" : "")}"));
            if (workload.Remaining is > 0)
                Console.WriteLine(FormattableString.Invariant(
                    $"trace replay cut at --seconds {seconds:0.#}: {workload.Remaining:N0} trace jobs were not submitted (omit --seconds to replay to the end)"));
            var (_, audit) = await client.InspectAsync(InspectTarget.Audit, 100, CancellationToken.None).ConfigureAwait(false);
            bool ok = audit.Count > 0 && audit[0].StartsWith("ok", StringComparison.Ordinal);
            Console.WriteLine(ok ? "invariants ok: no node over capacity, no task bound twice (audited by the server)"
                : $"invariants VIOLATED: {string.Join("; ", audit.Take(4))}");
            return ok ? 0 : 3;
        }
    }
}
