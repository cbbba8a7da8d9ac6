namespace Omega.Scheduling.Pipeline;

/// <summary>
/// Why a node is or is not feasible for a task. Each rejecting filter returns one code; decision records count them,
/// so an operator can see why a task is pending ("9,812 nodes: insufficient resources; 188: taint not tolerated").
/// </summary>
public enum FilterStatus : byte
{
    /// <summary>The node passed the filter.</summary>
    Feasible = 0,

    /// <summary>The node's free resources (after this scheduler's own tentative placements) are too small.</summary>
    InsufficientResources = 1,

    /// <summary>The node is draining, fenced, down or removed.</summary>
    NodeUnschedulable = 2,

    /// <summary>The node lacks a required label, or has another value for it.</summary>
    LabelMismatch = 3,

    /// <summary>The node carries a taint the task does not tolerate.</summary>
    TaintNotTolerated = 4,

    /// <summary>The tenant's quota would be exceeded by this task (checked against usage at the start of the decision).</summary>
    QuotaExceeded = 5,

    /// <summary>The snapshot could not read the node (it changed too often since the snapshot, or was added later).</summary>
    SnapshotStale = 6,

    /// <summary>A filter from outside Omega rejected the node.</summary>
    Custom = 7,

    /// <summary>
    /// Another member of the job's constraint group is on the node, or in its failure domain, and the job asks for hard
    /// anti-affinity (<see cref="PlacementGroup"/>).
    /// </summary>
    AntiAffinity = 8,

    /// <summary>
    /// Data residency (issue 13): the node's region is not one of the job's required regions (a node with no region never
    /// satisfies a residency requirement). A hard gate.
    /// </summary>
    ResidencyViolation = 9,

    /// <summary>The node's region is one the job must avoid. A hard gate.</summary>
    RegionAvoided = 10,
}
