namespace Omega;

/// <summary>How a job's replicas are spread over the topology (a soft preference).</summary>
public enum TopologySpread : byte
{
    /// <summary>No topology spread.</summary>
    None = 0,

    /// <summary>Prefer regions holding fewer members of the job's constraint group.</summary>
    Region = 1,

    /// <summary>Prefer zones holding fewer members of the job's constraint group.</summary>
    Zone = 2,
}

/// <summary>
/// A job's region constraints (issue 13). <see cref="RequiredRegions"/> is data residency: a hard gate, a node outside the
/// set (or with no region) is never feasible. <see cref="AvoidRegions"/> is hard too. <see cref="PreferredRegions"/> is an
/// ordered soft preference (the first is best; failover goes down the list), and <see cref="Spread"/> a soft spread.
/// Hard gates are checked by the scheduler's filter on its snapshot and by the preemption planner; no commit-time
/// re-check is needed because a node's region is immutable (docs/protocol.md, Register "Topology"): the fact judged on
/// the snapshot is the fact at commit.
/// </summary>
public sealed class TopologyConstraints
{
    /// <summary>No constraints.</summary>
    public static TopologyConstraints None { get; } = new([], [], [], TopologySpread.None);

    /// <summary>Creates constraints; null lists mean empty.</summary>
    public TopologyConstraints(IReadOnlyList<string>? requiredRegions, IReadOnlyList<string>? avoidRegions, IReadOnlyList<string>? preferredRegions, TopologySpread spread)
    {
        RequiredRegions = requiredRegions ?? [];
        AvoidRegions = avoidRegions ?? [];
        PreferredRegions = preferredRegions ?? [];
        Spread = spread;
    }

    /// <summary>Data residency: the regions a task may run in (empty: any).</summary>
    public IReadOnlyList<string> RequiredRegions { get; }

    /// <summary>Regions a task must not run in.</summary>
    public IReadOnlyList<string> AvoidRegions { get; }

    /// <summary>Preferred regions, best first.</summary>
    public IReadOnlyList<string> PreferredRegions { get; }

    /// <summary>The soft spread.</summary>
    public TopologySpread Spread { get; }

    /// <summary>True when there is nothing to check or score.</summary>
    public bool IsNone => RequiredRegions.Count == 0 && AvoidRegions.Count == 0 && PreferredRegions.Count == 0 && Spread == TopologySpread.None;

    /// <summary>True when a node in <paramref name="region"/> satisfies the residency gate.</summary>
    public bool ResidencyAllows(string region)
    {
        if (RequiredRegions.Count == 0) return true;
        return IndexOf(RequiredRegions, region) >= 0;
    }

    /// <summary>True when <paramref name="region"/> is avoided.</summary>
    public bool Avoids(string region) => region.Length > 0 && IndexOf(AvoidRegions, region) >= 0;

    /// <summary>The position of <paramref name="region"/> in <see cref="PreferredRegions"/>, or -1.</summary>
    public int PreferenceRank(string region) => region.Length == 0 ? -1 : IndexOf(PreferredRegions, region);

    /// <summary>Null when valid, otherwise a one-line reason.</summary>
    public string? Validate()
    {
        if (Check(RequiredRegions, "requiredRegions") is { } a) return a;
        if (Check(AvoidRegions, "avoidRegions") is { } b) return b;
        if (Check(PreferredRegions, "preferredRegions") is { } c) return c;
        for (int i = 0; i < RequiredRegions.Count; i++)
            if (IndexOf(AvoidRegions, RequiredRegions[i]) >= 0) return $"region '{RequiredRegions[i]}' is both required and avoided";
        return null;
    }

    private static string? Check(IReadOnlyList<string> list, string field)
    {
        if (list.Count > 64) return $"{field}: at most 64 regions";
        for (int i = 0; i < list.Count; i++)
            if (string.IsNullOrEmpty(list[i]) || !Topology.IsValidName(list[i])) return $"{field}[{i}]: '{list[i]}' is not a region name ([a-z0-9-], 1-63)";
        return null;
    }

    // Lists are a handful of regions: a loop beats a set and allocates nothing on the placement path.
    private static int IndexOf(IReadOnlyList<string> list, string value)
    {
        for (int i = 0; i < list.Count; i++)
            if (string.Equals(list[i], value, StringComparison.Ordinal)) return i;
        return -1;
    }
}
