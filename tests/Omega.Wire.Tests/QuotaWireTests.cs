using Omega.Cells;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>Issue 12 over TCP: SetQuota/ListQuotas, and the limit and guarantee enforced at commit for wire schedulers.</summary>
public sealed class QuotaWireTests
{
    private static readonly ResourceVector NodeCapacity = new(4000, 8L << 30);

    private static async Task<RawClient> SchedulerAsync(ServerFixture fx, string name = "tool")
    {
        var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, name);
        return c;
    }

    private static async Task<ErrorCode> ErrorOf(RawClient c)
    {
        var f = await c.ReadFrameAsync();
        Assert.NotNull(f);
        Assert.Equal(MessageType.Error, f.Value.Type);
        Assert.True(Codec.TryDecode<ErrorMessage>(new System.Buffers.ReadOnlySequence<byte>(f.Value.Body), out var e, out var err), err);
        return e.Code;
    }

    [Fact]
    public async Task Quota_and_guarantee_set_over_the_wire_are_enforced_at_commit_for_two_schedulers_and_listed()
    {
        await using var fx = ServerFixture.Start(seed: cell =>
        {
            cell.AddNode(new NodeSpec("n0", NodeCapacity));
            cell.AddNode(new NodeSpec("n1", NodeCapacity));
            cell.CreateTenant("a");
            cell.CreateTenant("b");
        });
        using var op = await SchedulerAsync(fx, "operator");
        // Typed refusals first; nothing changes on any of them.
        await op.SendAsync(2, new SetQuota { Tenant = "nosuch", Limit = QuotaField.Set(new ResourceVector(1, 1)) });
        Assert.Equal(ErrorCode.UnknownTenant, await ErrorOf(op));
        await op.SendAsync(3, new SetQuota { Tenant = "b", Limit = QuotaField.Set(new ResourceVector(-1, 1)) });
        Assert.Equal(ErrorCode.InvalidRequest, await ErrorOf(op));
        await op.SendAsync(4, new SetQuota { Tenant = "b", Limit = QuotaField.Set(new ResourceVector(1000, 1 << 30)), Guaranteed = QuotaField.Set(new ResourceVector(6000, 0)) });
        Assert.Equal(ErrorCode.GuaranteeAboveLimit, await ErrorOf(op));
        Assert.Null(fx.Cell.GetTenantGuarantee(new TenantId(2)).Guaranteed);

        await op.SendAsync(5, new SetQuota { Tenant = "b", Guaranteed = QuotaField.Set(new ResourceVector(6000, 0)) });
        var set = await op.ExpectAsync<SetQuotaReply>();
        Assert.Equal(2, set.TenantId);
        await op.SendAsync(6, new SetQuota { Tenant = "a", Limit = QuotaField.Set(new ResourceVector(3000, 8L << 30)) });
        await op.ExpectAsync<SetQuotaReply>();

        using var s1 = await SchedulerAsync(fx, "s1");
        using var s2 = await SchedulerAsync(fx, "s2");
        await s1.SendAsync(2, new AcquireLease { Name = "s1", DurationMs = 60_000 });
        var l1 = await s1.ExpectAsync<LeaseReply>();
        await s2.SendAsync(2, new AcquireLease { Name = "s2", DurationMs = 60_000 });
        var l2 = await s2.ExpectAsync<LeaseReply>();
        // s1 places tenant a: 2000 fits (free 8000 − 2000 = 6000 = b's unmet); the next millicore of a would eat b's guarantee.
        await s1.SendAsync(3, new Commit { SchedulerId = l1.SchedulerId, Token = l1.Token, Claims = [new WireClaim(new TaskId(1, 0), 0, new ResourceVector(2000, 1 << 20), 0, 1, 0, null)] });
        Assert.Equal([ClaimStatus.Applied], (await s1.ExpectAsync<CommitReply>()).ClaimStatuses.ToArray());
        await s2.SendAsync(3, new Commit { SchedulerId = l2.SchedulerId, Token = l2.Token, Claims = [new WireClaim(new TaskId(2, 0), 1, new ResourceVector(500, 1 << 20), 0, 1, 0, null)] });
        Assert.Equal([ClaimStatus.ProtectedCapacity], (await s2.ExpectAsync<CommitReply>()).ClaimStatuses.ToArray());
        // b takes its guarantee on both nodes, through both schedulers.
        await s2.SendAsync(4, new Commit { SchedulerId = l2.SchedulerId, Token = l2.Token, Claims = [new WireClaim(new TaskId(3, 0), 1, new ResourceVector(4000, 1 << 20), 0, 2, 0, null)] });
        Assert.Equal([ClaimStatus.Applied], (await s2.ExpectAsync<CommitReply>()).ClaimStatuses.ToArray());
        await s1.SendAsync(4, new Commit { SchedulerId = l1.SchedulerId, Token = l1.Token, Claims = [new WireClaim(new TaskId(4, 0), 0, new ResourceVector(2000, 1 << 20), 0, 2, 0, null)] });
        Assert.Equal([ClaimStatus.Applied], (await s1.ExpectAsync<CommitReply>()).ClaimStatuses.ToArray());
        // With b's guarantee met, a's hard limit (3000) is what stops a: it holds 2000.
        fx.Cell.Release(new TaskId(4, 0));
        await s2.SendAsync(5, new Commit { SchedulerId = l2.SchedulerId, Token = l2.Token, Claims = [new WireClaim(new TaskId(5, 0), 0, new ResourceVector(1500, 1 << 20), 0, 1, 0, null)] });
        Assert.Equal([ClaimStatus.QuotaExceeded], (await s2.ExpectAsync<CommitReply>()).ClaimStatuses.ToArray());

        await op.SendAsync(7, new ListQuotas());
        var list = await op.ExpectAsync<QuotasReply>();
        Assert.Equal(["default", "a", "b"], list.Tenants.Select(t => t.Name));
        var b = list.Tenants[2];
        Assert.Equal(new ResourceVector(6000, 0), b.Guaranteed);
        Assert.Null(b.Limit);
        Assert.Equal(new ResourceVector(4000, 1 << 20), b.Usage);
        Assert.Equal(new ResourceVector(2000, 0), b.Unmet);
        Assert.Equal(new ResourceVector(3000, 8L << 30), list.Tenants[1].Limit);
        Assert.Equal(new ResourceVector(2000, 0), list.UnmetTotal);
        Assert.Equal(new ResourceVector(2000, (16L << 30) - (2 << 20)), list.Free);

        // nil clears; an absent key keeps.
        await op.SendAsync(8, new SetQuota { Tenant = "b", Guaranteed = QuotaField.Clear });
        await op.ExpectAsync<SetQuotaReply>();
        Assert.Null(fx.Cell.GetTenantGuarantee(new TenantId(2)).Guaranteed);
        Assert.Equal(new ResourceVector(3000, 8L << 30), fx.Cell.GetTenantUsage(new TenantId(1)).Quota);
        Assert.Empty(fx.Cell.Audit());

        // Quota messages are operator (scheduler-role) requests.
        using var agent = await RawClient.ConnectAsync(fx.EndPoint);
        await agent.HandshakeAsync(PeerRole.Agent, "agent");
        await agent.SendAsync(2, new ListQuotas());
        Assert.Equal(ErrorCode.WrongRole, await ErrorOf(agent));
    }
}
