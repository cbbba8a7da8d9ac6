using System.Diagnostics;
using Omega.Cells;

namespace Omega.Benchmarks.Throughput;

/// <summary>The shapes of embedded commit loop that the throughput mode measures.</summary>
internal enum EngineScenario
{
    /// <summary>One claim per transaction, Incremental, Fine; the node is chosen at random without reading it.</summary>
    SingleClaimFine,

    /// <summary>
    /// One claim per transaction, Incremental, Coarse, made the way a worker makes it: take a snapshot, read the random
    /// node, claim it with the version seen. Conflicts between threads show up as NodeVersionChanged.
    /// </summary>
    SingleClaimCoarseWithSnapshot,

    /// <summary>Eight claims per transaction on eight random nodes, Incremental, Fine: batching amortizes the lock and the header.</summary>
    Batch8Fine,
}

/// <summary>
/// Embedded commit throughput: N threads, each with its own scheduler lease and one reusable <see cref="Transaction"/>,
/// commit onto randomly chosen nodes of a 10,000-node cell and release their oldest tasks so the cell stays at a steady
/// utilization. Every loop iteration is one commit plus the releases that make room for it; the rates include both.
/// </summary>
internal static class EngineThroughput
{
    public static RunResult Run(EngineScenario scenario, int threads, TimeSpan duration, int nodeCount, double utilization, int seed,
        CommitPath commitPath = CommitPath.Combining, int? commitLockSpinRounds = null, bool prefetchOutsideLock = true)
    {
        using var fixture = new BenchCell(nodeCount, seed, commitPath: commitPath, commitLockSpinRounds: commitLockSpinRounds, prefetchOutsideLock: prefetchOutsideLock);
        int claimsPerTx = scenario == EngineScenario.Batch8Fine ? 8 : 1;
        // Resident tasks per thread so the whole cell sits at the target utilization (of 64 task slots per node).
        int resident = (int)(nodeCount * (long)BenchCell.TasksPerNode * utilization / threads);

        var counts = new long[threads];
        var applied = new long[threads];
        var rejected = new long[threads];
        var elapsed = new long[threads];
        using var ready = new Barrier(threads + 1);
        var stop = new StopFlag();
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            var granted = fixture.Cell.AcquireLease($"worker-{me}", TimeSpan.FromDays(1));
            if (!granted.Succeeded) throw new InvalidOperationException($"lease refused: {granted.Status}");
            var worker = new Worker(fixture.Cell, granted.Lease, scenario, claimsPerTx, resident, me, seed);
            workers[t] = new Thread(() =>
            {
                // Fill to the steady state (untimed); this also brings the JIT to its final tier for the loop.
                worker.Fill();
                ready.SignalAndWait();
                long start = Stopwatch.GetTimestamp();
                worker.RunUntil(stop);
                elapsed[me] = Stopwatch.GetTimestamp() - start;
                counts[me] = worker.Transactions;
                applied[me] = worker.Applied;
                rejected[me] = worker.Rejected;
            }) { IsBackground = true, Name = $"engine-{me}" };
        }
        foreach (var w in workers) w.Start();
        ready.SignalAndWait();
        Thread.Sleep(duration);
        stop.Set();
        foreach (var w in workers) w.Join();

        // The concurrent path serves an eligible call directly; a serial fallback here would mean the case measures
        // something else (the bench cell has no journal, listener, quota, key or reservation, so there should be none).
        if (commitPath == CommitPath.Concurrent && fixture.Cell.ConcurrentPathStats is { Serial: > 0 } stats)
            Console.Error.WriteLine($"warning: {stats.Serial} of {stats.Direct + stats.Serial} calls took the concurrent path's serial fallback");
        var problems = fixture.Cell.Audit();
        if (problems.Count > 0) throw new InvalidOperationException($"cell invariants broken after the run: {problems[0]}");
        return RunResult.From(counts, elapsed, claimsPerTx, rejected.Sum(), applied);
    }

    /// <summary>One thread's loop state: its lease, its transaction and a FIFO of the tasks it holds.</summary>
    private sealed class Worker
    {
        private readonly Cell _cell;
        private readonly SchedulerLease _lease;
        private readonly EngineScenario _scenario;
        private readonly int _claimsPerTx;
        private readonly int _resident;
        private readonly int _id;
        private readonly Transaction _tx;
        private readonly TaskId[] _held;
        private readonly long _mask;
        private readonly int _nodeCount;
        private XorShift _rng;
        private long _head, _tail, _nextJob;

        public Worker(Cell cell, SchedulerLease lease, EngineScenario scenario, int claimsPerTx, int resident, int id, int seed)
        {
            _cell = cell;
            _lease = lease;
            _scenario = scenario;
            _claimsPerTx = claimsPerTx;
            _resident = resident;
            _id = id;
            _tx = new Transaction(lease, initialCapacity: claimsPerTx);
            // A power-of-two ring, so wrapping is a mask rather than a division on every commit and release.
            _held = new TaskId[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)(resident + claimsPerTx))];
            _mask = _held.Length - 1;
            _nodeCount = cell.NodeCount;
            _rng = new XorShift(seed * 104_729L + id + 1);
        }

        public long Transactions { get; private set; }

        public long Applied { get; private set; }

        public long Rejected { get; private set; }

        public void Fill()
        {
            while (_tail - _head < _resident) CommitOne();
            Transactions = Applied = Rejected = 0;
        }

        public void RunUntil(StopFlag stop)
        {
            while (!stop.IsSet)
            {
                // Make room first (release the oldest), so the cell's utilization stays where Fill put it.
                while (_tail - _head > _resident - _claimsPerTx)
                    _cell.Release(_held[_head++ & _mask]);
                CommitOne();
            }
        }

        private void CommitOne()
        {
            long job = ++_nextJob;
            if (_scenario == EngineScenario.SingleClaimCoarseWithSnapshot)
            {
                int node = _rng.NextBelow(_nodeCount);
                var snap = _cell.Snapshot();
                if (snap.TryGetNode(new NodeId(node), out var view) != SnapshotRead.Ok) { Rejected++; return; }
                _tx.Reset(_lease, CommitMode.Incremental, ConflictDetection.Coarse);
                _tx.Add(new TaskId(job, _id), view, BenchCell.TaskRequest);
            }
            else
            {
                _tx.Reset(_lease, CommitMode.Incremental, ConflictDetection.Fine);
                for (int i = 0; i < _claimsPerTx; i++)
                {
                    int node = _rng.NextBelow(_nodeCount);
                    // Task ids: the job is this worker's sequence number, the index says which worker and which claim.
                    _tx.Add(new Claim(new TaskId(job, _id * 8 + i), new NodeId(node), BenchCell.TaskRequest, 0));
                }
            }
            var result = _cell.Commit(_tx);
            Transactions++;
            if (result.Status == TransactionStatus.Committed)
            {
                foreach (ref readonly var c in _tx.Claims) _held[_tail++ & _mask] = c.Task;
                Applied += _claimsPerTx;
                return;
            }
            var claims = _tx.Claims;
            var statuses = result.ClaimStatuses.Span;
            for (int i = 0; i < claims.Length; i++)
            {
                if (statuses[i] == ClaimStatus.Applied) { _held[_tail++ & _mask] = claims[i].Task; Applied++; }
                else Rejected++;
            }
        }
    }
}
