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
        // Read once here, not per filter call: the residency filter runs on every sampled node.
        Region = Labels.TryGetValue(Topology.RegionLabel, out var r) ? r : "";
        Zone = Labels.TryGetValue(Topology.ZoneLabel, out var z) ? z : "";
    }

    /// <summary>
    /// The node's region (the label <see cref="Topology.RegionLabel"/>; empty: none). Immutable per node once registered
    /// (docs/protocol.md, Register "Topology"), which is what makes a residency check on a snapshot exact.
    /// </summary>
    public string Region { get; }

    /// <summary>The node's zone within its region (the label <see cref="Topology.ZoneLabel"/>; empty: none).</summary>
    public string Zone { get; }

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
    public override string ToString() => $"{Name} [{Capacity}] fd={FailureDomain} region={Region} zone={Zone}";
}

/// <summary>
/// Node topology (issue 13): region and zone. They travel as Register keys 5 and 6 and live in the node's labels under
/// the well-known keys below, so label selectors and other components can match them without depending on any type here,
/// and so they are journaled, checkpointed and restored with the node exactly like every other label.
/// </summary>
public static class Topology
{
    /// <summary>The well-known label holding a node's region.</summary>
    public const string RegionLabel = "topology.omega/region";

    /// <summary>The well-known label holding a node's zone.</summary>
    public const string ZoneLabel = "topology.omega/zone";

    /// <summary>Longest region or zone name.</summary>
    public const int MaxNameLength = 63;

    /// <summary>True for an empty name or 1-63 characters of [a-z0-9-] starting and ending alphanumeric.</summary>
    public static bool IsValidName(string? name)
    {
        if (string.IsNullOrEmpty(name)) return true;
        if (name.Length > MaxNameLength) return false;
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            bool alnum = c is (>= 'a' and <= 'z') or (>= '0' and <= '9');
            if (!alnum && (c != '-' || i == 0 || i == name.Length - 1)) return false;
        }
        return true;
    }

    /// <summary>
    /// Merges a registration's region and zone into its labels. Returns null and the merged labels when consistent,
    /// otherwise a one-line problem: a malformed name, a zone without a region, or a well-known label that disagrees.
    /// Empty <paramref name="region"/>/<paramref name="zone"/> take the labels' values (an agent that only sets labels).
    /// </summary>
    public static string? Merge(string? region, string? zone, IReadOnlyDictionary<string, string>? labels, out Dictionary<string, string>? merged)
    {
        merged = null;
        region ??= "";
        zone ??= "";
        string lr = labels is not null && labels.TryGetValue(RegionLabel, out var a) ? a : "";
        string lz = labels is not null && labels.TryGetValue(ZoneLabel, out var b) ? b : "";
        if (region.Length > 0 && lr.Length > 0 && !string.Equals(region, lr, StringComparison.Ordinal)) return $"region '{region}' disagrees with label {RegionLabel}={lr}";
        if (zone.Length > 0 && lz.Length > 0 && !string.Equals(zone, lz, StringComparison.Ordinal)) return $"zone '{zone}' disagrees with label {ZoneLabel}={lz}";
        if (region.Length == 0) region = lr;
        if (zone.Length == 0) zone = lz;
        if (!IsValidName(region)) return $"region '{region}' must be 1-{MaxNameLength} characters of [a-z0-9-], starting and ending alphanumeric";
        if (!IsValidName(zone)) return $"zone '{zone}' must be 1-{MaxNameLength} characters of [a-z0-9-], starting and ending alphanumeric";
        if (zone.Length > 0 && region.Length == 0) return "a zone needs a region";
        merged = labels is null ? new Dictionary<string, string>(StringComparer.Ordinal) : new Dictionary<string, string>(labels, StringComparer.Ordinal);
        if (region.Length > 0) merged[RegionLabel] = region; else merged.Remove(RegionLabel);
        if (zone.Length > 0) merged[ZoneLabel] = zone; else merged.Remove(ZoneLabel);
        return null;
    }
}
