namespace Omega.Cells;

/// <summary>A region's recovery budget as the cell enforces it (issue 13; docs/control-plane.md, "Recovery budgets").</summary>
/// <param name="Region">The node region (<see cref="NodeSpec.Region"/>) the budget is in.</param>
/// <param name="Capacity">The capacity kept available to critical failover in the region.</param>
/// <param name="MinPriority">Claims at or above this priority are critical; below it, work is reclaimable.</param>
public sealed record CellRecoveryBudget(string Region, ResourceVector Capacity, int MinPriority);

/// <summary>
/// A region's recovery budget and what the cell's bindings make of it right now (<see cref="Cell.GetRecoveryBudgetUsage"/>).
/// Every figure is derived from durable state (bindings, nodes, the budget and the failover homes), so it is exact after
/// any restart.
/// </summary>
/// <param name="Budget">The budget.</param>
/// <param name="RegionCapacity">The capacity of the region's schedulable nodes.</param>
/// <param name="Free">Unallocated capacity on the region's schedulable nodes.</param>
/// <param name="Reclaimable">Resources of bindings below <see cref="CellRecoveryBudget.MinPriority"/> on those nodes: what failover may preempt.</param>
/// <param name="Consumed">Resources of failover bindings in the region: critical bindings whose group's home region is another region.</param>
/// <param name="Consumers">The number of failover bindings.</param>
public readonly record struct RecoveryBudgetUsage(CellRecoveryBudget Budget, ResourceVector RegionCapacity, ResourceVector Free, ResourceVector Reclaimable,
    ResourceVector Consumed, int Consumers)
{
    /// <summary>The part of the budget the region can hold: the budget's capacity capped by the region's schedulable capacity.</summary>
    public ResourceVector Allocated => ResourceVector.Min(Budget.Capacity, RegionCapacity);

    /// <summary>The allocated budget not yet consumed (floored at zero).</summary>
    public ResourceVector Remaining => ResourceVector.Max(default, Allocated - Consumed);

    /// <summary>True when failover has consumed the allocated budget in some dimension the budget names.</summary>
    public bool Exhausted
    {
        get
        {
            var a = Allocated;
            for (int d = 0; d < ResourceVector.Dimensions; d++)
                if (Budget.Capacity[d] > 0 && Consumed[d] >= a[d]) return true;
            return false;
        }
    }

    /// <summary>True when free plus reclaimable capacity covers the remaining budget in every dimension the budget names.</summary>
    public bool Backed
    {
        get
        {
            var r = Remaining;
            var h = Free + Reclaimable;
            for (int d = 0; d < ResourceVector.Dimensions; d++)
                if (Budget.Capacity[d] > 0 && h[d] < r[d]) return false;
            return true;
        }
    }
}

/// <summary>The outcome of <see cref="Cell.SetRecoveryBudget"/> and <see cref="Cell.SetFailoverHome"/>.</summary>
public enum RecoveryBudgetOpStatus : byte
{
    /// <summary>Recorded (journaled at its own cell version).</summary>
    Ok = 0,

    /// <summary>The state asked for is already in effect; nothing was written.</summary>
    Unchanged = 1,

    /// <summary>A malformed region name, an invalid or empty capacity, or a key shift out of range; nothing was written.</summary>
    Invalid = 2,

    /// <summary><see cref="Cell.MaxRecoveryBudgets"/> or <see cref="Cell.MaxFailoverHomes"/> reached; nothing was written.</summary>
    TooMany = 3,
}

// Recovery budgets enforced at commit (issue 13, item 2). The model (docs/control-plane.md, "Recovery budgets"):
//
//   budget B_R, priority floor P_R                           per region R (record 30)
//   home(group)                                              per placement group (record 31): its first preferred region
//   failover binding in R  = priority ≥ P_R and home(its group) is set and ≠ R
//   consumed_R             = Σ failover bindings in R
//   headroom_R             = free_R + reclaimable_R         (schedulable nodes of R; reclaimable = bindings below P_R)
//   remaining_R            = max(0, min(B_R, capacity_R) − consumed_R)
//
// A failover claim is never refused by the budget: it consumes it, in the same committed, fenced (scheduler token),
// durable transaction that binds it and evicts its victims — consumption is *derived* from the binding, so it cannot
// drift from it across a crash. Lower-priority claims are never refused either: what they take stays reclaimable
// (failover preempts it by priority in its own commit). What IS refused (claim status RecoveryBudgetHeld) is a
// critical, non-failover claim (a region's own critical work) that would leave headroom_R below remaining_R: that
// capacity is promised to failover from other regions, and non-reclaimable work there would break the promise.
//
// Cost: the check scans the region's nodes and their bindings, O(bindings in the region), under the commit lock, and
// only for claims at or above some budget's priority floor on a budgeted region that are not failover — a region's own
// critical services, a small minority of placements. Every other claim pays one array-length test. Rejected
// alternative: incremental per-region aggregates kept by AddBinding/RemoveBinding/status changes, O(1) per check but
// a cost on every binding change of the cell and one more derived state to audit and rebuild.
public sealed partial class Cell
{
    /// <summary>The most recovery budgets a cell holds (one per region).</summary>
    public const int MaxRecoveryBudgets = 256;

    /// <summary>The most failover homes a cell holds (one per critical placement group).</summary>
    public const int MaxFailoverHomes = 10_000;

    /// <summary>Longest region name accepted for a budget or home.</summary>
    public const int MaxRegionNameLength = 63;

    // Copy-on-write under _lock (read lock-free by listings); few entries.
    private CellRecoveryBudget[] _budgets = [];
    private int _budgetMinPriorityFloor = int.MaxValue;
    // (shift, key) → home region; _homeShifts lists the distinct shifts in use (workloads all use one).
    private readonly Dictionary<(byte Shift, long Key), string> _homes = new();
    private byte[] _homeShifts = [];

    /// <summary>The recovery budgets in effect.</summary>
    public IReadOnlyList<CellRecoveryBudget> RecoveryBudgets => Volatile.Read(ref _budgets);

    /// <summary>
    /// Sets (or, with <paramref name="capacity"/> null, clears) region <paramref name="region"/>'s recovery budget,
    /// enforced at commit from the next claim on. Journaled (record 30) at a cell version of its own, returned in
    /// <paramref name="version"/>: acknowledge once it is durable. Setting a budget evicts nothing.
    /// </summary>
    public RecoveryBudgetOpStatus SetRecoveryBudget(string region, ResourceVector? capacity, int minPriority, out long version)
    {
        version = 0;
        if (!ValidRegion(region)) return RecoveryBudgetOpStatus.Invalid;
        if (capacity is { } c && (!c.IsValidRequest || c.IsZero)) return RecoveryBudgetOpStatus.Invalid;
        using (Serial())
        {
            int at = FindBudget(region);
            if (capacity is null && at < 0) return RecoveryBudgetOpStatus.Unchanged;
            if (capacity is { } cap && at >= 0 && _budgets[at].Capacity == cap && _budgets[at].MinPriority == minPriority) return RecoveryBudgetOpStatus.Unchanged;
            if (capacity is not null && at < 0 && _budgets.Length >= MaxRecoveryBudgets) return RecoveryBudgetOpStatus.TooMany;
            ApplyBudget(region, capacity, minPriority);
            version = _vw.Published + 1;
            Volatile.Write(ref _vw.Published, version);
            JournalBudget(region, capacity, minPriority);
            return RecoveryBudgetOpStatus.Ok;
        }
    }

    /// <summary>
    /// Records (or, with <paramref name="region"/> null or empty, clears) the home region of the placement group whose
    /// jobs have <c>job &gt;&gt; keyShift == groupKey</c>: a critical binding of the group outside its home is failover
    /// and consumes that region's recovery budget. Journaled (record 31) at a version of its own.
    /// </summary>
    public RecoveryBudgetOpStatus SetFailoverHome(long groupKey, byte keyShift, string? region, out long version)
    {
        version = 0;
        if (keyShift > PlacementGroup.MaxKeyShift) return RecoveryBudgetOpStatus.Invalid;
        bool clear = string.IsNullOrEmpty(region);
        if (!clear && !ValidRegion(region!)) return RecoveryBudgetOpStatus.Invalid;
        using (Serial())
        {
            bool has = _homes.TryGetValue((keyShift, groupKey), out var old);
            if (clear ? !has : has && string.Equals(old, region, StringComparison.Ordinal)) return RecoveryBudgetOpStatus.Unchanged;
            if (!clear && !has && _homes.Count >= MaxFailoverHomes) return RecoveryBudgetOpStatus.TooMany;
            ApplyHome(groupKey, keyShift, clear ? null : region);
            version = _vw.Published + 1;
            Volatile.Write(ref _vw.Published, version);
            if (_journal is not null)
            {
                var w = BeginRecord(CellRecordKind.FailoverHome, _vw.Published);
                w.I64(groupKey);
                w.U8(keyShift);
                w.String(clear ? "" : region!);
                EndRecord(_vw.Published);
            }
            return RecoveryBudgetOpStatus.Ok;
        }
    }

    /// <summary>The home region recorded for <paramref name="job"/>'s placement group, or null.</summary>
    public string? GetFailoverHome(JobId job)
    {
        using (Serial()) return HomeOf(job.Value);
    }

    /// <summary>
    /// Region <paramref name="region"/>'s budget and its current usage (null when the region has no budget). O(bindings
    /// of the cell's nodes in the region), under the commit lock: a controller's read, not a placement-path one.
    /// </summary>
    public RecoveryBudgetUsage? GetRecoveryBudgetUsage(string region)
    {
        using (Serial())
        {
            int at = FindBudget(region);
            return at < 0 ? null : ComputeUsage(_budgets[at]);
        }
    }

    /// <summary>
    /// What <paramref name="budget"/> would account in the cell now, whether or not the cell enforces it (a budget
    /// suspended by an operator's recovery override is still reported). Same cost as <see cref="GetRecoveryBudgetUsage"/>.
    /// </summary>
    public RecoveryBudgetUsage AccountRecoveryBudget(CellRecoveryBudget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        using (Serial()) return ComputeUsage(budget);
    }

    private static bool ValidRegion(string region)
        => !string.IsNullOrEmpty(region) && region.Length <= MaxRegionNameLength && Topology.IsValidName(region);

    // Caller holds _lock.
    private int FindBudget(string region)
    {
        var b = _budgets;
        for (int i = 0; i < b.Length; i++)
            if (string.Equals(b[i].Region, region, StringComparison.Ordinal)) return i;
        return -1;
    }

    // Caller holds _lock (or restores before the cell is shared).
    private void ApplyBudget(string region, ResourceVector? capacity, int minPriority)
    {
        var list = new List<CellRecoveryBudget>(_budgets);
        list.RemoveAll(b => string.Equals(b.Region, region, StringComparison.Ordinal));
        if (capacity is { } c) list.Add(new CellRecoveryBudget(region, c, minPriority));
        int floor = int.MaxValue;
        foreach (var b in list) floor = Math.Min(floor, b.MinPriority);
        _budgetMinPriorityFloor = floor;
        Volatile.Write(ref _budgets, list.ToArray());
    }

    // Caller holds _lock (or restores before the cell is shared).
    private void ApplyHome(long key, byte shift, string? region)
    {
        if (region is null) _homes.Remove((shift, key));
        else _homes[(shift, key)] = region;
        if (region is not null && Array.IndexOf(_homeShifts, shift) < 0) _homeShifts = [.. _homeShifts, shift];
    }

    // Caller holds _lock. Allocation-free: a dictionary probe per distinct shift (one for workloads).
    private string? HomeOf(long job)
    {
        if (_homes.Count == 0) return null;
        var shifts = _homeShifts;
        for (int i = 0; i < shifts.Length; i++)
            if (_homes.TryGetValue((shifts[i], job >> shifts[i]), out var r)) return r;
        return null;
    }

    // Caller holds _lock. One pass over the region's nodes and their bindings.
    private RecoveryBudgetUsage ComputeUsage(CellRecoveryBudget b)
    {
        ResourceVector capacity = default, free = default, reclaimable = default, consumed = default;
        int consumers = 0;
        string region = b.Region;
        for (int i = 0; i < _nodeCount; i++)
        {
            ref readonly NodeLive n = ref _live[i];
            if (n.Spec is null || n.Status == NodeStatus.Removed || !string.Equals(n.Spec.Region, region, StringComparison.Ordinal)) continue;
            bool schedulable = n.Status == NodeStatus.Schedulable;
            if (schedulable)
            {
                capacity += n.Spec.Capacity;
                free += ResourceVector.Max(default, n.Spec.Capacity - n.Allocated);
            }
            var bindings = _bindingsOnNode[i];
            if (bindings is null) continue;
            for (int j = 0; j < bindings.Count; j++)
            {
                var a = bindings[j];
                if (a.Priority < b.MinPriority)
                {
                    if (schedulable) reclaimable += a.Resources;
                    continue;
                }
                string? home = HomeOf(a.Task.Job.Value);
                if (home is not null && !string.Equals(home, region, StringComparison.Ordinal))
                {
                    consumed += a.Resources;
                    consumers++;
                }
            }
        }
        return new RecoveryBudgetUsage(b, capacity, free, reclaimable, consumed, consumers);
    }

    // Caller holds _lock. The commit-time gate (see the model above); true when the claim may proceed.
    // `freedHold` is the reservation hold a BindReserved claim consumes (it was allocated, never reclaimable).
    private bool RecoveryBudgetHolds(in Claim c, int idx, TaskId[]? victims, ResourceVector freedHold)
    {
        string region = _live[idx].Spec!.Region;
        if (region.Length == 0) return true;
        int at = FindBudget(region);
        if (at < 0) return true;
        var b = _budgets[at];
        if (c.Priority < b.MinPriority) return true;
        string? home = HomeOf(c.Task.Job.Value);
        if (home is not null && !string.Equals(home, region, StringComparison.Ordinal)) return true; // failover: consumes

        var u = ComputeUsage(b);
        // Victims at or above the floor held non-reclaimable capacity that this claim frees; victims below it move from
        // reclaimable to free and back to taken: net zero.
        ResourceVector freed = freedHold;
        if (victims is { Length: > 0 })
            for (int v = 0; v < victims.Length; v++)
                if (TryGetBindingLocked(victims[v], out var va) && va.Priority >= b.MinPriority) freed += va.Resources;
        var remaining = u.Remaining;
        var headroom = u.Free + u.Reclaimable;
        for (int d = 0; d < ResourceVector.Dimensions; d++)
        {
            long grow = c.Resources[d] - freed[d];
            if (grow <= 0 || b.Capacity[d] == 0) continue;
            if (headroom[d] - grow < remaining[d]) return false;
        }
        return true;
    }

    private void JournalBudget(string region, ResourceVector? capacity, int minPriority)
    {
        if (_journal is null) return;
        var w = BeginRecord(CellRecordKind.RecoveryBudget, _vw.Published);
        w.String(region);
        w.U8(capacity.HasValue ? (byte)1 : (byte)0);
        w.Resources(capacity ?? default);
        w.I32(minPriority);
        EndRecord(_vw.Published);
    }

    /// <summary>Recovery: installs the budgets and homes a restorer found (before the cell is shared).</summary>
    internal void RestoreRecoveryBudgets(IEnumerable<CellRecoveryBudget> budgets, IEnumerable<KeyValuePair<(byte Shift, long Key), string>> homes)
    {
        using (Serial())
        {
            foreach (var b in budgets) ApplyBudget(b.Region, b.Capacity, b.MinPriority);
            foreach (var (k, r) in homes) ApplyHome(k.Key, k.Shift, r);
        }
    }
}
