using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>Settings of the <see cref="RecoveryBudgetController"/>.</summary>
public sealed class RecoveryBudgetControllerOptions
{
    /// <summary>How often a budget's status is recomputed (bindings have no watch of their own). Default 2 s.</summary>
    public TimeSpan Refresh { get; set; } = TimeSpan.FromSeconds(2);
}

/// <summary>
/// The recovery-budget controller (issue 13; docs/control-plane.md, "Recovery budgets"). It owns the cell's budget of
/// each <see cref="RecoveryBudget"/>'s region (<see cref="Cell.SetRecoveryBudget"/>, enforced at commit: a region's own
/// critical work may not take the capacity promised to failover), suspends it while a live
/// <see cref="OverrideType.RecoveryOverride"/> names the region and puts it back when the override lapses, clears it when
/// the object is deleted (finalizer <see cref="Finalizer"/>), and writes the status from the cell's own accounting:
/// allocated, consumed (failover bindings), reclaimable, exhausted, conditions <c>Exhausted</c>, <c>Backed</c> and
/// <c>Overridden</c>. Exports the gauge <c>omega.recovery_budget.exhausted{region}</c> (alert
/// <c>OmegaRecoveryBudgetExhausted</c>).
/// </summary>
public sealed class RecoveryBudgetController : IReconciler, IDisposable
{
    /// <summary>The finalizer that makes deletion wait until the cell's budget was cleared.</summary>
    public const string Finalizer = "omega.io/recovery-budget";

    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly TimeProvider _time;
    private readonly RecoveryBudgetControllerOptions _options;
    private readonly Meter _meter;
    // region → exhausted (1/0), as of the last reconcile; removed when the budget is deleted.
    private readonly ConcurrentDictionary<string, int> _exhausted = new(StringComparer.Ordinal);

    /// <summary>Creates the controller over a store and the cell whose budgets it sets and accounts.</summary>
    public RecoveryBudgetController(ObjectStore store, Cell cell, TimeProvider? time = null, RecoveryBudgetControllerOptions? options = null, IMeterFactory? meterFactory = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _time = time ?? TimeProvider.System;
        _options = options ?? new RecoveryBudgetControllerOptions();
        _meter = CellCounters.CreateMeter(ReservationController.MeterName, cell.Name, meterFactory);
        _meter.CreateObservableGauge("omega.recovery_budget.exhausted", ObserveExhausted, "{budget}",
            "1 when a region's recovery budget has been consumed by failover (critical replicas may no longer fit), by region");
    }

    /// <summary>Which objects the controller watches.</summary>
    public static ObjectFilter Filter => new(RecoveryBudget.KindName);

    /// <summary>Creates a runner for this controller.</summary>
    public ControllerRunner CreateRunner(IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
        => new(_store, this, Filter, scheduler, options);

    /// <summary>Whether the budget of <paramref name="region"/> was exhausted at its last reconcile (false: unknown region).</summary>
    public bool IsExhausted(string region) => _exhausted.TryGetValue(region, out var e) && e != 0;

    /// <inheritdoc />
    public async ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken)
    {
        if (_store.Get(key).Object is not RecoveryBudget b) return ReconcileResult.Done;
        var now = _time.GetUtcNow();
        long gen = b.Metadata.Generation;
        string region = b.Spec.Region;

        if (b.Metadata.DeletionTimestamp is not null)
        {
            if (!b.Metadata.Finalizers.Contains(Finalizer)) return ReconcileResult.Done;
            _cell.SetRecoveryBudget(region, null, 0, out _);
            _exhausted.TryRemove(region, out _);
            b.Metadata.Finalizers.Remove(Finalizer);
            var d = await _store.UpdateAsync(b, cancellationToken).ConfigureAwait(false);
            return d.IsOk ? ReconcileResult.Done : ReconcileResult.Retry;
        }
        if (!b.Metadata.Finalizers.Contains(Finalizer))
        {
            // Before the cell holds anything for it, make sure deletion passes through the clear.
            b.Metadata.Finalizers.Add(Finalizer);
            var f = await _store.UpdateAsync(b, cancellationToken).ConfigureAwait(false);
            return f.IsOk ? ReconcileResult.After(TimeSpan.FromTicks(1)) : ReconcileResult.Retry;
        }

        // A live RecoveryOverride on the region suspends the commit-time gate for its TTL (the operator lets the region's
        // own critical work use the reserve); the next reconcile after it lapses sets the budget again. The override's
        // expiry is a re-reconcile deadline, so the gate returns within one Refresh of it.
        var ov = OverrideController.FindActive(_store, OverrideType.RecoveryOverride, region, now);
        var capacity = b.Spec.Capacity.ToVector();
        _cell.SetRecoveryBudget(region, ov is null ? capacity : null, b.Spec.MinPriority, out _);
        // Accounting from the cell (a suspended budget is still accounted against the spec's capacity).
        var u = _cell.GetRecoveryBudgetUsage(region) ?? Account(region, capacity, b.Spec.MinPriority);

        var s = b.Status;
        bool exhausted = u.Exhausted, backed = u.Backed;
        bool changed = Set(s.Allocated, u.Allocated) | Set(s.Consumed, u.Consumed) | Set(s.Reclaimable, u.Reclaimable)
            | s.Exhausted != exhausted | s.ObservedGeneration != gen | s.Consumers != u.Consumers;
        s.Exhausted = exhausted;
        s.Consumers = u.Consumers;
        s.ObservedGeneration = gen;
        changed |= Conditions.Set(s.Conditions, "Exhausted", exhausted ? ConditionStatus.True : ConditionStatus.False, exhausted ? "BudgetConsumed" : "Available",
            $"failover consumed {u.Consumed} of {u.Allocated} allocated in {region}", gen, now);
        changed |= Conditions.Set(s.Conditions, "Backed", backed ? ConditionStatus.True : ConditionStatus.False, backed ? "FreeOrReclaimable" : "NotReclaimable",
            backed ? "free plus reclaimable capacity covers the unconsumed budget" : $"only {u.Free} free and {u.Reclaimable} reclaimable in {region}", gen, now);
        changed |= Conditions.Set(s.Conditions, "Overridden", ov is null ? ConditionStatus.False : ConditionStatus.True, ov is null ? "Enforced" : "RecoveryOverride",
            ov is null ? "enforced at commit" : $"suspended by override {ov.Metadata.Name} ({ov.Spec.Author}) until {ov.ExpiresAt:O}: {ov.Spec.Reason}", gen, now);
        _exhausted[region] = exhausted ? 1 : 0;
        if (changed)
        {
            // resourceVersion precondition: a concurrent writer makes this a conflict, and the next reconcile recomputes.
            var r = await _store.UpdateStatusAsync(b, cancellationToken).ConfigureAwait(false);
            if (!r.IsOk) return ReconcileResult.Retry;
        }
        var next = _options.Refresh;
        if (ov?.ExpiresAt is { } until && until - now > TimeSpan.Zero && until - now < next) next = until - now;
        return ReconcileResult.After(next);
    }

    // While the gate is suspended the cell holds no budget for the region: account it with a temporary view.
    private RecoveryBudgetUsage Account(string region, ResourceVector capacity, int minPriority)
        => _cell.AccountRecoveryBudget(new CellRecoveryBudget(region, capacity, minPriority));

    private IEnumerable<Measurement<int>> ObserveExhausted()
    {
        foreach (var (region, e) in _exhausted) yield return new Measurement<int>(e, new KeyValuePair<string, object?>("region", region));
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

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
