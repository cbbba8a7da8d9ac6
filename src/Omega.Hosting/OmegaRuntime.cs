using System.Net;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;
using Omega.Server;
using Omega.Storage;

namespace Omega.Hosting;

/// <summary>
/// The running pieces of an Omega host, injectable (a singleton registered by
/// <see cref="OmegaServiceCollectionExtensions.AddOmega"/>): the store and its cell, the scheduling engine, the TCP
/// server, and the control plane's object store and workload controller. Filled in by <see cref="OmegaHostedService"/> when the host starts; reading a piece before that throws
/// <see cref="InvalidOperationException"/>. After the host stops, the pieces are disposed (the cell stays readable).
/// </summary>
public sealed class OmegaRuntime
{
    private ICellStore? _store;
    private SchedulingEngine? _engine;
    private OmegaServer? _server;
    private ObjectStore? _objects;
    private WorkloadController? _controller;
    private PolicyRevisions? _policies;
    private DecisionArchive? _decisions;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True once the store is open, the engine built and the server listening.</summary>
    public bool IsRunning { get; private set; }

    /// <summary>Completes when the host has started Omega (faults if starting failed).</summary>
    public Task Started => _started.Task;

    /// <summary>The store: the authoritative cell plus its durable watermark (FASTER, or in memory).</summary>
    public ICellStore Store => _store ?? throw NotStarted();

    /// <summary>The authoritative cell.</summary>
    public Cell Cell => Store.Cell;

    /// <summary>The scheduling engine (its workers run unless <see cref="OmegaOptions.StartScheduling"/> was false).</summary>
    public SchedulingEngine Engine => _engine ?? throw NotStarted();

    /// <summary>The TCP server (node agents, external schedulers, operator commands).</summary>
    public OmegaServer Server => _server ?? throw NotStarted();

    /// <summary>
    /// The control plane's object store (docs/control-plane.md): create, update, delete, get, list and watch
    /// <see cref="Workload"/> and the other kinds; a write returns once durable. Embedders and the CLI use it directly.
    /// </summary>
    public ObjectStore Objects => _objects ?? throw NotStarted();

    /// <summary>The workload controller (its runner runs unless <see cref="OmegaOptions.RunControllers"/> was false).</summary>
    public WorkloadController WorkloadController => _controller ?? throw NotStarted();

    /// <summary>The SchedulerPolicy revisions (stage, promote, rollback; the active one is loaded at start and used by the engine).</summary>
    public PolicyRevisions Policies => _policies ?? throw NotStarted();

    /// <summary>The durable decision archive (<c>omega explain workload/NAME --generation G</c>), fed by the engine.</summary>
    public DecisionArchive Decisions => _decisions ?? throw NotStarted();

    /// <summary>The repair controller; null when <see cref="OmegaOptions.RunControllers"/> was false.</summary>
    public RepairController? Repair { get; private set; }

    /// <summary>The address the server listens on (the real port when <see cref="OmegaOptions.Listen"/> asked for port 0).</summary>
    public IPEndPoint EndPoint => Server.EndPoint;

    /// <summary>What opening the store found: the checkpoint, the journal records replayed, warnings.</summary>
    public RecoveryReport Recovery => Store.Recovery;

    /// <summary>The FASTER data directory in use; null for an in-memory cell.</summary>
    public string? DataDirectory { get; private set; }

    /// <summary>The cell version of the checkpoint taken when the host stopped; null until then, and always for an in-memory cell.</summary>
    public long? CheckpointedVersion { get; private set; }

    /// <summary>True when the listener speaks TLS (<see cref="OmegaOptions.Tls"/> not Plaintext).</summary>
    public bool IsTls => Tls is not null;

    /// <summary>The server certificate's file (absolute path): what a client passes as its CA file (<c>--ca</c>) for a self-signed certificate. Null when plaintext.</summary>
    public string? TlsCertificatePath => Tls?.CertificatePath;

    /// <summary>The server certificate's public-key pin (SHA-256 of its SubjectPublicKeyInfo, 64 hex digits): what a client passes as <c>--pin</c>. Null when plaintext.</summary>
    public string? TlsCertificatePin => Tls?.Pin;

    /// <summary>When the server certificate expires. Null when plaintext.</summary>
    public DateTime? TlsCertificateNotAfter => Tls?.NotAfter;

    /// <summary>True when clients must present a certificate (mTLS).</summary>
    public bool ClientCertificatesRequired => Tls?.ClientCertificatesRequired ?? false;

    /// <summary>True when this start made the self-signed certificate (false when it reused one, or was given one).</summary>
    public bool TlsCertificateCreated => Tls?.Created ?? false;

    private TlsInfo? Tls { get; set; }

    /// <summary>The web dashboard's address (<c>https://ADDRESS:PORT/</c>) when <see cref="OmegaOptions.Dashboard"/> serves one; else null.</summary>
    public Uri? DashboardAddress { get; internal set; }

    /// <summary>True when the server checks credentials (<see cref="OmegaOptions.Authentication"/>).</summary>
    public bool IsAuthenticated => AdminToken is not null;

    /// <summary>The file holding the first operator (admin) token; null without authentication.</summary>
    public string? AdminTokenPath => AdminToken?.Path;

    /// <summary>True when this start created the admin token (the first start of the data directory).</summary>
    public bool AdminTokenCreated => AdminToken?.Created ?? false;

    private AdminTokenInfo? AdminToken { get; set; }

    /// <summary>regops (issue 13): the override sweep (apply, expire, revert); null when controllers do not run.</summary>
    public Omega.ControlPlane.Controllers.OverrideController? Overrides { get; internal set; }

    /// <summary>regops (issue 13): the node-pool autoscaler; null when controllers do not run.</summary>
    public Omega.ControlPlane.Controllers.NodePoolAutoscaler? Autoscaler { get; internal set; }

    /// <summary>
    /// ha-core (issue 16): the leadership of this replica when it runs in high-availability mode (null: single node).
    /// Set when the host starts, before it leads; <see cref="Started"/> completes only once it leads.
    /// </summary>
    public ILeaderGate? Leadership { get; internal set; }

    /// <summary>ha-core: true once this replica, having led, lost the leadership (the host then stops; restart it as a standby).</summary>
    public bool Deposed { get; internal set; }

    /// <summary>The recovery-budget controller (issue 13), when the controllers run; null otherwise.</summary>
    public Omega.ControlPlane.Controllers.RecoveryBudgetController? RecoveryBudgets { get; internal set; }

    /// <summary>drill13 (issue 13): the regional schedulers and their global budget controller, when <see cref="OmegaOptions.RegionalBudgets"/> is enabled; null otherwise.</summary>
    public Omega.ControlPlane.Budgets.RegionalBudgetRouter? RegionalBudgets { get; internal set; }

    internal void SetRunning(ICellStore store, SchedulingEngine engine, OmegaServer server, string? dataDirectory, ObjectStore objects, WorkloadController controller, TlsInfo? tls = null, AdminTokenInfo? admin = null)
    {
        Tls = tls;
        AdminToken = admin;
        _objects = objects;
        _controller = controller;
        _store = store;
        _engine = engine;
        _server = server;
        DataDirectory = dataDirectory;
        IsRunning = true;
        _started.TrySetResult();
    }

    internal void SetControlPlane(PolicyRevisions policies, DecisionArchive decisions, RepairController? repair)
    {
        _policies = policies;
        _decisions = decisions;
        Repair = repair;
    }

    internal void SetFailed(Exception e) => _started.TrySetException(e);

    internal void SetStopped(long? checkpointedVersion)
    {
        CheckpointedVersion = checkpointedVersion;
        IsRunning = false;
    }

    private static InvalidOperationException NotStarted() => new("Omega is not running: start the host (AddOmega's hosted service opens the store and starts the engine and server)");
}

/// <summary>Where the first operator token is, and whether this start made it.</summary>
internal sealed record AdminTokenInfo(string Path, bool Created);

/// <summary>What the host's TLS start-up settled on (published on <see cref="OmegaRuntime"/>).</summary>
internal sealed record TlsInfo(string CertificatePath, string Pin, DateTime NotAfter, bool ClientCertificatesRequired, bool Created);
