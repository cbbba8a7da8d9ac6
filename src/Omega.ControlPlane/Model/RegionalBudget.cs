namespace Omega.ControlPlane;

/// <summary>
/// A tenant's regional budgets (issue 13, item 3; seed 004): the tenant's global CPU budget that the regional schedulers
/// lease parts of, and optionally a cap per region on what that region's scheduler may spend for the tenant.
/// </summary>
public sealed class RegionalBudgetSpec
{
    /// <summary>The tenant's global CPU budget (millicores) across every region: what all its regions' leases together may hold. Required, positive.</summary>
    public long CpuMillis { get; set; }

    /// <summary>
    /// Per-region caps (region → millicores): replicas admitted by that region's scheduler for this tenant and not yet
    /// ended may hold at most this much CPU. A region not named has no cap of its own (only the global budget). Optional.
    /// </summary>
    public Dictionary<string, long> Regions { get; set; } = new();
}

/// <summary>One region's line of a <see cref="RegionalBudgetStatus"/>.</summary>
public sealed class RegionalBudgetRegionStatus
{
    /// <summary>The region.</summary>
    public string Region { get; set; } = "";

    /// <summary>The spec's cap for the region (millicores; absent: none).</summary>
    public long? CapMillis { get; set; }

    /// <summary>CPU (millicores) of the replicas the region's scheduler admitted for the tenant that have not ended.</summary>
    public long SpentMillis { get; set; }

    /// <summary>The amount of the region's current lease on the global budget (0: it holds none).</summary>
    public long LeaseMillis { get; set; }

    /// <summary>Replicas admitted by the region's scheduler since the server started.</summary>
    public long Admitted { get; set; }

    /// <summary>Replicas refused because the region's cap would have been exceeded, since the server started.</summary>
    public long RefusedByCap { get; set; }

    /// <summary>True when the region's spend has reached its cap.</summary>
    public bool Exhausted { get; set; }
}

/// <summary>A regional budget's observed state (written by the regional budget controller).</summary>
public sealed class RegionalBudgetStatus
{
    /// <summary>The global budget's limit in effect (millicores): the spec's, once applied.</summary>
    public long LimitMillis { get; set; }

    /// <summary>What the tenant's regions hold of the global budget (granted leases plus spends settled from returned ones).</summary>
    public long InUseMillis { get; set; }

    /// <summary>Live leases on the global budget.</summary>
    public int Leases { get; set; }

    /// <summary>Per region that has a scheduler or a cap, ordered by region.</summary>
    public List<RegionalBudgetRegionStatus> Regions { get; set; } = new();

    /// <summary>The generation last applied.</summary>
    public long ObservedGeneration { get; set; }

    /// <summary>Conditions: <c>Applied</c> (False: <c>Disabled</c> when the server routes no replica through regional
    /// schedulers, <c>Duplicate</c> when an older object of the tenant is the one in effect) and <c>Exhausted</c>
    /// (some region reached its cap).</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// A tenant's regional budgets (tenant-scoped: <c>metadata.tenant</c>; one per tenant, the oldest is in effect): its
/// global CPU budget that the regional schedulers lease from, and per-region caps. Durable like every object, so the
/// budgets survive a restart and are visible in <c>omega get regionalbudgets</c> and <c>omega describe</c>
/// (docs/control-plane.md, "Global budgets and regional schedulers").
/// </summary>
public sealed class RegionalBudget : ApiObject<RegionalBudgetSpec, RegionalBudgetStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "RegionalBudget";

    /// <summary>Most regions one object may cap.</summary>
    public const int MaxRegions = 64;

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec is null || Spec.Regions is null) return "spec.cpuMillis is required";
        if (Spec.CpuMillis <= 0) return "spec.cpuMillis must be positive";
        if (Spec.Regions.Count > MaxRegions) return $"spec.regions: at most {MaxRegions} regions";
        foreach (var (region, cap) in Spec.Regions)
        {
            if (!Topology.IsValidName(region)) return $"spec.regions: '{region}' is not a region name ([a-z0-9-], 1-63)";
            if (cap < 0) return $"spec.regions.{region} must not be negative";
        }
        return null;
    }
}
