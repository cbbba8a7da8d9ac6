using Omega.Cells;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

// Quotas and protected capacity over the wire (issue 12; docs/protocol.md, "Quotas and protected capacity").
internal sealed partial class ProtocolHandler
{
    /// <returns>False when the reply waits for durability (the request stays in flight until the dispatcher sends it).</returns>
    private bool HandleSetQuota(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<SetQuota>(c, rid, frame, out var m)) return true;
        if (!_cell.TryGetTenant(m.Tenant, out var tenant))
        {
            c.SendError(rid, ErrorCode.UnknownTenant, $"no tenant named '{m.Tenant}'");
            return true;
        }
        if (m.Limit.Value is { IsValidRequest: false } || m.Guaranteed.Value is { IsValidRequest: false })
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"quota and guarantee must have every element between 0 and {ResourceVector.MaxQuantity}");
            return true;
        }
        // Validated against the values that will result (an absent key keeps the current one), before anything changes.
        var (_, currentLimit) = _cell.GetTenantUsage(tenant);
        var (currentGuarantee, _) = _cell.GetTenantGuarantee(tenant);
        var limit = m.Limit.Present ? m.Limit.Value : currentLimit;
        var guaranteed = m.Guaranteed.Present ? m.Guaranteed.Value : currentGuarantee;
        if (limit is { } l && guaranteed is { } g && !g.FitsWithin(l))
        {
            c.SendError(rid, ErrorCode.GuaranteeAboveLimit, $"the guarantee {g} exceeds the limit {l} of tenant '{m.Tenant}'");
            return true;
        }
        // Two records (quota 8, guarantee 18); the reply waits for the journal sequence after both, so it is sent only
        // once both are durable.
        if (m.Limit.Present) _cell.SetTenantQuota(tenant, m.Limit.Value);
        if (m.Guaranteed.Present) _cell.SetTenantGuarantee(tenant, m.Guaranteed.Value);
        return ReplyWhenDurable(c, rid, new SetQuotaReply { TenantId = tenant.Value, CellVersion = _cell.Version });
    }

    private void HandleListQuotas(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<ListQuotas>(c, rid, frame, out _)) return;
        var tenants = _cell.GetTenants();
        var list = new List<TenantQuotaInfo>(tenants.Count);
        foreach (var t in tenants)
        {
            var (_, unmet) = _cell.GetTenantGuarantee(t.Id);
            list.Add(new TenantQuotaInfo(t.Name, t.Id.Value, t.Usage, t.Quota, t.Guaranteed, unmet));
        }
        var (free, unmetTotal) = _cell.GetProtectedCapacityState();
        c.Send(rid, new QuotasReply { Tenants = list, Free = free, UnmetTotal = unmetTotal });
    }
}
