using Microsoft.Extensions.Time.Testing;

namespace Omega.Cells.Tests;

/// <summary>
/// A cell on a fake clock with a few identical nodes and one scheduler lease, plus shorthands for claims and commits.
/// Results returned by the helpers are detached, so they stay valid after the transaction is reused.
/// </summary>
internal sealed class TestCell : IDisposable
{
    public static readonly TimeSpan LeaseTime = TimeSpan.FromSeconds(30);
    public static readonly ResourceVector DefaultCapacity = R(4000, 8192);

    public TestCell(int nodes = 2, ResourceVector? capacity = null, Action<CellOptions>? configure = null)
    {
        var options = new CellOptions { Time = Time };
        TestCommitPath.Apply(options);
        configure?.Invoke(options);
        Cell = new Cell(options);
        // Tenants exist only once created: tests charge claims to tenants 1-3 (ids are dense, so these are t1..t3).
        for (int t = 1; t <= 3; t++) Assert.Equal(new TenantId(t), Cell.CreateTenant($"t{t}"));
        var cap = capacity ?? DefaultCapacity;
        Nodes = new NodeId[nodes];
        for (int i = 0; i < nodes; i++) Nodes[i] = Cell.AddNode(new NodeSpec($"node-{i}", cap, failureDomain: $"rack-{i % 2}"));
        var lease = Cell.AcquireLease("sched", LeaseTime);
        Assert.Equal(LeaseStatus.Granted, lease.Status);
        Lease = lease.Lease;
    }

    public FakeTimeProvider Time { get; } = new();

    public Cell Cell { get; }

    public NodeId[] Nodes { get; }

    public SchedulerLease Lease { get; }

    public static ResourceVector R(long cpu, long mem = 0, long gpu = 0) => new(cpu, mem, gpu);

    public static TaskId T(long job, int index = 0) => new(job, index);

    /// <summary>Reads a node from a fresh snapshot; fails the test if it is not readable.</summary>
    public NodeView View(NodeId id)
    {
        Assert.Equal(SnapshotRead.Ok, Cell.Snapshot().TryGetNode(id, out var view));
        return view;
    }

    /// <summary>A claim whose expected version is the node's current one (as a scheduler would read it from a fresh snapshot).</summary>
    public Claim ClaimOn(NodeId node, TaskId task, ResourceVector resources, int tenant = 0, int priority = 0, params TaskId[] victims)
    {
        long version = Cell.Snapshot().TryGetNode(node, out var v) == SnapshotRead.Ok ? v.Version : 1;
        return new Claim(task, node, resources, version, new TenantId(tenant), priority, victims.Length == 0 ? null : victims);
    }

    public CommitResult Commit(CommitMode mode, ConflictDetection detection, params Claim[] claims)
        => Commit(Lease, mode, detection, IdempotencyKey.None, claims);

    public CommitResult Commit(params Claim[] claims) => Commit(Lease, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None, claims);

    public CommitResult Commit(SchedulerLease lease, CommitMode mode, ConflictDetection detection, IdempotencyKey key, params Claim[] claims)
        => Cell.Commit(Build(lease, mode, detection, key, claims)).Detach();

    public static Transaction Build(SchedulerLease lease, CommitMode mode, ConflictDetection detection, IdempotencyKey key, params Claim[] claims)
    {
        var tx = new Transaction(lease, mode, detection);
        tx.Key = key;
        foreach (var c in claims) tx.Add(c);
        return tx;
    }

    /// <summary>The lease the cell grants next for <paramref name="name"/>; fails the test if it is refused.</summary>
    public SchedulerLease Acquire(string name, TimeSpan? duration = null)
    {
        var r = Cell.AcquireLease(name, duration ?? LeaseTime);
        Assert.Equal(LeaseStatus.Granted, r.Status);
        return r.Lease;
    }

    public static ClaimStatus[] Statuses(CommitResult r) => r.ClaimStatuses.ToArray();

    public void AssertHealthy() => Assert.Empty(Cell.Audit());

    public void Dispose() => Cell.Dispose();
}
