using Omega.Scheduling;

namespace Omega.ControlPlane.Budgets;

/// <summary>The outcome of <see cref="RegionalBudgetScheduler.Submit(JobSpec)"/>.</summary>
public enum RegionalSubmitStatus : byte
{
    /// <summary>Spent from the lease and handed to the engine, pinned to the scheduler's region.</summary>
    Accepted = 0,

    /// <summary>The scheduler holds no lease (never acquired, or returned): nothing spent, nothing submitted.</summary>
    NoLease = 1,

    /// <summary>The lease ended on the scheduler's own clock: it fences itself (nothing spent, nothing submitted) until <see cref="RegionalBudgetScheduler.Acquire"/> or <see cref="RegionalBudgetScheduler.Renew"/> succeeds.</summary>
    LeaseExpired = 2,

    /// <summary>The lease has too little left for the job: nothing spent; the region must wait for a larger lease.</summary>
    BudgetExhausted = 3,

    /// <summary>The job cannot run in this region (its residency excludes it) or the engine refused it; nothing stays spent.</summary>
    Rejected = 4,
}

/// <summary>Settings of a <see cref="RegionalBudgetScheduler"/>.</summary>
public sealed class RegionalBudgetOptions
{
    /// <summary>CPU (millicores) asked for per lease. Default 64 cores.</summary>
    public long LeaseCpuMillis { get; set; } = 64_000;

    /// <summary>Lease length on the scheduler's clock. Default 10 s.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The engine scheduler kind jobs are submitted to (null: the engine's default).</summary>
    public string? SchedulerKind { get; set; }
}

/// <summary>
/// Seed 004's regional scheduler over a <see cref="GlobalBudgetController"/> (issue 13, item 3; docs/control-plane.md,
/// "Global budgets and regional schedulers"): it takes a lease on one global budget (CPU, millicores) for its region,
/// then admits jobs into the <see cref="SchedulingEngine"/> by spending from that lease locally — one compare-and-swap,
/// no call to the global controller per replica (the controller sees one request per lease acquire or renewal:
/// <see cref="GlobalBudgetController.Requests"/>). Every job it admits is pinned to its region (required region), so
/// what a region spends is what it places. When the lease ends on this scheduler's clock it stops spending: submits
/// return <see cref="RegionalSubmitStatus.LeaseExpired"/> and nothing reaches the engine until a renewal or a new lease.
/// </summary>
/// <remarks>
/// What stays with commit, not with the budget: unique binding, node capacity and tenant quota are still checked by the
/// cell's commit for each placement (a budget bounds a region's share of a global limit; it is not an invariant of the
/// cell). Spent budget of a job the engine refuses is given back at once. Thread-safe: spends are lock-free on the
/// lease; acquire and renew are serialised by a lock (per lease, not per placement).
/// </remarks>
public sealed class RegionalBudgetScheduler
{
    private readonly Lock _lock = new();
    private readonly GlobalBudgetController _global;
    private readonly SchedulingEngine _engine;
    private readonly TimeProvider _time;
    private readonly RegionalBudgetOptions _options;
    private BudgetLease? _lease;

    /// <summary>A scheduler for <paramref name="region"/> spending budget <paramref name="budget"/> of <paramref name="global"/> into <paramref name="engine"/>; <paramref name="time"/> is its own clock (its lease's fence).</summary>
    public RegionalBudgetScheduler(GlobalBudgetController global, SchedulingEngine engine, string region, string budget, TimeProvider? time = null, RegionalBudgetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentException.ThrowIfNullOrEmpty(budget);
        _global = global;
        _engine = engine;
        Region = region;
        Budget = budget;
        _time = time ?? TimeProvider.System;
        _options = options ?? new RegionalBudgetOptions();
    }

    /// <summary>The region whose placements this scheduler admits.</summary>
    public string Region { get; }

    /// <summary>The global budget it spends.</summary>
    public string Budget { get; }

    /// <summary>The lease held now, or null.</summary>
    public BudgetLease? Lease { get { lock (_lock) return _lease; } }

    /// <summary>Jobs admitted into the engine, and submits refused because the lease had ended (the fence at work).</summary>
    public (long Admitted, long FencedByExpiry) Counts => (Interlocked.Read(ref _admitted), Interlocked.Read(ref _fenced));

    private long _admitted, _fenced;

    /// <summary>Takes a new lease of <see cref="RegionalBudgetOptions.LeaseCpuMillis"/> (one request to the controller). A held lease is returned first.</summary>
    public BudgetLeaseStatus Acquire()
    {
        lock (_lock)
        {
            if (_lease is { } old) _global.Return(old);
            _lease = null;
            // The holder's clock read before the request: the lease ends TTL after it on this clock, so delay only shortens it.
            var start = _time.GetUtcNow();
            var s = _global.TryAcquire(Budget, Region, _options.LeaseCpuMillis, _options.LeaseTtl, start, out var lease);
            if (s == BudgetLeaseStatus.Ok) _lease = lease;
            return s;
        }
    }

    /// <summary>Renews the held lease for another TTL (one request). <see cref="BudgetLeaseStatus.StaleLease"/>: the controller took it back; <see cref="Acquire"/> a new one. <see cref="BudgetLeaseStatus.Revoked"/>: the region's share was revoked; the lease is dropped at once.</summary>
    public BudgetLeaseStatus Renew()
    {
        lock (_lock)
        {
            if (_lease is not { } lease) return BudgetLeaseStatus.StaleLease;
            var s = _global.Renew(lease, _options.LeaseTtl, _time.GetUtcNow());
            // Revoked: the global policy took the region's budget away and this scheduler heard it: it stops spending now
            // (an unreachable one would stop at its lease's end). The controller counts the lease until its reclaim time.
            if (s is BudgetLeaseStatus.StaleLease or BudgetLeaseStatus.Revoked) _lease = null;
            return s;
        }
    }

    /// <summary>
    /// Admits <paramref name="job"/> if the lease is live on this scheduler's clock and has its CPU (tasks × per-task
    /// millicores) left: spends it, pins the job to <see cref="Region"/> and submits it to the engine. No call to the
    /// global controller.
    /// </summary>
    public RegionalSubmitStatus Submit(JobSpec job) => Submit(job, _options.SchedulerKind, out _);

    /// <summary>
    /// <see cref="Submit(JobSpec)"/> to engine scheduler kind <paramref name="schedulerKind"/> (null: the engine's default);
    /// <paramref name="spentFrom"/> is the lease the job's CPU was spent from when <see cref="RegionalSubmitStatus.Accepted"/>
    /// (what <see cref="GlobalBudgetController.ReleaseSpend"/> gives it back to when the placement ends).
    /// </summary>
    public RegionalSubmitStatus Submit(JobSpec job, string? schedulerKind, out BudgetLease? spentFrom)
    {
        ArgumentNullException.ThrowIfNull(job);
        spentFrom = null;
        var lease = Lease;
        if (lease is null) return RegionalSubmitStatus.NoLease;
        if (!job.Topology.ResidencyAllows(Region) || job.Topology.Avoids(Region)) return RegionalSubmitStatus.Rejected;
        long cost = job.PerTask.CpuMillis * job.TaskCount;
        switch (lease.TrySpend(cost, _time.GetUtcNow()))
        {
            case BudgetLeaseStatus.Ok: break;
            case BudgetLeaseStatus.LeaseExpired:
                Interlocked.Increment(ref _fenced);
                return RegionalSubmitStatus.LeaseExpired;
            case BudgetLeaseStatus.Exhausted: return RegionalSubmitStatus.BudgetExhausted;
            default: return RegionalSubmitStatus.Rejected;
        }
        var t = job.Topology;
        var pinned = new JobSpec(job.Id, job.Tenant, job.Priority, job.TaskCount, job.PerTask, job.Gang, job.RequiredLabels, job.Tolerations, job.Name)
        {
            Group = job.Group,
            Origin = job.Origin,
            Topology = new TopologyConstraints([Region], t.AvoidRegions, t.PreferredRegions, t.Spread),
        };
        var r = _engine.Submit(pinned, schedulerKind);
        if (r.Status != EnqueueStatus.Accepted)
        {
            // Not admitted: the budget was not used (a duplicate's spend was made by its first submit).
            lease.Unspend(cost);
            return RegionalSubmitStatus.Rejected;
        }
        Interlocked.Increment(ref _admitted);
        spentFrom = lease;
        return RegionalSubmitStatus.Accepted;
    }
}
