namespace Omega.ControlPlane;

/// <summary>A region's recovery budget (issue 13): capacity set aside for critical workloads' failover into the region.</summary>
public sealed class RecoveryBudgetSpec
{
    /// <summary>The region the budget is in (a node region, docs/protocol.md Register "Topology").</summary>
    public string Region { get; set; } = "";

    /// <summary>The capacity reserved for failover.</summary>
    public ResourceRequest Capacity { get; set; } = new();

    /// <summary>Workloads at or above this priority are critical: their replicas placed away from their first preferred region consume the budget.</summary>
    public int MinPriority { get; set; } = 1000;
}

/// <summary>A recovery budget's observed state (written by the recovery-budget controller).</summary>
public sealed class RecoveryBudgetStatus
{
    /// <summary>The part of the budget the region can hold: the spec's capacity, capped by the region's schedulable capacity.</summary>
    public ResourceRequest Allocated { get; set; } = new();

    /// <summary>Resources of critical replicas running in the region away from their first preferred region (failover).</summary>
    public ResourceRequest Consumed { get; set; } = new();

    /// <summary>Resources of lower-priority work in the region: what recovery may preempt.</summary>
    public ResourceRequest Reclaimable { get; set; } = new();

    /// <summary>The number of failover bindings consuming the budget.</summary>
    public int Consumers { get; set; }

    /// <summary>True when the consumed part has reached the allocated part in some requested dimension.</summary>
    public bool Exhausted { get; set; }

    /// <summary>The generation last reconciled.</summary>
    public long ObservedGeneration { get; set; }

    /// <summary>Conditions: <c>Exhausted</c>, <c>Backed</c> (free plus reclaimable capacity covers the unconsumed budget),
    /// <c>Overridden</c> (a live recovery override suspends the commit-time gate).</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// A region's recovery budget (cluster-scoped, one per region): capacity that critical failover may count on. Lower
/// priorities may use it meanwhile, but only as reclaimable work, which recovery preempts (docs/control-plane.md,
/// "Recovery budgets").
/// </summary>
public sealed class RecoveryBudget : ApiObject<RecoveryBudgetSpec, RecoveryBudgetStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "RecoveryBudget";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override bool ClusterScoped => true;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec?.Capacity is null || Spec.Region is null) return "spec.region and spec.capacity are required";
        if (Spec.Region.Length == 0 || !Topology.IsValidName(Spec.Region)) return "spec.region must be a region name ([a-z0-9-], 1-63)";
        var c = Spec.Capacity.ToVector();
        if (!c.IsValidRequest || c.IsZero) return "spec.capacity must request something and not be negative";
        return null;
    }
}
