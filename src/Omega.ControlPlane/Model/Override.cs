using System.Text.Json.Serialization;

namespace Omega.ControlPlane;

/// <summary>What an <see cref="Override"/> changes (docs/control-plane.md, "Overrides").</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OverrideType>))]
public enum OverrideType
{
    /// <summary>No new placements on the nodes of zone <c>spec.target</c> (label <c>topology.omega/zone</c>): they are tainted <see cref="Override.AvoidTaint"/>.</summary>
    ZoneAvoid = 0,

    /// <summary>No new placements on the nodes of region <c>spec.target</c> (label <c>topology.omega/region</c>).</summary>
    RegionAvoid = 1,

    /// <summary>The node-pool autoscaler does not scale pool <c>spec.target</c> (<c>*</c>: every pool).</summary>
    AutoscalerPause = 2,

    /// <summary>Tenant <c>spec.target</c>'s hard quota is raised by <c>spec.extra</c> for the TTL.</summary>
    EmergencyQuota = 3,

    /// <summary>Recovery may exceed region <c>spec.target</c>'s recovery budget (read by the recovery-budget controller; no cell effect here).</summary>
    RecoveryOverride = 4,

    /// <summary>Confirms failure domain <c>spec.target</c> lost (the mass-silence brake's confirm-lost), withdrawn at expiry.</summary>
    ConfirmLost = 5,
}

/// <summary>An override's desired state: what, on what, for how long, by whom and why.</summary>
public sealed class OverrideSpec
{
    /// <summary>The longest TTL an override may have (24 h): an emergency change that must outlive a day is a spec change.</summary>
    public const int MaxTtlSeconds = 86_400;

    /// <summary>What the override changes.</summary>
    public OverrideType Type { get; set; }

    /// <summary>What it changes it on: a zone, region, pool (or <c>*</c>), tenant or failure domain name.</summary>
    public string Target { get; set; } = "";

    /// <summary>How long it lasts from its creation, in seconds (required, 1 to <see cref="MaxTtlSeconds"/>).</summary>
    public int TtlSeconds { get; set; }

    /// <summary>Why (required; shown in <c>describe</c>, <c>doctor</c> and the audit log).</summary>
    public string Reason { get; set; } = "";

    /// <summary>
    /// Who: set by the server from the authenticated credential on every wire write (a value sent by the client is
    /// replaced); a library writer names itself.
    /// </summary>
    public string Author { get; set; } = "";

    /// <summary><see cref="OverrideType.EmergencyQuota"/> only: what is added to the tenant's limit.</summary>
    public ResourceRequest Extra { get; set; } = new();
}

/// <summary>An override's observed state (written by the <see cref="Controllers.OverrideController"/>).</summary>
public sealed class OverrideStatus
{
    /// <summary><c>Active</c> (its effect is applied), <c>Expired</c> (reverted), or empty before the first sweep.</summary>
    public string Phase { get; set; } = "";

    /// <summary>When the override lapses (creation + TTL).</summary>
    public DateTimeOffset? ExpiresAt { get; set; }

    /// <summary>When its effect was first applied.</summary>
    public DateTimeOffset? AppliedAt { get; set; }

    /// <summary>When its effect was reverted.</summary>
    public DateTimeOffset? RevertedAt { get; set; }

    /// <summary><see cref="OverrideType.EmergencyQuota"/>: the tenant's limit before the raise (null: it had none).</summary>
    public ResourceRequest? PreviousLimit { get; set; }

    /// <summary><see cref="OverrideType.EmergencyQuota"/>: the limit the raise set (the revert restores <see cref="PreviousLimit"/> only if the limit is still this).</summary>
    public ResourceRequest? RaisedLimit { get; set; }

    /// <summary>Zone/region avoidance: the nodes tainted at the last sweep.</summary>
    public int Nodes { get; set; }

    /// <summary>What the controller did last, in words.</summary>
    public string Message { get; set; } = "";

    /// <summary>Conditions (<c>Applied</c>).</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// A human operational override (seed 001: "human overrides are invisible … use explicit override objects with TTL and
/// audit"): cluster-scoped, so only an operator credential with the <c>override</c> (or <c>break-glass</c>) scope may
/// write one; its author is the authenticated principal; its TTL is mandatory; the override controller applies its
/// effect and reverts it when the TTL ends or the object is deleted.
/// </summary>
public sealed class Override : ApiObject<OverrideSpec, OverrideStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Override";

    /// <summary>The node label naming a node's region (agreed with the topology work).</summary>
    public const string RegionLabel = "topology.omega/region";

    /// <summary>The node label naming a node's zone (agreed with the topology work).</summary>
    public const string ZoneLabel = "topology.omega/zone";

    /// <summary>The taint zone/region avoidance puts on nodes (a workload that tolerates it may still go there).</summary>
    public const string AvoidTaint = "omega.io/avoided";

    /// <summary>The finalizer that makes a delete revert the effect first.</summary>
    public const string Finalizer = "omega.io/override-revert";

    /// <summary>Phase of an override whose effect is applied.</summary>
    public const string PhaseActive = "Active";

    /// <summary>Phase of an override whose effect was reverted.</summary>
    public const string PhaseExpired = "Expired";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override bool ClusterScoped => true;

    /// <summary>When it lapses: creation + TTL (null before the store stamped the creation time).</summary>
    public DateTimeOffset? ExpiresAt => Metadata.CreationTimestamp is { } c ? c.AddSeconds(Spec.TtlSeconds) : null;

    /// <summary>True when not reverted, not deleted and not past its TTL at <paramref name="now"/>.</summary>
    public bool IsLive(DateTimeOffset now)
        => Status.Phase != PhaseExpired && Metadata.DeletionTimestamp is null && ExpiresAt is { } e && now < e;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec is null) return "spec is required";
        if (!Enum.IsDefined(Spec.Type)) return "spec.type is not a known override type";
        if (string.IsNullOrWhiteSpace(Spec.Target) || Spec.Target.Length > 253) return "spec.target is required (1-253 characters)";
        if (Spec.TtlSeconds is < 1 or > OverrideSpec.MaxTtlSeconds) return $"spec.ttlSeconds is required: 1-{OverrideSpec.MaxTtlSeconds}";
        if (string.IsNullOrWhiteSpace(Spec.Reason) || Spec.Reason.Length > 1024) return "spec.reason is required (1-1024 characters)";
        if (Spec.Author is null || Spec.Author.Length > 253) return "spec.author: at most 253 characters";
        if (Spec.Type == OverrideType.EmergencyQuota)
        {
            if (Spec.Extra is null || !Spec.Extra.ToVector().IsValidRequest || Spec.Extra.ToVector().IsZero) return "spec.extra must add something (EmergencyQuota)";
        }
        return null;
    }

    /// <summary>
    /// True when this override affects <paramref name="obj"/> (what <c>omega describe</c> lists under "Overrides"): an
    /// emergency quota its tenant's objects, an autoscaler pause its pool, avoidance every workload (placement changes).
    /// </summary>
    public bool Affects(ApiObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return Spec.Type switch
        {
            OverrideType.EmergencyQuota => obj.Metadata.Tenant == Spec.Target,
            OverrideType.AutoscalerPause => obj.Kind == NodePool.KindName && (Spec.Target == "*" || Spec.Target == obj.Metadata.Name),
            OverrideType.ZoneAvoid or OverrideType.RegionAvoid or OverrideType.RecoveryOverride or OverrideType.ConfirmLost => obj.Kind == Workload.KindName,
            _ => false,
        };
    }
}
