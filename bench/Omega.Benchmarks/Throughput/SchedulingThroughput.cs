using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using Omega.Cells;
using Omega.Scheduling;

namespace Omega.Benchmarks.Throughput;

/// <summary>
/// <c>sched [--seconds-budget N] [--reps R] [--nodes N] [--jobs J] [--tasks T] [--seed S]</c>: the full scheduling
/// engine (queues, filter/score pipeline with sampling, optimistic commit, decision records) draining a backlog of jobs
/// on a 10,000-node cell, with 1, 2 and 4 workers and with each commit mode/detection pair, plus the raw FASTER RMW
/// baseline in the same run. Prints every repetition, then medians as Markdown.
/// </summary>
/// <remarks>
/// <para>Why a backlog drain and not a steady state: a steady state needs a completer releasing tasks as fast as they
/// are placed, which on two cores would take half the CPU from the schedulers and measure the completer. A backlog of
/// J jobs × T tasks that fills the cell from its prefill to a high utilization is what the engine does after a burst of
/// submissions (and where conflicts bite, because the cell fills up). Each rep is a fresh cell and engine.</para>
/// <para>Conflict fraction is the Omega paper's (§5): transactions with any rejected claim ÷ transactions with none.
/// Busyness is time deciding ÷ wall time per worker, split into useful and wasted (a decision whose commit conflicted).</para>
/// </remarks>
internal static class SchedulingThroughput
{
    // SpinRounds: CellOptions.CommitLockSpinRounds for this config (null: the cell's default). The "no-spin" config is the
    // same-process A/B of the commit lock's bounded spin (issue 14, round 8): 0 blocks at once, as before it.
    // Prefetch: CellOptions.PrefetchOutsideLock (the "no-prefetch" config is its same-process A/B).
    // Path: CellOptions.CommitPath (null: the cell's default); the ",striped" configs (--striped) are CommitPath.Striped.
    private sealed record Config(string Name, int Workers, CommitMode Mode, ConflictDetection Detection, int? SpinRounds = null, bool Prefetch = true,
        CommitPath? Path = null);

    private readonly record struct Rep(double Seconds, long Placements, long Attempts, long Clean, long Conflicted,
        double DecisionP50Us, double DecisionP99Us, double CommitP50Us, double UsefulBusy, double WastedBusy, long Parked, double Others, int AuditProblems)
    {
        // Where the workers' wall time went (SchedulingEngine.GetWorkerTimes, summed over workers, as fractions of their wall).
        public double Deciding { get; init; }
        public double Committing { get; init; }
        public double Other { get; init; }
        public double Idle { get; init; }
        // The workers' threads: CPU time ÷ wall (below 1: blocked or waiting for a core), and blocking waits per job
        // (voluntary context switches, from /proc; a count, so meaningful on a loaded machine).
        public double CpuOverWall { get; init; }
        public double BlocksPerJob { get; init; }
        // Commit-lock acquisitions that found the lock held by another worker, per transaction (Cell.CommitLockContentions).
        public double ContendedPerTx { get; init; }
        // Of those, the ones whose bounded spin ran out so the worker blocked in the kernel, per transaction (Cell.CommitLockBlocks).
        public double BlockedPerTx { get; init; }
    }

    private const string Usage = "sched [--reps R] [--nodes N] [--jobs J] [--tasks T] [--prefill U] [--seed S] [--no-baseline] [--striped] [--concurrent] [--only 'NAME|NAME']";

    public static int Run(string[] args)
    {
        int reps = 5, nodes = 10_000, jobs = 12_000, tasks = 16, seed = 1;
        double prefill = 0.5;
        bool baseline = true, striped = false, concurrent = false;
        string[]? only = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--reps": reps = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--nodes": nodes = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--jobs": jobs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--tasks": tasks = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--prefill": prefill = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--no-baseline": baseline = false; break;
                case "--striped": striped = true; break; // issue 14: add the CommitPath.Striped configs
                case "--concurrent": concurrent = true; break; // issue 14 round 12: add the CommitPath.Concurrent configs
                // Keep only the configs whose name is one of these exactly ('|'-separated), e.g. "Incremental+Fine|Incremental+Fine,concurrent".
                case "--only": only = Next().Split('|', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}; usage: {Usage}");
                    return 2;
            }
        }
        if (reps < 1 || nodes < 8 || jobs < 1 || tasks < 1 || prefill is < 0 or >= 1)
        {
            Console.Error.WriteLine("need --reps >= 1, --nodes >= 8, --jobs >= 1, --tasks >= 1, 0 <= --prefill < 1");
            return 2;
        }

        Console.WriteLine($"# sched: {reps} reps per config, {nodes:N0} nodes of 32 cores / 128 GiB, prefill {prefill:P0} CPU, backlog {jobs:N0} jobs x {tasks} tasks of 0.5 core / 2 GiB (time to the last placement), seed {seed}");
        Console.WriteLine($"# {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}, {Environment.ProcessorCount} logical CPUs, {(GCSettings.IsServerGC ? "server" : "workstation")} GC");
        Console.WriteLine($"# load average at start: {LoadAverage()}");

        var configs = new List<Config>
        {
            new("Incremental+Fine", 1, CommitMode.Incremental, ConflictDetection.Fine),
            new("Incremental+Fine", 2, CommitMode.Incremental, ConflictDetection.Fine),
            new("Incremental+Fine,no-spin", 2, CommitMode.Incremental, ConflictDetection.Fine, SpinRounds: 0),
            new("Incremental+Fine,no-prefetch", 2, CommitMode.Incremental, ConflictDetection.Fine, Prefetch: false),
            new("Incremental+Fine,neither", 2, CommitMode.Incremental, ConflictDetection.Fine, SpinRounds: 0, Prefetch: false),
            new("Incremental+Fine", 4, CommitMode.Incremental, ConflictDetection.Fine),
            new("Incremental+Coarse", 4, CommitMode.Incremental, ConflictDetection.Coarse),
            new("AllOrNothing+Fine", 4, CommitMode.AllOrNothing, ConflictDetection.Fine),
        };
        if (striped)
        {
            // The node-striped commit path (issue 14) beside the default path's configs of the same process.
            configs.Add(new("Incremental+Fine,striped", 1, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Striped));
            configs.Add(new("Incremental+Fine,striped", 2, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Striped));
            configs.Add(new("Incremental+Fine,striped", 4, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Striped));
            configs.Add(new("Incremental+Coarse,striped", 4, CommitMode.Incremental, ConflictDetection.Coarse, Path: CommitPath.Striped));
            configs.Add(new("AllOrNothing+Fine,striped", 4, CommitMode.AllOrNothing, ConflictDetection.Fine, Path: CommitPath.Striped));
        }
        if (concurrent)
        {
            // The concurrent commit path (issue 14, round 12) beside the default path's configs of the same process.
            configs.Add(new("Incremental+Fine,concurrent", 1, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Concurrent));
            configs.Add(new("Incremental+Fine,concurrent", 2, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Concurrent));
            configs.Add(new("Incremental+Fine,concurrent", 4, CommitMode.Incremental, ConflictDetection.Fine, Path: CommitPath.Concurrent));
            configs.Add(new("Incremental+Coarse,concurrent", 4, CommitMode.Incremental, ConflictDetection.Coarse, Path: CommitPath.Concurrent));
            configs.Add(new("AllOrNothing+Fine,concurrent", 4, CommitMode.AllOrNothing, ConflictDetection.Fine, Path: CommitPath.Concurrent));
        }
        if (only is not null) configs.RemoveAll(c => Array.IndexOf(only, c.Name) < 0);
        var results = configs.ToDictionary(c => c, _ => new List<Rep>());
        using var faster = baseline ? new FasterBaseline() : null;
        var rmw = new List<double>[] { [], [] };

        // One untimed rep of every config first, so the JIT's tiering and the first-touch page faults are not measured.
        foreach (var c in configs) RunOnce(c, nodes, Math.Min(jobs, 2_000), tasks, prefill, seed);

        for (int rep = 1; rep <= reps; rep++)
        {
            foreach (var c in configs)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var r = RunOnce(c, nodes, jobs, tasks, prefill, seed + rep);
                results[c].Add(r);
                Console.WriteLine(FormattableString.Invariant(
                    $"rep {rep} | {c.Name,-20} | {c.Workers}W | {r.Placements / r.Seconds,12:N0} placements/s | {r.Placements,9:N0} in {r.Seconds:F3} s | decision p50 {r.DecisionP50Us:F1} us p99 {r.DecisionP99Us:F1} us | commit p50 {r.CommitP50Us:F1} us | conflict fraction {Fraction(r):F4} | busy useful {r.UsefulBusy:P1} wasted {r.WastedBusy:P1} | worker time: decide {r.Deciding:P1} commit {r.Committing:P1} other {r.Other:P1} idle {r.Idle:P1} | cpu/wall {r.CpuOverWall:F2} | blocks/job {r.BlocksPerJob:F3} | lock contended/tx {r.ContendedPerTx:F3} | parked {r.Parked} | others {r.Others:F2} cores | audit {(r.AuditProblems == 0 ? "ok" : r.AuditProblems + " problems")} | lock blocked/tx {r.BlockedPerTx:F3}"));
            }
            if (faster is not null)
            {
                for (int t = 1; t <= 2; t++)
                {
                    GC.Collect();
                    var rr = faster.Run(t, TimeSpan.FromSeconds(2), seed + rep);
                    rmw[t - 1].Add(rr.UnitsPerSecond);
                    Console.WriteLine(FormattableString.Invariant($"rep {rep} | FASTER RMW baseline | {t}T | {rr.UnitsPerSecond,12:N0} RMWs/s"));
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine($"## Medians of {reps} reps (load average at end: {LoadAverage()})");
        Console.WriteLine();
        Console.WriteLine("Where the workers' wall time went (medians; fractions of the workers' summed wall time from Start to the end of the rep), the worker threads' CPU time ÷ wall, their blocking waits per job, and commit-lock acquisitions that found the lock held, per transaction:");
        Console.WriteLine();
        Console.WriteLine("| config | workers | deciding | committing | other in step | idle | cpu ÷ wall | blocks per job | lock contended per tx | lock blocked per tx |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var c in configs)
        {
            var rs = results[c];
            Console.WriteLine(FormattableString.Invariant(
                $"| {c.Name} | {c.Workers} | {Median(rs.Select(r => r.Deciding)):P1} | {Median(rs.Select(r => r.Committing)):P1} | {Median(rs.Select(r => r.Other)):P1} | {Median(rs.Select(r => r.Idle)):P1} | {Median(rs.Select(r => r.CpuOverWall)):F2} | {Median(rs.Select(r => r.BlocksPerJob)):F3} | {Median(rs.Select(r => r.ContendedPerTx)):F3} | {Median(rs.Select(r => r.BlockedPerTx)):F3} |"));
        }
        Console.WriteLine();
        Console.WriteLine("| config | workers | placements/s | decision p50 (µs per job) | decision p99 (µs per job) | decision p50 per placement (µs) | commit p50 (µs) | conflict fraction | busyness useful | busyness wasted | parked jobs | others' CPU (cores) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var c in configs)
        {
            var rs = results[c];
            Console.WriteLine(FormattableString.Invariant(
                $"| {c.Name} | {c.Workers} | {Median(rs.Select(r => r.Placements / r.Seconds)):N0} | {Median(rs.Select(r => r.DecisionP50Us)):F1} | {Median(rs.Select(r => r.DecisionP99Us)):F1} | {Median(rs.Select(r => r.DecisionP50Us)) / tasks:F2} | {Median(rs.Select(r => r.CommitP50Us)):F1} | {Median(rs.Select(Fraction)):F4} | {Median(rs.Select(r => r.UsefulBusy)):P1} | {Median(rs.Select(r => r.WastedBusy)):P1} | {Median(rs.Select(r => (double)r.Parked)):F0} | {Median(rs.Select(r => r.Others)):F2} |"));
        }
        if (faster is not null)
        {
            Console.WriteLine();
            Console.WriteLine("| baseline | threads | median RMWs/s |");
            Console.WriteLine("|---|---:|---:|");
            for (int t = 1; t <= 2; t++) Console.WriteLine(FormattableString.Invariant($"| FASTER RMW | {t} | {Median(rmw[t - 1]):N0} |"));
            Console.WriteLine();
            Console.WriteLine("| config | workers | placements/s ÷ FASTER RMW/s (2 threads) |");
            Console.WriteLine("|---|---:|---:|");
            double b = Median(rmw[1]);
            foreach (var c in configs)
                Console.WriteLine(FormattableString.Invariant($"| {c.Name} | {c.Workers} | {Median(results[c].Select(r => r.Placements / r.Seconds)) / b:F3} |"));
        }
        return results.Values.Any(l => l.Any(r => r.AuditProblems > 0)) ? 1 : 0;
    }

    private static double Fraction(Rep r) => r.Clean == 0 ? 0 : (double)r.Conflicted / r.Clean;

    private static Rep RunOnce(Config c, int nodes, int jobs, int tasks, double prefill, int seed)
    {
        var cellOptions = new CellOptions { Name = "sched-bench", InitialNodeCapacity = nodes };
        if (c.SpinRounds is int spin) cellOptions.CommitLockSpinRounds = spin;
        cellOptions.PrefetchOutsideLock = c.Prefetch;
        if (c.Path is { } path) cellOptions.CommitPath = path;
        using var cell = new Cell(cellOptions);
        var capacity = ResourceVector.FromCoresAndGiB(32, 128);
        for (int i = 0; i < nodes; i++)
            cell.AddNode(new NodeSpec($"node-{i:D6}", capacity, failureDomain: $"rack-{i / 40}"));
        Prefill(cell, nodes, prefill, seed);
        for (int t = 1; t < 8; t++) cell.CreateTenant($"t{t}");   // jobs are spread over tenants 0-7, which must exist

        var options = new SchedulingOptions { Seed = seed, DecisionSampleEvery = 64 };
        options.Kinds.Add(new SchedulerKindOptions
        {
            Name = "batch", Workers = c.Workers, Mode = c.Mode, Detection = c.Detection, QueueCapacity = jobs + 16,
            MaxAttempts = 50, Preemption = false,
        });
        using var latency = new LatencyRecorder(jobs * 4);
        using var engine = new SchedulingEngine(cell, options);
        var perTask = ResourceVector.FromCoresAndGiB(0.5, 2);
        for (int j = 0; j < jobs; j++)
        {
            var r = engine.Submit(new JobSpec(new JobId(j + 1), new TenantId(j % 8), 0, tasks, perTask));
            if (r.Status != EnqueueStatus.Accepted) throw new InvalidOperationException($"submit {j}: {r.Status} {r.Reason}");
        }
        long clean0 = cell.Counters.Transactions(TransactionStatus.Committed);
        long conf0 = cell.Counters.Transactions(TransactionStatus.PartiallyCommitted) + cell.Counters.Transactions(TransactionStatus.Rejected);
        long bound0 = cell.AllocationCount;

        long contended0 = cell.CommitLockContentions;
        long blocked0 = cell.CommitLockBlocks;
        var noise = NoiseMeter.Start();
        var sw = Stopwatch.StartNew();
        engine.Start();
        // Done when every job has left the queue for good (placed or parked). The clock stops at the last placement,
        // not at the end: a job that finds no room backs off (up to a second per attempt) before it is parked, and that
        // tail measures the back-off policy, not placement throughput.
        long target = (long)jobs * tasks, lastCount = 0;
        double lastPlacementAt = 0;
        while (true)
        {
            long count = cell.AllocationCount - bound0;
            if (count != lastCount) { lastCount = count; lastPlacementAt = sw.Elapsed.TotalSeconds; }
            if (count >= target || (engine.QueueDepth("batch") == 0 && !AnyScheduling(engine, jobs))) break;
            if (sw.Elapsed.TotalSeconds - lastPlacementAt > 30) break; // nothing placed for 30 s: the rest is the tail
            Thread.Sleep(1);
        }
        sw.Stop();
        var (others, _) = noise.Stop();
        var (useful, wasted) = engine.Busyness("batch");
        var times = engine.GetWorkerTimes("batch");
        long contended = cell.CommitLockContentions - contended0;
        long blocked = cell.CommitLockBlocks - blocked0;
        var (cpuSeconds, blocks) = WorkerThreads.Read(c.Workers);
        double wall = 0, deciding = 0, committing = 0, other = 0, idle = 0;
        foreach (var t in times) { wall += t.WallSeconds; deciding += t.DecidingSeconds; committing += t.CommittingSeconds; other += t.OtherSeconds; idle += t.IdleSeconds; }
        engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        if (c.Path == CommitPath.Concurrent && cell.ConcurrentPathStats is { Serial: > 0 } stats)
            Console.Error.WriteLine($"warning: {c.Name} {c.Workers}W: {stats.Serial} of {stats.Direct + stats.Serial} cell calls took the concurrent path's serial fallback");

        long parked = 0;
        for (int j = 0; j < jobs; j++)
            if (engine.TryGetJob(new JobId(j + 1), out var s) && s.Phase == JobPhase.Parked) parked++;
        var (d50, d99) = latency.Decision();
        long cleanTx = cell.Counters.Transactions(TransactionStatus.Committed) - clean0;
        long conflictedTx = cell.Counters.Transactions(TransactionStatus.PartiallyCommitted) + cell.Counters.Transactions(TransactionStatus.Rejected) - conf0;
        double w = Math.Max(wall, 1e-9);
        return new Rep(Math.Max(lastPlacementAt, 1e-3), cell.AllocationCount - bound0, 0, cleanTx, conflictedTx,
            d50, d99, latency.CommitP50(), useful, wasted, parked, others, cell.Audit().Count)
        {
            Deciding = deciding / w, Committing = committing / w, Other = other / w, Idle = idle / w,
            CpuOverWall = cpuSeconds < 0 ? double.NaN : cpuSeconds / w,
            BlocksPerJob = blocks < 0 ? double.NaN : blocks / (double)jobs,
            ContendedPerTx = contended / (double)Math.Max(1, cleanTx + conflictedTx),
            BlockedPerTx = blocked / (double)Math.Max(1, cleanTx + conflictedTx),
        };
    }

    // Only called once the queue is empty (a few times per rep), so the scan does not compete with the workers.
    private static bool AnyScheduling(SchedulingEngine engine, int jobs)
    {
        for (int j = 1; j <= jobs; j++)
            if (engine.TryGetJob(new JobId(j), out var s) && s.Phase is JobPhase.Queued or JobPhase.Scheduling) return true;
        return false;
    }

    /// <summary>Fills every node to about <paramref name="prefill"/> of its CPU with long-running 1-core tasks, directly.</summary>
    private static void Prefill(Cell cell, int nodes, double prefill, int seed)
    {
        if (prefill <= 0) return;
        var lease = cell.AcquireLease("prefill", TimeSpan.FromHours(1)).Lease;
        var rng = new Random(seed);
        var task = ResourceVector.FromCoresAndGiB(1, 4);
        var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine, 64);
        var snap = cell.Snapshot();
        int perNode = (int)(32 * prefill);
        int index = 0;
        for (int n = 0; n < nodes; n++)
        {
            int count = Math.Max(0, perNode + rng.Next(-2, 3));
            snap.TryGetNode(new NodeId(n), out var view);
            tx.Reset(lease, CommitMode.Incremental, ConflictDetection.Fine);
            for (int k = 0; k < count; k++) tx.Add(new TaskId(new JobId(-1), index++), view, task);
            if (count > 0) cell.Commit(tx);
        }
        cell.ReleaseLease(lease);
    }

    /// <summary>
    /// The engine's worker threads (named omega-batch-N) as the kernel sees them: CPU seconds (utime + stime, clock ticks
    /// of 10 ms) and voluntary context switches (the thread blocked: a lock wait in the kernel, a sleep), summed over the
    /// workers. Linux only; (-1, -1) elsewhere. Read while the threads are alive, so the totals cover the whole rep.
    /// </summary>
    private static class WorkerThreads
    {
        public static (double CpuSeconds, long VoluntarySwitches) Read(int workers)
        {
            try
            {
                double cpu = 0;
                long switches = 0;
                int found = 0;
                foreach (var dir in Directory.GetDirectories("/proc/self/task"))
                {
                    string comm = File.ReadAllText(Path.Combine(dir, "comm")).Trim();
                    if (!comm.StartsWith("omega-batch-", StringComparison.Ordinal)) continue;
                    found++;
                    // stat: "pid (comm) state ... utime stime" — fields 14 and 15, counted after the closing parenthesis.
                    string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                    var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                    cpu += (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / 100.0;
                    foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                        if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal))
                            switches += long.Parse(line.AsSpan("voluntary_ctxt_switches:".Length).Trim(), CultureInfo.InvariantCulture);
                }
                return found == workers ? (cpu, switches) : (-1, -1);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                return (-1, -1);
            }
        }
    }

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>
    /// Listens to the engine's decision and commit histograms (the same instruments dotnet-counters reads) and keeps
    /// every value in preallocated arrays, so the percentiles are exact and listening costs an interlocked increment.
    /// </summary>
    private sealed class LatencyRecorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly double[] _decision, _commit;
        private int _nd, _nc;

        public LatencyRecorder(int capacity)
        {
            _decision = new double[capacity];
            _commit = new double[capacity];
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == SchedulingMetrics.MeterName
                    && instrument.Name is "omega.sched.decision.duration" or "omega.sched.commit.duration")
                    l.EnableMeasurementEvents(instrument, instrument.Name == "omega.sched.decision.duration" ? _decision : _commit);
            };
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, state) =>
            {
                var target = (double[])state!;
                int i = Interlocked.Increment(ref target == _decision ? ref _nd : ref _nc) - 1;
                if (i < target.Length) target[i] = value;
            });
            _listener.Start();
        }

        public (double P50Us, double P99Us) Decision() => (Percentile(_decision, _nd, 0.5), Percentile(_decision, _nd, 0.99));

        public double CommitP50() => Percentile(_commit, _nc, 0.5);

        private static double Percentile(double[] values, int count, double p)
        {
            int n = Math.Min(count, values.Length);
            if (n == 0) return double.NaN;
            var copy = values.AsSpan(0, n).ToArray();
            Array.Sort(copy);
            return copy[Math.Min(n - 1, (int)(p * n))] * 1e6;
        }

        public void Dispose() => _listener.Dispose();
    }
}
