using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Server;
using Omega.Storage;
using Omega.Transport;

namespace Omega.Hosting;

/// <summary>
/// Runs Omega inside a generic host. Start: open the store (FASTER-durable, recovering checkpoint and journal tail, or in
/// memory), build the scheduling engine and the TCP server (which binds its port), start the engine's workers, then
/// start accepting connections. Stop, in reverse: stop accepting and close connections, stop the workers (releasing
/// their leases), checkpoint the store and close it. The published pieces are on <see cref="OmegaRuntime"/>.
/// </summary>
/// <remarks>
/// The durable gating lives here: the server pushes bindings to agents and acknowledges commits only up to the store's
/// durable watermark (<see cref="IPublishableVersion"/> over <see cref="ICellStore.DurableVersion"/>), so nothing a
/// client is told can be lost by a crash. The server itself does not know the store (it does not depend on Storage).
/// Failures to start (a corrupt store: <see cref="StorageCorruptionException"/>; a data directory in use:
/// <see cref="StorageLockedException"/>; a port in use: <see cref="System.Net.Sockets.SocketException"/>) propagate out
/// of the host's StartAsync after whatever was opened is closed again.
/// </remarks>
public sealed class OmegaHostedService : IHostedService, IAsyncDisposable
{
    private readonly IOptions<OmegaOptions> _options;
    private readonly OmegaRuntime _runtime;
    private readonly ILogger<OmegaHostedService> _logger;
    private readonly TimeProvider _time;
    private readonly IMeterFactory? _meters;
    private ICellStore? _store;
    private SchedulingEngine? _engine;
    private OmegaServer? _server;
    private ObjectStore? _objects;
    private WorkloadController? _controller;
    private ControllerRunner? _runner;
    // cpres (issue 12): the reservation controller (expired reservations are released, never leaked). The quota and
    // repair controllers need the ObjectStore the control-plane hosting block creates; they are started next to it.
    private Omega.ControlPlane.Controllers.ReservationController? _reservations;
    // cpfin (issue 12): the rest of the control plane. Policy revisions and the decision archive exist before the engine
    // (it takes the policy source and the decision sink at construction); the quota and repair controllers start with
    // the workload controller's runner and stop with it.
    private PolicyRevisions? _policies;
    private DecisionArchive? _decisions;
    private ControllerRunner? _quotaRunner;
    private RepairController? _repair;
    // regops (issue 13): the override sweep and the node-pool autoscaler.
    private OverrideController? _overrides;
    private NodePoolAutoscaler? _autoscaler;
    // rb13 (issue 13): RecoveryBudget objects into the cell's commit-time budgets, and their status.
    private RecoveryBudgetController? _budgets;
    private ControllerRunner? _budgetRunner;
    private ITimer? _regionalRenewal;
    private ControllerRunner? _regionalBudgetRunner;
    // dash (issue 17 item 4): the web dashboard, when Dashboard.Listen is set; started after the server, stopped first.
    private Omega.Dashboard.DashboardServer? _dashboard;
    // ha-core (issue 16): the replica (HA mode), its standby listener over a placeholder cell, the task that starts the
    // stack once it leads, and the lock that keeps that start and a stop from interleaving.
    private readonly IHostApplicationLifetime? _lifetime;
    private Omega.Replication.ReplicaNode? _replica;
    private OmegaServer? _standbyServer;
    private Cell? _standbyCell;
    private Task? _replicaTask;
    private readonly SemaphoreSlim _close = new(1, 1);
    private volatile bool _closed;

    /// <summary>Creates the service (dependency injection does; see <see cref="OmegaServiceCollectionExtensions.AddOmega"/>).</summary>
    /// <param name="options">The validated options.</param>
    /// <param name="runtime">Where the running pieces are published.</param>
    /// <param name="logger">The hosting log (event ids 1000-1099).</param>
    /// <param name="time">The clock for the cell's leases, the engine and the server's node lifecycle.</param>
    /// <param name="meters">Creates the cell's, the engine's and the store's meters (null: each creates its own).</param>
    /// <param name="lifetime">Stopped when a replica loses the leadership or can never lead (HA mode; null: nothing to stop).</param>
    public OmegaHostedService(IOptions<OmegaOptions> options, OmegaRuntime runtime, ILogger<OmegaHostedService> logger, TimeProvider time, IMeterFactory? meters = null, IHostApplicationLifetime? lifetime = null)
    {
        _lifetime = lifetime;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _runtime = runtime ?? throw new ArgumentNullException(nameof(runtime));
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _meters = meters;
    }

    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var o = _options.Value;
        // ha-core (issue 16): a replica starts as a standby; the stack below starts when it leads.
        if (o.Replication is not null)
        {
            await StartReplicaAsync(o, cancellationToken).ConfigureAwait(false);
            return;
        }
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            _store = OpenStore(o);
            cancellationToken.ThrowIfCancellationRequested();
            await StartStackAsync(o, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _runtime.SetFailed(e);
            await CloseAsync(checkpoint: false).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Everything over an open store (<see cref="_store"/>): tenants, control plane, engine, server, controllers, dashboard.</summary>
    private async Task StartStackAsync(OmegaOptions o, CancellationToken cancellationToken)
    {
        {
            if (_store is null) throw new InvalidOperationException("no store is open");
            await CreateConfiguredTenantsAsync(_store, o, cancellationToken).ConfigureAwait(false);

            // The control plane's objects live in the cell's journal: the store opens over the recovered cell (so every
            // object the journal or checkpoint restored is served) and acknowledges a write once the store's durable
            // watermark covers its version (in memory: at once). Opened before the engine: the engine takes the policy
            // revision and the decision archive the store holds.
            var store = _store;
            o.Objects.Time = _time;
            _objects = new ObjectStore(_store.Cell, o.Objects, DurabilityWaiter.From((v, ct) => store.WaitForVersionAsync(v, ct)));
            // cpfin: the active SchedulerPolicy revision is loaded before any worker places (a restart keeps the promoted
            // revision, and every decision names it); decisions of workload replicas are archived durably (explain after
            // a restart).
            _policies = new PolicyRevisions(_objects, new Omega.Scheduling.Pipeline.PolicySource(), _time);
            int policyRevision = _policies.Load();
            _decisions = new DecisionArchive(_objects, o.DecisionArchive);
            _decisions.Start();

            var scheduling = new SchedulingOptions { Seed = o.Seed, DecisionSampleEvery = o.DecisionSampleEvery, Time = _time, MeterFactory = _meters };
            scheduling.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = o.BatchWorkers, QueueCapacity = 1_000_000, LeaseDuration = o.SchedulerLease });
            scheduling.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = o.ServiceWorkers, QueueCapacity = 100_000, LeaseDuration = o.SchedulerLease });
            scheduling.Policy = _policies.Source;
            scheduling.DecisionSink = _decisions;
            o.ConfigureScheduling?.Invoke(scheduling);
            _engine = new SchedulingEngine(_store.Cell, scheduling);
            var wc = o.WorkloadController;
            wc.Observer = o.Readiness == ReplicaReadiness.Bound ? ReplicaObserver.BoundIsReady : ReplicaObserver.AgentReported(_store.Cell);
            wc.MeterFactory ??= _meters; // the serving-stage gauge (omega.controlplane.replicas)
            // ---- drill13 (issue 13): regional schedulers on budget leases route replicas that require a region ----
            Omega.ControlPlane.Budgets.RegionalBudgetRouter? regional = null;
            if (o.RegionalBudgets.Enabled)
            {
                regional = new Omega.ControlPlane.Budgets.RegionalBudgetRouter(_engine, _time, o.RegionalBudgets);
                // The tenants' durable budgets (RegionalBudget objects, restored with the store) before any replica is routed.
                Omega.ControlPlane.Controllers.RegionalBudgetController.ApplyAll(_objects, regional);
                // Renewed every third of a lease, on the host's clock: a region keeps its lease while this process runs;
                // a revoked one is not renewed and runs out at its own end.
                var every = o.RegionalBudgets.RenewEvery ?? o.RegionalBudgets.LeaseTtl / 3;
                _regionalRenewal = _time.CreateTimer(static r => ((Omega.ControlPlane.Budgets.RegionalBudgetRouter)r!).RenewAll(), regional, every, every);
                Log.RegionalBudgetsOn(_logger, o.RegionalBudgets.LeaseCpuMillis, o.RegionalBudgets.LeaseTtl, o.RegionalBudgets.TenantCpuMillis);
            }
            wc.Router = regional;
            _runtime.RegionalBudgets = regional;
            // ---- end drill13 ----
            _controller = new WorkloadController(_objects, _engine, _time, wc);

            o.Server.Publisher = new DurablePublisher(store);
            o.Server.Checkpoint = ct => store.CheckpointAsync(ct);
            o.Server.Time = _time;
            o.Server.MeterFactory ??= _meters;
            // The same objects are served over the wire (writes acknowledged once durable, as above).
            o.Server.Objects = _objects;
            o.Server.Policies = _policies;
            o.Server.Decisions = _decisions;
            var tls = ConfigureTls(o);
            if (o.Authentication) o.Server.Authentication ??= new AuthOptions();
            else o.Server.Authentication = null;
            // Binds the port: a port in use fails here, before any worker runs.
            _server = new OmegaServer(_store.Cell, _engine, IPEndPoint.Parse(o.Listen), o.Server);
            var admin = o.Authentication ? await BootstrapAdminAsync(o, _store, _server, cancellationToken).ConfigureAwait(false) : null;

            if (o.StartScheduling)
            {
                _engine.Start();
                Log.SchedulingStarted(_logger, o.BatchWorkers, o.ServiceWorkers, _engine.Seed);
            }
            _server.Start();
            // ---- cpres: reservation controller (cell-only; on the thread pool and the host's clock) ----
            _reservations = new Omega.ControlPlane.Controllers.ReservationController(_store.Cell, new Omega.ControlPlane.Controllers.ThreadPoolControllerScheduler(_time), meterFactory: _meters);
            _reservations.Start();
            // ---- end cpres ----
            Log.Listening(_logger, _server.EndPoint);
            if (o.RunControllers)
            {
                // After recovery and the engine: the first reconcile of every workload is a full resync against the
                // restored bindings (level-triggered), resubmitting to the engine what a restart made it forget. The
                // thread pool runs it (the scheduler is injectable for simulations; the host has no threads of its own).
                _runner = _controller.CreateRunner(new ThreadPoolControllerScheduler(_time), o.ControllerRunner);
                _runner.Start();
                // cpfin: Quota objects into the cell's limits and guarantees; the repair sweep for what no owner cleans.
                _quotaRunner = new QuotaController(_objects, _store.Cell, _time, o.QuotaController).CreateRunner(new ThreadPoolControllerScheduler(_time), o.ControllerRunner);
                _quotaRunner.Start();
                _repair = new RepairController(_objects, _store.Cell, new ThreadPoolControllerScheduler(_time), o.RepairController, _meters);
                _repair.Start();
                // ---- regops (issue 13): overrides are applied and expired, pools scaled, on the host's clock ----
                _overrides = new OverrideController(_objects, _store.Cell, new ThreadPoolControllerScheduler(_time), o.Overrides, _meters);
                _overrides.Start();
                _autoscaler = new NodePoolAutoscaler(_objects, _store.Cell, new ThreadPoolControllerScheduler(_time), o.Autoscaler, _meters);
                _autoscaler.Start();
                _runtime.Overrides = _overrides;
                _runtime.Autoscaler = _autoscaler;
                // ---- end regops ----
                // ---- rb13 (issue 13): recovery budgets enforced at commit; status and the exhaustion gauge ----
                _budgets = new RecoveryBudgetController(_objects, _store.Cell, _time, o.RecoveryBudgets, _meters);
                _budgetRunner = _budgets.CreateRunner(new ThreadPoolControllerScheduler(_time), o.ControllerRunner);
                _budgetRunner.Start();
                _runtime.RecoveryBudgets = _budgets;
                // ---- end rb13 ----
                // ---- drill13 (issue 13): durable per-tenant RegionalBudget objects into the regional schedulers ----
                // Runs with regional budgets off too, so the objects say so in their status (Applied=False Disabled).
                _regionalBudgetRunner = new Omega.ControlPlane.Controllers.RegionalBudgetController(_objects, _runtime.RegionalBudgets, _time)
                    .CreateRunner(new ThreadPoolControllerScheduler(_time), o.ControllerRunner);
                _regionalBudgetRunner.Start();
                // ---- end drill13 ----
            }
            Log.ControlPlaneStarted(_logger, _objects.Count, policyRevision, _decisions.Kept, o.RunControllers);
            _runtime.SetControlPlane(_policies, _decisions, _repair);
            // ---- dash: the web dashboard (same certificate as the listener; sign-in with the server's credentials) ----
            if (o.Dashboard.Listen is not null)
            {
                var durable = _store;
                _dashboard = new Omega.Dashboard.DashboardServer(new Omega.Dashboard.DashboardSources
                {
                    Cell = _store.Cell, Engine = _engine, Objects = _objects, Auth = _server.Auth, Time = _time, Lifecycle = _server.Lifecycle,
                    Certificate = o.Server.Transport.ServerTls?.Certificate,
                    WaitDurable = ct => durable.WaitForDurableAsync(durable.Cell.JournalSequence, ct),
                }, o.Dashboard, _logger);
                await _dashboard.StartAsync(cancellationToken).ConfigureAwait(false);
                Log.DashboardListening(_logger, _dashboard.Address!);
            }
            // ---- end dash ----
            _runtime.SetRunning(_store, _engine, _server, _store.IsPersistent ? DataDirectoryOf(o) : null, _objects, _controller, tls, admin);
            _runtime.DashboardAddress = _dashboard?.Address;
        }
    }

    // ---------------------------------------------------------------- ha-core (issue 16): a replica of a replicated cell

    /// <summary>
    /// High-availability start: open this replica's local copy as a standby (Omega.Replication tails etcd into it and
    /// campaigns), listen with a standby server that acknowledges nothing, and return. When the replica wins and has
    /// caught up, <see cref="LeadWhenElectedAsync"/> replaces the standby server by the full stack over the promoted store.
    /// </summary>
    private async Task StartReplicaAsync(OmegaOptions o, CancellationToken cancellationToken)
    {
        var ha = o.Replication!;
        // Snapshot bootstrap (docs/high-availability.md): a replica behind the trimmed log asks the leader for a snapshot
        // with the admin credential every replica is given, over TLS verified by the shared certificate when there is one.
        if (ha.SnapshotToken is null && o.Authentication && o.AdminTokenFile is { } tokenFile && File.Exists(tokenFile))
            ha.SnapshotToken = File.ReadAllText(tokenFile).Trim();
        if (ha.SnapshotTransport is null && o.Tls.Mode == OmegaTlsMode.Certificate && o.Tls.CertificateFile is { } certFile)
            ha.SnapshotTransport = new TransportOptions { ClientTls = new TlsClientOptions { TrustedAuthorities = TlsCertificates.LoadAuthorities(certFile) } };
        var node = new Omega.Replication.ReplicaNode(ha, PrepareStorage(o), _logger);
        _replica = node;
        try
        {
            await node.StartAsync(cancellationToken).ConfigureAwait(false);
            o.Server.Leadership = node.Gate;
            _runtime.Leadership = node.Gate;
            StartStandbyServer(o);
        }
        catch (Exception e)
        {
            _runtime.SetFailed(e);
            await CloseAsync(checkpoint: false).ConfigureAwait(false);
            throw;
        }
        string endpoints = string.Join(",", ha.Endpoints);
        Log.ReplicaStandby(_logger, ha.ReplicaName, ha.Cluster, endpoints, ha.AdvertiseAddress);
        _replicaTask = Task.Run(() => LeadWhenElectedAsync(o, node), CancellationToken.None);
    }

    /// <summary>
    /// The standby's listener, so clients reaching a standby are told where the leader is (the redirect of
    /// <see cref="ServerOptions.Leadership"/>, docs/protocol.md). It runs over an empty placeholder cell whose durable
    /// watermark never advances: whatever a client sends it, nothing is ever acknowledged or pushed from it.
    /// </summary>
    private void StartStandbyServer(OmegaOptions o)
    {
        var cellOptions = new CellOptions { Name = o.CellName + "-standby", Time = _time, MeterFactory = _meters };
        _standbyCell = new Cell(cellOptions);
        var saved = o.Server.Publisher;
        var savedGate = o.Server.Leadership;
        o.Server.Publisher = NeverPublished.Instance;
        // The placeholder must never serve, not even in the window between this replica winning the election (the real
        // gate says "leader") and LeadWhenElectedAsync replacing this server by the full stack. Through the real gate it
        // served there: an AcquireLease on the empty placeholder was granted scheduler 0 / token 1 and, the placeholder
        // having no journal, acknowledged at once — a token the real cell had already handed out (found by the failover
        // driver's pinned probes, round 9). Its own gate never leads: while the replica leads it answers NoLeader (the
        // client retries and finds the full stack on the same address), otherwise it redirects to the known leader.
        // The handler reads its options' gate on every request (ServerOptions is shared with the full stack), so the
        // standby gate stays in the options until the standby server is gone (LeadWhenElectedAsync puts the real one back).
        if (savedGate is not null) o.Server.Leadership = new StandbyGate(savedGate);
        o.Server.Time = _time;
        o.Server.MeterFactory ??= _meters;
        ConfigureTls(o);
        if (o.Authentication) o.Server.Authentication ??= new AuthOptions();
        else o.Server.Authentication = null;
        _standbyServer = new OmegaServer(_standbyCell, null, IPEndPoint.Parse(o.Listen), o.Server);
        o.Server.Publisher = saved;
        _standbyServer.Start();
    }

    private async Task LeadWhenElectedAsync(OmegaOptions o, Omega.Replication.ReplicaNode node)
    {
        ICellStore store;
        try
        {
            store = await node.Leadership.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return; // stopped before leading
        }
#pragma warning disable CA1031 // a replica that can never lead (a broken or trimmed log) stops the host with the reason
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.ReplicaFailed(_logger, node.Name, e.Message);
            _runtime.SetFailed(e);
            _lifetime?.StopApplication();
            return;
        }
        await _close.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_closed)
            {
                store.Dispose(); // the host stopped while we were catching up
                return;
            }
            if (_standbyServer is { } standby)
            {
                _standbyServer = null;
                await standby.DisposeAsync().ConfigureAwait(false);
            }
            _standbyCell?.Dispose();
            _standbyCell = null;
            if (o.Server.Leadership is StandbyGate standbyGate) o.Server.Leadership = standbyGate.Replica;
            _store = store;
            // The leader serves replica snapshots to replicas behind the trimmed log (off the hot path: a dedicated thread).
            o.Server.Snapshots = new Omega.Replication.ReplicaSnapshotSource(node.Store);
            await StartStackAsync(o, CancellationToken.None).ConfigureAwait(false);
            Log.ReplicaLeading(_logger, node.Name, node.Epoch, store.Cell.Version);
        }
#pragma warning disable CA1031 // reported, and the host stops
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.ReplicaFailed(_logger, node.Name, e.Message);
            _runtime.SetFailed(e);
            _close.Release();
            await CloseAsync(checkpoint: false).ConfigureAwait(false);
            _lifetime?.StopApplication();
            return;
        }
        _close.Release();
        // Deposed: the cell may hold records etcd refused; nothing more is acknowledged (the journal failed). Close the
        // stack and stop the host; restarted, the replica rejoins as a standby from its local copy.
        node.Deposed.Register(() => _ = Task.Run(async () =>
        {
            if (_closed) return;
            _runtime.Deposed = true;
            Log.ReplicaDeposed(_logger, node.Name);
            await CloseAsync(checkpoint: false).ConfigureAwait(false);
            _lifetime?.StopApplication();
        }));
    }

    /// <summary>
    /// The standby server's view of the election: never the leader. It names the leader only while that is another
    /// replica; while this replica leads (its full stack is starting) it names none, so clients get NoLeader and retry.
    /// </summary>
    private sealed class StandbyGate : ILeaderGate
    {
        private readonly ILeaderGate _replica;

        public StandbyGate(ILeaderGate replica) => _replica = replica;

        public ILeaderGate Replica => _replica;

        public bool IsLeader => false;

        public string? LeaderAddress => _replica.IsLeader ? null : _replica.LeaderAddress;

        public long Epoch => _replica.Epoch;

        public event Action? Changed
        {
            add => _replica.Changed += value;
            remove => _replica.Changed -= value;
        }
    }

    /// <summary>The standby server's watermark: nothing on a standby is ever durable, so it acknowledges nothing.</summary>
    private sealed class NeverPublished : IPublishableVersion
    {
        public static readonly NeverPublished Instance = new();

        public long PublishableVersion => 0;

        public long PublishableSequence => 0;
    }

    // Tenants named in the options are created before anything can submit to them, and durably: a job accepted for a
    // tenant must never outlive the tenant across kill -9.
    private async Task CreateConfiguredTenantsAsync(ICellStore store, OmegaOptions o, CancellationToken cancellationToken)
    {
        foreach (var t in o.Tenants)
        {
            var status = store.Cell.CreateTenant(t, null, out var id);
            if (status == TenantOpStatus.LimitReached)
                throw new OmegaConfigurationException($"cannot create tenant '{t}': the cell holds its maximum of {store.Cell.TenantCount} tenants");
            if (status == TenantOpStatus.Ok) Log.TenantCreated(_logger, o.CellName, t, id.Value);
        }
        await store.WaitForDurableAsync(store.Cell.JournalSequence, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The first operator credential (like etcd's and k3s's bootstrap admin): installed from <see cref="OmegaOptions.AdminTokenFile"/>,
    /// or created at the first start (no credential stored yet) and written to <c>admin.token</c> (mode 0600) in the data
    /// directory. Durable before the server accepts a connection, so the token printed survives kill -9.
    /// </summary>
    private async Task<AdminTokenInfo> BootstrapAdminAsync(OmegaOptions o, ICellStore store, OmegaServer server, CancellationToken cancellationToken)
    {
        var auth = server.Auth;
        AdminTokenInfo info;
        if (o.AdminTokenFile is { } given)
        {
            string token = (await File.ReadAllTextAsync(given, cancellationToken).ConfigureAwait(false)).Trim();
            if (!auth.TryInstallToken(token, CredentialRole.Operator, "admin", OperatorScopes.All, out var error))
                throw new OmegaConfigurationException($"admin token file {given}: {error}");
            info = new AdminTokenInfo(Path.GetFullPath(given), false);
        }
        else
        {
            string dir = o.InMemory
                ? Path.Combine(Path.GetTempPath(), "omega-auth", IPEndPoint.Parse(o.Listen).Port == 0 ? $"{o.CellName}-pid{Environment.ProcessId}" : $"{o.CellName}-{IPEndPoint.Parse(o.Listen).Port}")
                : DataDirectoryOf(o);
            string file = Path.Combine(dir, "admin.token");
            bool created = false;
            if (!auth.HasCredentials)
            {
                Directory.CreateDirectory(dir);
                string token = auth.CreateCredential(CredentialRole.Operator, "admin", OperatorScopes.All, createdBy: "omega serve (first start)");
                WriteOwnerOnly(file, token + "\n");
                created = true;
            }
            info = new AdminTokenInfo(Path.GetFullPath(file), created);
        }
        await store.WaitForDurableAsync(store.Cell.JournalSequence, cancellationToken).ConfigureAwait(false);
        Log.AuthOn(_logger, info.Path, info.Created);
        return info;
    }

    private static void WriteOwnerOnly(string path, string text)
    {
        // Created with mode 0600 from the start (never readable by others, not even for a moment).
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var f = new FileStream(path, options);
        using var w = new StreamWriter(f);
        w.Write(text);
    }

    private StorageOptions PrepareStorage(OmegaOptions o)
    {
        var cell = o.Storage.Cell;
        cell.Name = o.CellName;
        cell.Time = _time;
        cell.MeterFactory = _meters;
        var storage = o.Storage;
        storage.DataDirectory = o.DataDirectory;
        // Storage reports through a callback so that it carries no logging dependency; here the callback is the log.
        string cellName = o.CellName;
        storage.Warning = message => Log.StorageWarning(_logger, cellName, message);
        return storage;
    }

    private ICellStore OpenStore(OmegaOptions o)
    {
        var cell = o.Storage.Cell;
        cell.Name = o.CellName;
        cell.Time = _time;
        cell.MeterFactory = _meters;
        if (o.InMemory)
        {
            var memory = CellStore.InMemory(cell);
            Log.InMemoryCell(_logger, o.CellName);
            return memory;
        }
        var storage = PrepareStorage(o);
        var clock = Stopwatch.StartNew();
        var store = CellStore.Open(storage);
        var r = store.Recovery;
        double elapsedMs = clock.Elapsed.TotalMilliseconds;
        string dir = DataDirectoryOf(o);
        Log.StoreRecovered(_logger, o.CellName, r.CellVersion, dir, r.Allocations, r.FromCheckpoint, r.RecordsReplayed, elapsedMs);
        return store;
    }

    /// <summary>
    /// Sets the server's TLS from <see cref="OmegaOptions.Tls"/>: loads the certificate files, or makes (once) and then
    /// reuses the self-signed certificate, and loads the client CA for mTLS. A certificate that cannot be loaded fails the
    /// start (CryptographicException), before the port is bound.
    /// </summary>
    private TlsInfo? ConfigureTls(OmegaOptions o)
    {
        var t = o.Tls;
        if (t.Mode == OmegaTlsMode.Plaintext)
        {
            o.Server.Transport.ServerTls = null;
            Log.Plaintext(_logger);
            return null;
        }
        string certFile, keyFile;
        X509Certificate2 certificate;
        bool created = false;
        if (t.Mode == OmegaTlsMode.Certificate)
        {
            certFile = t.CertificateFile!;
            keyFile = t.KeyFile!;
            certificate = TlsCertificates.LoadPemCertificate(certFile, keyFile);
        }
        else
        {
            // In memory there is no data directory: a temporary folder per cell name and port, so that two in-memory
            // servers on one machine never share (or race to write) one certificate.
            var listenAt = IPEndPoint.Parse(o.Listen);
            string dir = t.SelfSignedDirectory ?? (o.InMemory
                ? Path.Combine(Path.GetTempPath(), "omega-tls", listenAt.Port == 0 ? $"{o.CellName}-pid{Environment.ProcessId}" : $"{o.CellName}-{listenAt.Port}")
                : Path.Combine(DataDirectoryOf(o), "tls"));
            Directory.CreateDirectory(dir);
            certFile = Path.Combine(dir, "server.crt");
            keyFile = Path.Combine(dir, "server.key");
            // Made once and kept: clients that pinned it, or were given the file, keep trusting a restarted server.
            if (File.Exists(certFile) && File.Exists(keyFile)) certificate = TlsCertificates.LoadPemCertificate(certFile, keyFile);
            else
            {
                certificate = TlsCertificates.CreateSelfSignedForHost(listenAt.Address);
                TlsCertificates.WritePem(certificate, certFile, keyFile);
                created = true;
            }
        }
        var clientAuthorities = t.ClientCaFile is null ? null : TlsCertificates.LoadAuthorities(t.ClientCaFile);
        o.Server.Transport.ServerTls = new TlsServerOptions
        {
            Certificate = certificate,
            ClientCertificateAuthorities = clientAuthorities,
            MaxConcurrentHandshakes = t.MaxConcurrentHandshakes,
        };
        string pin = TlsCertificates.PublicKeyPin(certificate);
        if (created) Log.SelfSignedCertificateCreated(_logger, certFile, pin);
        Log.TlsOn(_logger, certificate.Subject, pin, certFile, clientAuthorities is not null);
        return new TlsInfo(Path.GetFullPath(certFile), pin, certificate.NotAfter, clientAuthorities is not null, created);
    }

    private static string DataDirectoryOf(OmegaOptions o)
        => o.DataDirectory ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "omega", o.CellName);

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_store is null && _replica is null) return;
        Log.Stopping(_logger);
        long? checkpointed = await CloseAsync(checkpoint: true).ConfigureAwait(false);
        _runtime.SetStopped(checkpointed);
    }

    /// <summary>Stops what was started, in reverse order; checkpoints a durable store first when asked. Idempotent.</summary>
    private async Task<long?> CloseAsync(bool checkpoint)
    {
        await _close.WaitAsync().ConfigureAwait(false);
        try
        {
            _closed = true;
            return await CloseCoreAsync(checkpoint).ConfigureAwait(false);
        }
        finally
        {
            _close.Release();
        }
    }

    private async Task<long?> CloseCoreAsync(bool checkpoint)
    {
        // ha-core: the standby listener (a replica that never led).
        if (_standbyServer is { } standbyServer)
        {
            _standbyServer = null;
            await standbyServer.DisposeAsync().ConfigureAwait(false);
        }
        _standbyCell?.Dispose();
        _standbyCell = null;
        // dash: the dashboard first (it reads every other piece, and acts on the cell).
        if (_dashboard is { } dashboard)
        {
            _dashboard = null;
            await dashboard.DisposeAsync().ConfigureAwait(false);
        }
        // Controllers first: no reconcile may submit to an engine that is stopping or write to a closing store.
        if (_runner is { } runner)
        {
            _runner = null;
            runner.Dispose();
        }
        _controller = null;
        // drill13: no lease renewed once the controllers are gone.
        _regionalRenewal?.Dispose();
        _regionalRenewal = null;
        if (_regionalBudgetRunner is { } regionalBudgetRunner)
        {
            _regionalBudgetRunner = null;
            regionalBudgetRunner.Dispose();
        }
        if (_quotaRunner is { } quotaRunner)
        {
            _quotaRunner = null;
            quotaRunner.Dispose();
        }
        _repair?.Dispose();
        _repair = null;
        // regops: no override write or node added once the store starts closing.
        _overrides?.Dispose();
        _overrides = null;
        _autoscaler?.Dispose();
        _autoscaler = null;
        // rb13: no budget set in the cell or status written once the store starts closing.
        if (_budgetRunner is { } budgetRunner)
        {
            _budgetRunner = null;
            budgetRunner.Dispose();
        }
        _budgets?.Dispose();
        _budgets = null;
        // cpres: stop releasing reservations before the cell closes.
        _reservations?.Dispose();
        _reservations = null;
        if (_server is { } server)
        {
            _server = null;
            await server.DisposeAsync().ConfigureAwait(false);
        }
        if (_engine is { } engine)
        {
            _engine = null;
            await engine.DisposeAsync().ConfigureAwait(false);
        }
        // cpfin: after the engine (no more records) and before the object store: the archive's pump writes what is queued.
        if (_decisions is { } decisions)
        {
            _decisions = null;
            await decisions.DisposeAsync().ConfigureAwait(false);
        }
        _policies?.Dispose();
        _policies = null;
        // After the server (no request can reach it) and before the cell's store closes under it.
        if (_objects is { } objects)
        {
            _objects = null;
            objects.Dispose();
        }
        long? checkpointed = null;
        if (_store is { } store)
        {
            _store = null;
            string cellName = store.Cell.Name;
            if (checkpoint && store.IsPersistent)
            {
                // Not cancellable on purpose: a checkpoint cut short leaves the journal to replay (safe, but slower to
                // open); the host's shutdown timeout bounds how long the whole stop may take.
                await store.CheckpointAsync(CancellationToken.None).ConfigureAwait(false);
                checkpointed = store.Cell.Version;
                string dir = DataDirectoryOf(_options.Value);
                Log.Checkpointed(_logger, cellName, checkpointed.Value, dir);
            }
            store.Dispose();
            if (checkpoint) Log.Stopped(_logger, cellName, store.Cell.Version);
        }
        // ha-core: after the store (its last group went to etcd through the replica's client); resigns when leading, so
        // a standby takes over without waiting out the lease.
        if (_replica is { } replica)
        {
            _replica = null;
            await replica.DisposeAsync().ConfigureAwait(false);
        }
        return checkpointed;
    }

    /// <summary>Closes whatever is still open when the host is disposed without a stop (a failed start elsewhere).</summary>
    public async ValueTask DisposeAsync() => await CloseAsync(checkpoint: false).ConfigureAwait(false);

    /// <summary>The server's durable watermark: bindings are pushed, and commit replies sent, only up to what the store has made durable.</summary>
    private sealed class DurablePublisher(ICellStore store) : IPublishableVersion
    {
        public long PublishableVersion => store.DurableVersion;

        public long PublishableSequence => store.DurableSequence;

        public IDisposable? Subscribe(Action onAdvance) => store.AddDurableListener(onAdvance);
    }
}
