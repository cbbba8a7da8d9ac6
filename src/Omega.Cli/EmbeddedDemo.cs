using System.Diagnostics;
using Omega.Cells;

namespace Omega.Cli;

/// <summary>
/// The embedded demo workload: N workers, each with its own scheduler lease, place small tasks on a shared cell by
/// sampling two nodes from a snapshot (power-of-two choices), commit optimistic transactions, re-sync on conflict, and
/// release their oldest tasks to hold the cell near a target utilization. It exercises the real commit path; the full
/// scheduling pipeline (queues, filters, scorers) is Omega.Scheduling's job.
/// </summary>
internal static class EmbeddedDemo
{
    public sealed record Options(int Nodes, int Workers, TimeSpan Duration, int Batch, ConflictDetection Detection, CommitMode Mode, double Utilization, int Seed);

    public sealed record Result(long Placements, long Transactions, long ConflictedTransactions, long CleanTransactions, long ConflictedClaims, long Claims,
        double Seconds, double Utilization, IReadOnlyList<string> AuditProblems)
    {
        public double PlacementsPerSecond => Placements / Seconds;

        /// <summary>The Omega paper's conflict fraction: transactions with any conflict / transactions with none.</summary>
        public double ConflictFraction => CleanTransactions == 0 ? 0 : (double)ConflictedTransactions / CleanTransactions;
    }

    // Node shape and task sizes: 32 cores / 128 GiB machines, tasks of 0.25-2 cores and 0.5-8 GiB.
    private static readonly ResourceVector NodeCapacity = ResourceVector.FromCoresAndGiB(32, 128);

    public static Result Run(Options o, TextWriter output)
    {
        output.WriteLine($"omega demo: {o.Nodes:N0} nodes, {o.Workers} workers, {o.Mode}+{o.Detection}, batch {o.Batch}, {o.Duration.TotalSeconds:0.#} s, seed {o.Seed}");
        using var cell = new Cell(new CellOptions { Name = "demo", InitialNodeCapacity = o.Nodes });
        for (int i = 0; i < o.Nodes; i++)
            cell.AddNode(new NodeSpec($"node-{i:D6}", NodeCapacity, failureDomain: $"rack-{i / 40}"));

        // Hold enough live tasks per worker to keep the cell near the target utilization (mean task: 1.125 cores).
        long targetLive = (long)(o.Nodes * 32.0 * o.Utilization / 1.125);
        int perWorker = (int)Math.Max(1, targetLive / o.Workers);

        var stats = new WorkerStats[o.Workers];
        using var stop = new CancellationTokenSource();
        var threads = new Thread[o.Workers];
        using var ready = new Barrier(o.Workers + 1);
        for (int w = 0; w < o.Workers; w++)
        {
            int id = w;
            stats[id] = new WorkerStats();
            threads[w] = new Thread(() => Worker(cell, o, id, perWorker, stats[id], ready, stop.Token)) { IsBackground = true, Name = $"omega-worker-{w}" };
            threads[w].Start();
        }
        ready.SignalAndWait();
        var sw = Stopwatch.StartNew();
        long lastPlacements = 0;
        double lastT = 0;
        while (true)
        {
            var remaining = o.Duration - sw.Elapsed;
            if (remaining < TimeSpan.FromMilliseconds(50)) break;
            // The demo's own progress loop; the engine has no timers or threads of its own.
            Thread.Sleep(remaining < TimeSpan.FromSeconds(1) ? remaining : TimeSpan.FromSeconds(1));
            long p = 0;
            foreach (var s in stats) p += Volatile.Read(ref s.Placements);
            double t = sw.Elapsed.TotalSeconds;
            output.WriteLine($"  t={t,5:0.0}s  placements/s={(p - lastPlacements) / (t - lastT),12:N0}  cell v{cell.Version:N0}");
            lastPlacements = p;
            lastT = t;
        }
        stop.Cancel();
        foreach (var t in threads) t.Join();
        double secs = sw.Elapsed.TotalSeconds;

        long placements = 0, txns = 0, conflicted = 0, clean = 0, conflictedClaims = 0, claims = 0;
        foreach (var s in stats)
        {
            placements += s.Placements; txns += s.Transactions; conflicted += s.ConflictedTransactions;
            clean += s.CleanTransactions; conflictedClaims += s.ConflictedClaims; claims += s.Claims;
        }
        var snap = cell.Snapshot();
        double usedCpu = 0, capCpu = 0;
        for (int i = 0; i < snap.NodeCount; i++)
            if (snap.TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok) { usedCpu += v.Allocated.CpuMillis; capCpu += v.Capacity.CpuMillis; }
        var audit = cell.Audit();
        var result = new Result(placements, txns, conflicted, clean, conflictedClaims, claims, secs, usedCpu / capCpu, audit);

        output.WriteLine();
        output.WriteLine($"placements/s          {result.PlacementsPerSecond,14:N0}   ({placements:N0} placements in {secs:0.0} s)");
        output.WriteLine($"transactions/s        {txns / secs,14:N0}   ({o.Batch} claims each)");
        output.WriteLine($"conflict fraction     {result.ConflictFraction,14:0.0000}   (transactions with a conflict / without; Omega paper §5)");
        output.WriteLine($"conflicted claims     {(claims == 0 ? 0 : (double)conflictedClaims / claims),14:P3}");
        output.WriteLine($"cpu utilization       {result.Utilization,14:P1}");
        output.WriteLine($"live bindings         {cell.AllocationCount,14:N0}");
        output.WriteLine($"invariants            {(audit.Count == 0 ? "ok: no node over capacity, no task bound twice" : $"VIOLATED: {string.Join("; ", audit.Take(5))}")}");
        return result;
    }

    private sealed class WorkerStats
    {
        public long Placements, Transactions, ConflictedTransactions, CleanTransactions, ConflictedClaims, Claims;
    }

    private static void Worker(Cell cell, Options o, int id, int liveTarget, WorkerStats stats, Barrier ready, CancellationToken stop)
    {
        var rng = new Random(HashCode.Combine(o.Seed, id));
        var lease = cell.AcquireLease($"demo-worker-{id}", TimeSpan.FromMinutes(10)).Lease;
        var tx = new Transaction(lease, o.Mode, o.Detection, o.Batch);
        var live = new Queue<TaskId>(liveTarget + o.Batch);
        var pending = new Queue<(TaskId Task, ResourceVector Req)>();
        long nextJob = ((long)id << 40) + 1;
        int nodes = o.Nodes;
        ready.SignalAndWait(CancellationToken.None);
        while (!stop.IsCancellationRequested)
        {
            // Completions: release the oldest tasks beyond the target.
            while (live.Count > liveTarget) cell.Release(live.Dequeue());

            // Fill a batch: retries first, then new tasks.
            while (pending.Count < o.Batch)
            {
                var req = new ResourceVector(250L * rng.Next(1, 9), 512L * 1024 * 1024 * rng.Next(1, 17));
                pending.Enqueue((new TaskId(nextJob++, 0), req));
            }

            var snap = cell.Snapshot();
            tx.Reset(lease, o.Mode, o.Detection);
            int batchCount = 0;
            while (batchCount < o.Batch && pending.Count > 0)
            {
                var (task, req) = pending.Dequeue();
                batchCount++;
                // Power-of-two choices on the snapshot, a few rounds if both candidates are full.
                NodeView best = default;
                bool found = false;
                for (int round = 0; round < 4 && !found; round++)
                {
                    for (int k = 0; k < 2; k++)
                    {
                        if (snap.TryGetNode(new NodeId(rng.Next(nodes)), out var v) != SnapshotRead.Ok || !v.IsSchedulable || !v.Fits(req)) continue;
                        if (!found || v.Free.CpuMillis > best.Free.CpuMillis) { best = v; found = true; }
                    }
                }
                if (found) tx.Add(task, best, req);
                else tx.Add(new Claim(task, new NodeId(rng.Next(nodes)), req, -1)); // let the commit say why it does not fit
            }

            var r = cell.Commit(tx);
            stats.Transactions++;
            stats.Claims += tx.Count;
            bool anyConflict = false;
            var claims = tx.Claims;
            var statuses = r.ClaimStatuses.Span;
            for (int i = 0; i < claims.Length; i++)
            {
                if (statuses[i] == ClaimStatus.Applied)
                {
                    live.Enqueue(claims[i].Task);
                    continue;
                }
                anyConflict = true;
                stats.ConflictedClaims++;
                pending.Enqueue((claims[i].Task, claims[i].Resources)); // re-sync and retry on the next snapshot
            }
            if (anyConflict) stats.ConflictedTransactions++; else stats.CleanTransactions++;
            Volatile.Write(ref stats.Placements, stats.Placements + r.AppliedCount);
            if (r.Status.IsFencingFailure()) lease = cell.AcquireLease(lease.Name, TimeSpan.FromMinutes(10)).Lease;
        }
        cell.ReleaseLease(lease);
    }
}
