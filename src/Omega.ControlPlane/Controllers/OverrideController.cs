using System.Diagnostics.Metrics;
using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>One thing the override controller did (its bounded history; the durable record is the override's status).</summary>
/// <param name="At">When (the controller's clock).</param>
/// <param name="Override">The override's name.</param>
/// <param name="Action"><c>Applied</c>, <c>Expired</c> (TTL over, effect reverted) or <c>Deleted</c> (deleted early, effect reverted).</param>
/// <param name="Detail">What changed, in words.</param>
public sealed record OverrideRecord(DateTimeOffset At, string Override, string Action, string Detail);

/// <summary>Settings of the <see cref="OverrideController"/>.</summary>
public sealed class OverrideControllerOptions
{
    /// <summary>How often a sweep runs (default 1 s): the latest an expired override is reverted is one interval after its TTL.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>An override past its TTL by more than this and still not reverted is <b>overdue</b> (the gauge an alert watches; default 30 s).</summary>
    public TimeSpan OverdueAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Entries kept in <see cref="OverrideController.History"/>.</summary>
    public int HistoryCapacity { get; set; } = 1024;
}

/// <summary>
/// The repair controller's override sweep (docs/control-plane.md, "Overrides"): level-triggered, every
/// <see cref="OverrideControllerOptions.Interval"/>, it applies each live <see cref="Override"/>'s effect to the cell
/// (zone/region avoidance as a node taint, an emergency quota as a raised tenant limit, a confirm-lost as the cell's
/// domain-loss confirmation) and, when the TTL ends or the object is deleted, reverts the effect and records it in the
/// override's status (<c>phase: Expired</c>, <c>revertedAt</c>; durable: a journaled object write), in
/// <see cref="History"/> and in the <c>omega.controlplane.overrides.expired</c> counter. Autoscaler pauses and recovery
/// overrides have no cell effect: their consumers ask <see cref="IsActive"/>.
/// </summary>
public sealed class OverrideController : IDisposable
{
    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly IControllerScheduler _scheduler;
    private readonly OverrideControllerOptions _options;
    private readonly TimeProvider _time;
    private readonly Meter _meter;
    private readonly Queue<OverrideRecord> _history = new();
    private readonly Lock _lock = new();
    // One sweep at a time; an AsyncGate so a contended sweep resumes on the releasing thread, not the pool (the
    // deterministic simulation stays on one thread; AsyncGate's remarks).
    private readonly AsyncGate _sweep = new();
    private readonly long[] _activeByType = new long[Enum.GetValues<OverrideType>().Length];
    private long _expired;
    private long _overdue;
    private volatile bool _stopped;
    private int _sweeping;
    // Serialises the cell effects (raise, revert, level-triggered limit), each computed from the clock read inside it, so a
    // slow sweep's stale view can never overwrite a newer revert.
    private readonly Lock _effects = new();
    // Overrides whose effect EnforceExpiries reverted at their TTL, with what it did, until the sweep records the expiry.
    private readonly Dictionary<long, string> _revertedAtTtl = new();

    /// <summary>Creates the controller (call <see cref="Start"/>, or drive <see cref="SweepAsync"/> yourself).</summary>
    public OverrideController(ObjectStore store, Cell cell, IControllerScheduler scheduler, OverrideControllerOptions? options = null, IMeterFactory? meterFactory = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _options = options ?? new OverrideControllerOptions();
        _time = scheduler.Time;
        _meter = CellCounters.CreateMeter(ReservationController.MeterName, cell.Name, meterFactory);
        _meter.CreateObservableGauge("omega.controlplane.overrides.active", ObserveActive, "{override}", "Live overrides, by type");
        _meter.CreateObservableCounter("omega.controlplane.overrides.expired", () => Expired, "{override}", "Overrides whose effect was reverted (TTL over or deleted)");
        _meter.CreateObservableGauge("omega.controlplane.overrides.overdue", () => Overdue, "{override}", "Overrides past their TTL by more than OverdueAfter and not yet reverted");
    }

    /// <summary>Overrides reverted so far (TTL over or deleted).</summary>
    public long Expired => Interlocked.Read(ref _expired);

    /// <summary>Overrides past their TTL by more than <see cref="OverrideControllerOptions.OverdueAfter"/> at the last sweep.</summary>
    public long Overdue => Interlocked.Read(ref _overdue);

    /// <summary>What the controller did, oldest first (bounded).</summary>
    public IReadOnlyList<OverrideRecord> History
    {
        get
        {
            lock (_lock) return [.. _history];
        }
    }

    /// <summary>Runs a sweep now and then every <see cref="OverrideControllerOptions.Interval"/>.</summary>
    public void Start() => _scheduler.Post(Tick);

    /// <summary>Stops the periodic sweeps (a sweep in progress finishes).</summary>
    public void Dispose()
    {
        _stopped = true;
        _meter.Dispose();
    }

    /// <summary>
    /// True when a live override of <paramref name="type"/> names <paramref name="target"/> (or <c>*</c>). Reads the store's
    /// current objects and the clock, so an override stops counting at its TTL even before the sweep reverts it.
    /// </summary>
    public bool IsActive(OverrideType type, string target) => FindActive(_store, type, target, _time.GetUtcNow()) is not null;

    /// <summary>The live override of <paramref name="type"/> naming <paramref name="target"/> (or <c>*</c>) in <paramref name="store"/>, or null.</summary>
    public static Override? FindActive(ObjectStore store, OverrideType type, string target, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(store);
        foreach (var o in ListAll(store, Override.KindName))
            if (o is Override ov && ov.Spec.Type == type && (ov.Spec.Target == "*" || ov.Spec.Target == target) && ov.IsLive(now)) return ov;
        return null;
    }

    /// <summary>
    /// The limit a tenant managed by a <see cref="Quota"/> object should have at <paramref name="now"/>: the object's
    /// <paramref name="baseLimit"/> plus the extras of the live <see cref="OverrideType.EmergencyQuota"/> overrides naming
    /// the tenant. The quota controller and the override sweep both set exactly this, so they never undo each other.
    /// </summary>
    public static ResourceVector EffectiveLimit(ObjectStore store, string tenant, ResourceVector baseLimit, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(store);
        var limit = baseLimit;
        // BUGGIFY SkipOverrideExpiry: an override counts until deleted, whatever its TTL (the DST's quota checker must fail).
        bool ignoreTtl = (store.Buggify & Buggify.SkipOverrideExpiry) != 0;
        foreach (var o in ListAll(store, Override.KindName))
            if (o is Override ov && ov.Spec.Type == OverrideType.EmergencyQuota && ov.Spec.Target == tenant && (ov.IsLive(now) || ignoreTtl && ov.Metadata.DeletionTimestamp is null))
                limit += ov.Spec.Extra.ToVector();
        return limit;
    }

    // The applied Quota object of a tenant (the oldest not being deleted), or null: then the tenant is managed over the wire.
    private Quota? QuotaObjectOf(string tenant)
    {
        Quota? owner = null;
        foreach (var o in _store.List(new ObjectFilter(Quota.KindName, tenant), 1000).Items)
            if (o is Quota q && q.Metadata.DeletionTimestamp is null && (owner is null || q.Metadata.Uid < owner.Metadata.Uid)) owner = q;
        return owner;
    }

    // A tenant with a Quota object with a limit: its limit is the object's plus the live extras (set level-triggered).
    private bool SyncManagedLimit(string tenant, DateTimeOffset now, out string detail)
    {
        detail = "";
        if (QuotaObjectOf(tenant) is not { } q || q.Spec.Limit.ToVector().IsZero || !TryTenant(tenant, out var t)) return false;
        var want = EffectiveLimit(_store, tenant, q.Spec.Limit.ToVector(), now);
        if (_cell.GetTenantUsage(t).Quota != want) _cell.SetTenantQuota(t, want);
        detail = $"tenant {tenant}'s limit is its Quota object's {q.Spec.Limit.ToVector()} plus live emergency quotas: {want}";
        return true;
    }

    // Every interval, and at the next TTL if sooner: first the cell effects follow the clock (synchronous, no write), then a
    // sweep starts unless the last one is still waiting on its durable status writes. Why the two are split: a sweep's
    // writes wait for durability, and under a slow disk one sweep can take seconds; the first version scheduled the next
    // tick only when the sweep finished, so an override whose TTL ended during a slow sweep kept raising the tenant's
    // limit until the sweep after it. The deterministic simulation found it (seed 5062 of the main harness: a 3 s sweep,
    // then new usage admitted under a quota raise 5.7 s past its TTL).
    private void Tick()
    {
        if (_stopped) return;
        var next = EnforceExpiries();
        if (Interlocked.CompareExchange(ref _sweeping, 1, 0) == 0)
        {
            _ = SweepAsync(CancellationToken.None).AsTask().ContinueWith(
                static (_, s) => Volatile.Write(ref ((OverrideController)s!)._sweeping, 0),
                this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        var delay = _options.Interval;
        if (next is { } e)
        {
            var until = e - _time.GetUtcNow();
            if (until < delay) delay = until > TimeSpan.Zero ? until : TimeSpan.FromTicks(1);
        }
        if (!_stopped) _scheduler.Schedule(delay, Tick);
    }

    /// <summary>
    /// Reverts, at once and without waiting for any write, the cell effect of every applied override whose TTL has passed
    /// (the sweep then records the expiry durably). Returns the earliest TTL still ahead among applied overrides, so the
    /// caller can wake up exactly then.
    /// </summary>
    private DateTimeOffset? EnforceExpiries()
    {
        DateTimeOffset? next = null;
        HashSet<string>? quotaTenants = null;
        foreach (var o in ListAll(_store, Override.KindName))
        {
            if (o is not Override ov || ov.Metadata.DeletionTimestamp is not null || ov.Status.Phase == Override.PhaseExpired || ov.ExpiresAt is not { } e) continue;
            // A tenant managed by a Quota object has a level-triggered limit (the quota controller raises it for a live
            // override even before the sweep marks it applied), so it is recomputed here whatever the override's phase.
            if (ov.Spec.Type == OverrideType.EmergencyQuota) (quotaTenants ??= new HashSet<string>(StringComparer.Ordinal)).Add(ov.Spec.Target);
            var now = _time.GetUtcNow();
            if (now < e)
            {
                if (next is null || e < next) next = e;
                continue;
            }
            if (ov.Status.Phase != Override.PhaseActive || ov.Spec.Type is OverrideType.ZoneAvoid or OverrideType.RegionAvoid) continue;   // taints follow the sweep's live set
            lock (_effects)
            {
                if (_revertedAtTtl.ContainsKey(ov.Metadata.Uid)) continue;
                _revertedAtTtl[ov.Metadata.Uid] = Revert(ov);
            }
        }
        if (quotaTenants is not null)
            foreach (var tenant in quotaTenants)
                lock (_effects) SyncManagedLimit(tenant, _time.GetUtcNow(), out _);
        return next;
    }

    /// <summary>One sweep: apply what is live, revert what expired or was deleted, fix node taints. Returns the overrides acted on.</summary>
    public async ValueTask<int> SweepAsync(CancellationToken cancellationToken)
    {
        // One sweep at a time: a test or the CLI may drive one while the timer runs another.
        await _sweep.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await SweepCoreAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sweep.Release();
        }
    }

    private async ValueTask<int> SweepCoreAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        int acted = 0;
        long overdue = 0;
        var active = new long[_activeByType.Length];
        var avoidZones = new HashSet<string>(StringComparer.Ordinal);
        var avoidRegions = new HashSet<string>(StringComparer.Ordinal);
        var live = new List<Override>();
        foreach (var o in ListAll(_store, Override.KindName))
        {
            if (o is not Override ov) continue;
            // The clock is read per object: the writes below wait for durability, and a slow disk makes a sweep long.
            now = _time.GetUtcNow();
            if (ov.Metadata.DeletionTimestamp is not null)
            {
                if (await RevertDeletedAsync(ov, now, cancellationToken).ConfigureAwait(false)) acted++;
                continue;
            }
            if (ov.Status.Phase == Override.PhaseExpired || ov.ExpiresAt is not { } expires) continue;
            if (now >= expires)
            {
                if (now - expires > _options.OverdueAfter) overdue++;
                if (await ExpireAsync(ov, now, cancellationToken).ConfigureAwait(false)) acted++;
                continue;
            }
            var applied = await ApplyAsync(ov, now, cancellationToken).ConfigureAwait(false);
            if (applied is null) continue;
            if (applied.Status.AppliedAt == now) acted++;
            active[(int)ov.Spec.Type]++;
            live.Add(applied);
            if (ov.Spec.Type == OverrideType.ZoneAvoid) avoidZones.Add(ov.Spec.Target);
            else if (ov.Spec.Type == OverrideType.RegionAvoid) avoidRegions.Add(ov.Spec.Target);
        }
        var counts = SyncTaints(avoidZones, avoidRegions);
        // Node counts in the status (written only when they change: no resourceVersion churn at every sweep).
        foreach (var ov in live)
        {
            if (ov.Spec.Type is not (OverrideType.ZoneAvoid or OverrideType.RegionAvoid)) continue;
            int n = counts.TryGetValue((ov.Spec.Type, ov.Spec.Target), out var c) ? c : 0;
            if (ov.Status.Nodes == n) continue;
            ov.Status.Nodes = n;
            ov.Status.Message = $"{n} node(s) of {(ov.Spec.Type == OverrideType.ZoneAvoid ? "zone" : "region")} {ov.Spec.Target} tainted {Override.AvoidTaint}";
            await _store.UpdateStatusAsync(ov, cancellationToken).ConfigureAwait(false);
        }
        for (int i = 0; i < active.Length; i++) Interlocked.Exchange(ref _activeByType[i], active[i]);
        Interlocked.Exchange(ref _overdue, overdue);
        return acted;
    }

    // Live: the finalizer first (so a delete always passes through the revert), then the effect, recorded in the status
    // before the cell changes for the one effect that is not idempotent (the quota raise), so a crash between the two
    // cannot raise twice: the next sweep compares the cell's limit with the recorded previous and raised values.
    private async ValueTask<Override?> ApplyAsync(Override ov, DateTimeOffset now, CancellationToken ct)
    {
        if (!ov.Metadata.Finalizers.Contains(Override.Finalizer))
        {
            ov.Metadata.Finalizers.Add(Override.Finalizer);
            var u = await _store.UpdateAsync(ov, ct).ConfigureAwait(false);
            if (!u.IsOk || u.Object is not Override updated) return null;   // changed meanwhile: the next sweep looks again
            ov = updated;
        }
        bool first = ov.Status.Phase != Override.PhaseActive;
        string detail = "";
        if (first && ov.Spec.Type == OverrideType.EmergencyQuota && StackedOnUnmanaged(ov) is { } other)
        {
            // A tenant whose limit is set over the wire (no Quota object) has no base value to recompute from: each raise
            // records the limit before it and restores it at expiry, which is exact for one raise at a time but not for
            // two that expire out of order (the first to expire finds the limit raised by the second and must leave it;
            // the second then restores a value that still contains the first's extra). So a second emergency quota on such
            // a tenant waits until the first has been reverted; a Quota object's tenant stacks them exactly.
            string wait = $"waiting: emergency quota {other} is in effect on tenant {ov.Spec.Target}, which has no Quota object (one raise at a time)";
            if (Conditions.Set(ov.Status.Conditions, "Applied", ConditionStatus.False, "Stacked", wait, ov.Metadata.Generation, now))
            {
                ov.Status.Message = wait;
                await _store.UpdateStatusAsync(ov, ct).ConfigureAwait(false);
            }
            return null;
        }
        if (first)
        {
            ov.Status.Phase = Override.PhaseActive;
            ov.Status.AppliedAt = now;
            ov.Status.ExpiresAt = ov.ExpiresAt;
            if (ov.Spec.Type == OverrideType.EmergencyQuota && TryTenant(ov.Spec.Target, out var t))
            {
                var limit = _cell.GetTenantUsage(t).Quota;
                ov.Status.PreviousLimit = limit is { } l ? FromVector(l) : null;
                ov.Status.RaisedLimit = limit is { } l2 ? FromVector(l2 + ov.Spec.Extra.ToVector()) : null;
            }
            detail = Describe(ov);
            ov.Status.Message = detail;
            Conditions.Set(ov.Status.Conditions, "Applied", ConditionStatus.True, "Applied", detail, ov.Metadata.Generation, now);
            var s = await _store.UpdateStatusAsync(ov, ct).ConfigureAwait(false);
            if (!s.IsOk || s.Object is not Override written) return null;
            ov = written;
        }
        // Level-triggered effects (repeated at every sweep: a restart or a lost write is repaired here). The writes above
        // waited for durability, so the clock is read again: an override whose TTL passed meanwhile gets no effect (the
        // next sweep records its expiry), else a slow sweep would re-raise a limit EnforceExpiries had just reverted.
        lock (_effects)
        {
            var at = _time.GetUtcNow();
            if (!ov.IsLive(at)) return null;
            switch (ov.Spec.Type)
            {
                case OverrideType.EmergencyQuota when SyncManagedLimit(ov.Spec.Target, at, out _):
                    break;
                case OverrideType.EmergencyQuota when ov.Status.RaisedLimit is { } raised && TryTenant(ov.Spec.Target, out var tenant):
                    var current = _cell.GetTenantUsage(tenant).Quota;
                    if (current is { } c && ov.Status.PreviousLimit is { } prev && c == prev.ToVector()) _cell.SetTenantQuota(tenant, raised.ToVector());
                    break;
                case OverrideType.ConfirmLost:
                    if (_cell.GetDomainLoss(ov.Spec.Target) is null) _cell.ConfirmDomainLost(ov.Spec.Target, AuthorOf(ov), ov.Spec.Reason, out _);
                    break;
            }
        }
        if (first) Record(now, ov.Metadata.Name, "Applied", detail);
        return ov;
    }

    // The name of another emergency quota whose raise is in effect on the same tenant, when that tenant has no Quota
    // object; null otherwise.
    private string? StackedOnUnmanaged(Override ov)
    {
        if (QuotaObjectOf(ov.Spec.Target) is { } q && !q.Spec.Limit.ToVector().IsZero) return null;
        foreach (var o in ListAll(_store, Override.KindName))
        {
            if (o is not Override other || other.Metadata.Uid == ov.Metadata.Uid || other.Spec.Type != OverrideType.EmergencyQuota
                || other.Spec.Target != ov.Spec.Target || other.Status.Phase != Override.PhaseActive) continue;
            lock (_effects)
                if (_revertedAtTtl.ContainsKey(other.Metadata.Uid)) continue;
            return other.Metadata.Name;
        }
        return null;
    }

    private async ValueTask<bool> ExpireAsync(Override ov, DateTimeOffset now, CancellationToken ct)
    {
        string detail;
        lock (_effects)
        {
            // Reverted at the TTL already (EnforceExpiries): record what that did rather than revert a second time.
            if (!_revertedAtTtl.TryGetValue(ov.Metadata.Uid, out var done)) done = Revert(ov);
            detail = done;
        }
        ov.Status.Phase = Override.PhaseExpired;
        ov.Status.RevertedAt = now;
        ov.Status.ExpiresAt ??= ov.ExpiresAt;
        ov.Status.Message = $"expired at {ov.ExpiresAt:O}: {detail}";
        Conditions.Set(ov.Status.Conditions, "Applied", ConditionStatus.False, "Expired", ov.Status.Message, ov.Metadata.Generation, now);
        var s = await _store.UpdateStatusAsync(ov, ct).ConfigureAwait(false);
        if (!s.IsOk) return false;
        lock (_effects) _revertedAtTtl.Remove(ov.Metadata.Uid);
        // The finalizer's job is done: the effect is reverted, a later delete needs nothing more.
        if (s.Object is Override written && written.Metadata.Finalizers.Remove(Override.Finalizer))
            await _store.UpdateAsync(written, ct).ConfigureAwait(false);
        Interlocked.Increment(ref _expired);
        Record(now, ov.Metadata.Name, "Expired", detail);
        return true;
    }

    private async ValueTask<bool> RevertDeletedAsync(Override ov, DateTimeOffset now, CancellationToken ct)
    {
        if (!ov.Metadata.Finalizers.Contains(Override.Finalizer)) return false;
        string detail;
        lock (_effects)
        {
            if (!_revertedAtTtl.Remove(ov.Metadata.Uid, out var done)) done = ov.Status.Phase == Override.PhaseActive ? Revert(ov) : "nothing to revert";
            detail = done;
        }
        ov.Metadata.Finalizers.Remove(Override.Finalizer);
        var u = await _store.UpdateAsync(ov, ct).ConfigureAwait(false);
        if (!u.IsOk) return false;
        if (ov.Status.Phase == Override.PhaseActive) Interlocked.Increment(ref _expired);
        Record(now, ov.Metadata.Name, "Deleted", detail);
        return true;
    }

    // The revert of the effects that are not taints (taints follow the live set in SyncTaints).
    private string Revert(Override ov)
    {
        switch (ov.Spec.Type)
        {
            case OverrideType.EmergencyQuota:
                if (!TryTenant(ov.Spec.Target, out var t)) return $"tenant {ov.Spec.Target} unknown: nothing to revert";
                // Managed by a Quota object: recompute without this override (no longer live: past its TTL or deleted).
                if (SyncManagedLimit(ov.Spec.Target, _time.GetUtcNow(), out var managed)) return managed;
                if (ov.Status.Phase != Override.PhaseActive) return "never applied: nothing to revert";
                if (ov.Status.RaisedLimit is not { } raised) return "the tenant had no limit: nothing was raised";
                var current = _cell.GetTenantUsage(t).Quota;
                if (current is { } c && c == raised.ToVector())
                {
                    _cell.SetTenantQuota(t, ov.Status.PreviousLimit?.ToVector());
                    return $"tenant {ov.Spec.Target}'s limit restored to {ov.Status.PreviousLimit?.ToVector().ToString() ?? "none"}";
                }
                if (current == ov.Status.PreviousLimit?.ToVector())
                    return $"tenant {ov.Spec.Target}'s limit is back at {ov.Status.PreviousLimit?.ToVector().ToString() ?? "none"}";
                // Someone set the limit during the override: theirs is the newer decision, so it stands.
                return $"tenant {ov.Spec.Target}'s limit was changed during the override (now {current?.ToString() ?? "none"}): left as it is";
            case OverrideType.ConfirmLost:
                if (_cell.GetDomainLoss(ov.Spec.Target) is { } d && d.Author == AuthorOf(ov))
                {
                    _cell.WithdrawDomainLoss(ov.Spec.Target, AuthorOf(ov), "override expired", out _);
                    return $"domain-loss confirmation of {ov.Spec.Target} withdrawn";
                }
                return $"no confirmation of {ov.Spec.Target} by this override in effect";
            case OverrideType.ZoneAvoid:
            case OverrideType.RegionAvoid:
                return $"{Override.AvoidTaint} removed from {(ov.Spec.Type == OverrideType.ZoneAvoid ? "zone" : "region")} {ov.Spec.Target} unless another live override avoids it";
            default:
                return $"{ov.Spec.Type} on {ov.Spec.Target} no longer in effect";
        }
    }

    // Every node carries the avoid taint exactly when a live override avoids its zone or region. Level-triggered, so an
    // agent re-registering (which replaces its node's spec) gets the taint back at the next sweep.
    private Dictionary<(OverrideType, string), int> SyncTaints(HashSet<string> zones, HashSet<string> regions)
    {
        var counts = new Dictionary<(OverrideType, string), int>();
        var snap = _cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.Status == NodeStatus.Removed) continue;
            var spec = v.Spec;
            bool zone = spec.Labels.TryGetValue(Override.ZoneLabel, out var z) && zones.Contains(z);
            bool region = spec.Labels.TryGetValue(Override.RegionLabel, out var r) && regions.Contains(r);
            if (zone) counts[(OverrideType.ZoneAvoid, z!)] = counts.GetValueOrDefault((OverrideType.ZoneAvoid, z!)) + 1;
            if (region) counts[(OverrideType.RegionAvoid, r!)] = counts.GetValueOrDefault((OverrideType.RegionAvoid, r!)) + 1;
            bool want = zone || region;
            bool has = spec.Taints.Contains(Override.AvoidTaint);
            if (want == has) continue;
            var taints = new List<string>(spec.Taints);
            if (want) taints.Add(Override.AvoidTaint);
            else taints.RemoveAll(static x => x == Override.AvoidTaint);
            _cell.UpdateNode(v.Id, new NodeSpec(spec.Name, spec.Capacity, spec.FailureDomain, spec.Labels, taints));
        }
        return counts;
    }

    private static string AuthorOf(Override ov) => $"override/{ov.Metadata.Name} by {(ov.Spec.Author.Length == 0 ? "unknown" : ov.Spec.Author)}";

    private static string Describe(Override ov) => ov.Spec.Type switch
    {
        OverrideType.ZoneAvoid => $"no new placements in zone {ov.Spec.Target}",
        OverrideType.RegionAvoid => $"no new placements in region {ov.Spec.Target}",
        OverrideType.AutoscalerPause => $"autoscaler paused for pool {ov.Spec.Target}",
        OverrideType.EmergencyQuota => ov.Status.RaisedLimit is { } r
            ? $"tenant {ov.Spec.Target}'s limit raised from {ov.Status.PreviousLimit!.ToVector()} to {r.ToVector()}"
            : $"tenant {ov.Spec.Target} has no limit (or is unknown): nothing to raise",
        OverrideType.RecoveryOverride => $"recovery may exceed region {ov.Spec.Target}'s recovery budget",
        OverrideType.ConfirmLost => $"failure domain {ov.Spec.Target} confirmed lost",
        _ => ov.Spec.Type.ToString(),
    } + $" until {ov.ExpiresAt:O} ({ov.Spec.Author}: {ov.Spec.Reason})";

    private bool TryTenant(string name, out TenantId id) => _cell.TryGetTenant(name, out id);

    private static ResourceRequest FromVector(ResourceVector v) => new() { CpuMillis = v.CpuMillis, MemoryBytes = v.MemoryBytes, Gpus = v.Gpus, DiskBytes = v.DiskBytes };

    private void Record(DateTimeOffset now, string name, string action, string detail)
    {
        lock (_lock)
        {
            _history.Enqueue(new OverrideRecord(now, name, action, detail));
            while (_history.Count > Math.Max(1, _options.HistoryCapacity)) _history.Dequeue();
        }
    }

    private IEnumerable<Measurement<long>> ObserveActive()
    {
        var types = Enum.GetValues<OverrideType>();
        for (int i = 0; i < types.Length; i++)
            yield return new Measurement<long>(Interlocked.Read(ref _activeByType[i]), new KeyValuePair<string, object?>("type", types[i].ToString()));
    }

    internal static List<ApiObject> ListAll(ObjectStore store, string kind)
    {
        var all = new List<ApiObject>();
        string? next = null;
        do
        {
            var page = store.List(new ObjectFilter(kind), 1000, next);
            all.AddRange(page.Items);
            next = page.Continue;
        }
        while (next is not null);
        return all;
    }
}
