using System.Net;
using Omega.Transport;

namespace Omega.Agent;

/// <summary>A binding the agent accepted: run or stop one task at one generation, at a cell version.</summary>
/// <param name="Kind">Run or stop.</param>
/// <param name="Task">The task.</param>
/// <param name="Generation">The binding's generation.</param>
/// <param name="Resources">What the task may use.</param>
/// <param name="Version">The cell version of the change.</param>
/// <param name="Priority">The task's priority (Bindings entry key 5).</param>
public readonly record struct AgentBinding(Protocol.BindingKind Kind, TaskId Task, long Generation, ResourceVector Resources, long Version, int Priority = 0);

/// <summary>Configuration of an <see cref="AgentClient"/>.</summary>
public sealed class AgentOptions
{
    /// <summary>
    /// The server to connect to: an <see cref="IPEndPoint"/>, or a <see cref="DnsEndPoint"/> resolved on every (re)connect.
    /// With <see cref="Servers"/> set, this one (if given too) is tried first.
    /// </summary>
    public EndPoint? Server { get; init; }

    /// <summary>
    /// The replicas of a highly available deployment (docs/protocol.md, section 3, "Replicas and the leader"): the agent
    /// connects to the first, follows a NotLeader redirect to the named leader at once, and on NoLeader or a refused,
    /// silent or lost connection tries the next, backing off (<see cref="ReconnectBase"/>, <see cref="ReconnectMax"/>)
    /// after each full round. It re-registers with its last processed version wherever it lands, so its binding stream
    /// resumes on the new leader with nothing lost or repeated. Null: <see cref="Server"/> alone.
    /// </summary>
    public IReadOnlyList<EndPoint>? Servers { get; init; }

    /// <summary>
    /// How long the agent waits for a reply to its Hello, Join or Register before it gives up on that server and tries the
    /// next: a paused (SIGSTOP) server still accepts TCP connections into its backlog but never answers. Default 5 s.
    /// </summary>
    public TimeSpan HandshakeReplyTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// While registered, a server from which nothing (not even a heartbeat ack) arrives for this long is taken for gone and
    /// the agent reconnects elsewhere: a paused leader keeps its TCP connections open, and without this check its agents
    /// would wait for it while the new leader counts their leases down. Default (null): two heartbeat intervals plus 1 s.
    /// Only checked when <see cref="SendHeartbeats"/> is on.
    /// </summary>
    public TimeSpan? ServerSilenceTimeout { get; init; }

    /// <summary>The node's unique name.</summary>
    public required string NodeName { get; init; }

    /// <summary>The node's capacity.</summary>
    public ResourceVector Capacity { get; init; }

    /// <summary>Node labels (matched by jobs' required labels).</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    /// <summary>The node's failure domain (rack, zone).</summary>
    public string FailureDomain { get; init; } = "";

    /// <summary>The node's region (Register key 5, protocol version 3); empty: none. Immutable for a node name once registered.</summary>
    public string Region { get; init; } = "";

    /// <summary>The node's zone within <see cref="Region"/> (Register key 6); empty: none.</summary>
    public string Zone { get; init; } = "";

    /// <summary>
    /// Partition fencing (issue 13, item 6): when true, an agent that has not had its node lease renewed for the lease's
    /// length, less a safety margin of a tenth of it (measured from when it <em>sent</em> the renewing Register or
    /// Heartbeat, on <see cref="Time"/>; the margin covers its own check running late on a loaded host) stops serving: every running task is handed to <see cref="OnBinding"/> as a <see cref="Protocol.BindingKind.Stop"/> with
    /// <see cref="AgentBinding.Version"/> −1, because the server declares the node lost at that moment at the earliest
    /// and may re-place its replicas. On the next registration the agent reconciles each fenced task with the server
    /// (a TaskReport Running): still bound → served again (a Run with version −1); replaced → dropped. Default true:
    /// the partition guarantee (never more replicas serving than the server has bound) holds with the shipped defaults.
    /// The price is that a control-plane outage longer than a lease (no HA, a slow restart) stops the tasks until the
    /// agent registers again; set false for an agent whose tasks must keep running through such an outage and may
    /// briefly serve beside their replacements during a partition (docs/control-plane.md, "Partitions").
    /// </summary>
    public bool FenceOnLeaseLoss { get; init; } = true;

    /// <summary>First reconnect delay; doubles per failed attempt up to <see cref="ReconnectMax"/>, with full jitter.</summary>
    public TimeSpan ReconnectBase { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Largest reconnect delay.</summary>
    public TimeSpan ReconnectMax { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Heartbeat jitter: each interval is the server's interval times a factor in [1 - j, 1 + j]. Default 0.2.</summary>
    public double HeartbeatJitter { get; init; } = 0.2;

    /// <summary>Clock for heartbeats and reconnect delays.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Seed of the jitter random source (printed by tests); null picks one.</summary>
    public int? Seed { get; init; }

    /// <summary>
    /// Transport limits for the client connection, and its TLS settings (<see cref="TransportOptions.ClientTls"/>: how the
    /// server is verified, and the client certificate for mTLS). Plaintext when <see cref="TransportOptions.ClientTls"/> is null.
    /// </summary>
    public TransportOptions Transport { get; init; } = new();

    /// <summary>
    /// Called for every accepted binding, in version order, on the connection's processing loop (do not block). When
    /// null, accepted bindings are queued to <see cref="AgentClient.Bindings"/> instead.
    /// </summary>
    public Action<AgentClient, AgentBinding>? OnBinding { get; init; }

    /// <summary>
    /// The node's own bearer credential (an agent credential for <see cref="NodeName"/>; docs/protocol.md, section 12),
    /// sent in every Hello. Null for a server without authentication, or when <see cref="JoinToken"/> is used.
    /// </summary>
    public string? Token { get; init; }

    /// <summary>
    /// A join token: when <see cref="Token"/> is null, the agent presents it once, sends Join for its node and receives its
    /// own credential (kept in memory for reconnects and handed to <see cref="OnCredential"/> to be stored).
    /// </summary>
    public string? JoinToken { get; init; }

    /// <summary>Called once with the credential a join issued (store it, e.g. in a file of mode 0600, for the next start).</summary>
    public Action<string>? OnCredential { get; init; }

    /// <summary>
    /// When set, the agent reports each accepted run binding's lifecycle itself: <c>running</c> at once (with the binding
    /// ack) and <c>ready</c> this long after, unless the task was stopped or reported done meanwhile (a stand-in for a
    /// readiness probe). Must be positive. Null (default): the application reports (<see cref="AgentClient.Report"/>).
    /// </summary>
    public TimeSpan? ReadyAfter { get; init; }

    /// <summary>Send heartbeats (tests of lease expiry turn them off).</summary>
    public bool SendHeartbeats { get; init; } = true;
}
