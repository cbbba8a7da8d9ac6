using Omega.Protocol;

namespace Omega.Agent;

// Quotas and protected capacity (issue 12; docs/protocol.md, "Quotas and protected capacity").
public sealed partial class ControlClient
{
    /// <summary>
    /// Sets, clears or keeps a tenant's hard limit and guarantee (protected capacity). Returns the tenant id and the cell
    /// version once the change is durable. Throws <see cref="AgentRequestException"/> with UnknownTenant, InvalidRequest
    /// or GuaranteeAboveLimit when refused (nothing changed then).
    /// </summary>
    public async Task<(int TenantId, long CellVersion)> SetQuotaAsync(string tenant, QuotaField limit, QuotaField guaranteed, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new SetQuota { Tenant = tenant ?? "", Limit = limit, Guaranteed = guaranteed }, cancellationToken).ConfigureAwait(false);
        var r = Expect<SetQuotaReply>(t, b);
        return (r.TenantId, r.CellVersion);
    }

    /// <summary>Every tenant's usage, limit, guarantee and unmet guarantee, with the cell's free schedulable capacity and the sum of unmet guarantees.</summary>
    public async Task<(IReadOnlyList<TenantQuotaInfo> Tenants, ResourceVector Free, ResourceVector UnmetTotal)> ListQuotasAsync(CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(default(ListQuotas), cancellationToken).ConfigureAwait(false);
        var r = Expect<QuotasReply>(t, b);
        return (r.Tenants, r.Free, r.UnmetTotal);
    }
}
