using Omega.ControlPlane.Controllers;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// Which workload a replica's task belongs to, read from its job id alone (docs/control-plane.md, "Replica → task
/// mapping": JobId = 2^62 | uid &lt;&lt; 20 | serial), so an agent-side record can be joined with the driver's write
/// acknowledgements by the workload's uid.
/// </summary>
internal static class ReplicaJobs
{
    /// <summary>True for a job of the workload controller's id space.</summary>
    public static bool IsReplica(long job) => (job & WorkloadController.JobIdSpace) != 0;

    /// <summary>The workload uid of a replica job (the inverse of <see cref="WorkloadController.JobFor"/>).</summary>
    public static long WorkloadUid(long job) => (job & ~WorkloadController.JobIdSpace) >> WorkloadController.SerialBits;
}
