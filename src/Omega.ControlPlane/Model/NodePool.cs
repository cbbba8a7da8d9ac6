namespace Omega.ControlPlane;

/// <summary>A simulated node pool's desired shape: what a node of it looks like and how far the autoscaler may grow it.</summary>
public sealed class NodePoolSpec
{
    /// <summary>The capacity of one node.</summary>
    public ResourceRequest NodeCapacity { get; set; } = new();

    /// <summary>The labels every node of the pool carries (the pool adds <c>omega.io/pool</c> itself).</summary>
    public Dictionary<string, string> Labels { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The failure domain of the pool's nodes.</summary>
    public string FailureDomain { get; set; } = "";

    /// <summary>The most nodes the pool may have.</summary>
    public int MaxNodes { get; set; } = 10;

    /// <summary>The most nodes one scale-up step may add (scale-up limit).</summary>
    public int MaxScaleUpPerStep { get; set; } = 2;
}

/// <summary>A node pool's observed state (written by the autoscaler).</summary>
public sealed class NodePoolStatus
{
    /// <summary>Nodes of the pool in the cell.</summary>
    public int Nodes { get; set; }

    /// <summary>Nodes added so far (names are <c>{pool}-{n}</c>).</summary>
    public int Added { get; set; }

    /// <summary>Pending replicas whose reason capacity can fix, at the last step.</summary>
    public int PendingFixable { get; set; }

    /// <summary>Pending replicas whose reason capacity cannot fix, at the last step.</summary>
    public int PendingUnfixable { get; set; }

    /// <summary>When the pool last grew.</summary>
    public DateTimeOffset? LastScaleUp { get; set; }

    /// <summary>Conditions: <c>Paused</c> (an AutoscalerPause override), <c>ScaleUpHeld</c> (low readiness, nodes still joining, limits).</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>A pool of simulated nodes that the <see cref="Controllers.NodePoolAutoscaler"/> may grow.</summary>
public sealed class NodePool : ApiObject<NodePoolSpec, NodePoolStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "NodePool";

    /// <summary>The label naming a node's pool.</summary>
    public const string PoolLabel = "omega.io/pool";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override bool ClusterScoped => true;

    /// <inheritdoc />
    public override string? ValidateSpec()
    {
        if (Spec?.NodeCapacity is null || Spec.Labels is null) return "spec.nodeCapacity and spec.labels are required";
        var c = Spec.NodeCapacity.ToVector();
        if (!c.IsValidRequest || c.IsZero) return "spec.nodeCapacity must be positive";
        if (Spec.MaxNodes is < 0 or > 10_000) return "spec.maxNodes: 0-10000";
        if (Spec.MaxScaleUpPerStep is < 1 or > 1_000) return "spec.maxScaleUpPerStep: 1-1000";
        return null;
    }
}
