using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Preemption claims (evicting lower-priority victims in the same atomic step) and tenant quotas.</summary>
public sealed class PreemptionQuotaTests
{
    /// <summary>A cell whose node 0 is full with two low-priority tasks (priority 1): j10 (3000m) and j11 (1000m).</summary>
    private static TestCell FullNode()
    {
        var t = new TestCell();
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(10), R(3000, 1), tenant: 1, priority: 1), t.ClaimOn(t.Nodes[0], T(11), R(1000, 1), tenant: 2, priority: 1));
        Assert.Equal(TransactionStatus.Committed, r.Status);
        return t;
    }

    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void A_preemption_claim_evicts_its_victims_and_binds_the_task_in_one_atomic_step(CommitMode mode, ConflictDetection detection)
    {
        using var t = FullNode();
        var before = t.Cell.Snapshot();
        var node = t.View(t.Nodes[0]);
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(t.Commit(t.ClaimOn(node.Id, T(1), R(3500, 1), priority: 5))));

        var claim = t.ClaimOn(node.Id, T(1), R(3500, 1), tenant: 1, priority: 5, victims: [T(10), T(11)]);
        Assert.True(claim.IsPreemption);
        var r = t.Commit(mode, detection, claim);

        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.Equal(before.Version + 1, t.Cell.Version);     // one change: no state in between is ever published
        Assert.False(t.Cell.TryGetAllocation(T(10), out _));
        Assert.False(t.Cell.TryGetAllocation(T(11), out _));
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
        Assert.Equal(5, a.Priority);
        var after = t.View(node.Id);
        Assert.Equal(R(3500, 1), after.Allocated);
        Assert.Equal(1, after.TaskCount);
        Assert.Equal(node.Version + 1, after.Version);
        Assert.Equal(R(3500, 1), t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        Assert.Equal(ResourceVector.Zero, t.Cell.GetTenantUsage(new TenantId(2)).Usage);
        Assert.Equal(SnapshotRead.Ok, before.TryGetNode(node.Id, out var old));
        Assert.Equal(node, old);
        t.AssertHealthy();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(0)]
    public void A_victim_whose_priority_is_not_strictly_lower_is_refused(int claimPriority)
    {
        using var t = FullNode();
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(3500, 1), priority: claimPriority, victims: [T(10)]));
        Assert.Equal([ClaimStatus.VictimPriorityTooHigh], Statuses(r));
        Assert.True(t.Cell.TryGetAllocation(T(10), out _));
    }

    [Fact]
    public void A_victim_bound_to_another_node_or_not_bound_at_all_is_not_found()
    {
        using var t = FullNode();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[1], T(20), R(100, 1), priority: 0)).Status);

        var onOtherNode = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1), priority: 5, victims: [T(20)]));
        Assert.Equal([ClaimStatus.VictimNotFound], Statuses(onOtherNode));
        Assert.True(onOtherNode[0].IsConflict());
        var unbound = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1), priority: 5, victims: [T(10), T(99)]));
        Assert.Equal([ClaimStatus.VictimNotFound], Statuses(unbound));
        Assert.True(t.Cell.TryGetAllocation(T(10), out _));
        Assert.True(t.Cell.TryGetAllocation(T(20), out _));
    }

    [Fact]
    public void A_victim_listed_twice_or_naming_the_claimed_task_makes_the_claim_invalid_before_anything_else_is_checked()
    {
        using var t = FullNode();
        var twice = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(3500, 1), priority: 5, victims: [T(10), T(10)]));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(twice));
        var self = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1), priority: 5, victims: [T(1)]));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(self));
        // Malformed whatever the node: an unknown node or unbound victims do not hide it (docs/commit-protocol.md, step 0).
        var unknownNode = t.Commit(new Claim(T(1), new NodeId(50), R(1, 1), 1, default, 5, [T(99), T(99)]));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(unknownNode));
        Assert.True(t.Cell.TryGetAllocation(T(10), out _));
        Assert.False(t.Cell.TryGetAllocation(T(1), out _));
    }

    [Fact]
    public void A_preemption_that_still_does_not_fit_leaves_the_victims_bound()
    {
        using var t = FullNode();
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(3500, 1), priority: 5, victims: [T(11)]));
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(r));
        Assert.True(t.Cell.TryGetAllocation(T(11), out _));
        Assert.Equal(R(4000, 2), t.View(t.Nodes[0]).Allocated);
    }

    [Theory]
    [MemberData(nameof(CommitModeTests.Detections), MemberType = typeof(CommitModeTests))]
    public void A_gang_that_fails_after_a_preemption_restores_the_victims_exactly(ConflictDetection detection)
    {
        using var t = FullNode();
        Assert.True(t.Cell.TryGetAllocation(T(10), out var victim10));
        Assert.True(t.Cell.TryGetAllocation(T(11), out var victim11));
        var node = t.View(t.Nodes[0]);
        var usage1 = t.Cell.GetTenantUsage(new TenantId(1)).Usage;

        var r = t.Commit(CommitMode.AllOrNothing, detection,
            t.ClaimOn(t.Nodes[0], T(1), R(3500, 1), tenant: 1, priority: 5, victims: [T(10), T(11)]),
            t.ClaimOn(t.Nodes[1], T(2), R(9999, 1)));

        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.InsufficientResources], Statuses(r));
        Assert.True(t.Cell.TryGetAllocation(T(10), out var back10));
        Assert.True(t.Cell.TryGetAllocation(T(11), out var back11));
        Assert.Equal(victim10, back10);   // same node, resources, tenant, priority and generation
        Assert.Equal(victim11, back11);
        Assert.False(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal(node, t.View(t.Nodes[0]));
        Assert.Equal(usage1, t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        t.AssertHealthy();
    }

    [Fact]
    public void Two_claims_of_one_transaction_cannot_evict_the_same_victim()
    {
        using var t = FullNode();
        var r = t.Commit(
            t.ClaimOn(t.Nodes[0], T(1), R(3000, 1), priority: 5, victims: [T(10)]),
            t.ClaimOn(t.Nodes[0], T(2), R(3000, 1), priority: 5, victims: [T(10)]));
        Assert.Equal([ClaimStatus.Applied, ClaimStatus.VictimNotFound], Statuses(r));
    }

    [Fact]
    public void A_task_placed_earlier_in_the_same_transaction_can_be_a_victim_of_a_later_claim()
    {
        using var t = new TestCell();
        var r = t.Commit(CommitMode.AllOrNothing, ConflictDetection.Coarse,
            t.ClaimOn(t.Nodes[0], T(1), R(3000, 1), priority: 0),
            t.ClaimOn(t.Nodes[0], T(2), R(3000, 1), priority: 1, victims: [T(1)]));
        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.False(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal(1, t.View(t.Nodes[0]).TaskCount);
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void A_claim_that_would_exceed_its_tenants_quota_is_refused_while_other_tenants_are_not_limited(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        t.Cell.SetTenantQuota(new TenantId(1), R(1500, 100));
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1000, 1), tenant: 1)).Status);

        var r = t.Commit(mode, detection, t.ClaimOn(t.Nodes[1], T(2), R(600, 1), tenant: 1), t.ClaimOn(t.Nodes[1], T(3), R(600, 1), tenant: 2));
        if (mode == CommitMode.Incremental) Assert.Equal([ClaimStatus.QuotaExceeded, ClaimStatus.Applied], Statuses(r));
        else Assert.Equal([ClaimStatus.QuotaExceeded, ClaimStatus.NotEvaluated], Statuses(r));
        Assert.Equal(R(1000, 1), t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        Assert.Equal(R(1500, 100), t.Cell.GetTenantUsage(new TenantId(1)).Quota);

        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[1], T(4), R(500, 1), tenant: 1)).Status);  // exactly at quota
        t.Cell.SetTenantQuota(new TenantId(1), null);
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[1], T(2), R(600, 1), tenant: 1)).Status);
        Assert.Null(t.Cell.GetTenantUsage(new TenantId(1)).Quota);
        t.AssertHealthy();
    }

    [Fact]
    public void Quota_counts_claims_earlier_in_the_same_transaction_and_a_gang_over_quota_applies_nothing()
    {
        using var t = new TestCell();
        t.Cell.SetTenantQuota(new TenantId(3), R(2000, 100));
        var r = t.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            t.ClaimOn(t.Nodes[0], T(1), R(1000, 1), tenant: 3),
            t.ClaimOn(t.Nodes[1], T(2), R(1000, 1), tenant: 3),
            t.ClaimOn(t.Nodes[1], T(3), R(1, 1), tenant: 3));
        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.QuotaExceeded], Statuses(r));
        Assert.Equal(ResourceVector.Zero, t.Cell.GetTenantUsage(new TenantId(3)).Usage);
        Assert.Equal(0, t.Cell.AllocationCount);
    }

    [Fact]
    public void Evicting_a_victim_of_the_same_tenant_frees_quota_but_evicting_another_tenants_does_not()
    {
        using var t = FullNode();   // j10: tenant 1 (3000m), j11: tenant 2 (1000m)
        t.Cell.SetTenantQuota(new TenantId(1), R(3000, 100));

        var sameTenant = t.ClaimOn(t.Nodes[0], T(1), R(2500, 1), tenant: 1, priority: 5, victims: [T(10)]);
        var otherTenant = t.ClaimOn(t.Nodes[0], T(1), R(500, 1), tenant: 1, priority: 5, victims: [T(11)]);
        Assert.Equal([ClaimStatus.QuotaExceeded], Statuses(t.Commit(otherTenant)));
        Assert.Equal([ClaimStatus.Applied], Statuses(t.Commit(sameTenant)));
        Assert.Equal(R(2500, 1), t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        t.AssertHealthy();
    }

    [Fact]
    public void Lowering_a_quota_below_usage_keeps_existing_bindings_and_refuses_new_ones()
    {
        using var t = new TestCell();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(2000, 1), tenant: 1)).Status);
        t.Cell.SetTenantQuota(new TenantId(1), R(1000, 100));
        Assert.True(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal([ClaimStatus.QuotaExceeded], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(2), R(1, 0), tenant: 1))));
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1)));
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(2), R(1000, 1), tenant: 1)).Status);
    }
}
