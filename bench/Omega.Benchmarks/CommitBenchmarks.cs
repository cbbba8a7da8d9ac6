using BenchmarkDotNet.Attributes;
using Omega.Cells;

namespace Omega.Benchmarks;

/// <summary>
/// Commit paths on a cell of 10,000 nodes, each measured as a commit followed by the release of what it bound, so the
/// cell stays empty and every operation sees the same state. The commit alone and the release alone are measured in
/// <see cref="CommitOnlyBenchmarks"/>; the names here say "ThenRelease" because the time includes both.
/// </summary>
/// <remarks>
/// Budget (design.md §10): ~2 µs of one core per placement, and 0 bytes. The commit is one step of a placement (the
/// decision, the commit-log append and the publication share the rest), and with the cell's single commit lock the
/// commit's critical section is serial across cores: 1M placements/s means at most ~1 µs of lock hold per placement in
/// total. The per-benchmark budgets below are this report's split of that.
/// </remarks>
[MemoryDiagnoser]
[MedianColumn]
public class CommitBenchmarks
{
    private const int GangSize = 8;

    private BenchCell _fixture = null!;
    private Transaction _tx = null!;
    private int _cursor;
    private long _nextJob;
    private readonly TaskId[] _gangTasks = new TaskId[GangSize];

    [Params(ConflictDetection.Fine, ConflictDetection.Coarse)]
    public ConflictDetection Detection { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new BenchCell();
        _tx = new Transaction(_fixture.Lease, initialCapacity: GangSize);
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    /// <summary>
    /// One single-claim Incremental commit plus the release of that task. Budget: commit ≤ 500 ns, release ≤ 300 ns, so the
    /// pair ≤ 800 ns; 0 B (issue 2's target for the incremental single-claim path).
    /// </summary>
    [Benchmark(Baseline = true)]
    public TransactionStatus SingleClaimCommitThenRelease()
    {
        int node = NextNode();
        var task = new TaskId(++_nextJob, 0);
        _tx.Reset(_fixture.Lease, CommitMode.Incremental, Detection);
        _tx.Add(new Claim(task, new NodeId(node), BenchCell.TaskRequest, _fixture.ExpectedVersion[node]));
        var result = _fixture.Cell.Commit(_tx);
        if (result.Status != TransactionStatus.Committed) throw new InvalidOperationException($"commit failed: {result}");
        _fixture.ExpectedVersion[node]++;
        _fixture.Cell.Release(task);
        return result.Status;
    }

    /// <summary>
    /// What a worker does per placement, minus the decision: take a snapshot, read the chosen node, claim it with the
    /// version it saw, commit, then (benchmark bookkeeping) release. Budget: ≤ 1 µs, 0 B.
    /// </summary>
    [Benchmark]
    public TransactionStatus SnapshotReadSingleClaimCommitThenRelease()
    {
        int node = NextNode();
        var snap = _fixture.Cell.Snapshot();
        if (snap.TryGetNode(new NodeId(node), out var view) != SnapshotRead.Ok) throw new InvalidOperationException("node unreadable");
        var task = new TaskId(++_nextJob, 0);
        _tx.Reset(_fixture.Lease, CommitMode.Incremental, Detection);
        _tx.Add(task, view, BenchCell.TaskRequest);
        var result = _fixture.Cell.Commit(_tx);
        if (result.Status != TransactionStatus.Committed) throw new InvalidOperationException($"commit failed: {result}");
        _fixture.ExpectedVersion[node]++;
        _fixture.Cell.Release(task);
        return result.Status;
    }

    /// <summary>
    /// An 8-claim AllOrNothing (gang) commit across 8 distinct nodes, then the release of its 8 tasks. Budget: 8
    /// placements, so ≤ 8 × 800 ns = 6.4 µs for the commit plus releases, 0 B.
    /// </summary>
    [Benchmark]
    public TransactionStatus GangOf8CommitThenRelease()
    {
        long job = ++_nextJob;
        _tx.Reset(_fixture.Lease, CommitMode.AllOrNothing, Detection);
        for (int i = 0; i < GangSize; i++)
        {
            int node = NextNode();
            var task = new TaskId(job, i);
            _gangTasks[i] = task;
            _tx.Add(new Claim(task, new NodeId(node), BenchCell.TaskRequest, _fixture.ExpectedVersion[node]));
        }
        var result = _fixture.Cell.Commit(_tx);
        if (result.Status != TransactionStatus.Committed) throw new InvalidOperationException($"gang commit failed: {result}");
        foreach (ref readonly var c in _tx.Claims) _fixture.ExpectedVersion[c.Node.Value]++;
        for (int i = 0; i < GangSize; i++) _fixture.Cell.Release(_gangTasks[i]);
        return result.Status;
    }

    private int NextNode()
    {
        int i = _cursor;
        _cursor = i + 1 == _fixture.NodeCount ? 0 : i + 1;
        return _fixture.Order[i];
    }
}
