using Omega.Cells;

namespace Omega.Benchmarks;

/// <summary>
/// The shared fixture of the cell benchmarks: a cell of <see cref="DefaultNodeCount"/> identical nodes, one scheduler lease
/// and a fixed random visiting order of the nodes.
/// </summary>
/// <remarks>
/// Benchmarks walk the nodes in a shuffled order instead of 0, 1, 2, ... so that consecutive operations touch unrelated
/// cache lines, as random placements do; a sequential walk would let the hardware prefetcher hide the memory cost that a
/// real scheduler pays. The order is seeded, so every run measures the same access pattern.
/// </remarks>
public sealed class BenchCell : IDisposable
{
    /// <summary>The cell size of issue 2's benchmarks.</summary>
    public const int DefaultNodeCount = 10_000;

    /// <summary>What one benchmark task asks for: 1 core and 2 GiB, so a node holds 64 of them.</summary>
    public static readonly ResourceVector TaskRequest = ResourceVector.FromCoresAndGiB(1, 2);

    /// <summary>A node: 64 cores and 256 GiB (more than any benchmark keeps resident on one node).</summary>
    public static readonly ResourceVector NodeCapacity = ResourceVector.FromCoresAndGiB(64, 256);

    /// <summary>Tasks of <see cref="TaskRequest"/> that fit on one node.</summary>
    public const int TasksPerNode = 64;

    public BenchCell(int nodeCount = DefaultNodeCount, int seed = 42, int idempotencyRetention = 1_000_000, CommitPath commitPath = CommitPath.Combining,
        int? commitLockSpinRounds = null, bool prefetchOutsideLock = true)
    {
        // Leases are checked on every commit, so give the benchmark's lease a lifetime longer than any run.
        var options = new CellOptions { Name = "bench", InitialNodeCapacity = nodeCount, IdempotencyRetention = idempotencyRetention, CommitPath = commitPath };
        if (commitLockSpinRounds is int spin) options.CommitLockSpinRounds = spin; // null: the cell's default
        options.PrefetchOutsideLock = prefetchOutsideLock;
        Cell = new Cell(options);
        for (int i = 0; i < nodeCount; i++)
            Cell.AddNode(new NodeSpec($"node-{i:D6}", NodeCapacity, failureDomain: $"rack-{i % 100}"));
        var granted = Cell.AcquireLease("bench-scheduler", TimeSpan.FromDays(1));
        if (!granted.Succeeded) throw new InvalidOperationException($"lease refused: {granted.Status}");
        Lease = granted.Lease;

        Order = new int[nodeCount];
        for (int i = 0; i < nodeCount; i++) Order[i] = i;
        new Random(seed).Shuffle(Order);

        // Every node starts at version 1 (AddNode). Coarse claims must carry the node's current version, and the
        // benchmark is the only writer, so it can track versions itself instead of reading a snapshot per claim.
        ExpectedVersion = new long[nodeCount];
        var snap = Cell.Snapshot();
        for (int i = 0; i < nodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var view) != SnapshotRead.Ok) throw new InvalidOperationException($"node {i} unreadable");
            ExpectedVersion[i] = view.Version;
        }
    }

    public Cell Cell { get; }

    public SchedulerLease Lease { get; }

    /// <summary>A seeded random permutation of the node ids.</summary>
    public int[] Order { get; }

    /// <summary>Each node's current version, maintained by the benchmark (an applied claim bumps it; a release does not).</summary>
    public long[] ExpectedVersion { get; }

    public int NodeCount => Order.Length;

    public void Dispose() => Cell.Dispose();
}
