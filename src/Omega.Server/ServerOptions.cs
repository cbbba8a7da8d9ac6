using Omega.ControlPlane;
using Omega.Transport;

namespace Omega.Server;

/// <summary>Configuration of an <see cref="OmegaServer"/>.</summary>
public sealed class ServerOptions
{
    /// <summary>Name sent in the Welcome frame and used as the metrics tag.</summary>
    public string Name { get; set; } = "omega";

    /// <summary>Transport limits (frame size, in-flight requests, outbound cap, timeouts, connections).</summary>
    public TransportOptions Transport { get; set; } = new();

    /// <summary>
    /// Budget: queued tasks (neither bound nor completed) of the jobs submitted on one connection. A SubmitJob that would
    /// exceed it gets error ResourceExhausted (connection open). It ends with the connection, which is why the engine's
    /// per-tenant and total budgets (<c>SchedulingOptions.MaxQueuedTasksPerTenant</c>, <c>MaxQueuedTasks</c>) exist too.
    /// Default 500,000.
    /// </summary>
    public long MaxQueuedTasksPerConnection { get; set; } = 500_000;

    /// <summary>Node lease: an agent that does not heartbeat for this long is declared lost. Default 10 s.</summary>
    public TimeSpan NodeLease { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A node added by a Register must send its first heartbeat within this long, or it is removed (its bindings
    /// released): an unauthenticated Register cannot add a node for good. Default (null): the node lease.
    /// </summary>
    public TimeSpan? RegistrationTimeout { get; set; }

    /// <summary>
    /// At most this many nodes added by Register may be waiting for their first heartbeat; a Register that would add one
    /// more gets <c>TooManyPendingRegistrations</c>. Default 20,000 (the default connection limit: a whole fleet may
    /// register at once after a restart of the agents).
    /// </summary>
    public int MaxPendingRegistrations { get; set; } = 20_000;

    /// <summary>Heartbeat interval told to agents (they add jitter). Default a third of the lease.</summary>
    public TimeSpan? HeartbeatInterval { get; set; }

    /// <summary>Node evictions allowed per second (token bucket, burst of the same size). Default 10.</summary>
    public double EvictionsPerSecond { get; set; } = 10;

    /// <summary>If more than this fraction of tracked nodes is silent at once, nothing is evicted (a network problem, not node failures). Default 0.5.</summary>
    public double MassSilenceFraction { get; set; } = 0.5;

    /// <summary>
    /// The regional signal (issue 13): when at least this fraction of a region's tracked nodes have lost their connection
    /// (or lease) and stayed away for <see cref="RegionLossGrace"/>, while the rest of the cell is not mass-silent, the region
    /// is lost and its away nodes are evicted at once, without the <see cref="EvictionsPerSecond"/> limit. A region away by
    /// lease expiry alone (a partition: no connection closes) also needs most of the rest of the cell heard from within the
    /// last half lease, which a cell-wide silence is not. Default 0.8;
    /// above 1 switches the signal off (operator confirmations still work).
    /// </summary>
    public double RegionLossFraction { get; set; } = 0.8;

    /// <summary>
    /// How long a region's nodes must stay disconnected before the regional signal evicts them (an agent's reconnect after
    /// a blip takes tens of milliseconds; during the grace the region's disconnected nodes are only marked down). Default 2 s.
    /// </summary>
    public TimeSpan RegionLossGrace { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Regions with fewer tracked nodes than this never raise the regional signal (a region of one node is a node). Default 3.</summary>
    public int RegionLossMinNodes { get; set; } = 3;

    /// <summary>Publishable (durable) version source; defaults to the cell's own version (in-memory cell).</summary>
    public IPublishableVersion? Publisher { get; set; }

    /// <summary>
    /// Deliberately broken variants for the deterministic simulation (issue 18; <see cref="Omega.Cells.Buggify"/>). Off by
    /// default and never set by a host: <see cref="Omega.Cells.Buggify.ReplyBeforeDurable"/> (the handler), <see cref="Omega.Cells.Buggify.SkipOutboxReseed"/> (the server's start) and the credential variant (<c>AuthService</c>) are read from it.
    /// </summary>
    public Omega.Cells.Buggify Buggify { get; set; }

    // The deterministic simulation (Omega.Dst, issue 18) runs the handler on one thread: object watches are pumped when it
    // calls ProtocolHandler.StepWatches, and policy commands start on the calling thread, instead of on the thread pool
    // (which would resume them at moments no seed controls). Never set by a host.
    internal bool Stepped { get; set; }

    /// <summary>Takes a checkpoint of the durable store (the operator's <c>Operate Checkpoint</c>); null when there is none.</summary>
    public Func<CancellationToken, ValueTask>? Checkpoint { get; set; }

    /// <summary>
    /// The control plane's object store served by the object messages (docs/protocol.md, section 8, "Objects"). Null: the
    /// server serves no objects and answers every object message with <c>UnknownMessageType</c>. The store's own
    /// durability waiter decides when a write is acknowledged; the host must plug in the journal's durable watermark.
    /// </summary>
    public ObjectStore? Objects { get; set; }

    /// <summary>
    /// Budget: bytes of the JSON document in one object request. Larger gets <c>ObjectTooLarge</c> before the JSON is
    /// parsed (parsing costs memory proportional to it). Default 512 KiB: twice the store's canonical bound, for
    /// indented documents.
    /// </summary>
    public int MaxObjectRequestBytes { get; set; } = 512 * 1024;

    /// <summary>Budget: open watches per connection; one more gets <c>ResourceExhausted</c>. Default 8.</summary>
    public int MaxWatchesPerConnection { get; set; } = 8;

    /// <summary>
    /// Budget: a watch pauses while its connection has this many bytes queued unsent (the peer is not reading); its
    /// events wait in the object store's history ring, where the store's lag bound (<c>ObjectStoreOptions.MaxWatcherLag</c>)
    /// ends it with <c>WatchTooSlow</c> if the peer does not catch up. Keeps watches from filling the outbound buffer up
    /// to the transport's cap, which would disconnect the whole connection. Default 4 MiB (half the default cap).
    /// </summary>
    public long MaxWatchBufferBytes { get; set; } = 4L << 20;


    /// <summary>
    /// SchedulerPolicy revisions served by the Policy message (docs/protocol.md, "Policy and workload decisions"). Null:
    /// Policy requests get <c>ControlPlaneUnavailable</c>.
    /// </summary>
    public Omega.ControlPlane.PolicyRevisions? Policies { get; set; }

    /// <summary>
    /// The durable decision archive served by ExplainWorkload (its store also gives the workload's status). Null:
    /// ExplainWorkload requests get <c>ControlPlaneUnavailable</c>.
    /// </summary>
    public Omega.ControlPlane.DecisionArchive? Decisions { get; set; }

    /// <summary>
    /// High availability: the replica's view of the election (<see cref="ILeaderGate"/>). Null (single-node mode): this
    /// server always leads.
    /// </summary>
    public ILeaderGate? Leadership { get; set; }

    /// <summary>
    /// High availability (issue 16): the store replica snapshots are served from (docs/protocol.md, "Replica snapshots").
    /// Null: SnapshotRequest gets <c>SnapshotUnavailable</c>. The host sets it on the leader's server only.
    /// </summary>
    public ISnapshotSource? Snapshots { get; set; }

    /// <summary>The largest data of one SnapshotChunk (default 512 KiB; it must fit the maximum frame length with room to spare).</summary>
    public int SnapshotChunkBytes { get; set; } = 512 * 1024;

    /// <summary>Snapshot files held at once (default 2; one more request gets <c>SnapshotBusy</c>).</summary>
    public int MaxSnapshots { get; set; } = 2;

    /// <summary>A snapshot is deleted this long after its last read (default 60 s; a read after that gets <c>UnknownSnapshot</c>).</summary>
    public TimeSpan SnapshotIdleExpiry { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Clock for leases, grace period and evictions (tests inject a fake one).</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>
    /// Creates the server's meters (Omega.Server, Omega.Server.Auth, Omega.Server.Lifecycle, Omega.Transport), each
    /// tagged <c>cell</c> with the cell's name; a host passes its <see cref="System.Diagnostics.Metrics.IMeterFactory"/>.
    /// Null: each creates a meter of its own (still tagged).
    /// </summary>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }

    /// <summary>Run the lifecycle controller on a timer of this period; null leaves it to explicit <see cref="NodeLifecycleController.Tick"/> calls.</summary>
    public TimeSpan? LifecyclePeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Authentication and authorization (docs/protocol.md, section 12). <b>Null, the library default, leaves the server
    /// open</b>: any client that reaches the port may do anything (tests about other things, embedded use on a trusted
    /// host). <c>omega serve</c> and <c>omega run</c> set it; <c>omega serve --no-auth</c> is the explicit opt-out.
    /// </summary>
    public AuthOptions? Authentication { get; set; }

    internal TimeSpan EffectiveHeartbeat => HeartbeatInterval ?? NodeLease / 3;
}
