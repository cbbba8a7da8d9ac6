using System.Collections.Concurrent;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;

namespace Omega.ControlPlane.Budgets;

/// <summary>Settings of a <see cref="RegionalBudgetRouter"/> (the served product's regional schedulers).</summary>
public sealed class RegionalBudgetRouterOptions
{
    /// <summary>Route replicas through regional schedulers at all. Default off: every replica goes to the engine directly.</summary>
    public bool Enabled { get; set; }

    /// <summary>Each tenant's global CPU budget (millicores) the regions lease parts of. Default 1,000 cores.</summary>
    public long TenantCpuMillis { get; set; } = 1_000_000;

    /// <summary>CPU (millicores) a regional scheduler asks for per lease. Default 64 cores.</summary>
    public long LeaseCpuMillis { get; set; } = 64_000;

    /// <summary>Lease length on the regional scheduler's clock. Default 10 s (renewed every third of it).</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the host renews every lease (null: a third of <see cref="LeaseTtl"/>); also how soon a regional scheduler hears that its budget was revoked.</summary>
    public TimeSpan? RenewEvery { get; set; }

    /// <summary>The least time between two acquire attempts of one regional scheduler whose lease is gone or exhausted (so a refused region does not ask the global controller per replica). Default 1 s.</summary>
    public TimeSpan AcquireRetry { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// Seed 004's shape in the served product (issue 13, item 3; docs/control-plane.md, "Global budgets and regional
/// schedulers"): the workload controller hands every replica whose template requires a region to that region's
/// <see cref="RegionalBudgetScheduler"/> (one per region and tenant, created on first use), which spends the replica's
/// CPU from its lease on the tenant's global budget and admits it into the engine pinned to the region — no request to
/// the <see cref="GlobalBudgetController"/> per replica, one per lease acquire or renewal. A region whose lease is gone
/// (revoked and run out, expired unrenewed, exhausted) admits nothing: the replica stays pending with the reason, and the
/// controller retries it at its next reconcile. Replicas without a required region go to the engine directly (a failover
/// must be free to land anywhere). When a replica's placement ends its spend is given back
/// (<see cref="GlobalBudgetController.ReleaseSpend"/>).
/// </summary>
/// <remarks>
/// What stays with the cell's commit (coordination before commit): unique binding, node capacity, tenant quota,
/// protected capacity, recovery budgets. What runs on the local budget: a region's share of the tenant's global budget;
/// overspend is impossible by the lease rule, and unspent parts come back by reclaim (repair). The spends are in memory:
/// after a restart the new controller starts from zero while the restored replicas are resubmitted and spend again.
/// Thread-safe; the per-replica path is a dictionary lookup, one lock per region (submits of one region are serialised
/// against that region's lease replacement) and a compare-and-swap on the lease.
/// </remarks>
public sealed class RegionalBudgetRouter : IReplicaRouter
{
    private readonly SchedulingEngine _engine;
    private readonly TimeProvider _time;
    private readonly RegionalBudgetRouterOptions _options;
    private readonly ConcurrentDictionary<(string Region, string Tenant), Regional> _regions = new();
    private readonly ConcurrentDictionary<JobId, (BudgetLease Lease, long Cost, Regional Region)> _spends = new();
    // Tenant → its applied RegionalBudget object's per-region caps (issue 13: durable per-tenant budgets). Absent: the
    // tenant runs on RegionalBudgetRouterOptions.TenantCpuMillis with no caps. Replaced whole (never mutated), so the
    // per-replica path reads it without a lock.
    private readonly ConcurrentDictionary<string, IReadOnlyDictionary<string, long>> _caps = new(StringComparer.Ordinal);
    private long _refused;

    private sealed class Regional(RegionalBudgetScheduler scheduler)
    {
        public readonly RegionalBudgetScheduler Scheduler = scheduler;
        public readonly Lock Gate = new();
        public DateTimeOffset NextAcquire;
        // CPU of the replicas this region admitted for the tenant and not yet released, and counters (guarded by Gate).
        public long Spent, Admitted, RefusedByCap;
    }

    /// <summary>A router over a new <see cref="GlobalBudgetController"/> on <paramref name="time"/>, admitting into <paramref name="engine"/>.</summary>
    public RegionalBudgetRouter(SchedulingEngine engine, TimeProvider? time = null, RegionalBudgetRouterOptions? options = null)
    {
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _time = time ?? engine.Time;
        _options = options ?? new RegionalBudgetRouterOptions();
        Global = new GlobalBudgetController(_time);
    }

    /// <summary>The global policy controller whose budgets the regions lease (one per tenant: <see cref="BudgetOf"/>).</summary>
    public GlobalBudgetController Global { get; }

    /// <summary>The global budget name of tenant <paramref name="tenant"/>.</summary>
    public static string BudgetOf(string tenant) => "tenant/" + tenant;

    /// <summary>Replicas refused so far (no lease, lease ended, budget exhausted, region excluded).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>The regional scheduler of <paramref name="region"/> for <paramref name="tenant"/>, or null before its first replica.</summary>
    public RegionalBudgetScheduler? SchedulerFor(string region, string tenant) => _regions.TryGetValue((region, tenant), out var r) ? r.Scheduler : null;

    /// <inheritdoc/>
    public ReplicaRoute Submit(JobSpec job, string? schedulerKind)
    {
        ArgumentNullException.ThrowIfNull(job);
        var required = job.Topology.RequiredRegions;
        if (!_options.Enabled || required.Count == 0 || job.Origin is not { } origin) return new ReplicaRoute(ReplicaRouteStatus.NotRouted, null);
        // A resubmission of a job whose earlier spend is still recorded (the engine forgot it): give that back first.
        Released(job.Id);
        string? reason = null;
        for (int i = 0; i < required.Count; i++)
        {
            string region = required[i];
            if (job.Topology.Avoids(region)) continue;
            var r = _regions.GetOrAdd((region, origin.Tenant), Create);
            RegionalSubmitStatus s;
            BudgetLease? lease;
            long cost = job.PerTask.CpuMillis * job.TaskCount;
            long? cap = _caps.TryGetValue(origin.Tenant, out var caps) && caps.TryGetValue(region, out long c) ? c : null;
            // One submit per region at a time: a new lease returns the held one, and a spend racing that return would land
            // on a settled lease and be lost from the accounts (the regional scheduler leaves that to its caller). The cap
            // is checked under the same lock, so two replicas cannot both take its last room.
            lock (r.Gate)
            {
                if (cap is { } limit && r.Spent + cost > limit)
                {
                    r.RefusedByCap++;
                    reason ??= $"RegionalBudgetRegionCap: {region} holds {r.Spent} of its {limit} millicore cap for tenant {origin.Tenant}";
                    continue;
                }
                EnsureLeaseLocked(r, cost);
                s = r.Scheduler.Submit(job, schedulerKind, out lease);
                if (s == RegionalSubmitStatus.Accepted)
                {
                    r.Spent += cost;
                    r.Admitted++;
                }
            }
            if (s == RegionalSubmitStatus.Accepted)
            {
                _spends[job.Id] = (lease!, cost, r);
                return new ReplicaRoute(ReplicaRouteStatus.Accepted, null);
            }
            reason ??= $"RegionalBudget{s}: the regional scheduler of {region} did not admit the replica";
        }
        Interlocked.Increment(ref _refused);
        return new ReplicaRoute(ReplicaRouteStatus.Refused, reason ?? "RegionalBudgetRejected: every required region is avoided");
    }

    /// <inheritdoc/>
    public void Released(JobId job)
    {
        if (!_spends.TryRemove(job, out var spend)) return;
        Global.ReleaseSpend(spend.Lease, spend.Cost);
        lock (spend.Region.Gate) spend.Region.Spent -= spend.Cost;
    }

    /// <summary>
    /// Applies a tenant's durable budget (a <see cref="RegionalBudget"/> object): its global budget's limit becomes
    /// <paramref name="cpuMillis"/> (a lower limit than what the regions hold withholds new grants until spends end; a
    /// lease already granted stays spendable until it ends), and each region in <paramref name="regionCaps"/> may hold at
    /// most that much CPU of admitted replicas for the tenant (checked per replica by the region's scheduler, locally).
    /// </summary>
    public void SetTenantBudget(string tenant, long cpuMillis, IReadOnlyDictionary<string, long>? regionCaps)
    {
        ArgumentException.ThrowIfNullOrEmpty(tenant);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cpuMillis);
        _caps[tenant] = regionCaps is null ? new Dictionary<string, long>(StringComparer.Ordinal) : new Dictionary<string, long>(regionCaps, StringComparer.Ordinal);
        Global.SetLimit(BudgetOf(tenant), cpuMillis);
    }

    /// <summary>Withdraws a tenant's durable budget: back to <see cref="RegionalBudgetRouterOptions.TenantCpuMillis"/> and no caps.</summary>
    public void ClearTenantBudget(string tenant)
    {
        ArgumentException.ThrowIfNullOrEmpty(tenant);
        if (!_caps.TryRemove(tenant, out _)) return;
        Global.SetLimit(BudgetOf(tenant), _options.TenantCpuMillis);
    }

    /// <summary>
    /// Per region of <paramref name="tenant"/> that has a scheduler or a cap: its cap, what its admitted replicas hold, its
    /// current lease's amount and its counters, ordered by region (a regional budget's status).
    /// </summary>
    public List<RegionalBudgetRegionStatus> RegionsOf(string tenant)
    {
        var rows = new SortedDictionary<string, RegionalBudgetRegionStatus>(StringComparer.Ordinal);
        _caps.TryGetValue(tenant, out var caps);
        foreach (var ((region, t), r) in _regions)
        {
            if (!string.Equals(t, tenant, StringComparison.Ordinal)) continue;
            var row = new RegionalBudgetRegionStatus { Region = region };
            lock (r.Gate)
            {
                row.SpentMillis = r.Spent;
                row.Admitted = r.Admitted;
                row.RefusedByCap = r.RefusedByCap;
            }
            var lease = r.Scheduler.Lease;
            row.LeaseMillis = lease is null || lease.Settled ? 0 : lease.Amount;
            rows[region] = row;
        }
        if (caps is not null)
            foreach (var (region, cap) in caps)
            {
                if (!rows.TryGetValue(region, out var row)) rows[region] = row = new RegionalBudgetRegionStatus { Region = region };
                row.CapMillis = cap;
                row.Exhausted = row.SpentMillis >= cap;
            }
        return new List<RegionalBudgetRegionStatus>(rows.Values);
    }

    /// <summary>
    /// Renews every regional scheduler's lease (the host calls it every third of a lease). A lease the controller took back
    /// is dropped by its scheduler and a new one is asked for at the next replica; a revoked one is kept until its end.
    /// Returns how many leases were renewed.
    /// </summary>
    public int RenewAll()
    {
        int n = 0;
        foreach (var r in _regions.Values)
        {
            if (r.Scheduler.Lease is null) continue;
            if (r.Scheduler.Renew() == BudgetLeaseStatus.Ok) n++;
        }
        Global.Sweep();
        return n;
    }

    private Regional Create((string Region, string Tenant) key)
    {
        // First use of the tenant's budget sets its limit (an existing budget keeps what the global policy set).
        if (Global.Get(BudgetOf(key.Tenant)).Limit == 0 && Global.Get(BudgetOf(key.Tenant)).Leases == 0)
            Global.SetLimit(BudgetOf(key.Tenant), _options.TenantCpuMillis);
        return new Regional(new RegionalBudgetScheduler(Global, _engine, key.Region, BudgetOf(key.Tenant), _time,
            new RegionalBudgetOptions { LeaseCpuMillis = _options.LeaseCpuMillis, LeaseTtl = _options.LeaseTtl }));
    }

    // A lease is asked for only when the region has none live on its own clock, or too little left for this replica (a
    // lease's amount never grows; a rest smaller than a replica would otherwise refuse every replica until it expired), at
    // most once per AcquireRetry: per lease, never per replica.
    // Caller holds r.Gate.
    private void EnsureLeaseLocked(Regional r, long need)
    {
        var now = _time.GetUtcNow();
        var lease = r.Scheduler.Lease;
        if (lease is not null && now < lease.HolderExpiresAt && lease.Amount - lease.Spent >= need) return;
        if (now < r.NextAcquire) return;
        r.NextAcquire = now + _options.AcquireRetry;
        // Acquire returns the held lease first: an exhausted one's unspent rest, an expired one settles at once.
        r.Scheduler.Acquire();
    }
}
