using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Omega.Cells;
using Omega.Hostile;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Server;

namespace Omega.Benchmarks.Hostile;

/// <summary>
/// A memory-bound check, not a speed figure: an in-process server with the default budgets is attacked the three ways
/// of issue 10, defect 3, while a good agent heartbeats and a good scheduler commits throughout, and the server
/// process's managed heap and RSS are sampled every 20 ms.
///   hostile [--frames N] [--clients C] [--holders H] [--seed S]
/// Phase 1: H connections say Hello and send 900 KiB of a 1 MiB frame (the incomplete-frame budget).
/// Phase 2: 20 SubmitJobs of 1,000,000 tasks (the tasks-per-job budget).
/// Phase 3: C clients send N mutated frames in total (tests/Omega.Wire.Tests/HostileLoad.cs, linked).
/// Exit code 1 if a good request failed or the managed heap exceeded the bound derived from the budgets.
/// </summary>
internal static class HostileMemoryBench
{
    public static int Run(string[] args)
    {
        var opts = new Dictionary<string, string>();
        for (int i = 0; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
        long Get(string k, long d) => opts.TryGetValue(k, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : d;
        return RunAsync(Get("frames", 1_000_000), (int)Get("clients", 8), (int)Get("holders", 400), (int)Get("seed", Random.Shared.Next())).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(long frames, int clients, int holders, int seed)
    {
        Console.WriteLine($"hostile: frames {frames:N0}, clients {clients}, holders {holders}, seed {seed}");
        using var cell = new Cell(new CellOptions { Name = "hostile" });
        var so = new SchedulingOptions { Seed = seed };
        so.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1 });
        await using var engine = new SchedulingEngine(cell, so);
        engine.Start();
        var options = new ServerOptions { Name = "hostile" };
        options.Transport.MaxConnections = holders + clients + 64;
        var t = options.Transport;
        await using var server = new OmegaServer(cell, engine, new IPEndPoint(IPAddress.Loopback, 0), options);
        server.Start();
        var reserved = cell.AddNode(new NodeSpec("reserved", new ResourceVector(100_000_000, 1L << 50), taints: ["reserved"]));

        // The bound: what the budgets let the server hold, plus an allowance for garbage between collections and
        // for this process's own clients (they run here too).
        long pipes = (long)(clients + 2) * (2L * t.MaxFrameLength + t.MaxOutboundBytes);
        long decisions = so.DecisionLogTaskEntries * 64;
        long budget = t.MaxIncompleteFrameBytes + pipes + decisions;
        long allowance = 256L << 20;
        Console.WriteLine($"budgets: incomplete frames {t.MaxIncompleteFrameBytes >> 20} MiB, pipes {clients + 2} x (2 x {t.MaxFrameLength >> 20} MiB + {t.MaxOutboundBytes >> 20} MiB) = {pipes >> 20} MiB, decision entries {so.DecisionLogTaskEntries:N0} x 64 B = {decisions >> 20} MiB; sum {budget >> 20} MiB, + allowance {allowance >> 20} MiB");
        Console.WriteLine($"tasks per job {so.MaxTasksPerJob:N0}, queued tasks per connection {options.MaxQueuedTasksPerConnection:N0}, per tenant {so.MaxQueuedTasksPerTenant:N0}, total {so.MaxQueuedTasks:N0}");

        GC.Collect(2, GCCollectionMode.Forced, true, true);
        long baseHeap = GC.GetTotalMemory(true);
        long baseRss = Environment.WorkingSet;
        Console.WriteLine($"baseline: managed heap {baseHeap / 1048576.0:0.0} MiB, RSS {baseRss / 1048576.0:0.0} MiB");
        var sampler = new Sampler();
        using var stop = new CancellationTokenSource();
        var sampling = sampler.RunAsync(server, stop.Token);

        var good = new GoodClients(server.EndPoint, reserved);
        await good.StartAsync();
        var goodLoop = good.RunAsync(stop.Token);
        var sw = Stopwatch.StartNew();

        // Phase 1: holders of partial frames.
        var held = new List<Socket>();
        var partial = new byte[9 + (900 << 10)];
        BinaryPrimitives.WriteUInt32BigEndian(partial, 1 << 20);
        partial[4] = (byte)MessageType.Heartbeat;
        var hello = Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "holder" });
        for (int i = 0; i < holders; i++)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await s.ConnectAsync(server.EndPoint);
            held.Add(s);
            try
            {
                await s.SendAsync(hello, SocketFlags.None);
                _ = s.SendAsync(partial, SocketFlags.None).ContinueWith(static _ => { }, TaskScheduler.Default);
            }
            catch (SocketException) { }
        }
        long refusedBefore = server.TransportMetrics.ErrorsSent(ErrorCode.IncompleteFrameBudget);
        var until = Stopwatch.StartNew();
        while (server.TransportMetrics.ErrorsSent(ErrorCode.IncompleteFrameBudget) + server.ConnectionCount - 2 < holders && until.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(20);
        await Task.Delay(500); // let the last partial frames land before reading the figures
        Console.WriteLine($"phase 1 ({sw.Elapsed.TotalSeconds:0.0} s): {holders} holders of 900 KiB partial frames: refused by the budget {server.TransportMetrics.ErrorsSent(ErrorCode.IncompleteFrameBudget):N0}, bytes held {server.IncompleteFrameBytes:N0} (budget {t.MaxIncompleteFrameBytes:N0}); {sampler.Report(baseHeap)}");
        foreach (var s in held) s.Dispose();

        // Phase 2: twenty SubmitJobs of a million tasks each.
        var sched = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await sched.ConnectAsync(server.EndPoint);
        var reader = new FrameReader(sched);
        await sched.SendAsync(Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "big-jobs" }), SocketFlags.None);
        await reader.NextAsync();
        int tooLarge = 0;
        for (int i = 0; i < 20; i++)
        {
            await sched.SendAsync(Codec.FrameBytes((uint)(10 + i), new SubmitJob { JobId = 1_000_000 + i, TaskCount = 1_000_000, PerTask = new ResourceVector(1000, 1 << 20), Scheduler = "" }), SocketFlags.None);
            var (type, body) = await reader.NextAsync();
            if (type == MessageType.Error && Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(body), out var e, out _) && e.Code == ErrorCode.JobTooLarge) tooLarge++;
        }
        sched.Dispose();
        Console.WriteLine($"phase 2 ({sw.Elapsed.TotalSeconds:0.0} s): 20 SubmitJobs of 1,000,000 tasks: JobTooLarge {tooLarge}, jobs held {engine.JobCount}; {sampler.Report(baseHeap)}");

        // Phase 3: mutated frames.
        var stats = new HostileStats();
        long perClient = (frames + clients - 1) / clients;
        var phase3 = Stopwatch.StartNew();
        var progress = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested && Interlocked.Read(ref stats.FramesSent) < perClient * clients)
            {
                try { await Task.Delay(10_000, stop.Token); } catch (OperationCanceledException) { return; }
                Console.WriteLine($"  {phase3.Elapsed.TotalSeconds:0} s: {Interlocked.Read(ref stats.FramesSent):N0} frames; {sampler.Report(baseHeap)}");
            }
        });
        await Task.WhenAll(Enumerable.Range(0, clients).Select(i => Task.Run(() => HostileClient.RunAsync(server.EndPoint, seed + i, perClient, stats, () => false))));
        Console.WriteLine($"phase 3 ({sw.Elapsed.TotalSeconds:0.0} s, {phase3.Elapsed.TotalSeconds:0.0} s for this phase): {stats.Summary()}");
        Console.WriteLine($"  server: frames received {server.TransportMetrics.FramesReceived:N0}, jobs held {engine.JobCount:N0}, queued tasks {engine.QueuedTasks:N0}, decision entries {engine.Decisions.TaskEntries:N0}, nodes {cell.NodeCount}, bindings {cell.AllocationCount:N0}");

        await stop.CancelAsync();
        await goodLoop;
        await sampling;
        await progress;
        GC.Collect(2, GCCollectionMode.Forced, true, true);
        long retained = GC.GetTotalMemory(true) - baseHeap;
        var audit = cell.Audit();
        Console.WriteLine($"good clients: heartbeats {good.Heartbeats:N0}, commits {good.Commits:N0}, failures {good.Failures}, slowest round trip {good.SlowestMs:0} ms");
        Console.WriteLine($"managed heap: peak +{sampler.PeakHeap(baseHeap) / 1048576.0:0.0} MiB over baseline (bound {(budget + allowance) / 1048576.0:0} MiB), retained after full GC +{retained / 1048576.0:0.0} MiB; GC heap size peak {sampler.PeakGcHeap / 1048576.0:0.0} MiB");
        Console.WriteLine($"RSS: baseline {baseRss / 1048576.0:0} MiB, peak {sampler.PeakRss / 1048576.0:0} MiB; incomplete-frame bytes peak {sampler.PeakIncomplete:N0}");
        Console.WriteLine($"cell audit: {(audit.Count == 0 ? "clean" : string.Join("; ", audit))}");
        bool ok = good.Failures == 0 && sampler.PeakHeap(baseHeap) <= budget + allowance && audit.Count == 0 && tooLarge == 20;
        Console.WriteLine(ok ? "RESULT: within budget" : "RESULT: FAILED");
        return ok ? 0 : 1;
    }

    private sealed class Sampler
    {
        private long _peakHeap, _peakRss, _peakGc, _peakIncomplete;

        public long PeakRss => Interlocked.Read(ref _peakRss);
        public long PeakGcHeap => Interlocked.Read(ref _peakGc);
        public long PeakIncomplete => Interlocked.Read(ref _peakIncomplete);
        public long PeakHeap(long baseline) => Interlocked.Read(ref _peakHeap) - baseline;

        public string Report(long baseline) => $"heap peak +{PeakHeap(baseline) / 1048576.0:0.0} MiB, RSS peak {PeakRss / 1048576.0:0} MiB";

        public async Task RunAsync(OmegaServer server, CancellationToken stop)
        {
            using var self = Process.GetCurrentProcess();
            while (!stop.IsCancellationRequested)
            {
                Max(ref _peakHeap, GC.GetTotalMemory(false));
                Max(ref _peakGc, GC.GetGCMemoryInfo().HeapSizeBytes);
                self.Refresh();
                Max(ref _peakRss, self.WorkingSet64);
                Max(ref _peakIncomplete, server.IncompleteFrameBytes);
                try { await Task.Delay(20, stop); } catch (OperationCanceledException) { return; }
            }
        }

        private static void Max(ref long field, long v)
        {
            long cur;
            while (v > (cur = Interlocked.Read(ref field)) && Interlocked.CompareExchange(ref field, v, cur) != cur) { }
        }
    }

    /// <summary>A good agent (heartbeats) and a good scheduler (commits on a tainted node only it uses), back to back.</summary>
    private sealed class GoodClients(IPEndPoint server, NodeId reserved)
    {
        private Socket _agent = null!, _sched = null!;
        private FrameReader _agentReader = null!, _schedReader = null!;
        private int _nodeId, _schedulerId;
        private long _token;
        public long Heartbeats, Commits, Failures;
        public double SlowestMs;

        public async Task StartAsync()
        {
            (_agent, _agentReader) = await ConnectAsync(PeerRole.Agent);
            await _agent.SendAsync(Codec.FrameBytes(2, new Register { Node = "good-agent", Capacity = ResourceVector.Zero, FailureDomain = "g" }), SocketFlags.None);
            var (_, body) = await _agentReader.NextAsync();
            Codec.TryDecode<Registered>(new ReadOnlySequence<byte>(body), out var reg, out _);
            _nodeId = reg.NodeId;
            (_sched, _schedReader) = await ConnectAsync(PeerRole.Scheduler);
            await _sched.SendAsync(Codec.FrameBytes(2, new AcquireLease { Name = "good-scheduler", DurationMs = 3_600_000 }), SocketFlags.None);
            (_, body) = await _schedReader.NextAsync();
            Codec.TryDecode<LeaseReply>(new ReadOnlySequence<byte>(body), out var lease, out _);
            (_schedulerId, _token) = (lease.SchedulerId, lease.Token);
        }

        private void Fail(string what, byte[] body)
        {
            if (Failures++ >= 5) return;
            string detail = Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(body), out var e, out _) ? $" ({e.Code}: {e.Message})" : "";
            Console.WriteLine($"  good client failure: {what}{detail}");
        }

        private async Task<(Socket, FrameReader)> ConnectAsync(PeerRole role)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await s.ConnectAsync(server);
            var r = new FrameReader(s);
            await s.SendAsync(Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = role, Name = "good" }), SocketFlags.None);
            await r.NextAsync();
            return (s, r);
        }

        public async Task RunAsync(CancellationToken stop)
        {
            uint rid = 100;
            while (!stop.IsCancellationRequested)
            {
                var sw = Stopwatch.StartNew();
                await _agent.SendAsync(Codec.FrameBytes(++rid, new Heartbeat { NodeId = _nodeId }), SocketFlags.None);
                var (type, hb) = await _agentReader.NextAsync();
                if (type == MessageType.HeartbeatAck) Heartbeats++; else Fail($"heartbeat answered {type}", hb);
                await _sched.SendAsync(Codec.FrameBytes(++rid, new Commit
                {
                    SchedulerId = _schedulerId, Token = _token,
                    Claims = [new WireClaim(new TaskId(4_000_000_000 + Commits, 0), reserved.Value, new ResourceVector(1, 1), 0, 0, 0, null)],
                }), SocketFlags.None);
                var (ct, cb) = await _schedReader.NextAsync();
                bool decoded = Codec.TryDecode<CommitReply>(new ReadOnlySequence<byte>(cb), out var cr, out _);
                if (ct == MessageType.CommitReply && decoded && cr.Status == TransactionStatus.Committed) Commits++;
                else Fail($"commit answered {ct} {(ct == MessageType.CommitReply && decoded ? cr.Status + " " + string.Join(",", cr.ClaimStatuses.ToArray()) : "")}", cb);
                SlowestMs = Math.Max(SlowestMs, sw.Elapsed.TotalMilliseconds);
                try { await Task.Delay(5, stop); } catch (OperationCanceledException) { }
            }
            _agent.Dispose();
            _sched.Dispose();
        }
    }

    /// <summary>Reads whole frames from a socket (a 30 s timeout counts as a failure by throwing).</summary>
    private sealed class FrameReader(Socket s)
    {
        private byte[] _buf = new byte[1 << 16];
        private int _len;

        public async Task<(MessageType Type, byte[] Body)> NextAsync()
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (true)
            {
                if (_len >= 9)
                {
                    int length = (int)BinaryPrimitives.ReadUInt32BigEndian(_buf);
                    if (_len >= 4 + length)
                    {
                        var type = (MessageType)_buf[4];
                        var body = _buf.AsSpan(9, length - 5).ToArray();
                        Buffer.BlockCopy(_buf, 4 + length, _buf, 0, _len - 4 - length);
                        _len -= 4 + length;
                        return (type, body);
                    }
                    if (4 + length > _buf.Length) Array.Resize(ref _buf, 4 + length);
                }
                int n = await s.ReceiveAsync(_buf.AsMemory(_len), SocketFlags.None, cts.Token);
                if (n == 0) throw new IOException("connection closed");
                _len += n;
            }
        }
    }
}
