using System.CommandLine;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Omega.Cli.Fleet;
using Omega.Cli.Load;
using Omega.Hosting;
using Omega.Storage;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega serve</c>: the engine with its TCP server and a FASTER store, until Ctrl+C or SIGTERM; then a clean
/// shutdown (stop accepting, stop the workers, checkpoint, close). And <c>omega agents</c>: a simulated fleet against a
/// running server.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var listen = new Option<string>("--listen") { Description = "Address and port to listen on.", DefaultValueFactory = _ => "127.0.0.1:7077" };
        var data = new Option<string?>("--data") { Description = "Data directory (default: the user's local data folder, omega/default)." };
        var inMemory = new Option<bool>("--in-memory") { Description = "Keep the cell in memory only (nothing survives a restart)." };
        var batchWorkers = new Option<int>("--batch-workers") { Description = "Workers of the batch scheduler kind.", DefaultValueFactory = _ => 2 };
        var serviceWorkers = new Option<int>("--service-workers") { Description = "Workers of the service scheduler kind.", DefaultValueFactory = _ => 1 };
        var metricsPort = new Option<int?>("--metrics-port") { Description = "Serve Prometheus metrics at http://localhost:PORT/metrics (opt-in)." };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "TLS: the server certificate, PEM (with --tls-key). Default: a self-signed certificate made once in the data directory." };
        var tlsKey = new Option<string?>("--tls-key") { Description = "TLS: the private key of --tls-cert, PEM." };
        var clientCa = new Option<string?>("--client-ca") { Description = "mTLS: require client certificates that chain to this PEM CA file." };
        var insecure = new Option<bool>("--insecure") { Description = "Plaintext listener, no TLS (anyone on the network path can read and forge traffic)." };
        var tenants = new Option<string[]>("--tenant") { Description = "Create this tenant at start unless it exists (repeatable); others are created with 'omega tenant create'.", AllowMultipleArgumentsPerToken = false };
        var nodeLease = new Option<double>("--node-lease") { Description = "Node lease in seconds: a node not heard from this long is declared lost; also the restart grace and the first-heartbeat deadline of a new registration.", DefaultValueFactory = _ => 10 };
        var noAuth = new Option<bool>("--no-auth") { Description = "Accept every connection without a credential (anyone who reaches the port may do anything)." };
        var adminTokenFile = new Option<string?>("--admin-token-file") { Description = "Install the first operator token from this file (omega token generate) instead of creating DATA/admin.token." };
        var http = new Option<string?>("--http") { Description = "Serve the live web dashboard on ADDRESS:PORT: HTTPS with the server's certificate (plain HTTP only with --insecure); sign in with an operator token. docs/dashboard.md." };
        // ha-core (issue 16): high availability on etcd (docs/high-availability.md).
        var etcd = new Option<string?>("--etcd") { Description = "High availability: run as one replica of a cell replicated through etcd at these client URLs (URL[,URL...]); needs --replica and --advertise. docs/high-availability.md." };
        var replica = new Option<string?>("--replica") { Description = "With --etcd: this replica's unique name." };
        var advertise = new Option<string?>("--advertise") { Description = "With --etcd: the HOST:PORT clients reach this replica at (published while it leads)." };
        var haCluster = new Option<string?>("--ha-cluster") { Description = "With --etcd: the replicated cell's name in etcd (keys under /omega/NAME/; default 'default')." };
        // drill13 (issue 13): seed 004's regional schedulers on budget leases (Omega:RegionalBudgets), with the tenants'
        // budgets as RegionalBudget objects (omega apply / get regionalbudgets).
        var regionalBudgets = new Option<bool>("--regional-budgets") { Description = "Route replicas that require a region through that region's scheduler, spending a lease on the tenant's budget (RegionalBudget objects; docs/control-plane.md)." };
        var cmd = new Command("serve", "Run the engine with its TCP server (node agents and external schedulers) on a FASTER-durable cell.")
        {
            listen, data, inMemory, batchWorkers, serviceWorkers, metricsPort, tenants, nodeLease, tlsCert, tlsKey, clientCa, insecure, noAuth, adminTokenFile, http,
            etcd, replica, advertise, haCluster, regionalBudgets,
        };
        cmd.SetAction(async (r, cancel) =>
        {
            if (TlsUsageError(r.GetValue(tlsCert), r.GetValue(tlsKey), r.GetValue(clientCa), r.GetValue(insecure)) is { } tlsError)
            {
                Console.Error.WriteLine($"omega serve: {tlsError}");
                return 2;
            }
            if (!IPEndPoint.TryParse(r.GetValue(listen)!, out var endpoint))
            {
                Console.Error.WriteLine($"omega serve: --listen must be ADDRESS:PORT, not '{r.GetValue(listen)}'");
                return 2;
            }
            if (r.GetValue(http) is { } httpAt && (!IPEndPoint.TryParse(httpAt, out _) || !httpAt.Contains(':', StringComparison.Ordinal)))
            {
                Console.Error.WriteLine($"omega serve: --http must be ADDRESS:PORT, not '{httpAt}'");
                return 2;
            }
            if (r.GetValue(adminTokenFile) is { } atf && (r.GetValue(noAuth) || !File.Exists(atf)))
            {
                Console.Error.WriteLine(r.GetValue(noAuth) ? "omega serve: --admin-token-file needs authentication: drop --no-auth" : $"omega serve: --admin-token-file not found: {atf}");
                return 2;
            }
            if (r.GetValue(batchWorkers) is < 1 or > 256 || r.GetValue(serviceWorkers) is < 1 or > 256)
            {
                Console.Error.WriteLine("omega serve: --batch-workers and --service-workers must be between 1 and 256");
                return 2;
            }
            if (r.GetValue(nodeLease) is not (>= 0.1 and <= 3600))
            {
                Console.Error.WriteLine("omega serve: --node-lease must be between 0.1 and 3600 seconds");
                return 2;
            }
            foreach (var t in r.GetValue(tenants) ?? [])
                if (!Omega.Cells.Cell.IsValidTenantName(t))
                {
                    Console.Error.WriteLine($"omega serve: --tenant must be 1-{Omega.Cells.Cell.MaxTenantNameLength} letters, digits, '.', '_' or '-', not '{t}'");
                    return 2;
                }
            if (r.GetValue(metricsPort) is < 1 or > 65535)
            {
                Console.Error.WriteLine("omega serve: --metrics-port must be between 1 and 65535");
                return 2;
            }
            Omega.Replication.ReplicationOptions? ha = null;
            if (r.GetValue(etcd) is { } etcdUrls)
            {
                ha = new Omega.Replication.ReplicationOptions
                {
                    ReplicaName = r.GetValue(replica) ?? "",
                    AdvertiseAddress = r.GetValue(advertise) ?? "",
                    Cluster = r.GetValue(haCluster) ?? "default",
                };
                foreach (var u in etcdUrls.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) ha.Endpoints.Add(u);
                string? problem = r.GetValue(replica) is null || r.GetValue(advertise) is null ? "--etcd needs --replica NAME and --advertise HOST:PORT"
                    : r.GetValue(inMemory) ? "--etcd cannot be combined with --in-memory (a replica keeps its local copy in --data)"
                    : ha.Validate();
                if (problem is not null)
                {
                    Console.Error.WriteLine($"omega serve: {problem}");
                    return 2;
                }
            }
            else if (r.GetValue(replica) is not null || r.GetValue(advertise) is not null || r.GetValue(haCluster) is not null)
            {
                Console.Error.WriteLine("omega serve: --replica, --advertise and --ha-cluster go with --etcd");
                return 2;
            }
            if (!MetricsExport.TryStartPrometheus("serve", r.GetValue(metricsPort), out var exporter)) return 1;
            using var metrics = exporter;
            // The store, engine and server are composed by Omega.Hosting (AddOmega); this command is its shell: flags in,
            // its own lines out.
            using var host = CliHost.Build(o =>
            {
                o.Listen = r.GetValue(listen)!;
                o.InMemory = r.GetValue(inMemory);
                o.DataDirectory = r.GetValue(data);
                o.BatchWorkers = r.GetValue(batchWorkers);
                o.ServiceWorkers = r.GetValue(serviceWorkers);
                o.Server.NodeLease = TimeSpan.FromSeconds(r.GetValue(nodeLease));
                o.RegionalBudgets.Enabled = r.GetValue(regionalBudgets);
                foreach (var t in r.GetValue(tenants) ?? []) o.Tenants.Add(t);
                // Secure by default: a certificate given, or else a self-signed one; plaintext only when asked for.
                o.Tls.Mode = r.GetValue(insecure) ? OmegaTlsMode.Plaintext : r.GetValue(tlsCert) is not null ? OmegaTlsMode.Certificate : OmegaTlsMode.SelfSigned;
                o.Tls.CertificateFile = r.GetValue(tlsCert);
                o.Tls.KeyFile = r.GetValue(tlsKey);
                o.Tls.ClientCaFile = r.GetValue(clientCa);
                // Credentials on by default too (issue 11); --no-auth is the explicit, warned opt-out.
                o.Authentication = !r.GetValue(noAuth);
                o.AdminTokenFile = r.GetValue(adminTokenFile);
                o.Dashboard.Listen = r.GetValue(http);
                o.Replication = ha;
            });
            var runtime = host.Services.GetRequiredService<OmegaRuntime>();
            try
            {
                await host.StartAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (StorageCorruptionException e)
            {
                Console.Error.WriteLine($"omega serve: recovery refused: {e.Message} (see docs/storage.md, 'when recovery refuses a file')");
                return 4;
            }
            catch (StorageLockedException e)
            {
                Console.Error.WriteLine($"omega serve: {e.Message}; stop it or choose another --data");
                return 1;
            }
            catch (System.Net.Sockets.SocketException e)
            {
                Console.Error.WriteLine($"omega serve: cannot listen on {endpoint}: {e.Message}");
                return 1;
            }
            catch (IOException e) when (r.GetValue(http) is not null) // Kestrel: the dashboard's port in use
            {
                Console.Error.WriteLine($"omega serve: cannot serve the dashboard on {r.GetValue(http)}: {e.Message}");
                return 1;
            }
            catch (OmegaConfigurationException e) // a tenant beyond the limit, an unreadable admin token file: usage
            {
                Console.Error.WriteLine($"omega serve: {e.Message}");
                return 2;
            }
            catch (System.Security.Cryptography.CryptographicException e)
            {
                Console.Error.WriteLine($"omega serve: cannot load the TLS certificate, key or client CA: {e.Message}");
                return 1;
            }
            // ---- ha-core: a replica serves only once it leads; until then it is a standby (or the host stops) ----
            var stopped = new TaskCompletionSource();
            using var term = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(() => stopped.TrySetResult());
            using var reg = cancel.Register(() => stopped.TrySetResult());
            if (ha is not null)
            {
                Console.WriteLine($"omega serve: replica {ha.ReplicaName} of '{ha.Cluster}' on etcd {string.Join(",", ha.Endpoints)}: standby on {endpoint} (advertising {ha.AdvertiseAddress}); serving once it leads");
                await Task.WhenAny(runtime.Started, stopped.Task).ConfigureAwait(false);
                if (!runtime.IsRunning)
                {
                    string why = runtime.Started.IsFaulted ? runtime.Started.Exception!.GetBaseException().Message : "stopped before leading";
                    Console.WriteLine($"omega serve: replica {ha.ReplicaName}: {why}");
                    await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
                    return runtime.Started.IsFaulted ? 1 : 0;
                }
                var servingUtc = DateTime.UtcNow;
                Console.WriteLine($"omega serve: replica {ha.ReplicaName} leads (epoch {runtime.Leadership?.Epoch})");
                // ha16: the takeover's steps, one line with UTC times (the failover driver lines them up with its kill).
                if (runtime.Leadership is Omega.Replication.LeaderGate { Timeline: { } t })
                    Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"omega serve: takeover steps (UTC): key last seen held {(t.LastSeenHeldUtc == default ? "never" : t.LastSeenHeldUtc.ToString("HH:mm:ss.fff"))}, won {t.WonUtc:HH:mm:ss.fff}, caught up {t.CaughtUpUtc:HH:mm:ss.fff} ({t.RecordsReplayed} records), promoted {t.PromotedUtc:HH:mm:ss.fff}, serving {servingUtc:HH:mm:ss.fff}"));
            }
            var store = runtime.Store;
            var rec = store.Recovery;
            Console.WriteLine(store.IsPersistent
                ? $"omega serve: recovered cell v{rec.CellVersion:N0} ({rec.Allocations:N0} bindings, {runtime.Objects.Count:N0} objects; checkpoint: {rec.FromCheckpoint}, {rec.RecordsReplayed:N0} records replayed)"
                : "omega serve: in-memory cell");
            // Signals were registered by the host's console lifetime as it started (SIGTERM, SIGINT: it stops the
            // application) and by System.CommandLine (Ctrl+C: it cancels the action), before we say we are listening: a
            // service manager may stop us the moment we do.
            PrintTransportSecurity("omega serve", runtime);
            PrintAuthentication("omega serve", runtime);
            if (runtime.DashboardAddress is { } dashboardAt) Console.WriteLine($"omega serve: dashboard at {dashboardAt}{(runtime.IsAuthenticated ? " (sign in with an operator token)" : "")}");
            Console.WriteLine($"omega serve: listening on {runtime.EndPoint}; Ctrl+C (or SIGTERM) stops, checkpoints and closes");

            await stopped.Task.ConfigureAwait(false);

            Console.WriteLine("omega serve: stopping");
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
            if (runtime.CheckpointedVersion is { } version) Console.WriteLine($"omega serve: checkpointed at cell v{version:N0}; closed");
            else Console.WriteLine($"omega serve: closed at cell v{store.Cell.Version:N0} (in-memory: nothing kept)");
            if (runtime.Deposed)
            {
                // A deposed leader exits non-zero so a supervisor restarts it (as a standby, from its local copy).
                Console.WriteLine("omega serve: this replica lost the leadership; restart it to rejoin as a standby");
                return 9;
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Where the admin token is (authentication on), or the one-line warning of --no-auth (on stderr).</summary>
    internal static void PrintAuthentication(string who, OmegaRuntime runtime)
    {
        if (!runtime.IsAuthenticated)
        {
            Console.Error.WriteLine($"{who}: WARNING: --no-auth: connections need no credential; anyone who reaches the port can register nodes, submit for any tenant and drain nodes");
            return;
        }
        Console.WriteLine(runtime.AdminTokenCreated
            ? $"{who}: authentication on; created the admin token {runtime.AdminTokenPath} (mode 0600; clients: --token-file {runtime.AdminTokenPath})"
            : $"{who}: authentication on; admin token {runtime.AdminTokenPath} (clients: --token-file {runtime.AdminTokenPath})");
    }

    /// <summary>A usage error in the TLS flags of serve (checked before anything is opened), or null.</summary>
    private static string? TlsUsageError(string? cert, string? key, string? clientCa, bool insecure)
    {
        if (insecure && (cert is not null || key is not null || clientCa is not null)) return "--insecure (plaintext) cannot be combined with --tls-cert, --tls-key or --client-ca";
        if ((cert is null) != (key is null)) return "--tls-cert and --tls-key go together";
        foreach (var (flag, file) in new[] { ("--tls-cert", cert), ("--tls-key", key), ("--client-ca", clientCa) })
            if (file is not null && !File.Exists(file)) return $"{flag} file not found: {file}";
        return null;
    }

    /// <summary>
    /// What a client needs to know to connect: the certificate file and its pin (TLS), or the one-line warning of a
    /// plaintext listener (on stderr).
    /// </summary>
    internal static void PrintTransportSecurity(string who, OmegaRuntime runtime)
    {
        if (!runtime.IsTls)
        {
            Console.Error.WriteLine($"{who}: WARNING: --insecure: the listener is plaintext; anyone on the network path can read and forge its traffic");
            return;
        }
        string origin = runtime.TlsCertificateCreated ? "a self-signed certificate, created" : "certificate";
        Console.WriteLine($"{who}: TLS 1.3 with {origin} {runtime.TlsCertificatePath} (expires {runtime.TlsCertificateNotAfter:yyyy-MM-dd})"
            + (runtime.ClientCertificatesRequired ? "; client certificates required (mTLS)" : ""));
        Console.WriteLine($"{who}: certificate pin sha256:{runtime.TlsCertificatePin} (clients: --pin {runtime.TlsCertificatePin} or --ca {runtime.TlsCertificatePath})");
    }

    public static Command CreateAgents()
    {
        var connect = ControlCommands.ConnectOption();
        var count = new Option<int>("--count") { Description = "Agents to run (one node and one connection each).", DefaultValueFactory = _ => 100 };
        var cores = new Option<double>("--cores") { Description = "Cores per node.", DefaultValueFactory = _ => 32 };
        var memory = new Option<double>("--memory-gib") { Description = "Memory per node, GiB.", DefaultValueFactory = _ => 128 };
        var racks = new Option<int>("--racks") { Description = "Failure domains the nodes are spread over.", DefaultValueFactory = _ => 10 };
        var taskSeconds = new Option<double>("--task-seconds") { Description = "Mean task run time (exponential).", DefaultValueFactory = _ => 10 };
        var seconds = new Option<double?>("--seconds") { Description = "Stop after this long (default: until Ctrl+C)." };
        var prefix = new Option<string>("--name-prefix") { Description = "Node names are PREFIX-NNNNNN.", DefaultValueFactory = _ => "agent" };
        var seed = new Option<int?>("--seed") { Description = "Random seed (printed)." };
        var join = new Option<string?>("--join-token") { Description = "A join token (omega token create --role join): each agent joins with it and gets its own credential. Env: OMEGA_JOIN_TOKEN." };
        var region = new Option<string>("--region") { Description = "The nodes' region (protocol version 3 topology; empty: none).", DefaultValueFactory = _ => "" };
        var zones = new Option<int>("--zones") { Description = "Zones within --region the nodes are spread over (REGION-a, REGION-b, ...).", DefaultValueFactory = _ => 0 };
        var batchPriority = new Option<int?>("--batch-priority") { Description = "Workload replicas run until stopped, except those of this priority (batch), which run --task-seconds on average." };
        var readySeconds = new Option<double>("--ready-seconds") { Description = "Seconds from a task's start (its running report) to its ready report (readiness).", DefaultValueFactory = _ => 0.2 };
        var startSeconds = new Option<double>("--start-seconds") { Description = "Seconds from a task's binding to its running report (the simulated start; 0: at once).", DefaultValueFactory = _ => 0 };
        var tracePriority = new Option<int?>("--trace-priority") { Description = "Print 'trace bound|running|ready REGION TASK STOPWATCH-TIMESTAMP' for each binding of this priority as it arrives and each running and ready report as it is sent (the region drill's recovery breakdown)." };
        var fence = new Option<bool>("--fence-on-lease-loss") { Description = "Agents stop their tasks when their lease is not renewed in time, and reconcile them with the server when they reconnect (partitions). On by default; '--fence-on-lease-loss false' keeps tasks running through a control-plane outage longer than a lease, at the price of serving beside replacements during a partition.", DefaultValueFactory = _ => true };
        var cmd = new Command("agents", "Run a simulated fleet of node agents against a running Omega server.")
        {
            connect, count, cores, memory, racks, taskSeconds, seconds, prefix, seed, join, region, zones, batchPriority, readySeconds, startSeconds, tracePriority, fence,
        };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction(async (r, cancel) =>
        {
            if (!Omega.Transport.FrameClient.TryParseEndPoints(r.GetValue(connect), out var replicas))
            {
                Console.Error.WriteLine($"omega agents: --connect must be HOST:PORT or ADDRESS:PORT (several separated by commas), not '{r.GetValue(connect)}'");
                return 2;
            }
            var endpoint = replicas[0];
            if (r.GetValue(count) is < 1 or > 50_000 || r.GetValue(cores) <= 0 || r.GetValue(memory) <= 0 || r.GetValue(taskSeconds) <= 0)
            {
                Console.Error.WriteLine("omega agents: --count must be 1-50,000; --cores, --memory-gib and --task-seconds positive");
                return 2;
            }
            if (!Topology.IsValidName(r.GetValue(region)) || r.GetValue(zones) is < 0 or > 26 || (r.GetValue(zones) > 0 && string.IsNullOrEmpty(r.GetValue(region))) || !(r.GetValue(readySeconds) > 0)
                || r.GetValue(startSeconds) is not (>= 0 and <= 3600))
            {
                Console.Error.WriteLine("omega agents: --region must be [a-z0-9-] (1-63, alphanumeric at both ends); --zones 0-26 and only with --region; --ready-seconds positive; --start-seconds 0-3,600");
                return 2;
            }
            if (!tls.TryResolve(r, out var transport, out var tlsError) || !tls.TryResolveToken(r, out var adminToken, out tlsError))
            {
                Console.Error.WriteLine($"omega agents: {tlsError}");
                return 2;
            }
            string? joinToken = r.GetValue(join) ?? (Environment.GetEnvironmentVariable("OMEGA_JOIN_TOKEN") is { Length: > 0 } ej ? ej : null);
            if (joinToken is not null && !Omega.Server.AuthService.IsWellFormedToken(joinToken))
            {
                Console.Error.WriteLine("omega agents: --join-token is not of the form omega1.<16 hex digits>.<43 characters>");
                return 2;
            }
            // Fail fast with one line when nothing listens there, instead of agents retrying forever (with several replicas:
            // when none of them answers).
            Exception? unreachable = null;
            foreach (var candidate in replicas)
            {
                try
                {
                    await Omega.Transport.FrameClient.ProbeAsync(candidate, cancel).WaitAsync(TimeSpan.FromSeconds(5), cancel).ConfigureAwait(false);
                    unreachable = null;
                    break;
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or TimeoutException)
                {
                    unreachable = e;
                }
            }
            if (unreachable is not null)
            {
                Console.Error.WriteLine($"omega agents: cannot reach the server at {r.GetValue(connect)}: {unreachable.Message}");
                return 1;
            }
            // With an operator credential (--token/--token-file, scope admin) and no join token: make a join token with
            // exactly one use per agent, so each agent still gets a credential of its own.
            if (joinToken is null && adminToken is not null)
            {
                try
                {
                    await using var admin = await Omega.Agent.ControlClient.ConnectAsync(replicas, transport, "omega-agents", adminToken, cancellationToken: cancel).WaitAsync(TimeSpan.FromSeconds(30), cancel).ConfigureAwait(false);
                    joinToken = (await admin.CreateTokenAsync(Omega.Protocol.CredentialRole.Join, $"omega-agents-{r.GetValue(prefix)}", ttl: TimeSpan.FromMinutes(15), uses: r.GetValue(count), cancellationToken: cancel).ConfigureAwait(false)).Token;
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or TimeoutException or Omega.Agent.AgentRequestException or IOException or Omega.Transport.TransportSecurityException)
                {
                    Console.Error.WriteLine($"omega agents: cannot make a join token: {ClientTls.Explain(e, r.GetValue(connect)!)}");
                    return 1;
                }
            }
            int s = r.GetValue(seed) ?? Random.Shared.Next();
            await using var fleet = new AgentFleet(new FleetOptions(endpoint, r.GetValue(count),
                ResourceVector.FromCoresAndGiB(r.GetValue(cores), r.GetValue(memory)), r.GetValue(racks), r.GetValue(taskSeconds), s, r.GetValue(prefix)!, transport, ReadySeconds: r.GetValue(readySeconds), JoinToken: joinToken,
                Region: r.GetValue(region) ?? "", Zones: r.GetValue(zones), BatchPriority: r.GetValue(batchPriority),
                Replicas: replicas.Count > 1 ? replicas : null, StartSeconds: r.GetValue(startSeconds)))
            {
                TracePriority = r.GetValue(tracePriority),
                // Console.WriteLine is synchronized; traced tasks are few (the drill traces its critical replicas only).
                Trace = r.GetValue(tracePriority) is null ? null : (kind, task, ts) => Console.WriteLine($"trace {kind} {(r.GetValue(region) is { Length: > 0 } rg ? rg : "-")} {task} {ts}"),
                FenceOnLeaseLoss = r.GetValue(fence),
            };
            Console.WriteLine($"omega agents: {r.GetValue(count):N0} agents against {r.GetValue(connect)}{(transport.ClientTls is null ? " (plaintext)" : " over TLS")}, seed {s}");
            try
            {
                await fleet.StartAsync(cancel).ConfigureAwait(false);
            }
            catch (Exception e) when (e is Omega.Transport.TransportSecurityException or Omega.Agent.AgentRequestException)
            {
                Console.Error.WriteLine($"omega agents: {ClientTls.Explain(e, r.GetValue(connect)!)}");
                return 1;
            }
            Console.WriteLine($"omega agents: {fleet.Connected:N0} registered");
            var until = r.GetValue(seconds) is { } sec ? DateTime.UtcNow.AddSeconds(sec) : DateTime.MaxValue;
            while (!cancel.IsCancellationRequested && DateTime.UtcNow < until)
            {
                try { await Task.Delay(1000, cancel).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                Console.WriteLine($"  connected {fleet.Connected:N0}  bindings {fleet.Received:N0}  stops {fleet.Stops:N0}  completed {fleet.Completed:N0}");
            }
            return 0;
        });
        return cmd;
    }
}
