namespace Omega;

/// <summary>Where a placement constraint between the members of a group applies.</summary>
public enum PlacementScope : byte
{
    /// <summary>No constraint.</summary>
    None = 0,

    /// <summary>Per node: at most one member of the group on a node.</summary>
    Node = 1,

    /// <summary>
    /// Per failure domain (<see cref="NodeSpec.FailureDomain"/>): at most one member of the group in a domain. A node
    /// with an empty failure domain is a domain of its own, so the constraint degrades to <see cref="Node"/> there.
    /// </summary>
    FailureDomain = 2,
}

/// <summary>
/// A constraint group shared by jobs: hard anti-affinity (enforced by the cell at commit) and soft spread (a scorer's
/// preference) between the tasks of the group. Membership is derived from the job id, not stored: the group of a task is
/// <c>job.Value &gt;&gt; KeyShift</c>, so every job whose id agrees with this one above bit <see cref="KeyShift"/> is a
/// member. <see cref="KeyShift"/> 0 makes the group one job (the Google trace's different-machine constraint between the
/// tasks of a job); the workload controller uses its serial width, so the one-task jobs backing the replicas of one
/// workload form one group.
/// </summary>
/// <remarks>
/// Why derived from the id: the cell checks the constraint against the live bindings it already keeps and persists
/// (journal and store of record), so the check holds after a restart with no new durable state and no change of the
/// journal format. The rejected alternative, a group key carried by every claim and kept per binding, needs the key in
/// every commit record and in the store of record's binding rows. The cost of the derivation: a binding of the group made
/// without the constraint (an older generation of a workload) still counts as a member, which errs on the safe side.
/// </remarks>
/// <param name="KeyShift">Low bits of the job id ignored when comparing groups (0-62).</param>
/// <param name="AntiAffinity">Hard: no two members on one node, or in one failure domain. Checked at commit.</param>
/// <param name="Spread">Soft: prefer nodes, or failure domains, holding fewer members. A score, never a rejection.</param>
public readonly record struct PlacementGroup(byte KeyShift, PlacementScope AntiAffinity, PlacementScope Spread = PlacementScope.None)
{
    /// <summary>The largest allowed <see cref="KeyShift"/>.</summary>
    public const int MaxKeyShift = 62;

    /// <summary>True when the group constrains nothing.</summary>
    public bool IsNone => AntiAffinity == PlacementScope.None && Spread == PlacementScope.None;

    /// <summary>The group key of <paramref name="job"/>.</summary>
    public long KeyOf(JobId job) => job.Value >> KeyShift;

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are in one group under this shift.</summary>
    public bool SameGroup(JobId a, JobId b) => (a.Value >> KeyShift) == (b.Value >> KeyShift);

    /// <summary>Null when valid, else a one-line reason.</summary>
    public string? Validate()
    {
        if (KeyShift > MaxKeyShift) return $"group key shift must be 0..{MaxKeyShift}";
        if (!Enum.IsDefined(AntiAffinity)) return "anti-affinity scope must be None, Node or FailureDomain";
        if (!Enum.IsDefined(Spread)) return "spread scope must be None, Node or FailureDomain";
        return null;
    }
}
