namespace Omega.ControlPlane;

/// <summary>The queue item for replicas that need placement (spec written by the workload controller).</summary>
public sealed class SchedulingRequestSpec
{
    /// <summary>The workload the request is for (also in the owner reference).</summary>
    public string Workload { get; set; } = "";

    /// <summary>The workload generation that asked for it.</summary>
    public long WorkloadGeneration { get; set; }

    /// <summary>The replica slots to place.</summary>
    public List<int> Slots { get; set; } = new();
}

/// <summary>A scheduling request's observed state.</summary>
public sealed class SchedulingRequestStatus
{
    /// <summary>Slots placed so far.</summary>
    public int Placed { get; set; }

    /// <summary>Why the rest cannot be placed (what an autoscaler reads), or null.</summary>
    public string? PendingReason { get; set; }

    /// <summary>Conditions.</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>A queue item for placement (its scheduler-worker consumer comes later; see docs/control-plane.md).</summary>
public sealed class SchedulingRequest : ApiObject<SchedulingRequestSpec, SchedulingRequestStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "SchedulingRequest";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec()
        => string.IsNullOrEmpty(Spec?.Workload) ? "spec.workload is required" : Spec.Slots is null ? "spec.slots must not be null" : null;
}

/// <summary>Capacity held on a node before binding.</summary>
public sealed class ReservationSpec
{
    /// <summary>The node name.</summary>
    public string Node { get; set; } = "";

    /// <summary>The capacity held.</summary>
    public ResourceRequest Resources { get; set; } = new();

    /// <summary>When the hold lapses (the reservation controller releases it).</summary>
    public DateTimeOffset ExpiresAt { get; set; }

    /// <summary>What it is held for (a workload name, a gang), free text.</summary>
    public string Purpose { get; set; } = "";
}

/// <summary>A reservation's observed state.</summary>
public sealed class ReservationStatus
{
    /// <summary>Reserved, Bound, Expired or Released.</summary>
    public string Phase { get; set; } = "";

    /// <summary>Conditions.</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// Capacity held on a node with a TTL: a read-only view of one of the cell's reservations (<see cref="CellViews"/>);
/// reservations are made by Reserve claims in scheduler commits, not object writes.
/// </summary>
public sealed class Reservation : ApiObject<ReservationSpec, ReservationStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Reservation";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        // A view of the cell's reservations (CellViews): never written as an object.
        return CellViews.ReadOnly(KindName);
    }

    /// <summary>The schema rules a reservation view satisfies (kept for documents read back from a view).</summary>
    public string? ValidateView()
    {
        if (string.IsNullOrEmpty(Spec?.Node)) return "spec.node is required";
        if (Spec.Resources is null || !Spec.Resources.ToVector().IsValidRequest || Spec.Resources.ToVector().IsZero) return "spec.resources must request something";
        if (Spec.ExpiresAt == default) return "spec.expiresAt is required";
        return null;
    }
}

/// <summary>
/// A revision of scheduler policy: weights, switches and parameters over the fixed plugins, and priority rules
/// (<see cref="Omega.Scheduling.Pipeline.SchedulerPolicySettings"/> describes each). Revision objects are named
/// <c>{policy}.r{N}</c> and never change after they are staged; the object named <c>{policy}</c> is the pointer: its spec
/// is a copy of the active revision with <see cref="History"/> (see <see cref="PolicyRevisions"/>).
/// </summary>
public sealed class SchedulerPolicySpec
{
    /// <summary>Scorer weights by plugin name.</summary>
    public Dictionary<string, double> Weights { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Filter switches by plugin name.</summary>
    public Dictionary<string, bool> Filters { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Parameters by name.</summary>
    public Dictionary<string, string> Parameters { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Priority rules (which priorities may preempt).</summary>
    public List<Omega.Scheduling.Pipeline.PriorityRule> PriorityRules { get; set; } = new();

    /// <summary>The revision this spec is (a revision object) or points at (the pointer; 0 = the built-in policy).</summary>
    public int Revision { get; set; }

    /// <summary>The pointer only: promotions and rollbacks, oldest first (the last <see cref="PolicyRevisions.MaxHistory"/>).</summary>
    public List<PolicyHistoryEntry> History { get; set; } = new();

    /// <summary>The plugin settings of this spec.</summary>
    public Omega.Scheduling.Pipeline.SchedulerPolicySettings ToSettings() => new()
    {
        Weights = new Dictionary<string, double>(Weights ?? new(), StringComparer.Ordinal),
        Filters = new Dictionary<string, bool>(Filters ?? new(), StringComparer.Ordinal),
        Parameters = new Dictionary<string, string>(Parameters ?? new(), StringComparer.Ordinal),
        PriorityRules = PriorityRules is null ? new() : [.. PriorityRules],
    };
}

/// <summary>One promotion or rollback of a policy.</summary>
/// <param name="Revision">The revision made active.</param>
/// <param name="From">The revision active before (0 = the built-in policy).</param>
/// <param name="Action"><c>promote</c> or <c>rollback</c>.</param>
/// <param name="At">When (the store clock of the writer).</param>
public sealed record PolicyHistoryEntry(int Revision, int From, string Action, DateTimeOffset At);

/// <summary>A scheduler policy's observed state.</summary>
public sealed class SchedulerPolicyStatus
{
    /// <summary>The revision in effect.</summary>
    public int ActiveRevision { get; set; }

    /// <summary>Conditions.</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>Scheduler policy as data (cluster-scoped).</summary>
public sealed class SchedulerPolicy : ApiObject<SchedulerPolicySpec, SchedulerPolicyStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "SchedulerPolicy";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override bool ClusterScoped => true;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec is null || Spec.Weights is null || Spec.Filters is null || Spec.Parameters is null || Spec.PriorityRules is null || Spec.History is null)
            return "spec maps must not be null";
        if (Spec.Revision < 0) return "spec.revision must not be negative";
        if (Spec.History.Count > PolicyRevisions.MaxHistory) return $"spec.history: at most {PolicyRevisions.MaxHistory} entries";
        return Spec.ToSettings().Validate() is { } problem ? "spec." + problem : null;
    }
}

/// <summary>A tenant's capacity budget.</summary>
public sealed class QuotaSpec
{
    /// <summary>The hard limit on the tenant's bound and reserved resources; all zeros means no limit.</summary>
    public ResourceRequest Limit { get; set; } = new();

    /// <summary>Protected capacity (guaranteed share; docs/commit-protocol.md, "Protected capacity"); all zeros means none.</summary>
    public ResourceRequest Protected { get; set; } = new();
}

/// <summary>A quota's observed state.</summary>
public sealed class QuotaStatus
{
    /// <summary>The tenant's bound and reserved resources when last observed.</summary>
    public ResourceRequest Used { get; set; } = new();

    /// <summary>The part of the guarantee not yet used (guarantee − used, floored at zero) when last observed.</summary>
    public ResourceRequest Unmet { get; set; } = new();

    /// <summary>The generation of the spec the cell's limits were last set from.</summary>
    public long ObservedGeneration { get; set; }

    /// <summary>Conditions.</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>A tenant quota: the quota controller applies it to the cell's limit and guarantee for <c>metadata.tenant</c>.</summary>
public sealed class Quota : ApiObject<QuotaSpec, QuotaStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Quota";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec?.Limit is null || Spec.Protected is null) return "spec.limit and spec.protected are required";
        if (!Spec.Limit.ToVector().IsValidRequest || !Spec.Protected.ToVector().IsValidRequest) return "spec resources must not be negative";
        if (!Spec.Limit.ToVector().IsZero && !Spec.Protected.ToVector().FitsWithin(Spec.Limit.ToVector())) return "spec.protected must not exceed spec.limit";
        return null;
    }
}
