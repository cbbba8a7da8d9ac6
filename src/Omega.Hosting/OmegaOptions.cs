using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;
using Omega.Server;
using Omega.Storage;

namespace Omega.Hosting;

/// <summary>
/// What <see cref="OmegaServiceCollectionExtensions.AddOmega"/> runs: the store (FASTER-durable or in memory), the
/// scheduling engine's two scheduler kinds and the TCP server. Bound from the configuration section
/// <see cref="SectionName"/> (for example <c>Omega:Listen</c>, <c>Omega:DataDirectory</c>, <c>Omega:Server:NodeLease</c>,
/// <c>Omega:Storage:GroupCommitWindow</c>), then changed by the code's configure delegate, then validated when the host
/// starts (<see cref="OmegaOptionsValidator"/>): invalid options stop the host before anything is opened.
/// </summary>
public sealed class OmegaOptions
{
    /// <summary>The configuration section the options are bound from: <c>Omega</c>.</summary>
    public const string SectionName = "Omega";

    /// <summary>
    /// The cell's name: a metric tag (<c>cell</c>) that tells two engines in one process apart, and the default data
    /// directory's last part. Default <c>default</c>.
    /// </summary>
    public string CellName { get; set; } = "default";

    /// <summary>Keep the cell in memory only: nothing survives a restart, and there is nothing to checkpoint. Default false.</summary>
    public bool InMemory { get; set; }

    /// <summary>
    /// The FASTER data directory (journal, store, checkpoints). Null: the user's local data folder, <c>omega/{CellName}</c>
    /// (on Linux <c>~/.local/share/omega/default</c>). Ignored when <see cref="InMemory"/>.
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>The TCP server's address, <c>ADDRESS:PORT</c>; port 0 picks a free port (read it from <see cref="OmegaRuntime.EndPoint"/>). Default <c>127.0.0.1:7077</c>.</summary>
    public string Listen { get; set; } = "127.0.0.1:7077";

    /// <summary>
    /// TLS on the listener (section <c>Omega:Tls</c>). <b>The library default is <see cref="OmegaTlsMode.Plaintext"/></b>;
    /// <c>omega serve</c> and <c>omega run</c> default to TLS (docs/security.md).
    /// </summary>
    public OmegaTlsOptions Tls { get; set; } = new();

    /// <summary>
    /// Check credentials on every connection and request (docs/protocol.md, section 12; docs/security.md, section 2).
    /// <b>The library default is false</b> (open, as plaintext is for TLS); <c>omega serve</c> and <c>omega run</c> turn it
    /// on (<c>--no-auth</c> is the explicit opt-out). With it on, the limits come from <see cref="ServerOptions.Authentication"/>
    /// when set, else the defaults.
    /// </summary>
    public bool Authentication { get; set; }

    /// <summary>
    /// With <see cref="Authentication"/>: a file holding the first operator token (<c>omega1.…</c>, e.g. from
    /// <c>omega token generate</c>), installed as the <c>admin</c> credential (every scope) unless its id is known. Null:
    /// at the first start (no credential in the cell) the host creates one and writes it to <c>DATA/admin.token</c>
    /// (mode 0600; in memory, a temporary folder per cell and port).
    /// </summary>
    public string? AdminTokenFile { get; set; }

    /// <summary>Workers of the <c>batch</c> scheduler kind (the engine's first kind: jobs submitted without a kind go there). 1-256, default 2.</summary>
    public int BatchWorkers { get; set; } = 2;

    /// <summary>
    /// Tenants created at start unless they exist (names: 1-64 letters, digits, '.', '_' or '-'); others are created
    /// by an operator over the wire. The <c>default</c> tenant always exists. Their creation is durable before the
    /// server accepts a connection.
    /// </summary>
    public IList<string> Tenants { get; } = new List<string>();

    /// <summary>Workers of the <c>service</c> scheduler kind. 1-256, default 1.</summary>
    public int ServiceWorkers { get; set; } = 1;

    /// <summary>Seed of the schedulers' sampling (null: random, readable afterwards from <see cref="SchedulingEngine.Seed"/>).</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// How long a scheduler worker's lease on the cell lasts (renewed while it runs). After a crash the restarted engine's
    /// workers can commit only once their previous incarnation's leases lapse, so this bounds how long placement pauses
    /// after a kill -9. 1 s - 10 min, default 15 s.
    /// </summary>
    public TimeSpan SchedulerLease { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Keep a decision record for one placement decision in this many (1: every one). Default 1.</summary>
    public int DecisionSampleEvery { get; set; } = 1;

    /// <summary>
    /// Start the scheduler workers when the host starts. Default true. A host that wants its nodes registered before any
    /// job is scheduled (<c>omega run</c> registers its agent fleet first) sets false and calls
    /// <see cref="SchedulingEngine.Start"/> on <see cref="OmegaRuntime.Engine"/> itself; stopping the host stops it.
    /// </summary>
    public bool StartScheduling { get; set; } = true;

    /// <summary>
    /// Server options (node lease, eviction rate, transport limits). The host sets the parts it owns: the durable
    /// publisher, the checkpoint callback and the clock.
    /// </summary>
    public ServerOptions Server { get; set; } = new();

    /// <summary>
    /// Storage options (group commit, checkpoint interval, FASTER memory sizes) and, in <see cref="StorageOptions.Cell"/>,
    /// the cell's limits. The host sets the parts it owns: the data directory, the cell's name, clock and meter factory,
    /// and the warning callback (storage warnings go to the host's logger).
    /// </summary>
    public StorageOptions Storage { get; set; } = new();

    /// <summary>
    /// The control plane's object store limits (object count and size, history, watchers; docs/control-plane.md). The host
    /// sets the clock.
    /// </summary>
    public ObjectStoreOptions Objects { get; set; } = new();

    /// <summary>
    /// Run the workload controller (reconciling <c>Workload</c> objects through the engine). Default true. Its runner
    /// starts after recovery and the engine's workers, and stops before them.
    /// </summary>
    public bool RunControllers { get; set; } = true;

    /// <summary>Where replica readiness comes from. Default <see cref="ReplicaReadiness.AgentReported"/>.</summary>
    public ReplicaReadiness Readiness { get; set; } = ReplicaReadiness.AgentReported;

    /// <summary>The workload controller's settings (its observer is set by the host from <see cref="Readiness"/>).</summary>
    public WorkloadControllerOptions WorkloadController { get; set; } = new();

    /// <summary>The workload controller runner's settings (resync period, backoff, workers).</summary>
    public ControllerRunnerOptions ControllerRunner { get; set; } = new();

    /// <summary>The quota controller's settings (cpfin, issue 12; runs when <see cref="RunControllers"/>).</summary>
    public QuotaControllerOptions QuotaController { get; set; } = new();

    /// <summary>The recovery-budget controller's settings (issue 13; runs when <see cref="RunControllers"/>).</summary>
    public RecoveryBudgetControllerOptions RecoveryBudgets { get; set; } = new();

    /// <summary>The repair controller's settings: sweep interval, rate limit, deadlines (cpfin; runs when <see cref="RunControllers"/>).</summary>
    public RepairControllerOptions RepairController { get; set; } = new();

    /// <summary>The decision archive's sampling and bounds (cpfin): the engine's decisions of workload replicas are kept durably.</summary>
    public DecisionArchiveOptions DecisionArchive { get; set; } = new();

    /// <summary>
    /// The live web dashboard (section <c>Omega:Dashboard</c>; docs/dashboard.md): set <see cref="Omega.Dashboard.DashboardOptions.Listen"/>
    /// to serve it. It uses the listener's TLS certificate (HTTPS; plaintext only when <see cref="Tls"/> is Plaintext) and,
    /// with <see cref="Authentication"/>, requires a sign-in with an operator token. Off by default.
    /// </summary>
    public Omega.Dashboard.DashboardOptions Dashboard { get; set; } = new();

    /// <summary>
    /// Called last on the engine's options, after the two kinds are added from <see cref="BatchWorkers"/> and
    /// <see cref="ServiceWorkers"/>: the place for what configuration does not carry (pipelines, guarantees, more kinds).
    /// </summary>
    public Action<SchedulingOptions>? ConfigureScheduling { get; set; }

    /// <summary>
    /// ha-core (issue 16): high availability on etcd (docs/high-availability.md). Null (the default): single node, the
    /// store is this process's FASTER directory. Set: this process is one replica of a replicated cell; its
    /// <see cref="DataDirectory"/> is its local copy, etcd holds the log, and it serves only while it leads.
    /// Not bound from configuration sections with defaults: <c>omega serve --etcd</c> sets it.
    /// </summary>
    public Omega.Replication.ReplicationOptions? Replication { get; set; }

    /// <summary>regops (issue 13): the override sweep's settings (interval 1 s; runs when <see cref="RunControllers"/>).</summary>
    public OverrideControllerOptions Overrides { get; set; } = new();

    /// <summary>regops (issue 13): the node-pool autoscaler's settings (interval 10 s; inert without NodePool objects).</summary>
    public NodePoolAutoscalerOptions Autoscaler { get; set; } = new();

    /// <summary>
    /// drill13 (issue 13): regional schedulers on budget leases (section <c>Omega:RegionalBudgets</c>; docs/control-plane.md,
    /// "Global budgets and regional schedulers"). Off by default; when <c>Enabled</c>, every workload replica whose
    /// template requires a region is admitted by that region's scheduler inside its lease on the tenant's global budget.
    /// </summary>
    public Omega.ControlPlane.Budgets.RegionalBudgetRouterOptions RegionalBudgets { get; set; } = new();
}

/// <summary>Where the workload controller's replica readiness comes from.</summary>
public enum ReplicaReadiness
{
    /// <summary>A replica is ready when its agent reported the binding ready (TaskState Ready; docs/protocol.md).</summary>
    AgentReported = 0,

    /// <summary>Every bound replica counts as ready (a cell whose nodes have no agents reporting readiness).</summary>
    Bound = 1,
}
