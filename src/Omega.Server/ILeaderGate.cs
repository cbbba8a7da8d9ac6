namespace Omega.Server;

/// <summary>
/// Leadership as the server sees it (high availability, issue 16). A replicated deployment runs several
/// <see cref="OmegaServer"/> replicas; exactly one, the leader, accepts work. The others answer clients with a typed
/// redirect naming the leader (docs/protocol.md) so agents, schedulers and the CLI follow it.
/// </summary>
/// <remarks>
/// <para>Single-node mode has no gate (<see cref="ServerOptions.Leadership"/> is null): the server is always the leader.</para>
/// <para>The gate only routes clients. Safety does not depend on it: a deposed leader that still believes it leads is
/// fenced where the replicated log is written (its writes compare the election revision and fail), so nothing it
/// acknowledges after losing the election is ever acknowledged as durable.</para>
/// </remarks>
public interface ILeaderGate
{
    /// <summary>True while this replica holds the election and its replicated state is caught up, so it may accept work.</summary>
    bool IsLeader { get; }

    /// <summary>The client-facing address (host:port) of the current leader as last observed, or null when no leader is known.</summary>
    string? LeaderAddress { get; }

    /// <summary>The fencing epoch of the current leadership (the election key's revision); 0 when unknown.</summary>
    long Epoch { get; }

    /// <summary>
    /// Raised (on any thread) when <see cref="IsLeader"/> or <see cref="LeaderAddress"/> changes. A server that loses
    /// leadership closes its client connections so they reconnect to the new leader.
    /// </summary>
    event Action? Changed;
}
