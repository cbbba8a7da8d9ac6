using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>Settings of the <see cref="RecoveryBudgetController"/>.</summary>
public sealed class RecoveryBudgetControllerOptions
{
    /// <summary>How often a budget's status is recomputed (bindings have no watch of their own). Default 2 s.</summary>
    public TimeSpan Refresh { get; set; } = TimeSpan.FromSeconds(2);
}

/// <summary>
/// The recovery-budget controller (issue 13; docs/control-plane.md, "Recovery budgets"): reports, per region budget,
/// what is allocated (capped by the region's schedulable capacity), consumed (critical replicas running in the region
/// away from their first preferred region: failover), and reclaimable (lower-priority work recovery may preempt), with
/// conditions <c>Exhausted</c> and <c>Backed</c>. Level-triggered and read-only towards the cell: the capacity is made
/// available to failover by priority preemption at commit (the victims are evicted in the same committed, fenced
/// transaction as the placement), not by a hold.
/// </summary>
public sealed class RecoveryBudgetController : IReconciler
{
    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly TimeProvider _time;
    private readonly RecoveryBudgetControllerOptions _options;
    private readonly List<Allocation> _scratch = new();

    /// <summary>Creates the controller over a store and the cell whose bindings it accounts.</summary>
    public RecoveryBudgetController(ObjectStore store, Cell cell, TimeProvider? time = null, RecoveryBudgetControllerOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _time = time ?? TimeProvider.System;
        _options = options ?? new RecoveryBudgetControllerOptions();
    }

    /// <summary>Which objects the controller watches.</summary>
    public static ObjectFilter Filter => new(RecoveryBudget.KindName);

    /// <summary>Creates a runner for this controller.</summary>
    public ControllerRunner CreateRunner(IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
        => new(_store, this, Filter, scheduler, options);

    /// <inheritdoc />
    public async ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken)
    {
        if (_store.Get(key).Object is not RecoveryBudget b || b.Metadata.DeletionTimestamp is not null) return ReconcileResult.Done;
        var now = _time.GetUtcNow();
        long gen = b.Metadata.Generation;
        string region = b.Spec.Region;

        // Which workload uid is "at home" where: the first preferred region of each critical workload.
        var home = new Dictionary<long, string>();
        string? next = null;
        do
        {
            var page = _store.List(new ObjectFilter(Workload.KindName), 1000, next);
            foreach (var o in page.Items)
                if (o is Workload w && w.Spec.Priority >= b.Spec.MinPriority)
                    home[w.Metadata.Uid] = w.Spec.Topology.PreferredRegions.Count > 0 ? w.Spec.Topology.PreferredRegions[0] : "";
            next = page.Continue;
        }
        while (next is not null);

        ResourceVector capacity = default, free = default, consumed = default, reclaimable = default;
        var snap = _cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.Status != NodeStatus.Schedulable) continue;
            if (!string.Equals(v.Spec.Region, region, StringComparison.Ordinal)) continue;
            capacity += v.Capacity;
            free += ResourceVector.Max(default, v.Capacity - v.Allocated);
            _scratch.Clear();
            _cell.CopyAllocationsOnNode(v.Id, _scratch);
            foreach (var a in _scratch)
            {
                if (a.Priority < b.Spec.MinPriority) { reclaimable += a.Resources; continue; }
                long job = a.Task.Job.Value;
                if (job < 0 || (job & WorkloadController.JobIdSpace) == 0) continue;
                long uid = (job & (WorkloadController.JobIdSpace - 1)) >> WorkloadController.SerialBits;
                // Failover: a critical replica here whose workload prefers another region first.
                if (home.TryGetValue(uid, out var h) && h.Length > 0 && !string.Equals(h, region, StringComparison.Ordinal)) consumed += a.Resources;
            }
        }
        var allocated = ResourceVector.Min(b.Spec.Capacity.ToVector(), capacity);
        bool exhausted = false, backed = true;
        var want = b.Spec.Capacity.ToVector();
        for (int d = 0; d < ResourceVector.Dimensions; d++)
        {
            if (want[d] == 0) continue;
            if (consumed[d] >= allocated[d]) exhausted = true;
            if (free[d] + reclaimable[d] < Math.Max(0, allocated[d] - consumed[d])) backed = false;
        }

        var s = b.Status;
        bool changed = Set(s.Allocated, allocated) | Set(s.Consumed, consumed) | Set(s.Reclaimable, reclaimable) | s.Exhausted != exhausted | s.ObservedGeneration != gen;
        s.Exhausted = exhausted;
        s.ObservedGeneration = gen;
        changed |= Conditions.Set(s.Conditions, "Exhausted", exhausted ? ConditionStatus.True : ConditionStatus.False, exhausted ? "BudgetConsumed" : "Available",
            $"consumed {consumed} of {allocated} allocated in {region}", gen, now);
        changed |= Conditions.Set(s.Conditions, "Backed", backed ? ConditionStatus.True : ConditionStatus.False, backed ? "FreeOrReclaimable" : "NotReclaimable",
            backed ? "free plus reclaimable capacity covers the unconsumed budget" : $"only {free} free and {reclaimable} reclaimable in {region}", gen, now);
        if (changed)
        {
            // resourceVersion precondition: a concurrent writer makes this a conflict, and the next reconcile recomputes.
            var r = await _store.UpdateStatusAsync(b, cancellationToken).ConfigureAwait(false);
            if (!r.IsOk) return ReconcileResult.Retry;
        }
        return ReconcileResult.After(_options.Refresh);
    }

    private static bool Set(ResourceRequest target, ResourceVector v)
    {
        if (target.ToVector() == v) return false;
        target.CpuMillis = v.CpuMillis;
        target.MemoryBytes = v.MemoryBytes;
        target.Gpus = v.Gpus;
        target.DiskBytes = v.DiskBytes;
        return true;
    }
}
