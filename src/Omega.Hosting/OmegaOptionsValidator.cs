using System.Net;
using Microsoft.Extensions.Options;

namespace Omega.Hosting;

/// <summary>
/// Validates <see cref="OmegaOptions"/> when the host starts (registered with <c>ValidateOnStart</c>), so a bad value is
/// one <see cref="OptionsValidationException"/> naming every problem, before a store is opened or a port bound.
/// </summary>
public sealed class OmegaOptionsValidator : IValidateOptions<OmegaOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, OmegaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.CellName)) failures.Add("Omega:CellName must not be empty");
        if (!IPEndPoint.TryParse(options.Listen ?? "", out var endpoint) || !(options.Listen ?? "").Contains(':', StringComparison.Ordinal))
            failures.Add($"Omega:Listen must be ADDRESS:PORT (port 0 picks a free one), not '{options.Listen}'");
        else if (endpoint.Port is < 0 or > 65535) failures.Add($"Omega:Listen port must be 0-65535, not {endpoint.Port}");
        // dash: the dashboard's address and limits.
        if (options.Dashboard is { Listen: { } dl } d)
        {
            if (!IPEndPoint.TryParse(dl, out var de) || !dl.Contains(':', StringComparison.Ordinal) || de.Port is < 0 or > 65535)
                failures.Add($"Omega:Dashboard:Listen must be ADDRESS:PORT (port 0 picks a free one), not '{dl}'");
            if (d.MaxSessions < 1 || d.MaxStreams < 1 || d.HistorySamples < 1) failures.Add("Omega:Dashboard: MaxSessions, MaxStreams and HistorySamples must be at least 1");
            if (d.SampleInterval < TimeSpan.FromMilliseconds(50) || d.SessionLifetime <= TimeSpan.Zero || d.SessionIdleTimeout <= TimeSpan.Zero)
                failures.Add("Omega:Dashboard: SampleInterval must be at least 50 ms; SessionLifetime and SessionIdleTimeout positive");
        }
        // ha-core: a replica needs a disk of its own (its local copy) and valid etcd settings.
        if (options.Replication is { } ha)
        {
            if (options.InMemory) failures.Add("Omega:Replication needs a data directory: a replica keeps its local copy there (not Omega:InMemory)");
            if (ha.Validate() is { } problem) failures.Add($"Omega:Replication: {problem}");
        }
        if (options.BatchWorkers is < 1 or > 256) failures.Add($"Omega:BatchWorkers must be between 1 and 256, not {options.BatchWorkers}");
        if (options.ServiceWorkers is < 1 or > 256) failures.Add($"Omega:ServiceWorkers must be between 1 and 256, not {options.ServiceWorkers}");
        if (options.SchedulerLease < TimeSpan.FromSeconds(1) || options.SchedulerLease > TimeSpan.FromMinutes(10)) failures.Add($"Omega:SchedulerLease must be between 00:00:01 and 00:10:00, not {options.SchedulerLease}");
        if (options.RegionalBudgets is { Enabled: true } rb && (rb.LeaseTtl < TimeSpan.FromMilliseconds(300) || rb.LeaseCpuMillis <= 0 || rb.TenantCpuMillis <= 0 || rb.AcquireRetry < TimeSpan.Zero || rb.RenewEvery is { } re && (re <= TimeSpan.Zero || re >= rb.LeaseTtl)))
            failures.Add($"Omega:RegionalBudgets needs LeaseTtl of at least 00:00:00.3, positive LeaseCpuMillis and TenantCpuMillis a non-negative AcquireRetry and RenewEvery (if set) positive and below LeaseTtl (not {rb.LeaseTtl}, {rb.LeaseCpuMillis}, {rb.TenantCpuMillis}, {rb.AcquireRetry})");
        if (options.DecisionSampleEvery < 1) failures.Add($"Omega:DecisionSampleEvery must be at least 1, not {options.DecisionSampleEvery}");
        if (options.Server is null) failures.Add("Omega:Server must not be null");
        else
        {
            if (options.Server.NodeLease <= TimeSpan.Zero) failures.Add($"Omega:Server:NodeLease must be positive, not {options.Server.NodeLease}");
            if (options.Server.EvictionsPerSecond <= 0 || double.IsNaN(options.Server.EvictionsPerSecond))
                failures.Add($"Omega:Server:EvictionsPerSecond must be positive, not {options.Server.EvictionsPerSecond}");
            if (options.Server.MassSilenceFraction is <= 0 or > 1 || double.IsNaN(options.Server.MassSilenceFraction))
                failures.Add($"Omega:Server:MassSilenceFraction must be in (0, 1], not {options.Server.MassSilenceFraction}");
        }
        ValidateTls(options.Tls, failures);
        if (options.Storage is null) failures.Add("Omega:Storage must not be null");
        else
        {
            if (options.Storage.CheckpointInterval is { } interval && interval <= TimeSpan.Zero)
                failures.Add($"Omega:Storage:CheckpointInterval must be positive (or unset to disable), not {interval}");
            if (options.Storage.GroupCommitWindow < TimeSpan.Zero) failures.Add($"Omega:Storage:GroupCommitWindow must not be negative, not {options.Storage.GroupCommitWindow}");
            if (options.Storage.Cell is null) failures.Add("Omega:Storage:Cell must not be null");
            else if (options.Storage.Cell.InitialNodeCapacity < 1) failures.Add($"Omega:Storage:Cell:InitialNodeCapacity must be at least 1, not {options.Storage.Cell.InitialNodeCapacity}");
        }
        foreach (var t in options.Tenants)
            if (!Omega.Cells.Cell.IsValidTenantName(t))
                failures.Add($"Omega:Tenants: a tenant name is 1-{Omega.Cells.Cell.MaxTenantNameLength} letters, digits, '.', '_' or '-', not '{t}'");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateTls(OmegaTlsOptions? tls, List<string> failures)
    {
        if (tls is null)
        {
            failures.Add("Omega:Tls must not be null");
            return;
        }
        if (!Enum.IsDefined(tls.Mode)) failures.Add($"Omega:Tls:Mode must be Plaintext, Certificate or SelfSigned, not {tls.Mode}");
        if (tls.Mode == OmegaTlsMode.Certificate)
        {
            if (string.IsNullOrWhiteSpace(tls.CertificateFile) || string.IsNullOrWhiteSpace(tls.KeyFile))
                failures.Add("Omega:Tls:Mode Certificate needs both Omega:Tls:CertificateFile and Omega:Tls:KeyFile");
            foreach (var (name, file) in new[] { ("CertificateFile", tls.CertificateFile), ("KeyFile", tls.KeyFile) })
                if (!string.IsNullOrWhiteSpace(file) && !File.Exists(file)) failures.Add($"Omega:Tls:{name} '{file}' does not exist");
        }
        else if (tls.CertificateFile is not null || tls.KeyFile is not null)
            failures.Add($"Omega:Tls:CertificateFile and KeyFile are used only with Mode Certificate (Mode is {tls.Mode})");
        if (tls.ClientCaFile is not null)
        {
            if (tls.Mode == OmegaTlsMode.Plaintext) failures.Add("Omega:Tls:ClientCaFile (mTLS) needs TLS on: Mode Certificate or SelfSigned");
            else if (!File.Exists(tls.ClientCaFile)) failures.Add($"Omega:Tls:ClientCaFile '{tls.ClientCaFile}' does not exist");
        }
        if (tls.MaxConcurrentHandshakes < 1) failures.Add($"Omega:Tls:MaxConcurrentHandshakes must be at least 1, not {tls.MaxConcurrentHandshakes}");
    }
}
