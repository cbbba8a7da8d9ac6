using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Issue 15: the cell keeps each binding once (the task index maps a task to its node; the node's list holds the
/// allocation), and an agent's acknowledgement is validated lock-free against its node's list.
/// </summary>
public sealed class BindingStoreTests(ITestOutputHelper output)
{
    // Budget for the cell's own structures per live binding (task index + node list + its task index), measured through
    // GC.GetTotalMemory around building the bindings. Issue 15's target is 2.5 GiB of resident memory for 10M bindings
    // (268 bytes each, FASTER's log and everything else included); the cell's share gets 160. Keeping each binding twice
    // (a Dictionary<TaskId, Allocation> beside 96-byte Allocations in the node lists) measured 313 bytes per live-built
    // binding and 247 per restored one at e25de76, so both checks below fail on that representation; this one measured
    // 133 and 115 (64-byte node slots, a task -> node index, a per-node task index).
    private const double BudgetBytesPerBinding = 160;

    private const int Nodes = 200;
    private const int PerNode = 1_000;

    private static NodeSpec Spec(int i) => new($"n{i}", new ResourceVector(10_000_000, 1L << 44), $"r{i % 4}");

    private static long Settled()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    [Fact]
    public void Live_bindings_cost_at_most_the_budget_per_binding()
    {
        var cell = new Cell(TestCommitPath.Apply(new CellOptions()));
        for (int i = 0; i < Nodes; i++) cell.AddNode(Spec(i));
        cell.CreateTenant("t1", null, out var tenant);
        var lease = cell.AcquireLease("loader", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: 64);
        // Warm the paths (first-use allocations of the commit path, feed, counters) before the baseline.
        tx.Add(new Claim(new TaskId(1, 0), new NodeId(0), new ResourceVector(1, 1), 0, tenant, 0));
        Assert.Equal(1, cell.Commit(tx).AppliedCount);
        Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(1, 0)));

        long before = Settled();
        long job = 100;
        const int total = Nodes * PerNode;
        int n = 0;
        while (n < total)
        {
            tx.Reset(lease);
            for (int i = 0; i < 64 && n < total; i++, n++)
                tx.Add(new Claim(new TaskId(job++, 0), new NodeId(n % Nodes), new ResourceVector(10, 1 << 20), 0, tenant, 0));
            Assert.Equal(tx.Count, cell.Commit(tx).AppliedCount);
        }
        long after = Settled();
        double perBinding = (after - before) / (double)total;
        output.WriteLine($"live: {total:N0} bindings, {after - before:N0} bytes, {perBinding:F1} B/binding (budget {BudgetBytesPerBinding})");
        Assert.Equal(total, cell.AllocationCount);
        Assert.Empty(cell.Audit());
        Assert.True(perBinding <= BudgetBytesPerBinding, $"{perBinding:F1} bytes per live binding, budget {BudgetBytesPerBinding}");
        GC.KeepAlive(cell);
    }

    [Fact]
    public void Restored_bindings_cost_at_most_the_budget_per_binding_and_match_what_was_staged()
    {
        long before = Settled();
        using var restorer = new CellRestorer();
        for (int i = 0; i < Nodes; i++) restorer.Node(new NodeId(i), Spec(i), NodeStatus.Schedulable, 1);
        restorer.Tenant(new TenantId(1), "t1");
        const int total = Nodes * PerNode;
        restorer.ExpectBindings(total);
        // Upsert semantics and unbinds during staging: every 10th task is bound first elsewhere, then moved; every 7th
        // extra task is bound then unbound.
        for (int n = 0; n < total; n++)
        {
            var task = new TaskId(100 + n, 0);
            if (n % 10 == 0) restorer.Bind(new Allocation(task, new NodeId((n + 1) % Nodes), new ResourceVector(10, 1 << 20), new TenantId(1), 0, 1));
            restorer.Bind(new Allocation(task, new NodeId(n % Nodes), new ResourceVector(10, 1 << 20), new TenantId(1), 0, 2 + n));
            if (n % 7 == 0)
            {
                var extra = new TaskId(10_000_000 + n, 0);
                restorer.Bind(new Allocation(extra, new NodeId(n % Nodes), new ResourceVector(10, 1 << 20), new TenantId(1), 0, 1));
                restorer.Unbind(extra);
            }
        }
        restorer.SetCheckpointPosition(total + 10, 10);
        var cell = restorer.Complete();
        long after = Settled();
        // Everything the restored cell holds counts here (nodes, tenants, counters too), so this errs on the high side.
        double perBinding = (after - before) / (double)total;
        output.WriteLine($"restored: {total:N0} bindings, {after - before:N0} bytes, {perBinding:F1} B/binding (budget {BudgetBytesPerBinding})");
        Assert.Equal(total, cell.AllocationCount);
        Assert.Empty(cell.Audit());
        for (int n = 0; n < total; n += 97)
        {
            var task = new TaskId(100 + n, 0);
            Assert.True(cell.TryGetAllocation(task, out var a));
            Assert.Equal((new NodeId(n % Nodes), 2L + n), (a.Node, a.Generation));
            Assert.True(cell.TryGetAllocationOnNode(new NodeId(n % Nodes), task, out var b));
            Assert.Equal(a, b);
            if (n % 10 == 0) Assert.False(cell.TryGetAllocationOnNode(new NodeId((n + 1) % Nodes), task, out _));
        }
        Assert.False(cell.TryGetAllocation(new TaskId(10_000_000, 0), out _));
        Assert.True(perBinding <= BudgetBytesPerBinding, $"{perBinding:F1} bytes per restored binding, budget {BudgetBytesPerBinding}");
        cell.Dispose();
    }

    [Fact]
    public void The_lock_free_read_by_node_agrees_with_the_locked_read_through_random_binds_releases_and_evictions()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var cell = new Cell(TestCommitPath.Apply(new CellOptions()));
        const int nodes = 4;
        for (int i = 0; i < nodes; i++) cell.AddNode(Spec(i));
        cell.CreateTenant("t1", null, out var tenant);
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: 8);
        const int tasks = 600; // enough per node to grow each list (and its index) several times and shrink it again
        for (int step = 0; step < 20_000; step++)
        {
            var task = new TaskId(rng.Next(tasks), 0);
            if (cell.TryGetAllocation(task, out var held) && rng.Next(3) > 0)
                Assert.Equal(ReleaseStatus.Released, cell.Release(task, held.Generation));
            else if (!cell.TryGetAllocation(task, out _))
            {
                tx.Reset(lease);
                var node = new NodeId(rng.Next(nodes));
                // Sometimes evict a lower-priority binding of the same node in the same claim (the victim path).
                TaskId[]? victims = null;
                if (rng.Next(8) == 0)
                {
                    var on = cell.GetAllocationsOnNode(node);
                    if (on.Count > 0 && on[rng.Next(on.Count)] is { Priority: 0 } v) victims = [v.Task];
                }
                tx.Add(new Claim(task, node, new ResourceVector(10, 1 << 20), 0, tenant, victims is null ? rng.Next(2) : 1, victims));
                Assert.Equal(1, cell.Commit(tx).AppliedCount);
            }
            if (step % 50 == 0)
            {
                for (int t = 0; t < tasks; t++)
                {
                    var probe = new TaskId(t, 0);
                    bool locked = cell.TryGetAllocation(probe, out var a);
                    for (int n = 0; n < nodes; n++)
                    {
                        bool onNode = cell.TryGetAllocationOnNode(new NodeId(n), probe, out var b);
                        Assert.True(onNode == (locked && a.Node.Value == n), $"seed {seed} step {step}: {probe} on n{n}: lock-free {onNode}, locked {locked} on {a.Node}");
                        if (onNode) Assert.Equal(a, b);
                    }
                }
                Assert.Empty(cell.Audit());
            }
        }
        Assert.False(cell.TryGetAllocationOnNode(new NodeId(99), new TaskId(1, 0), out _));
        Assert.False(cell.TryGetAllocationOnNode(new NodeId(-1), new TaskId(1, 0), out _));
    }

    [Fact]
    public async Task A_lock_free_reader_always_finds_a_binding_that_stays_while_its_node_list_churns()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var cell = new Cell(TestCommitPath.Apply(new CellOptions()));
        var node = cell.AddNode(Spec(0));
        cell.CreateTenant("t1", null, out var tenant);
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease, initialCapacity: 64);
        // Pinned bindings that never change while the writer binds and releases thousands of others on the same node
        // (list growth, swap-removal moving pinned entries, backward-shift deletion in the index).
        var pinned = new TaskId[16];
        var pinnedGen = new long[pinned.Length];
        for (int i = 0; i < pinned.Length; i++)
        {
            tx.Reset(lease);
            pinned[i] = new TaskId(1_000_000 + i, 0);
            tx.Add(new Claim(pinned[i], node, new ResourceVector(1, 1), 0, tenant, 0));
            pinnedGen[i] = cell.Commit(tx).Generation;
        }
        using var done = new CancellationTokenSource();
        long reads = 0;
        string? failure = null;
        // A dedicated thread: a pool work item can start after the writer's whole churn on a loaded 2-core machine (CI saw
        // 0 reads), and then the test proves nothing.
        var reader = Task.Factory.StartNew(() =>
        {
            var r = new Random(seed);
            while (!done.IsCancellationRequested && failure is null)
            {
                int i = r.Next(pinned.Length);
                if (!cell.TryGetAllocationOnNode(node, pinned[i], out var a) || a.Generation != pinnedGen[i] || a.Task != pinned[i])
                    failure = $"seed {seed}: pinned {pinned[i]} read as found={a.Task == pinned[i]} generation {a.Generation}, committed {pinnedGen[i]}";
                Interlocked.Increment(ref reads);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        // The churn starts only once the reader reads, so every round overlaps lock-free reads.
        while (Interlocked.Read(ref reads) == 0 && !reader.IsCompleted) Thread.Yield();
        var rng = new Random(seed);
        var live = new List<TaskId>();
        long next = 0;
        for (int round = 0; round < 400 && failure is null; round++)
        {
            tx.Reset(lease);
            int add = rng.Next(1, 64);
            for (int i = 0; i < add; i++)
            {
                var t = new TaskId(next++, 0);
                tx.Add(new Claim(t, node, new ResourceVector(1, 1), 0, tenant, 0));
                live.Add(t);
            }
            Assert.Equal(add, cell.Commit(tx).AppliedCount);
            int remove = rng.Next(0, Math.Min(live.Count, 70));
            for (int i = 0; i < remove; i++)
            {
                int k = rng.Next(live.Count);
                Assert.Equal(ReleaseStatus.Released, cell.Release(live[k]));
                live[k] = live[^1];
                live.RemoveAt(live.Count - 1);
            }
        }
        await done.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(60));
        output.WriteLine($"{reads:N0} lock-free reads, {live.Count} churned bindings left");
        Assert.Null(failure);
        Assert.True(reads > 0);
        Assert.Empty(cell.Audit());
    }
}
