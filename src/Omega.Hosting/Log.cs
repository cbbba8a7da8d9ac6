using Microsoft.Extensions.Logging;

namespace Omega.Hosting;

/// <summary>
/// The hosting layer's log events (source-generated: no allocation or formatting unless the level is enabled). Event ids
/// are stable (1000-1099 belong to Omega.Hosting) so operators can filter and alert on them.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1000, EventName = "StoreRecovered", Level = LogLevel.Information,
        Message = "Recovered cell {CellName} v{CellVersion} from {DataDirectory}: {Allocations} bindings, from checkpoint {FromCheckpoint}, {RecordsReplayed} journal records replayed in {ElapsedMs:0.0} ms")]
    public static partial void StoreRecovered(ILogger logger, string cellName, long cellVersion, string dataDirectory, long allocations, bool fromCheckpoint, long recordsReplayed, double elapsedMs);

    [LoggerMessage(EventId = 1001, EventName = "InMemoryCell", Level = LogLevel.Information,
        Message = "Cell {CellName} is in memory only: nothing survives a restart")]
    public static partial void InMemoryCell(ILogger logger, string cellName);

    [LoggerMessage(EventId = 1002, EventName = "StorageWarning", Level = LogLevel.Warning,
        Message = "Storage warning for cell {CellName}: {Warning}")]
    public static partial void StorageWarning(ILogger logger, string cellName, string warning);

    [LoggerMessage(EventId = 1003, EventName = "SchedulingStarted", Level = LogLevel.Information,
        Message = "Scheduling started: {BatchWorkers} batch and {ServiceWorkers} service workers, seed {Seed}")]
    public static partial void SchedulingStarted(ILogger logger, int batchWorkers, int serviceWorkers, int seed);

    [LoggerMessage(EventId = 1004, EventName = "Listening", Level = LogLevel.Information,
        Message = "Omega server listening on {EndPoint}")]
    public static partial void Listening(ILogger logger, System.Net.IPEndPoint endPoint);

    [LoggerMessage(EventId = 1005, EventName = "Stopping", Level = LogLevel.Information,
        Message = "Stopping: the server stops accepting, then the schedulers stop, then the store checkpoints and closes")]
    public static partial void Stopping(ILogger logger);

    [LoggerMessage(EventId = 1006, EventName = "Checkpointed", Level = LogLevel.Information,
        Message = "Checkpointed cell {CellName} at v{CellVersion} in {DataDirectory}")]
    public static partial void Checkpointed(ILogger logger, string cellName, long cellVersion, string dataDirectory);

    [LoggerMessage(EventId = 1007, EventName = "Stopped", Level = LogLevel.Information,
        Message = "Stopped cell {CellName} at v{CellVersion}")]
    public static partial void Stopped(ILogger logger, string cellName, long cellVersion);


    [LoggerMessage(EventId = 1008, EventName = "TenantCreated", Level = LogLevel.Information,
        Message = "Created tenant {TenantName} as id {TenantId} in cell {CellName}")]
    public static partial void TenantCreated(ILogger logger, string cellName, string tenantName, int tenantId);

    // 1095-1099: credentials (the auth change).
    [LoggerMessage(EventId = 1095, EventName = "AuthOn", Level = LogLevel.Information,
        Message = "Authentication on: every connection presents a credential; the admin token is in {AdminTokenFile} (created now: {Created})")]
    public static partial void AuthOn(ILogger logger, string adminTokenFile, bool created);

    // 1090-1094: transport security (the tls change; kept apart from the ids above so concurrent additions do not collide).
    [LoggerMessage(EventId = 1090, EventName = "TlsOn", Level = LogLevel.Information,
        Message = "TLS 1.3 on the listener: certificate {Subject} (SPKI SHA-256 pin {Pin}) from {CertificateFile}; client certificates required: {ClientCertificatesRequired}")]
    public static partial void TlsOn(ILogger logger, string subject, string pin, string certificateFile, bool clientCertificatesRequired);

    [LoggerMessage(EventId = 1091, EventName = "SelfSignedCertificateCreated", Level = LogLevel.Information,
        Message = "Created a self-signed server certificate {CertificateFile} (pin {Pin})")]
    public static partial void SelfSignedCertificateCreated(ILogger logger, string certificateFile, string pin);

    [LoggerMessage(EventId = 1092, EventName = "Plaintext", Level = LogLevel.Information,
        Message = "The listener is plaintext (Omega:Tls:Mode Plaintext): traffic can be read and forged on the network path")]
    public static partial void Plaintext(ILogger logger);


    [LoggerMessage(EventId = 1100, EventName = "ControlPlaneStarted", Level = LogLevel.Information,
        Message = "Control plane: {Objects} objects, scheduler policy revision {PolicyRevision}, {Decisions} decision records kept; controllers running: {Controllers}")]
    public static partial void ControlPlaneStarted(ILogger logger, int objects, int policyRevision, int decisions, bool controllers);

    [LoggerMessage(EventId = 1203, EventName = "DashboardListening", Level = LogLevel.Information,
        Message = "Dashboard serving on {Address}")]
    public static partial void DashboardListening(ILogger logger, Uri address);

    // ---- drill13 (issue 13): event ids 1140-1159 ----
    [LoggerMessage(EventId = 1140, EventName = "RegionalBudgetsOn", Level = LogLevel.Information,
        Message = "Regional schedulers on budget leases: replicas that require a region spend its lease ({LeaseCpuMillis} millicores for {LeaseTtl}) on their tenant's global budget ({TenantCpuMillis} millicores)")]
    public static partial void RegionalBudgetsOn(ILogger logger, long leaseCpuMillis, TimeSpan leaseTtl, long tenantCpuMillis);

    // ---- ha-core (issue 16): event ids 1320-1329 (Omega.Replication has 1300-1319) ----
    [LoggerMessage(EventId = 1320, EventName = "ReplicaStandby", Level = LogLevel.Information,
        Message = "High availability: replica {Replica} of cluster {Cluster} on etcd {Endpoints} is a standby (advertising {Advertise}); it serves once it leads")]
    public static partial void ReplicaStandby(ILogger logger, string replica, string cluster, string endpoints, string advertise);

    [LoggerMessage(EventId = 1321, EventName = "ReplicaLeading", Level = LogLevel.Information,
        Message = "High availability: replica {Replica} leads (epoch {Epoch}); cell v{CellVersion}")]
    public static partial void ReplicaLeading(ILogger logger, string replica, long epoch, long cellVersion);

    [LoggerMessage(EventId = 1322, EventName = "ReplicaDeposed", Level = LogLevel.Error,
        Message = "High availability: replica {Replica} lost the leadership; stopping (restart it: it rejoins as a standby from its local copy)")]
    public static partial void ReplicaDeposed(ILogger logger, string replica);

    [LoggerMessage(EventId = 1323, EventName = "ReplicaFailed", Level = LogLevel.Critical,
        Message = "High availability: replica {Replica} cannot go on: {Error}")]
    public static partial void ReplicaFailed(ILogger logger, string replica, string error);
}
