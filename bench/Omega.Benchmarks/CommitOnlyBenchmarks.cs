using BenchmarkDotNet.Attributes;
using Omega.Cells;

namespace Omega.Benchmarks;

// The commit and the release measured apart. BenchmarkDotNet times only the invocations: the iteration setup and
// cleanup (which undo or prepare what the invocations did) and their allocations are outside the measurement. Each
// iteration has a fixed number of invocations so the cell never fills: at most ~13 resident tasks per 64-slot node.

/// <summary>
/// A single-claim Incremental commit alone. Each invocation binds a fresh task to the next node; the iteration cleanup
/// releases them all.
/// </summary>
/// <remarks>Budget (design.md §10, this report's split of the 2 µs placement): ≤ 500 ns and 0 B.</remarks>
[MemoryDiagnoser]
[MedianColumn]
[InvocationCount(InvocationsPerIteration)]
public class CommitOnlyBenchmarks
{
    public const int InvocationsPerIteration = 131_072;

    private BenchCell _fixture = null!;
    private Transaction _tx = null!;
    private readonly TaskId[] _bound = new TaskId[InvocationsPerIteration];
    private int _boundCount;
    private int _cursor;
    private long _nextJob;

    [Params(ConflictDetection.Fine, ConflictDetection.Coarse)]
    public ConflictDetection Detection { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new BenchCell();
        _tx = new Transaction(_fixture.Lease);
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    [IterationCleanup]
    public void ReleaseAll()
    {
        for (int i = 0; i < _boundCount; i++) _fixture.Cell.Release(_bound[i]);
        _boundCount = 0;
    }

    [Benchmark]
    public TransactionStatus SingleClaimCommit()
    {
        int node = _fixture.Order[_cursor];
        _cursor = _cursor + 1 == _fixture.NodeCount ? 0 : _cursor + 1;
        var task = new TaskId(++_nextJob, 0);
        _tx.Reset(_fixture.Lease, CommitMode.Incremental, Detection);
        _tx.Add(new Claim(task, new NodeId(node), BenchCell.TaskRequest, _fixture.ExpectedVersion[node]));
        var result = _fixture.Cell.Commit(_tx);
        if (result.Status != TransactionStatus.Committed) throw new InvalidOperationException($"commit failed: {result}");
        _fixture.ExpectedVersion[node]++;
        _bound[_boundCount++] = task;
        return result.Status;
    }
}

/// <summary>
/// An 8-claim AllOrNothing (gang) commit across 8 distinct nodes, alone. The iteration cleanup releases the tasks.
/// </summary>
/// <remarks>Budget: 8 placements' share of commit, ≤ 8 × 500 ns = 4 µs, and 0 B.</remarks>
[MemoryDiagnoser]
[MedianColumn]
[InvocationCount(InvocationsPerIteration)]
public class GangCommitOnlyBenchmarks
{
    public const int GangSize = 8;
    public const int InvocationsPerIteration = 16_384;

    private BenchCell _fixture = null!;
    private Transaction _tx = null!;
    private readonly TaskId[] _bound = new TaskId[InvocationsPerIteration * GangSize];
    private int _boundCount;
    private int _cursor;
    private long _nextJob;

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

    [IterationCleanup]
    public void ReleaseAll()
    {
        for (int i = 0; i < _boundCount; i++) _fixture.Cell.Release(_bound[i]);
        _boundCount = 0;
    }

    [Benchmark]
    public TransactionStatus GangOf8Commit()
    {
        long job = ++_nextJob;
        _tx.Reset(_fixture.Lease, CommitMode.AllOrNothing, Detection);
        for (int i = 0; i < GangSize; i++)
        {
            // 10,000 is a multiple of 8, so the 8 consecutive entries of the permutation are 8 distinct nodes.
            int node = _fixture.Order[_cursor];
            _cursor = _cursor + 1 == _fixture.NodeCount ? 0 : _cursor + 1;
            _tx.Add(new Claim(new TaskId(job, i), new NodeId(node), BenchCell.TaskRequest, _fixture.ExpectedVersion[node]));
        }
        var result = _fixture.Cell.Commit(_tx);
        if (result.Status != TransactionStatus.Committed) throw new InvalidOperationException($"gang commit failed: {result}");
        foreach (ref readonly var c in _tx.Claims)
        {
            _fixture.ExpectedVersion[c.Node.Value]++;
            _bound[_boundCount++] = c.Task;
        }
        return result.Status;
    }
}

/// <summary>
/// A release alone: the iteration setup binds one task per invocation (untimed) and each invocation releases one.
/// </summary>
/// <remarks>Budget: ≤ 300 ns and 0 B (a release is a commit-lock hold too, so it spends the same serial budget).</remarks>
[MemoryDiagnoser]
[MedianColumn]
[InvocationCount(InvocationsPerIteration)]
public class ReleaseOnlyBenchmarks
{
    public const int InvocationsPerIteration = 131_072;

    private BenchCell _fixture = null!;
    private Transaction _tx = null!;
    private readonly TaskId[] _bound = new TaskId[InvocationsPerIteration];
    private int _boundCount;
    private int _releaseCursor;
    private int _cursor;
    private long _nextJob;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new BenchCell();
        _tx = new Transaction(_fixture.Lease);
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    [IterationSetup]
    public void BindAll()
    {
        for (int i = _releaseCursor; i < _boundCount; i++) _fixture.Cell.Release(_bound[i]);
        _boundCount = 0;
        _releaseCursor = 0;
        for (int i = 0; i < InvocationsPerIteration; i++)
        {
            int node = _fixture.Order[_cursor];
            _cursor = _cursor + 1 == _fixture.NodeCount ? 0 : _cursor + 1;
            var task = new TaskId(++_nextJob, 0);
            _tx.Reset(_fixture.Lease);
            _tx.Add(new Claim(task, new NodeId(node), BenchCell.TaskRequest, 0));
            if (_fixture.Cell.Commit(_tx).Status != TransactionStatus.Committed) throw new InvalidOperationException("setup commit failed");
            _bound[_boundCount++] = task;
        }
    }

    [Benchmark]
    public ReleaseStatus ReleaseOne()
    {
        var status = _fixture.Cell.Release(_bound[_releaseCursor++]);
        if (status != ReleaseStatus.Released) throw new InvalidOperationException($"release failed: {status}");
        return status;
    }
}
