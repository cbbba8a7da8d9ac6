using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>
/// A seeded mix of every kind of mutation a cell journals: nodes added, updated, drained, removed; leases granted,
/// renewed and released; quotas; incremental, all-or-nothing, preemption and keyed commits (accepted and rejected);
/// releases. Keeps the keyed transactions so a test can retry them after a reopen.
/// </summary>
internal sealed class Workload
{
    private readonly Random _rng;
    private readonly List<NodeId> _nodes = new();
    private readonly List<(Transaction Tx, CommitResult Result)> _keyed = new();
    private long _nextJob = 1;
    private int _nextNode;

    public Workload(int seed) => _rng = new Random(seed);

    public IReadOnlyList<(Transaction Tx, CommitResult Result)> Keyed => _keyed;

    public void Setup(Cell cell)
    {
        for (int i = 0; i < 6; i++) AddNode(cell);
        // Tenants exist only once created (journaled, so recovery must bring them back): the workload charges 0-2.
        for (int t = 1; t <= 2; t++) Assert.Equal(new TenantId(t), cell.CreateTenant($"t{t}"));
        cell.SetTenantQuota(new TenantId(1), new ResourceVector(20_000, 64L << 30));
    }

    private void AddNode(Cell cell)
    {
        int i = _nextNode++;
        var labels = new Dictionary<string, string> { ["zone"] = $"z{i % 3}", ["disk"] = i % 2 == 0 ? "ssd" : "hdd" };
        var spec = new NodeSpec($"node-{i}", new ResourceVector(8000, 32L << 30, i % 3 == 0 ? 2 : 0), $"rack-{i % 2}", labels, i % 4 == 0 ? new[] { "gpu" } : null);
        _nodes.Add(cell.AddNode(spec));
    }

    private SchedulerLease _lease;

    public void Run(Cell cell, int steps)
    {
        if (_lease.Token.Value == 0) _lease = cell.AcquireLease("a", TimeSpan.FromMinutes(10)).Lease;
        var lease = _lease;
        Assert.NotEqual(0, lease.Token.Value);
        for (int s = 0; s < steps; s++)
        {
            int op = _rng.Next(100);
            if (op < 45) Commit(cell, lease, CommitMode.Incremental, keyed: _rng.Next(3) == 0);
            else if (op < 55) Commit(cell, lease, CommitMode.AllOrNothing, keyed: _rng.Next(2) == 0);
            else if (op < 62) Preempt(cell, lease);
            else if (op < 80)
            {
                var all = cell.GetAllocations();
                if (all.Count > 0) cell.Release(all[_rng.Next(all.Count)].Task);
            }
            else if (op < 84) cell.SetNodeStatus(Pick(), (NodeStatus)_rng.Next(4));
            else if (op < 87)
            {
                var id = Pick();
                var snap = cell.Snapshot();
                if (snap.TryGetNode(id, out var v) == SnapshotRead.Ok)
                    cell.UpdateNode(id, v.Spec.WithCapacity(v.Spec.Capacity + new ResourceVector(1000, 1L << 30)));
            }
            else if (op < 89)
            {
                cell.RemoveNode(Pick(), out _);
                AddNode(cell);
            }
            else if (op < 92) cell.RenewLease(lease, TimeSpan.FromMinutes(10));
            else if (op < 94)
            {
                // Hand the identity over: release, then re-acquire with a larger token.
                cell.ReleaseLease(lease);
                lease = _lease = cell.AcquireLease("a", TimeSpan.FromMinutes(10)).Lease;
            }
            else if (op < 96) cell.AcquireLease(_rng.Next(2) == 0 ? "b" : "c", TimeSpan.FromSeconds(30));
            else cell.SetTenantQuota(new TenantId(_rng.Next(3)), _rng.Next(3) == 0 ? null : new ResourceVector(_rng.Next(10_000, 40_000), 64L << 30));
        }
    }

    private NodeId Pick() => _nodes[_rng.Next(_nodes.Count)];

    private void Commit(Cell cell, SchedulerLease lease, CommitMode mode, bool keyed)
    {
        var tx = new Transaction(lease, mode, _rng.Next(4) == 0 ? ConflictDetection.Coarse : ConflictDetection.Fine);
        if (keyed) tx.Key = new IdempotencyKey((ulong)_rng.NextInt64(), (ulong)_rng.NextInt64() | 1);
        int n = 1 + _rng.Next(4);
        var snap = cell.Snapshot();
        for (int i = 0; i < n; i++)
        {
            var node = Pick();
            long version = snap.TryGetNode(node, out var v) == SnapshotRead.Ok ? v.Version : 0;
            tx.Add(new Claim(new TaskId(_nextJob++, _rng.Next(3)), node, new ResourceVector(_rng.Next(100, 3000), _rng.Next(1, 8) * (1L << 30)), version,
                new TenantId(_rng.Next(3)), _rng.Next(0, 5)));
        }
        var r = cell.Commit(tx).Detach();
        if (keyed) _keyed.Add((tx, r));
    }

    private void Preempt(Cell cell, SchedulerLease lease)
    {
        var all = cell.GetAllocations();
        if (all.Count == 0) return;
        var victim = all[_rng.Next(all.Count)];
        var tx = new Transaction(lease, CommitMode.Incremental) { Key = new IdempotencyKey((ulong)_rng.NextInt64(), (ulong)_rng.NextInt64() | 1) };
        tx.Add(new Claim(new TaskId(_nextJob++, 0), victim.Node, victim.Resources, 0, victim.Tenant, victim.Priority + 1, new[] { victim.Task }));
        _keyed.Add((tx, cell.Commit(tx).Detach()));
    }

    /// <summary>Retries every keyed transaction and checks it gets its original result and binds nothing new.</summary>
    public static void AssertRetriesReplay(Cell cell, IReadOnlyList<(Transaction Tx, CommitResult Result)> keyed)
    {
        Assert.NotEmpty(keyed);
        foreach (var (tx, original) in keyed)
        {
            // Fencing status may differ (the lease may have been handed over), but a transaction with a current token
            // must replay. Re-point the retry at the current token of its identity.
            var token = cell.GetCurrentToken("a");
            tx.Token = token!.Value;
            long before = cell.Version;
            var again = cell.Commit(tx);
            Assert.False(again.Status.IsFencingFailure(), $"retry of {tx.Key} was fenced: {again}");
            Assert.True(again.Replayed, $"retry of {tx.Key} was not replayed: {again}");
            Assert.Equal(original.Status, again.Status);
            Assert.Equal(original.CellVersion, again.CellVersion);
            Assert.Equal(original.ClaimStatuses.ToArray(), again.ClaimStatuses.ToArray());
            Assert.Equal(before, cell.Version);
        }
    }
}
