using System.Text.Json.Serialization;

namespace Omega.ControlPlane;

/// <summary>
/// An object's metadata (Kubernetes-like). The writer sets <see cref="Name"/>, <see cref="Tenant"/>, <see cref="Labels"/>,
/// <see cref="OwnerReferences"/> and <see cref="Finalizers"/>; the <see cref="ObjectStore"/> sets the rest. See
/// docs/control-plane.md, "Metadata: who sets what".
/// </summary>
public sealed class ObjectMeta
{
    /// <summary>The object's name, unique within its kind and tenant (1-253 of <c>[a-z0-9.-]</c>).</summary>
    public string Name { get; set; } = "";

    /// <summary>The owning tenant (a namespace); empty for cluster-scoped kinds.</summary>
    public string Tenant { get; set; } = "";

    /// <summary>Set by the store: the cell version of the write that created the object (unique for the cell's life).</summary>
    public long Uid { get; set; }

    /// <summary>Set by the store: 1 at create, bumped on every update that changes the spec (never on status writes).</summary>
    public long Generation { get; set; }

    /// <summary>
    /// The cell version of the object's last write, set by the store. Sent back on update as the precondition: a stale
    /// value fails with <see cref="ObjectStatus.Conflict"/>; 0 means unconditional.
    /// </summary>
    public long ResourceVersion { get; set; }

    /// <summary>Set by the store at create (the store clock).</summary>
    public DateTimeOffset? CreationTimestamp { get; set; }

    /// <summary>Set by the store when a delete finds finalizers: the object is terminating and goes once they are empty.</summary>
    public DateTimeOffset? DeletionTimestamp { get; set; }

    /// <summary>Names of the cleanups that must finish before the object is removed.</summary>
    public List<string> Finalizers { get; set; } = new();

    /// <summary>The objects that own this one (for cascading cleanup).</summary>
    public List<OwnerReference> OwnerReferences { get; set; } = new();

    /// <summary>Free-form labels.</summary>
    public Dictionary<string, string> Labels { get; set; } = new(StringComparer.Ordinal);

    /// <summary>A deep copy.</summary>
    public ObjectMeta Clone() => new()
    {
        Name = Name,
        Tenant = Tenant,
        Uid = Uid,
        Generation = Generation,
        ResourceVersion = ResourceVersion,
        CreationTimestamp = CreationTimestamp,
        DeletionTimestamp = DeletionTimestamp,
        Finalizers = [.. Finalizers],
        OwnerReferences = [.. OwnerReferences],
        Labels = new Dictionary<string, string>(Labels, StringComparer.Ordinal),
    };
}

/// <summary>A reference from an object to its owner.</summary>
/// <param name="Kind">The owner's kind.</param>
/// <param name="Name">The owner's name (same tenant).</param>
/// <param name="Uid">The owner's uid: a recreated owner of the same name is a different owner.</param>
/// <param name="Controller">True when the owner is the managing controller's object.</param>
public sealed record OwnerReference(string Kind, string Name, long Uid, bool Controller = true);

/// <summary>The identity of an object: kind, tenant and name.</summary>
/// <param name="Kind">The kind (for example <c>Workload</c>).</param>
/// <param name="Tenant">The tenant; empty for cluster-scoped kinds.</param>
/// <param name="Name">The name.</param>
public readonly record struct ObjectKey(string Kind, string Tenant, string Name)
{
    /// <summary>The storage key, <c>kind/tenant/name</c>.</summary>
    public override string ToString() => $"{Kind}/{Tenant}/{Name}";

    /// <summary>Parses <c>kind/tenant/name</c>.</summary>
    public static bool TryParse(string? text, out ObjectKey key)
    {
        key = default;
        if (text is null) return false;
        int a = text.IndexOf('/', StringComparison.Ordinal);
        if (a <= 0) return false;
        int b = text.IndexOf('/', a + 1);
        if (b < 0 || b == text.Length - 1) return false;
        key = new ObjectKey(text[..a], text[(a + 1)..b], text[(b + 1)..]);
        return true;
    }
}

/// <summary>The status of a condition.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ConditionStatus>))]
public enum ConditionStatus : byte
{
    /// <summary>Not known (yet).</summary>
    Unknown = 0,

    /// <summary>The condition holds.</summary>
    True = 1,

    /// <summary>The condition does not hold.</summary>
    False = 2,
}

/// <summary>A typed status condition (Kubernetes' <c>metav1.Condition</c>).</summary>
public sealed class Condition
{
    /// <summary>The condition type, for example <c>Available</c>.</summary>
    public string Type { get; set; } = "";

    /// <summary>True, False or Unknown.</summary>
    public ConditionStatus Status { get; set; }

    /// <summary>A CamelCase machine-readable reason.</summary>
    public string Reason { get; set; } = "";

    /// <summary>A human-readable message.</summary>
    public string Message { get; set; } = "";

    /// <summary>When <see cref="Status"/> last changed (not when the reason or message did).</summary>
    public DateTimeOffset LastTransitionTime { get; set; }

    /// <summary>The generation the controller had reconciled when it set this condition.</summary>
    public long ObservedGeneration { get; set; }

    /// <summary>A copy.</summary>
    public Condition Clone() => (Condition)MemberwiseClone();
}

/// <summary>Helpers over a list of conditions.</summary>
public static class Conditions
{
    /// <summary>The condition of <paramref name="type"/>, or null.</summary>
    public static Condition? Find(IReadOnlyList<Condition> conditions, string type)
    {
        ArgumentNullException.ThrowIfNull(conditions);
        for (int i = 0; i < conditions.Count; i++)
            if (string.Equals(conditions[i].Type, type, StringComparison.Ordinal)) return conditions[i];
        return null;
    }

    /// <summary>
    /// Sets the condition of <paramref name="type"/>. <see cref="Condition.LastTransitionTime"/> becomes
    /// <paramref name="now"/> only when the status flips (or the condition is new); a changed reason, message or
    /// observedGeneration keeps the old transition time. Returns true when anything changed.
    /// </summary>
    public static bool Set(List<Condition> conditions, string type, ConditionStatus status, string reason, string message, long observedGeneration, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(conditions);
        var c = Find(conditions, type);
        if (c is null)
        {
            conditions.Add(new Condition { Type = type, Status = status, Reason = reason, Message = message, ObservedGeneration = observedGeneration, LastTransitionTime = now });
            return true;
        }
        bool changed = false;
        if (c.Status != status)
        {
            c.Status = status;
            c.LastTransitionTime = now;
            changed = true;
        }
        if (!string.Equals(c.Reason, reason, StringComparison.Ordinal)) { c.Reason = reason; changed = true; }
        if (!string.Equals(c.Message, message, StringComparison.Ordinal)) { c.Message = message; changed = true; }
        if (c.ObservedGeneration != observedGeneration) { c.ObservedGeneration = observedGeneration; changed = true; }
        return changed;
    }

    /// <summary>True when the condition of <paramref name="type"/> exists with status True.</summary>
    public static bool IsTrue(IReadOnlyList<Condition> conditions, string type) => Find(conditions, type)?.Status == ConditionStatus.True;
}
