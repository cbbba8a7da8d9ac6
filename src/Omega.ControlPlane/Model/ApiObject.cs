using System.Text.Json.Serialization;

namespace Omega.ControlPlane;

/// <summary>
/// The base of every API object: <c>apiVersion</c>, <c>kind</c>, <c>metadata</c>, and (in <see cref="ApiObject{TSpec, TStatus}"/>)
/// <c>spec</c> and <c>status</c>. Serialized by <see cref="ObjectCodec"/> as a Kubernetes-shaped JSON document.
/// </summary>
public abstract class ApiObject
{
    /// <summary>The API version of every kind in this release.</summary>
    public const string CurrentApiVersion = "omega/v1";

    /// <summary>The API version (<c>omega/v1</c>).</summary>
    [JsonPropertyOrder(-3)]
    public string ApiVersion { get; set; } = CurrentApiVersion;

    /// <summary>The kind, for example <c>Workload</c>.</summary>
    [JsonPropertyOrder(-2)]
    public string Kind => KindOf();

    /// <summary>The kind name of the concrete type (a method, so serializers keep <see cref="Kind"/> in its place).</summary>
    protected abstract string KindOf();

    /// <summary>The metadata.</summary>
    [JsonPropertyOrder(-1)]
    public ObjectMeta Metadata { get; set; } = new();

    /// <summary>The object's key.</summary>
    [JsonIgnore]
    public ObjectKey Key => new(Kind, Metadata.Tenant, Metadata.Name);

    /// <summary>True for kinds without a tenant (their <see cref="ObjectMeta.Tenant"/> must be empty).</summary>
    [JsonIgnore]
    public virtual bool ClusterScoped => false;

    /// <summary>Checks the spec; returns null when valid, else a one-line reason naming the field.</summary>
    public abstract string? ValidateSpec();

    /// <summary>The spec as canonical JSON (the store compares it to decide whether the generation moves).</summary>
    internal abstract byte[] SpecJson();

    /// <summary>Replaces this object's status with a copy of <paramref name="other"/>'s (same kind).</summary>
    internal abstract void CopyStatusFrom(ApiObject other);

    /// <summary>Resets the status to its empty state (a create ignores any status it carries).</summary>
    internal abstract void ResetStatus();
}

/// <summary>An API object with a typed spec (desired state) and status (observed state).</summary>
/// <typeparam name="TSpec">The spec type.</typeparam>
/// <typeparam name="TStatus">The status type.</typeparam>
public abstract class ApiObject<TSpec, TStatus> : ApiObject
    where TSpec : class, new()
    where TStatus : class, new()
{
    /// <summary>Desired state, written by the owner.</summary>
    public TSpec Spec { get; set; } = new();

    /// <summary>Observed state, written by the controller.</summary>
    public TStatus Status { get; set; } = new();

    internal override byte[] SpecJson() => ObjectCodec.SerializeValue(Spec);

    internal override void CopyStatusFrom(ApiObject other)
    {
        if (other is not ApiObject<TSpec, TStatus> o) throw new ArgumentException($"cannot copy the status of a {other.Kind} into a {Kind}", nameof(other));
        Status = ObjectCodec.CloneValue(o.Status);
    }

    internal override void ResetStatus() => Status = new TStatus();
}
