using System.Globalization;
using System.Runtime.CompilerServices;
using Omega.Cells;

namespace Omega.Benchmarks;

/// <summary>
/// <c>alloc [--ops N]</c>: bytes allocated per operation on each commit-path step, measured with
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> after a warm-up, so an allocation can be pinned to one step
/// (snapshot, read, commit in each mode, release, rejection paths, idempotency keys) rather than to a whole benchmark.
/// </summary>
/// <remarks>
/// The warm-up runs the same step first, so one-time costs (lazily created per-node sets, dictionary growth to the
/// steady size, tiered JIT) are excluded; what remains is what every operation pays in the steady state.
/// </remarks>
internal static class AllocationProbe
{
    private const int GangSize = 8;

    public static int Run(string[] args)
    {
        int ops = 200_000;
        if (args.Length == 2 && args[0] == "--ops") ops = int.Parse(args[1], CultureInfo.InvariantCulture);
        else if (args.Length != 0)
        {
            Console.Error.WriteLine("usage: alloc [--ops N]");
            return 2;
        }

        Console.WriteLine($"# allocation per operation, {ops:N0} measured ops after {ops:N0} warm-up ops, 10,000 nodes");
        // Sizes that explain the growth rows: the cell keeps a Dictionary<TaskId, Allocation> and a HashSet<TaskId> per node.
        Console.WriteLine($"# sizeof: Allocation {Unsafe.SizeOf<Allocation>()} B, TaskId {Unsafe.SizeOf<TaskId>()} B, Claim {Unsafe.SizeOf<Claim>()} B, ResourceVector {Unsafe.SizeOf<ResourceVector>()} B");
        Console.WriteLine();
        Console.WriteLine("| step | bytes/op |");
        Console.WriteLine("|---|---:|");
        foreach (var detection in new[] { ConflictDetection.Fine, ConflictDetection.Coarse })
        {
            Report($"single-claim Incremental {detection}: commit + release", ops, new Probe(detection).CommitThenRelease);
            var regrown = new Probe(detection);
            Report($"single-claim Incremental {detection}: commit alone (cell already grown to this size once)", ops, regrown.CommitAlone, regrown.GrowThenEmpty(ops));
            Report($"single-claim Incremental {detection}: commit alone into a growing cell (200k→400k tasks)", ops, new Probe(detection).CommitAloneGrowing);
            Report($"8-claim AllOrNothing {detection}: commit + 8 releases", ops / GangSize, new Probe(detection).GangThenRelease);
        }
        Report("release alone", ops, new Probe(ConflictDetection.Fine).ReleaseAlone);
        Report("snapshot acquisition", ops, new Probe(ConflictDetection.Fine).SnapshotOnly);
        Report("snapshot + TryGetNode", ops, new Probe(ConflictDetection.Fine).SnapshotAndRead);
        Report("single-claim rejected (InsufficientResources)", ops, new Probe(ConflictDetection.Fine).RejectedForFit);
        Report("8-claim AllOrNothing rolled back at claim 8", ops / GangSize, new Probe(ConflictDetection.Fine).GangRolledBack);
        Report("single-claim with stale fencing token", ops, new Probe(ConflictDetection.Fine).StaleToken);
        Report("single-claim with idempotency key: commit + release (index growing, default retention 1M)", ops, new Probe(ConflictDetection.Fine).KeyedCommitThenRelease);
        Report("8-claim AllOrNothing with idempotency key: commit + 8 releases (index growing)", ops / GangSize, new Probe(ConflictDetection.Fine).KeyedGangThenRelease);
        Report("single-claim with idempotency key: commit + release (index full, retention 10k)", ops, new Probe(ConflictDetection.Fine, 10_000).KeyedCommitThenRelease);
        Report("8-claim AllOrNothing with idempotency key: commit + 8 releases (index full, retention 10k)", ops / GangSize, new Probe(ConflictDetection.Fine, 10_000).KeyedGangThenRelease);
        Report("replay of a known idempotency key (single claim)", ops, new Probe(ConflictDetection.Fine).KeyedReplay);
        return 0;
    }

    private static void Report(string name, int ops, Action step, Action? warmUp = null)
    {
        // Each Probe owns its cell, so a separate warm-up action must act on the same probe: see CommitAlone.
        for (int i = 0; i < ops; i++) (warmUp ?? step)();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < ops; i++) step();
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        Console.WriteLine(FormattableString.Invariant($"| {name} | {bytes / (double)ops:0.##} |"));
    }

    /// <summary>One fresh cell per probe, so the probes do not see each other's state.</summary>
    private sealed class Probe
    {
        private readonly BenchCell _f;
        private readonly ConflictDetection _detection;
        private readonly Transaction _tx;
        private readonly TaskId[] _gang = new TaskId[GangSize];
        private readonly Queue<TaskId> _bound = new(1 << 20);
        private int _cursor;
        private long _job;

        public Probe(ConflictDetection detection, int idempotencyRetention = 1_000_000)
        {
            _f = new BenchCell(idempotencyRetention: idempotencyRetention);
            _detection = detection;
            _tx = new Transaction(_f.Lease, initialCapacity: GangSize);
        }

        private int NextNode()
        {
            int i = _cursor;
            _cursor = i + 1 == _f.NodeCount ? 0 : i + 1;
            return _f.Order[i];
        }

        private TaskId CommitOne(IdempotencyKey key = default)
        {
            int node = NextNode();
            var task = new TaskId(++_job, 0);
            _tx.Reset(_f.Lease, CommitMode.Incremental, _detection, key);
            _tx.Add(new Claim(task, new NodeId(node), BenchCell.TaskRequest, _f.ExpectedVersion[node]));
            if (_f.Cell.Commit(_tx).Status != TransactionStatus.Committed) throw new InvalidOperationException("commit failed");
            _f.ExpectedVersion[node]++;
            return task;
        }

        public void CommitThenRelease() => _f.Cell.Release(CommitOne());

        // Commit alone, the way CommitOnlyBenchmarks measures it: the cell has held this many tasks before (the containers
        // have grown), they were released, and now the same number is committed again.
        public void CommitAlone() => _bound.Enqueue(CommitOne());

        /// <summary>Warm-up for <see cref="CommitAlone"/>: commit as many tasks as the measured phase will, then release them all.</summary>
        public Action GrowThenEmpty(int ops)
        {
            int grown = 0;
            return () =>
            {
                _bound.Enqueue(CommitOne());
                if (++grown == ops) while (_bound.Count > 0) _f.Cell.Release(_bound.Dequeue());
            };
        }

        // Commit into a cell that keeps growing: every measured commit is a new high-water mark, so the containers resize.
        public void CommitAloneGrowing() => _bound.Enqueue(CommitOne());

        public void ReleaseAlone()
        {
            // Warm-up and measured phase both alternate: the bind happens in one call, the release in the next.
            if (_bound.Count == 0) _bound.Enqueue(CommitOne());
            else _f.Cell.Release(_bound.Dequeue());
        }

        public void GangThenRelease() => Gang(default, release: true);

        public void KeyedGangThenRelease() => Gang(new IdempotencyKey(1, (ulong)(_job + 1)), release: true);

        private void Gang(IdempotencyKey key, bool release)
        {
            long job = ++_job;
            _tx.Reset(_f.Lease, CommitMode.AllOrNothing, _detection, key);
            for (int i = 0; i < GangSize; i++)
            {
                int node = NextNode();
                _gang[i] = new TaskId(job, i);
                _tx.Add(new Claim(_gang[i], new NodeId(node), BenchCell.TaskRequest, _f.ExpectedVersion[node]));
            }
            if (_f.Cell.Commit(_tx).Status != TransactionStatus.Committed) throw new InvalidOperationException("gang commit failed");
            foreach (ref readonly var c in _tx.Claims) _f.ExpectedVersion[c.Node.Value]++;
            if (release) foreach (var t in _gang) _f.Cell.Release(t);
        }

        // Results go to a field, not GC.KeepAlive(object), which would box the long and report 24 bytes of our own.
        private long _sink;

        public long Sink => _sink;

        public void SnapshotOnly() => _sink += _f.Cell.Snapshot().Version;

        public void SnapshotAndRead()
        {
            var snap = _f.Cell.Snapshot();
            snap.TryGetNode(new NodeId(NextNode()), out var view);
            _sink += view.Version;
        }

        public void RejectedForFit()
        {
            var task = new TaskId(++_job, 0);
            _tx.Reset(_f.Lease);
            _tx.Add(new Claim(task, new NodeId(NextNode()), BenchCell.NodeCapacity + BenchCell.TaskRequest, 0));
            if (_f.Cell.Commit(_tx).Status != TransactionStatus.Rejected) throw new InvalidOperationException("expected a rejection");
        }

        public void GangRolledBack()
        {
            long job = ++_job;
            _tx.Reset(_f.Lease, CommitMode.AllOrNothing, ConflictDetection.Fine);
            for (int i = 0; i < GangSize; i++)
            {
                // The last claim cannot fit, so the first seven are applied and then undone.
                var request = i == GangSize - 1 ? BenchCell.NodeCapacity + BenchCell.TaskRequest : BenchCell.TaskRequest;
                _tx.Add(new Claim(new TaskId(job, i), new NodeId(NextNode()), request, 0));
            }
            if (_f.Cell.Commit(_tx).Status != TransactionStatus.Rejected) throw new InvalidOperationException("expected a rollback");
        }

        private SchedulerLease? _stale;

        public void StaleToken()
        {
            if (_stale is null)
            {
                // Acquire an identity twice after its first lease was released: the first token is then stale.
                var first = _f.Cell.AcquireLease("stale-probe", TimeSpan.FromDays(1)).Lease;
                _f.Cell.ReleaseLease(first);
                _f.Cell.AcquireLease("stale-probe", TimeSpan.FromDays(1));
                _stale = first;
            }
            _tx.Reset(_stale.Value);
            _tx.Add(new Claim(new TaskId(++_job, 0), new NodeId(NextNode()), BenchCell.TaskRequest, 0));
            if (_f.Cell.Commit(_tx).Status != TransactionStatus.StaleFencingToken) throw new InvalidOperationException("expected a stale token");
        }

        public void KeyedCommitThenRelease() => _f.Cell.Release(CommitOne(new IdempotencyKey(1, (ulong)(_job + 1))));

        private TaskId _replayTask;

        public void KeyedReplay()
        {
            var key = new IdempotencyKey(2, 2);
            if (_replayTask == default)
            {
                _replayTask = new TaskId(long.MaxValue, 0);
                _tx.Reset(_f.Lease, CommitMode.Incremental, ConflictDetection.Fine, key);
                _tx.Add(new Claim(_replayTask, new NodeId(0), BenchCell.TaskRequest, 0));
                _f.Cell.Commit(_tx);
            }
            _tx.Reset(_f.Lease, CommitMode.Incremental, ConflictDetection.Fine, key);
            _tx.Add(new Claim(_replayTask, new NodeId(0), BenchCell.TaskRequest, 0));
            if (!_f.Cell.Commit(_tx).Replayed) throw new InvalidOperationException("expected a replay");
        }
    }
}
