using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>
/// Issue 10, defects 1, 2 and 6 at the cell: a claim whose arithmetic would overflow never binds, a tenant must exist
/// before anything is charged to it (and an absurd tenant id allocates nothing), and idempotency keys belong to the
/// scheduler that used them.
/// </summary>
public sealed class AdmissionTests
{
    [Fact]
    public void A_claim_so_large_that_used_plus_request_wraps_is_refused_and_the_node_is_never_overcommitted()
    {
        using var t = new TestCell();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1000, 4096))).Status);
        // 4096 + (long.MaxValue - 100) wraps negative: before the fix this "fitted" and the node showed negative memory.
        var huge = new ResourceVector(1, long.MaxValue - 100);
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(2), huge))));
        // At the bound itself the request is valid but does not fit: a conflict-free, typed refusal, no wrap.
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(3), new ResourceVector(1, ResourceVector.MaxQuantity)))));
        Assert.Equal(R(1000, 4096), t.View(t.Nodes[0]).Allocated);
        Assert.Empty(t.Cell.Audit());
    }

    [Fact]
    public void The_fit_test_cannot_wrap()
    {
        var cap = new ResourceVector(4000, 8192);
        Assert.True(ResourceVector.Fits(new ResourceVector(1000, 0), new ResourceVector(3000, 8192), cap));
        Assert.False(ResourceVector.Fits(new ResourceVector(1000, 1), new ResourceVector(1, long.MaxValue), cap));
        Assert.False(ResourceVector.Fits(default, new ResourceVector(long.MaxValue, long.MaxValue, long.MaxValue, long.MaxValue), cap));
        Assert.False(ResourceVector.Fits(default, new ResourceVector(-1, 0), cap));
        Assert.False(new ResourceVector(ResourceVector.MaxQuantity + 1, 0).IsValidRequest);
        Assert.True(new ResourceVector(ResourceVector.MaxQuantity, 0).IsValidRequest);
    }

    [Theory]
    [InlineData(double.NaN, 1)]
    [InlineData(1, double.NaN)]
    [InlineData(double.PositiveInfinity, 1)]
    [InlineData(1, double.NegativeInfinity)]
    [InlineData(-0.5, 1)]
    [InlineData(1, 1e12)]
    public void User_input_with_no_resource_vector_is_refused_not_cast(double cores, double gib)
        => Assert.False(ResourceVector.TryFromCoresAndGiB(cores, gib, out _));

    [Fact]
    public void Nodes_with_capacities_beyond_the_bound_are_refused()
    {
        using var t = new TestCell();
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.AddNode(new NodeSpec("giant", new ResourceVector(1, long.MaxValue)), out _));
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.UpdateNode(t.Nodes[0], new NodeSpec("node-0", new ResourceVector(1, long.MaxValue))));
    }

    [Fact]
    public void An_unknown_tenant_is_refused_everywhere_and_allocates_nothing()
    {
        using var t = new TestCell();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal([ClaimStatus.UnknownTenant], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), tenant: 2_000_000_000))));
        Assert.Equal(TenantOpStatus.UnknownTenant, t.Cell.SetTenantQuota(new TenantId(2_000_000_000), R(1, 1)));
        Assert.Equal(TenantOpStatus.UnknownTenant, t.Cell.SetTenantQuota(new TenantId(-1), R(1, 1)));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "refusing an unknown tenant must not size anything by its id");
        Assert.Equal((default(ResourceVector), (ResourceVector?)null), t.Cell.GetTenantUsage(new TenantId(2_000_000_000)));
        Assert.Empty(t.Cell.Audit());
    }

    [Fact]
    public void Tenants_are_created_with_dense_ids_unique_names_and_a_bounded_count()
    {
        using var t = new TestCell(configure: o => o.MaxTenants = 6);   // default + t1..t3 from TestCell
        Assert.True(t.Cell.TryGetTenant(Cell.DefaultTenantName, out var d));
        Assert.Equal(new TenantId(0), d);
        Assert.Equal(TenantOpStatus.Ok, t.Cell.CreateTenant("batch-team", R(2000, 100), out var id));
        Assert.Equal(new TenantId(4), id);
        Assert.Equal(TenantOpStatus.DuplicateName, t.Cell.CreateTenant("batch-team", null, out var again));
        Assert.Equal(id, again);
        Assert.Equal(TenantOpStatus.InvalidName, t.Cell.CreateTenant("", null, out _));
        Assert.Equal(TenantOpStatus.InvalidName, t.Cell.CreateTenant("no spaces", null, out _));
        Assert.Equal(TenantOpStatus.InvalidName, t.Cell.CreateTenant(new string('x', 65), null, out _));
        Assert.Equal(TenantOpStatus.InvalidQuota, t.Cell.CreateTenant("neg", R(-1, 0), out _));
        Assert.Equal(TenantOpStatus.Ok, t.Cell.CreateTenant("last", null, out _));
        Assert.Equal(TenantOpStatus.LimitReached, t.Cell.CreateTenant("one-too-many", null, out _));
        Assert.Equal(6, t.Cell.TenantCount);
        // The new tenant's quota is enforced at commit.
        Assert.Equal([ClaimStatus.QuotaExceeded], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(2001, 1), tenant: 4))));
        Assert.Equal([ClaimStatus.Applied], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(2000, 1), tenant: 4))));
    }

    [Fact]
    public void Scheduler_B_sending_scheduler_As_key_is_a_new_transaction_not_As_result()
    {
        using var t = new TestCell();
        var b = t.Acquire("other");
        var key = new IdempotencyKey(7, 7);
        var claimA = t.ClaimOn(t.Nodes[0], T(1), R(1, 1));
        var a1 = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, key, claimA);
        Assert.Equal(TransactionStatus.Committed, a1.Status);
        // B sends the same key with the same claim: before the fix it was told "Committed, replayed" for A's commit.
        var b1 = t.Commit(b, CommitMode.Incremental, ConflictDetection.Fine, key, t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
        Assert.False(b1.Replayed);
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(b1));
        // B's own key works for B, and A's retry is still A's original result.
        var b2 = t.Commit(b, CommitMode.Incremental, ConflictDetection.Fine, key, t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
        Assert.True(b2.Replayed);
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(b2));
        var a2 = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, key, claimA);
        Assert.True(a2.Replayed);
        Assert.Equal(TransactionStatus.Committed, a2.Status);
    }
}
