using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using FASTER.core;
using Omega;
using Omega.Cells;
using Omega.Storage;

// Durability benchmarks, all in one run so the ratios compare like with like:
//   throughput  — claims/s on the in-memory path, on the journaled path (commit returns, durability not awaited),
//                 acknowledged after durability (pipelined submitters + an ack observer: ack latency p50/p99),
//                 and raw FasterLog enqueue+commit of same-sized entries;
//   commitlat   — the disk's floor under a durable acknowledgement: raw FasterLog, one thread, enqueue then a
//                 commit that waits until it is on disk, closed loop; latency p50/p99/p99.9 per batch size;
//   recovery    — open time of a store holding N allocations (checkpoint + journal tail, and journal only).
// Usage: Omega.StorageBench throughput [--seconds S] [--dir D] [--case inmemory|journaled|durable] [--preencode 0] [--inflight N] [--window-us W] | recovery --allocations N [--dir D] [--no-checkpoint 1] [--phase all|build|open]
//   --phase build writes the store and keeps it; --phase open only opens a kept store, in a fresh process, so its
//   peak resident memory (VmHWM, printed) is recovery's alone and not the builder's leftovers. --full-scan 1 makes
//   the open ignore the compact checkpoint and scan FasterKV's log (the path before issue 15's compact format).
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
string dir = opts.TryGetValue("dir", out var d) ? d : Path.Combine(Path.GetTempPath(), "omega-storage-bench");
double seconds = opts.TryGetValue("seconds", out var s) ? double.Parse(s, CultureInfo.InvariantCulture) : 5;
int repeats = opts.TryGetValue("repeats", out var rp) ? int.Parse(rp, CultureInfo.InvariantCulture) : 3;
// --preencode 0: the journaled cells encode their claims under the commit lock (CellOptions.EncodeJournalOutsideLock),
// for a same-binary A/B of issue 15's change.
Setup.PreEncode = !(opts.TryGetValue("preencode", out var pe) && pe == "0");
// Group-commit knobs for A/B runs of the durable cases (StorageOptions.GroupCommitMaxInflight, GroupCommitWindow).
if (opts.TryGetValue("inflight", out var inf)) Setup.MaxInflight = int.Parse(inf, CultureInfo.InvariantCulture);
if (opts.TryGetValue("window-us", out var wus)) Setup.Window = TimeSpan.FromMicroseconds(double.Parse(wus, CultureInfo.InvariantCulture));

switch (args.FirstOrDefault())
{
    case "throughput" when opts.TryGetValue("case", out var only):
        // One case alone (inmemory | journaled | durable), for profiling it without the others in the same samples.
        Throughput.RunOne(dir, TimeSpan.FromSeconds(seconds), only);
        return 0;
    case "throughput":
        Throughput.Run(dir, TimeSpan.FromSeconds(seconds), repeats);
        return 0;
    case "commitlat":
        CommitLatency.Run(dir, TimeSpan.FromSeconds(seconds), repeats);
        return 0;
    case "cellmem":
        CellMemory.Run(long.Parse(opts.TryGetValue("allocations", out var cm) ? cm : "1000000", CultureInfo.InvariantCulture));
        return 0;
    case "recovery":
        Recovery.Run(dir, long.Parse(opts["allocations"], CultureInfo.InvariantCulture), opts.TryGetValue("no-checkpoint", out var nc) && nc == "1",
            opts.TryGetValue("phase", out var ph) ? ph : "all", opts.TryGetValue("full-scan", out var fs) && fs == "1");
        return 0;
    default:
        Console.Error.WriteLine("usage: Omega.StorageBench throughput [--seconds S] [--repeats R] [--dir D] [--inflight N] [--window-us W] | commitlat [--seconds S] [--repeats R] [--dir D] | recovery --allocations N [--dir D] [--no-checkpoint 1] [--phase all|build|open] [--full-scan 1] | cellmem --allocations N");
        return 2;
}

internal static class Setup
{
    public const int Nodes = 10_000;

    public static void AddNodes(Cell cell, long cpuPerNode)
    {
        // Memory at the largest valid quantity (2^53): effectively unbounded here, and valid (a vector above it is refused).
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(cpuPerNode, ResourceVector.MaxQuantity), $"r{i % 16}"));
        // Tenants exist only once created; the workloads charge tenants 0-3.
        for (int t = 1; t <= 3; t++) cell.CreateTenant($"t{t}", null, out _);
    }

    /// <summary>Set by the throughput runner around its blocking-wait runs (StorageOptions.GroupCommitBlockingWait).</summary>
    public static bool BlockingWait;

    /// <summary>CellOptions.EncodeJournalOutsideLock for the journaled cells (--preencode 0 turns it off).</summary>
    public static bool PreEncode = true;
    /// <summary>--inflight N (StorageOptions.GroupCommitMaxInflight); null keeps the default.</summary>
    public static int? MaxInflight;

    /// <summary>--window-us N (StorageOptions.GroupCommitWindow); null keeps the default.</summary>
    public static TimeSpan? Window;

    public static StorageOptions Options(string dir) => new()
    {
        Cell = new CellOptions { EncodeJournalOutsideLock = PreEncode },
        GroupCommitBlockingWait = BlockingWait,
        GroupCommitMaxInflight = MaxInflight ?? new StorageOptions().GroupCommitMaxInflight,
        GroupCommitWindow = Window ?? new StorageOptions().GroupCommitWindow,
        DataDirectory = dir,
        CheckpointInterval = null,
        CheckpointOnDispose = false,
        StoreIndexBuckets = 1L << 21,
    };

    public static void Clean(string dir)
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}

internal static class Throughput
{
    public static void RunOne(string root, TimeSpan duration, string only)
    {
        string dir = Path.Combine(root, "tp");
        Setup.Clean(dir);
        double rate = only switch
        {
            "inmemory" => InMemory(duration),
            "journaled" => Durable(dir, duration, awaitDurability: false).Item1,
            "durable" => Durable(dir, duration, awaitDurability: true).Item1,
            _ => throw new ArgumentException($"unknown case {only}: inmemory | journaled | durable"),
        };
        Setup.Clean(dir);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{only}: {rate:N0} claims/s"));
    }

    public static void Run(string root, TimeSpan duration, int repeats)
    {
        var rows = new Dictionary<string, List<double>>();
        void Add(string name, double v)
        {
            if (!rows.TryGetValue(name, out var l)) rows[name] = l = new List<double>();
            l.Add(v);
        }
        var p50s = new List<double>();
        var p99s = new List<double>();
        var p50sBlocking = new List<double>();
        var p99sBlocking = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            Add("in-memory commit (no journal), claims/s", InMemory(duration));
            string dir = Path.Combine(root, "tp");
            Setup.Clean(dir);
            var (journaled, _, _) = Durable(dir, duration, awaitDurability: false);
            Add("journaled commit, durability not awaited, claims/s", journaled);
            Setup.Clean(dir);
            var (durable, _, _) = Durable(dir, duration, awaitDurability: true);
            Add("durable, pipelined: claims acknowledged after group commit, claims/s", durable);
            Setup.Clean(dir);
            var (closed, p50, p99) = ClosedLoop(dir, duration, Submitters);
            Add($"durable, closed loop: {Submitters} async submitters awaiting CommitDurableAsync, claims/s", closed);
            p50s.Add(p50);
            p99s.Add(p99);
            Setup.Clean(dir);
            // The same two durable runs with the group-commit thread blocking on FasterLog's commit instead of spinning
            // (StorageOptions.GroupCommitBlockingWait), alternating with the spinning runs above in the same process.
            Setup.BlockingWait = true;
            try
            {
                var (durableBlocking, _, _) = Durable(dir, duration, awaitDurability: true);
                Add("durable, pipelined, group commit BLOCKING wait, claims/s", durableBlocking);
                Setup.Clean(dir);
                var (closedB, p50B, p99B) = ClosedLoop(dir, duration, Submitters);
                Add($"durable, closed loop, group commit BLOCKING wait: {Submitters} submitters, claims/s", closedB);
                p50sBlocking.Add(p50B);
                p99sBlocking.Add(p99B);
                Setup.Clean(dir);
            }
            finally
            {
                Setup.BlockingWait = false;
            }
            Add("raw FasterLog enqueue(88 B)+commit every 4096, entries/s", RawFasterLog(Path.Combine(root, "raw"), duration));
            Setup.Clean(Path.Combine(root, "raw"));
        }
        Console.WriteLine();
        Console.WriteLine($"| measurement ({repeats} runs of {duration.TotalSeconds:F0} s, median) | value | runs |");
        Console.WriteLine("|---|---:|---|");
        foreach (var (name, values) in rows)
            Console.WriteLine($"| {name} | {Median(values):N0} | {string.Join(" / ", values.Select(v => v.ToString("N0", CultureInfo.InvariantCulture)))} |");
        Console.WriteLine($"| ack latency p50 (closed loop), ms | {Median(p50s):F2} | {string.Join(" / ", p50s.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)))} |");
        Console.WriteLine($"| ack latency p99 (closed loop), ms | {Median(p99s):F2} | {string.Join(" / ", p99s.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)))} |");
        Console.WriteLine($"| ack latency p50 (closed loop, BLOCKING wait), ms | {Median(p50sBlocking):F2} | {string.Join(" / ", p50sBlocking.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)))} |");
        Console.WriteLine($"| ack latency p99 (closed loop, BLOCKING wait), ms | {Median(p99sBlocking):F2} | {string.Join(" / ", p99sBlocking.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)))} |");
        double durableMed = Median(rows["durable, pipelined: claims acknowledged after group commit, claims/s"]);
        Console.WriteLine();
        Console.WriteLine($"durable / in-memory = {durableMed / Median(rows["in-memory commit (no journal), claims/s"]):F3}");
        Console.WriteLine($"durable (BLOCKING wait) / in-memory = {Median(rows["durable, pipelined, group commit BLOCKING wait, claims/s"]) / Median(rows["in-memory commit (no journal), claims/s"]):F3}");
        Console.WriteLine($"durable / journaled-not-awaited = {durableMed / Median(rows["journaled commit, durability not awaited, claims/s"]):F3}");
        Console.WriteLine($"durable claims / raw FasterLog entries = {durableMed / Median(rows["raw FasterLog enqueue(88 B)+commit every 4096, entries/s"]):F3}");
    }

    private static double Median(List<double> v)
    {
        var s = v.OrderBy(x => x).ToList();
        return s[s.Count / 2];
    }

    private const int Workers = 2;
    private const int Submitters = 256;

    /// <summary>
    /// What a client sees: <paramref name="submitters"/> concurrent async submitters, each committing one claim and awaiting
    /// its durable acknowledgement before the next. Latency = submit to acknowledgement.
    /// </summary>
    private static (double, double, double) ClosedLoop(string dir, TimeSpan duration, int submitters)
    {
        using var store = CellStore.Open(Setup.Options(dir));
        var cell = store.Cell;
        Setup.AddNodes(cell, 1_000_000);
        var lease = cell.AcquireLease("bench", TimeSpan.FromHours(1)).Lease;
        long stopAt = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var latencies = new List<double>[submitters];
        long start = Stopwatch.GetTimestamp();
        var tasks = new Task[submitters];
        for (int w = 0; w < submitters; w++)
        {
            int me = w;
            latencies[me] = new List<double>(1 << 14);
            tasks[w] = Task.Run(async () =>
            {
                var rng = new Random(me + 1);
                var tx = new Transaction(lease);
                long job = (long)me << 40;
                var live = new Queue<TaskId>();
                while (Stopwatch.GetTimestamp() < stopAt)
                {
                    tx.Reset(lease);
                    var task = new TaskId(job++, 0);
                    tx.Add(new Claim(task, new NodeId(rng.Next(Setup.Nodes)), new ResourceVector(10, 1 << 20), 0));
                    long t0 = Stopwatch.GetTimestamp();
                    var r = await store.CommitDurableAsync(tx);
                    latencies[me].Add((Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency);
                    if (r.AppliedCount == 1)
                    {
                        live.Enqueue(task);
                        if (live.Count > 200) cell.Release(live.Dequeue());
                    }
                }
            });
        }
        Task.WaitAll(tasks);
        double secs = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
        var all = latencies.SelectMany(l => l).OrderBy(x => x).ToList();
        // Counts, not rates: how the group commit batched this run (commits overlap when the peak in flight is 2 or more).
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"closed loop: {store.Metrics.Groups:N0} commits, {all.Count / (double)Math.Max(1, store.Metrics.Groups):F1} claims per commit, peak commits in flight {store.Metrics.PeakCommitsInFlight} (GroupCommitMaxInflight {Setup.Options(dir).GroupCommitMaxInflight}, window {Setup.Options(dir).GroupCommitWindow.TotalMicroseconds:F0} us, blocking {Setup.BlockingWait})"));
        return (all.Count / secs, all[all.Count / 2], all[(int)(all.Count * 0.99)]);
    }

    /// <summary>Two workers, single-claim Fine transactions on random nodes, releasing to keep the cell from filling.</summary>
    private static double InMemory(TimeSpan duration)
    {
        using var cell = new Cell();
        Setup.AddNodes(cell, 1_000_000);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var result = Drive(cell, null, duration, null);
        PrintProcessCpu("in-memory", Process.GetCurrentProcess().TotalProcessorTime - cpu0, result.ClaimsPerSecond * duration.TotalSeconds);
        return result.ClaimsPerSecond;
    }

    private static (double, double, double) Durable(string dir, TimeSpan duration, bool awaitDurability)
    {
        using var store = CellStore.Open(Setup.Options(dir));
        Setup.AddNodes(store.Cell, 1_000_000);
        store.WaitForDurableAsync(store.Cell.JournalSequence).AsTask().Wait();
        var acks = awaitDurability ? new AckObserver(store) : null;
        double cpuBefore = ThreadCpuMs("omega-group-com");
        var process0 = Process.GetCurrentProcess().TotalProcessorTime;
        var result = Drive(store.Cell, acks, duration, store);
        double cpu = ThreadCpuMs("omega-group-com") - cpuBefore;
        // The whole process (workers, group commit, FASTER's I/O completions on the pool, the ack observer): the CPU a
        // durable claim costs against an in-memory one on the same two cores (issue 15: durable >= 0.9x in-memory).
        PrintProcessCpu(awaitDurability ? "durable pipelined" : "journaled, not awaited", Process.GetCurrentProcess().TotalProcessorTime - process0,
            result.ClaimsPerSecond * duration.TotalSeconds);
        double rate = acks is null ? result.ClaimsPerSecond : result.AckedPerSecond;
        // Issue 15: the group-commit thread competes for the same cores as the committers; its CPU per claim says how much.
        if (awaitDurability && cpuBefore >= 0 && rate > 0)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"group-commit thread CPU: {cpu:F0} ms over the run, {cpu * 1000 / (rate * duration.TotalSeconds):F3} µs per durable claim"));
        return (rate, 0, 0);
    }

    private static void PrintProcessCpu(string run, TimeSpan cpu, double claims)
    {
        if (claims > 0)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"process CPU ({run}): {cpu.TotalMilliseconds:F0} ms, {cpu.TotalMilliseconds * 1000 / claims:F3} µs per claim"));
    }

    /// <summary>CPU time (user + system, ms) of this process's threads named <paramref name="comm"/> (Linux, /proc); -1 elsewhere.</summary>
    private static double ThreadCpuMs(string comm)
    {
        try
        {
            double ticks = 0;
            foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).Trim() != comm) continue;
                string stat = File.ReadAllText(Path.Combine(task, "stat"));
                var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                ticks += double.Parse(f[11], CultureInfo.InvariantCulture) + double.Parse(f[12], CultureInfo.InvariantCulture);
            }
            return ticks * 10; // USER_HZ is 100 on Linux
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    private readonly record struct DriveResult(double ClaimsPerSecond, double AckedPerSecond);

    private static DriveResult Drive(Cell cell, AckObserver? acks, TimeSpan duration, ICellStore? store)
    {
        var lease = cell.AcquireLease("bench", TimeSpan.FromHours(1)).Lease;
        long stopAt = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var counts = new long[Workers];
        var threads = new Thread[Workers];
        long start = Stopwatch.GetTimestamp();
        for (int w = 0; w < Workers; w++)
        {
            int me = w;
            threads[w] = new Thread(() =>
            {
                var rng = new Random(me + 1);
                var tx = new Transaction(lease);
                long job = (long)me << 40, n = 0;
                var live = new Queue<TaskId>();
                while (true)
                {
                    for (int i = 0; i < 256; i++)
                    {
                        tx.Reset(lease);
                        var task = new TaskId(job++, 0);
                        tx.Add(new Claim(task, new NodeId(rng.Next(Setup.Nodes)), new ResourceVector(10, 1 << 20), 0));
                        long t0 = Stopwatch.GetTimestamp();
                        var r = cell.Commit(tx);
                        if (r.AppliedCount == 1)
                        {
                            n++;
                            acks?.Submitted(cell.JournalSequence, t0);
                            live.Enqueue(task);
                            if (live.Count > 50_000) cell.Release(live.Dequeue());
                        }
                    }
                    if (Stopwatch.GetTimestamp() >= stopAt) break;
                }
                counts[me] = n;
            }) { IsBackground = true };
            threads[w].Start();
        }
        foreach (var t in threads) t.Join();
        double secs = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
        long total = counts.Sum();
        if (acks is null) return new DriveResult(total / secs, 0);
        // Acknowledged throughput: claims whose acknowledgement (durability) arrived, over the time until the last one did.
        acks.Finish();
        double ackSecs = (acks.LastAckTimestamp - start) / (double)Stopwatch.Frequency;
        return new DriveResult(total / secs, acks.Acked / ackSecs);
    }

    /// <summary>
    /// Observes acknowledgements: submitters hand over (journal sequence, submit time); one thread waits for the durable
    /// watermark and records, for each commit it covers, the latency from submit to the moment its ack was available.
    /// </summary>
    private sealed class AckObserver
    {
        private readonly ICellStore _store;
        private readonly ConcurrentQueue<(long Seq, long T0)> _pending = new();
        private readonly Thread _thread;
        private volatile bool _finishing;
        public long Acked;
        public long LastAckTimestamp;

        public AckObserver(ICellStore store)
        {
            _store = store;
            _thread = new Thread(Loop) { IsBackground = true };
            _thread.Start();
        }

        public void Submitted(long seq, long t0) => _pending.Enqueue((seq, t0));

        private void Loop()
        {
            while (true)
            {
                if (!_pending.TryPeek(out var head))
                {
                    if (_finishing) return;
                    Thread.Yield();
                    continue;
                }
                _store.WaitForDurableAsync(head.Seq).AsTask().Wait();
                long now = Stopwatch.GetTimestamp();
                long durable = _store.DurableSequence;
                while (_pending.TryPeek(out var e) && e.Seq <= durable)
                {
                    _pending.TryDequeue(out _);
                    Acked++;
                }
                LastAckTimestamp = now;
            }
        }

        public void Finish()
        {
            _finishing = true;
            _thread.Join();
        }
    }

    /// <summary>Raw FasterLog: one thread enqueues 88-byte entries and issues a commit every 4096 (design.md §11).</summary>
    private static double RawFasterLog(string dir, TimeSpan duration)
    {
        Setup.Clean(dir);
        Directory.CreateDirectory(dir);
        using var device = Devices.CreateLogDevice(Path.Combine(dir, "raw.log"), preallocateFile: false, deleteOnClose: true);
        using var log = new FasterLog(new FasterLogSettings { LogDevice = device, PageSizeBits = 22, MemorySizeBits = 26, SegmentSizeBits = 30, LogCommitDir = Path.Combine(dir, "commits") });
        var entry = new byte[88];
        long stopAt = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long start = Stopwatch.GetTimestamp(), n = 0;
        while (Stopwatch.GetTimestamp() < stopAt)
        {
            for (int i = 0; i < 4096; i++) log.Enqueue(entry);
            n += 4096;
            log.Commit(spinWait: false);
        }
        log.Commit(spinWait: true);
        double secs = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
        return n / secs;
    }
}

internal static class Recovery
{
    public static void Run(string root, long allocations, bool noCheckpoint, string phase, bool fullScan = false)
    {
        string dir = Path.Combine(root, "recovery-" + allocations.ToString(CultureInfo.InvariantCulture));
        if (phase != "open") Build(dir, allocations, noCheckpoint);
        if (phase == "build") return;
        // --phase open runs in a fresh process (nothing but recovery has touched its heap) and keeps the store, so
        // the report script can open it several times; the all-in-one mode cleans up as before.
        if (phase != "open") GC.Collect();
        Open(dir, allocations, noCheckpoint, fullScan);
        if (phase != "open") Setup.Clean(dir);
    }

    private static void Build(string dir, long allocations, bool noCheckpoint)
    {
        Setup.Clean(dir);
        const int ClaimsPerTx = 64;
        var build = Stopwatch.StartNew();
        using (var store = CellStore.Open(Setup.Options(dir)))
        {
            var cell = store.Cell;
            Setup.AddNodes(cell, 100_000_000);
            var lease = cell.AcquireLease("loader", TimeSpan.FromHours(1)).Lease;
            var tx = new Transaction(lease, initialCapacity: ClaimsPerTx);
            var rng = new Random(1);
            long job = 0;
            while (job < allocations)
            {
                tx.Reset(lease);
                for (int i = 0; i < ClaimsPerTx && job < allocations; i++)
                    tx.Add(new Claim(new TaskId(job++, 0), new NodeId(rng.Next(Setup.Nodes)), new ResourceVector(100, 1L << 28), 0, new TenantId(rng.Next(4)), rng.Next(3)));
                var r = cell.Commit(tx);
                if (r.AppliedCount != tx.Count) throw new InvalidOperationException($"load commit failed: {r}");
            }
            store.WaitForDurableAsync(cell.JournalSequence).AsTask().Wait();
            Console.WriteLine($"built {cell.AllocationCount:N0} allocations in {build.Elapsed.TotalSeconds:F1} s (journal durable)");
            if (!noCheckpoint)
            {
                var cp = Stopwatch.StartNew();
                store.CheckpointAsync().AsTask().Wait();
                Console.WriteLine($"checkpoint (apply journal to FasterKV + snapshot) {cp.Elapsed.TotalSeconds:F1} s");
                // Issue 15: the compact checkpoint's pass over the store log is paid at every checkpoint, beside the commit path.
                var t = store.Metrics.LastCheckpoint;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"CHECKPOINT apply_s={t.Apply.TotalSeconds:F3} snapshot_s={t.Snapshot.TotalSeconds:F3} compact_s={t.Compact.TotalSeconds:F3} files_s={t.Files.TotalSeconds:F3} compact_records={t.CompactRecords}"));
            }
        }
    }

    private static void Open(string dir, long allocations, bool noCheckpoint, bool fullScan)
    {
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var open = Stopwatch.StartNew();
        var options = Setup.Options(dir);
        options.UseCompactCheckpoint = !fullScan;
        using (var store = CellStore.Open(options))
        {
            open.Stop();
            // Everything the open allocated on the managed heap (live or garbage): the transient part is what lifts the
            // peak resident memory above the recovered cell (issue 15; not a timing, so load does not change it).
            long allocatedMib = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) >> 20;
            var r = store.Recovery;
            Console.WriteLine($"| {allocations:N0} | {(noCheckpoint ? "journal only" : "checkpoint + tail")} | {r.TotalTime.TotalSeconds:F2} | {r.CheckpointLoadTime.TotalSeconds:F2} | {r.ReplayTime.TotalSeconds:F2} | {r.RebuildTime.TotalSeconds:F2} | {r.CheckpointEntries:N0} | {r.RecordsReplayed:N0} | {store.Cell.AllocationCount:N0} | {Environment.WorkingSet / (1 << 20):N0} MiB |");
            if (store.Cell.AllocationCount != allocations) throw new InvalidOperationException("recovered cell lost allocations");
            Console.WriteLine($"peak resident memory (VmHWM) {PeakRssMiB():N0} MiB; managed heap {GC.GetTotalMemory(false) / (1 << 20):N0} MiB; open {open.Elapsed.TotalSeconds:F2} s");
            // Issue 15: where the checkpoint load goes (verify the files, FasterKV's recovery, the scan into the cell).
            Console.WriteLine($"checkpoint load split: verify {r.CheckpointVerifyTime.TotalSeconds:F2} s, faster recover {r.CheckpointRecoverTime.TotalSeconds:F2} s, scan {r.CheckpointScanTime.TotalSeconds:F2} s");
            // Resident cost per binding (issue 15, target 2.5 GiB at 10M = ~268 B/binding): the managed heap after a full
            // collection (the cell's structures, nothing transient) and the process working set, each per recovered binding.
            long managed = GC.GetTotalMemory(forceFullCollection: true);
            long bound = Math.Max(1, store.Cell.AllocationCount);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"MEMORY managed_mib={managed >> 20} managed_bytes_per_binding={managed / bound} working_set_bytes_per_binding={Environment.WorkingSet / bound}"));
            // One machine-readable line for bench/scripts/recovery-report.sh.
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RECOVERY path={(r.FromCompactCheckpoint ? "compact" : "scan")} bindings={store.Cell.AllocationCount} open_s={r.TotalTime.TotalSeconds:F3} verify_s={r.CheckpointVerifyTime.TotalSeconds:F3} recover_s={r.CheckpointRecoverTime.TotalSeconds:F3} scan_s={r.CheckpointScanTime.TotalSeconds:F3} replay_s={r.ReplayTime.TotalSeconds:F3} rebuild_s={r.RebuildTime.TotalSeconds:F3} peak_rss_mib={PeakRssMiB()} working_set_mib={Environment.WorkingSet / (1 << 20)} allocated_mib={allocatedMib}"));
            if (!noCheckpoint && r.FromCompactCheckpoint == fullScan)
                throw new InvalidOperationException($"expected the {(fullScan ? "full scan" : "compact checkpoint")} path, got the other ({r.CompactCheckpointFallback})");
            var audit = store.Cell.Audit();
            if (audit.Count != 0) throw new InvalidOperationException("audit: " + audit[0]);
        }
    }

    private static long PeakRssMiB()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.AsSpan(6).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
        }
        catch (IOException)
        {
        }
        return -1;
    }
}

/// <summary>
/// Issue 15's memory target (2.5 GiB resident at 10M bindings): the managed bytes per binding of the cell's own
/// structures, without storage (no FASTER buffers, no journal): a plain Cell with the recovery benchmark's 10,000 nodes,
/// measured after a full collection before and after binding N tasks through ordinary commits, and again after a
/// restore-free release of none (the figure is what the live cell keeps per binding). Not a timing: runs anywhere.
/// </summary>
internal static class CellMemory
{
    public static void Run(long allocations)
    {
        using var cell = new Cell();
        Setup.AddNodes(cell, 100_000_000);
        var lease = cell.AcquireLease("loader", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: 64);
        var rng = new Random(1);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        long job = 0;
        while (job < allocations)
        {
            tx.Reset(lease);
            for (int i = 0; i < 64 && job < allocations; i++)
                tx.Add(new Claim(new TaskId(job++, 0), new NodeId(rng.Next(Setup.Nodes)), new ResourceVector(100, 1L << 28), 0, new TenantId(rng.Next(4)), rng.Next(3)));
            var r = cell.Commit(tx);
            if (r.AppliedCount != tx.Count) throw new InvalidOperationException($"load commit failed: {r}");
        }
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"CELLMEM bindings={cell.AllocationCount} managed_delta_mib={(after - before) >> 20} bytes_per_binding={(after - before) / Math.Max(1, cell.AllocationCount)} working_set_mib={Environment.WorkingSet >> 20}"));
        GC.KeepAlive(cell);
    }
}

/// <summary>
/// The floor a durable acknowledgement cannot go below on this disk (issue 15's closed-loop ack p99 ≤ 2 ms): raw
/// FasterLog on the same device settings as the store, one thread, closed loop — enqueue a batch of 88-byte entries,
/// then a commit that returns only once FasterLog reports it durable. No Omega code runs, so the latency is FasterLog's
/// commit (its page flush and the commit record's write and flush) on this disk. Batch 1 is one acknowledgement per
/// commit; larger batches mirror the group commit, which makes one commit for every claim that arrived meanwhile.
/// </summary>
internal static class CommitLatency
{
    public static void Run(string root, TimeSpan duration, int repeats)
    {
        Console.WriteLine($"raw FasterLog commit latency, closed loop, one thread, {duration.TotalSeconds:F0} s per case, {repeats} repeats");
        foreach (int batch in new[] { 1, 64, 512 })
        {
            for (int r = 1; r <= repeats; r++)
            {
                string dir = Path.Combine(root, "commitlat");
                Setup.Clean(dir);
                Directory.CreateDirectory(dir);
                var lat = new List<double>(1 << 16);
                using (var device = Devices.CreateLogDevice(Path.Combine(dir, "raw.log"), preallocateFile: false, deleteOnClose: true))
                using (var log = new FasterLog(new FasterLogSettings { LogDevice = device, PageSizeBits = 22, MemorySizeBits = 26, SegmentSizeBits = 30, LogCommitDir = Path.Combine(dir, "commits") }))
                {
                    var entry = new byte[88];
                    long stopAt = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
                    while (Stopwatch.GetTimestamp() < stopAt)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        for (int i = 0; i < batch; i++) log.Enqueue(entry);
                        log.Commit(spinWait: true);
                        lat.Add((Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency);
                    }
                }
                Setup.Clean(dir);
                lat.Sort();
                double P(double q) => lat[Math.Min(lat.Count - 1, (int)(q * lat.Count))];
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"COMMITLAT batch={batch} repeat={r} commits={lat.Count} commits_per_s={lat.Count / duration.TotalSeconds:F0} p50_ms={P(0.50):F3} p99_ms={P(0.99):F3} p999_ms={P(0.999):F3} max_ms={lat[^1]:F3}"));
            }
        }
    }
}
