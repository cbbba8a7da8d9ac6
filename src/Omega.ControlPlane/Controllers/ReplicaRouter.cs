using Omega.Scheduling;

namespace Omega.ControlPlane.Controllers;

/// <summary>What an <see cref="IReplicaRouter"/> did with a replica's job.</summary>
public enum ReplicaRouteStatus : byte
{
    /// <summary>Not the router's: the workload controller submits it to the engine itself.</summary>
    NotRouted = 0,

    /// <summary>Admitted into the engine by the router.</summary>
    Accepted = 1,

    /// <summary>Refused (the reason says why); the replica stays pending and is offered again at the next reconcile.</summary>
    Refused = 2,
}

/// <summary>The outcome of <see cref="IReplicaRouter.Submit"/>; <paramref name="Reason"/> is the pending reason of a refusal.</summary>
public readonly record struct ReplicaRoute(ReplicaRouteStatus Status, string? Reason);

/// <summary>
/// Decides how the <see cref="WorkloadController"/> submits a replica's job (issue 13: regional schedulers on budget
/// leases, <see cref="Budgets.RegionalBudgetRouter"/>). Called on the controller's reconcile path, once per replica
/// submission: implementations must not block.
/// </summary>
public interface IReplicaRouter
{
    /// <summary>Admits <paramref name="job"/> (to engine scheduler kind <paramref name="schedulerKind"/>), refuses it, or leaves it to the controller.</summary>
    ReplicaRoute Submit(JobSpec job, string? schedulerKind);

    /// <summary>The replica's job is gone for good (retired and unbound): what was spent on it is given back. Idempotent.</summary>
    void Released(JobId job);
}
