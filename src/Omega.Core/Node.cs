namespace Omega;

/// <summary>The schedulability of a node. Only <see cref="Schedulable"/> nodes accept new claims.</summary>
public enum NodeStatus : byte
{
    /// <summary>Healthy and accepting new placements.</summary>
    Schedulable = 0,

    /// <summary>Being emptied by an operator: existing tasks stay, new claims are rejected (<see cref="ClaimStatus.NodeDraining"/>).</summary>
    Draining = 1,

    /// <summary>Fenced by the lifecycle controller (for example its lease expired): no new claims (<see cref="ClaimStatus.NodeFenced"/>).</summary>
    Fenced = 2,

    /// <summary>Declared down: no new claims (<see cref="ClaimStatus.NodeDown"/>).</summary>
    Down = 3,

    /// <summary>Removed from the cell. The id is never reused.</summary>
    Removed = 4,
}

/// <summary>
/// The immutable description of a node: its external name, capacity, labels, taints and failure domain.
/// Updating a node replaces its spec as a whole; the cell keeps the allocations on it.
/// </summary>
public sealed class NodeSpec
{
    private static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>();

    /// <summary>Creates a node spec.</summary>
    /// <param name="name">The node's external, unique name (for example the agent's host name).</param>
    /// <param name="capacity">The allocatable resources.</param>
    /// <param name="failureDomain">The failure domain (rack, zone) used for spreading.</param>
    /// <param name="labels">Key/value labels used by constraints; null means none.</param>
    /// <param name="taints">Taints; a task must tolerate every taint to be placed here. Null means none.</param>
    public NodeSpec(string name, ResourceVector capacity, string failureDomain = "", IReadOnlyDictionary<string, string>? labels = null, IReadOnlyList<string>? taints = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        Capacity = capacity;
        FailureDomain = failureDomain ?? "";
        Labels = labels ?? NoLabels;
        Taints = taints ?? Array.Empty<string>();
    }

    /// <summary>The node's external, unique name.</summary>
    public string Name { get; }

    /// <summary>The allocatable resources.</summary>
    public ResourceVector Capacity { get; }

    /// <summary>The failure domain (rack, zone).</summary>
    public string FailureDomain { get; }

    /// <summary>Key/value labels.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; }

    /// <summary>Taints a task must tolerate.</summary>
    public IReadOnlyList<string> Taints { get; }

    /// <summary>Returns a copy with another capacity.</summary>
    public NodeSpec WithCapacity(ResourceVector capacity) => new(Name, capacity, FailureDomain, Labels, Taints);

    /// <inheritdoc />
    public override string ToString() => $"{Name} [{Capacity}] fd={FailureDomain}";
}
