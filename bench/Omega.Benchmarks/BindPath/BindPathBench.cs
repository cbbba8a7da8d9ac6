using System.Diagnostics;
using System.Globalization;
using System.Net;
using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;

namespace Omega.Benchmarks.BindPath;

/// <summary>
/// Bind-path throughput over loopback: committed placements delivered to agents and acknowledged (TaskReport running),
/// per second. The server (cell + bind path) runs in this process; the simulated agent fleet runs in a child process
/// (one process could not hold 2 × 10,000 sockets under the 20,000 file-descriptor limit here).
///   bindpath run --agents N --depth P --seconds S [--batch B] [--tls]   server + committer, spawns the fleet
///   bindpath fleet --port X --agents N [--pin SHA256]                    the fleet (child)
/// With --tls the server listens with TLS 1.3 (a self-signed ECDSA P-256 certificate made in memory) and the fleet
/// verifies it by its pin: the same run with and without --tls is the TLS-against-plaintext comparison.
/// The committer keeps at most N × P placements committed but not yet acknowledged, and each transaction places P tasks
/// on each node it touches: the analogue of redis-benchmark's N clients with pipeline depth P (P commands per write). Latency is commit → agent receipt (same monotonic clock in both processes: the job id
/// of each transaction carries its commit timestamp).
/// </summary>
internal static class BindPathBench
{
    public static int Run(string[] args)
    {
        string mode = args.Length > 0 ? args[0] : "";
        bool tls = args.Contains("--tls");
        args = args.Where(a => a != "--tls").ToArray();
        var opts = new Dictionary<string, string>();
        for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
        int Get(string k, int d) => opts.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;
        return mode switch
        {
            "run" => RunServer(Get("agents", 1000), Get("depth", 16), Get("seconds", 10), Get("batch", 256), tls),
            "fleet" => RunFleet(Get("port", 0), Get("agents", 1000), opts.GetValueOrDefault("pin")).GetAwaiter().GetResult(),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("bindpath run --agents N --depth P --seconds S [--batch B] [--tls] | bindpath fleet --port X --agents N [--pin SHA256]");
        return 2;
    }

    private static int RunServer(int agents, int depth, int seconds, int batch, bool tls)
    {
        using var cell = new Cell(new CellOptions { InitialNodeCapacity = agents + 16, Name = "bindpath" });
        var options = new ServerOptions { Name = "bindpath", NodeLease = TimeSpan.FromMinutes(5), LifecyclePeriod = null };
        options.Transport.MaxConnections = agents + 100;
        options.Transport.HandshakeTimeout = TimeSpan.FromMinutes(2);
        string pinArg = "";
        if (tls)
        {
            var certificate = Omega.Transport.TlsCertificates.CreateSelfSignedForHost();
            options.Transport.ServerTls = new Omega.Transport.TlsServerOptions { Certificate = certificate };
            pinArg = " --pin " + Omega.Transport.TlsCertificates.PublicKeyPin(certificate);
        }
        Console.WriteLine(tls ? "transport: TLS 1.3 (self-signed, pinned by the fleet)" : "transport: plaintext");
        var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), options);
        server.Start();
        var self = typeof(BindPathBench).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet", $"\"{self}\" bindpath fleet --port {server.EndPoint.Port} --agents {agents}{pinArg}")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        using var fleet = Process.Start(psi)!;
        var sw = Stopwatch.StartNew();
        while (cell.NodeCount < agents)
        {
            if (sw.Elapsed > TimeSpan.FromMinutes(3) || fleet.HasExited) { Console.Error.WriteLine($"only {cell.NodeCount} agents registered"); return 1; }
            Thread.Sleep(50);
        }
        Console.WriteLine($"agents registered: {agents} in {sw.Elapsed.TotalSeconds:F1} s");

        var lease = cell.AcquireLease("bench", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: batch);
        var rng = new Random(12345);
        long window = (long)agents * depth;
        long committed = 0;
        int index = 0;
        var res = new ResourceVector(1, 1);
        long startAcked = server.TaskReports(TaskState.Running);
        // The issue's known causes, counted over the run on both sides (the fleet snapshots at "mark", reports at "report").
        fleet.StandardInput.WriteLine("mark");
        fleet.StandardInput.Flush();
        using var sampler = Environment.GetEnvironmentVariable("OMEGA_ALLOC_SAMPLE") == "1" ? new AllocationSampler() : null;
        sampler?.Start();
        var cost = CostCounters.Take();
        var run = Stopwatch.StartNew();
        var end = TimeSpan.FromSeconds(seconds);
        while (run.Elapsed < end)
        {
            long acked = server.TaskReports(TaskState.Running) - startAcked;
            if (committed - acked + batch > window) { Thread.Sleep(1); continue; }
            tx.Reset(lease);
            long job = Stopwatch.GetTimestamp();
            // Pipeline depth P: each transaction places P tasks on each node it touches, so one Bindings frame (one
            // version) carries P placements, as one redis-benchmark write carries P commands.
            for (int k = 0; k < batch; k += depth)
            {
                var node = new NodeId(rng.Next(agents));
                for (int d = 0; d < depth; d++) tx.Add(new Claim(new TaskId(job, index++), node, res, 0));
            }
            var r = cell.Commit(tx);
            committed += r.AppliedCount;
        }
        double commitSeconds = run.Elapsed.TotalSeconds;
        var drain = Stopwatch.StartNew();
        while (server.TaskReports(TaskState.Running) - startAcked < committed && drain.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(1);
        double total = run.Elapsed.TotalSeconds;
        long ackedTotal = server.TaskReports(TaskState.Running) - startAcked;
        var serverCost = CostCounters.Take() - cost;
        sampler?.Stop();
        sampler?.Print("server", ackedTotal);
        fleet.StandardInput.WriteLine("report");
        fleet.StandardInput.Flush();
        string? latency = fleet.StandardOutput.ReadLine();
        string? fleetCost = fleet.StandardOutput.ReadLine();
        fleet.StandardInput.Close();
        fleet.WaitForExit(60_000);
        Console.WriteLine($"agents={agents} depth={depth} batch={batch} committed={committed} acked={ackedTotal} commit_seconds={commitSeconds:F2} total_seconds={total:F2}");
        Console.WriteLine($"bind_rate_per_s={ackedTotal / total:F0}");
        Console.WriteLine($"latency_commit_to_agent {latency}");
        Console.WriteLine($"frames_sent={server.TransportMetrics.FramesSent} frames_received={server.TransportMetrics.FramesReceived}");
        Console.WriteLine($"server_per_binding {serverCost.PerBinding(ackedTotal)}");
        Console.WriteLine($"fleet_per_binding {fleetCost}");
        server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return ackedTotal == committed ? 0 : 1;
    }

    private static async Task<int> RunFleet(int port, int agents, string? pin)
    {
        var clientTls = pin is null ? null : new Omega.Transport.TlsClientOptions { PinnedPublicKeySha256 = pin };
        var metrics = new Omega.Transport.TransportMetrics("fleet");
        var samples = new long[4_000_000];
        long count = 0;
        var ep = new IPEndPoint(IPAddress.Loopback, port);
        var clients = new AgentClient[agents];
        void OnBinding(AgentClient a, AgentBinding b)
        {
            if (b.Kind != BindingKind.Run) return;
            long i = Interlocked.Increment(ref count) - 1;
            if (i < samples.Length) samples[i] = Stopwatch.GetTimestamp() - b.Task.Job.Value;
            // Ack at once; the connection's processing loop flushes all acks of one read together.
            a.Report(b.Task, b.Generation, TaskState.Running);
        }
        for (int i = 0; i < agents; i++)
        {
            clients[i] = new AgentClient(new AgentOptions
            {
                Server = ep,
                NodeName = $"sim-{i:D5}",
                Capacity = new ResourceVector(1_000_000_000, 1L << 50),
                FailureDomain = $"rack-{i % 40}",
                OnBinding = OnBinding,
                Seed = i,
                Transport = new Omega.Transport.TransportOptions { MaxFrameLength = 1 << 20, MaxOutboundBytes = 8 << 20, ClientTls = clientTls },
            }, metrics);
        }
        // Connect in waves so the listen backlog is not overrun.
        for (int i = 0; i < agents; i += 250)
        {
            var wave = new List<Task>();
            for (int j = i; j < Math.Min(agents, i + 250); j++) wave.Add(clients[j].StartAsync());
            await Task.WhenAll(wave);
        }
        string? line;
        var mark = CostCounters.Take();
        using var sampler = Environment.GetEnvironmentVariable("OMEGA_ALLOC_SAMPLE") == "1" ? new AllocationSampler() : null;
        while ((line = Console.In.ReadLine()) is not null)
        {
            if (line == "mark")
            {
                mark = CostCounters.Take();
                sampler?.Start();
            }
            if (line != "report") continue;
            var fleetCost = CostCounters.Take() - mark;
            sampler?.Stop();
            sampler?.Print("fleet", Interlocked.Read(ref count));
            long n = Math.Min(Interlocked.Read(ref count), samples.Length);
            var s = samples[..(int)n];
            Array.Sort(s);
            double us(long ticks) => ticks * 1e6 / Stopwatch.Frequency;
            string P(double q) => n == 0 ? "n/a" : us(s[(int)Math.Min(n - 1, (long)(q * n))]).ToString("F0", CultureInfo.InvariantCulture);
            Console.WriteLine($"samples={n} p50_us={P(0.50)} p99_us={P(0.99)} p999_us={P(0.999)} max_us={(n == 0 ? "n/a" : us(s[^1]).ToString("F0", CultureInfo.InvariantCulture))}");
            Console.WriteLine(fleetCost.PerBinding(Interlocked.Read(ref count)));
            Console.Out.Flush();
        }
        foreach (var c in clients) await c.DisposeAsync();
        return 0;
    }
}

/// <summary>
/// Process-wide counters behind the issue's known causes, read before and after a run: allocated bytes, lock
/// contentions (Monitor.LockContentionCount), thread-pool work items (the hops per frame) and CPU time. Rough: they
/// count the whole process, the committer and the fleet's bookkeeping included. Socket syscalls are not here
/// (/proc/self/io counts read/write, not sendmsg/recvmsg): count them with `strace -c -f -e trace=network,read,write`.
/// </summary>
internal readonly record struct CostCounters(long Allocated, long Contentions, long WorkItems, double CpuMs)
{
    public static CostCounters Take()
        => new(GC.GetTotalAllocatedBytes(precise: true), Monitor.LockContentionCount, ThreadPool.CompletedWorkItemCount,
            Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds);

    public static CostCounters operator -(CostCounters a, CostCounters b)
        => new(a.Allocated - b.Allocated, a.Contentions - b.Contentions, a.WorkItems - b.WorkItems, a.CpuMs - b.CpuMs);

    public string PerBinding(long bindings)
    {
        double n = Math.Max(1, bindings);
        return string.Create(CultureInfo.InvariantCulture,
            $"bindings={bindings} alloc_bytes={Allocated / n:F1} lock_contentions={Contentions / n:F4} threadpool_items={WorkItems / n:F3} cpu_us={CpuMs * 1000 / n:F2}");
    }
}

/// <summary>
/// With OMEGA_ALLOC_SAMPLE=1: samples the runtime's GC AllocationTick events (one per ~100 KB allocated) and prints the
/// types that account for most of them, to attribute a path's bytes per binding. Rough, sampling only.
/// </summary>
internal sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
{
    private readonly Dictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private volatile bool _on;

    public void Start() => _on = true;

    public void Stop() => _on = false;

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1);
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (!_on || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null) return;
        int ti = e.PayloadNames!.IndexOf("TypeName");
        int ai = e.PayloadNames.IndexOf("AllocationAmount64");
        if (ti < 0) return;
        string type = e.Payload[ti] as string ?? "?";
        long amount = ai >= 0 ? Convert.ToInt64(e.Payload[ai], CultureInfo.InvariantCulture) : 100_000;
        lock (_bytes) _bytes[type] = _bytes.GetValueOrDefault(type) + amount;
    }

    public void Print(string who, long bindings)
    {
        lock (_bytes)
        {
            long total = 0;
            foreach (var v in _bytes.Values) total += v;
            var top = new List<KeyValuePair<string, long>>(_bytes);
            top.Sort(static (a, b) => b.Value.CompareTo(a.Value));
            for (int i = 0; i < Math.Min(12, top.Count); i++)
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{who} alloc sample: {top[i].Value * 100.0 / Math.Max(1, total),5:F1}%  {top[i].Value / (double)Math.Max(1, bindings),8:F1} B/binding  {top[i].Key}"));
        }
    }
}
