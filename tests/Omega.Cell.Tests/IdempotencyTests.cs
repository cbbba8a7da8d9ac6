using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Idempotency keys: a retry gets the original result and binds nothing new.</summary>
public sealed class IdempotencyTests
{
    private static readonly IdempotencyKey Key1 = new(7, 1);
    private static readonly IdempotencyKey Key2 = new(7, 2);
    private static readonly IdempotencyKey Key3 = new(7, 3);

    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void A_retry_with_the_same_key_gets_the_original_result_marked_replayed_and_binds_nothing_new(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        var claims = new[] { t.ClaimOn(t.Nodes[0], T(1), R(1000, 1)), t.ClaimOn(t.Nodes[1], T(2), R(1000, 1)) };
        var first = t.Commit(t.Lease, mode, detection, Key1, claims);
        Assert.Equal(TransactionStatus.Committed, first.Status);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var bound));
        long version = t.Cell.Version;
        var views = t.Nodes.Select(t.View).ToArray();

        var retry = t.Commit(t.Lease, mode, detection, Key1, claims);

        Assert.True(retry.Replayed);
        Assert.False(first.Replayed);
        Assert.Equal(first.Status, retry.Status);
        Assert.Equal(first.CellVersion, retry.CellVersion);
        Assert.Equal(first.AppliedCount, retry.AppliedCount);
        Assert.Equal(Statuses(first), Statuses(retry));
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(2, t.Cell.AllocationCount);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var still));
        Assert.Equal(bound, still);
        Assert.Equal(views, t.Nodes.Select(t.View).ToArray());
        Assert.Equal(1, t.Cell.Counters.IdempotentReplays);
    }

    [Fact]
    public void A_replayed_single_claim_result_and_a_replayed_rejection_carry_their_original_claim_statuses()
    {
        using var t = new TestCell();
        var ok = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1));
        var tooBig = t.ClaimOn(t.Nodes[0], T(2), R(9000, 1));
        var a = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, ok);
        var b = t.Commit(t.Lease, CommitMode.AllOrNothing, ConflictDetection.Fine, Key2, ok with { Task = T(3) }, tooBig);
        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.InsufficientResources], Statuses(b));

        var a2 = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, ok);
        var b2 = t.Commit(t.Lease, CommitMode.AllOrNothing, ConflictDetection.Fine, Key2, ok with { Task = T(3) }, tooBig);
        Assert.Equal((TransactionStatus.Committed, true, 1), (a2.Status, a2.Replayed, a2.AppliedCount));
        Assert.Equal([ClaimStatus.Applied], Statuses(a2));
        Assert.Equal(a.CellVersion, a2.CellVersion);
        Assert.Equal((TransactionStatus.Rejected, true, 0), (b2.Status, b2.Replayed, b2.AppliedCount));
        Assert.Equal(Statuses(b), Statuses(b2));
        Assert.False(t.Cell.TryGetAllocation(T(3), out _));
    }

    [Fact]
    public void A_retry_after_a_timeout_that_followed_a_commit_gets_the_original_result_even_after_the_task_completed()
    {
        using var t = new TestCell();
        var claim = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1));
        var tx = Build(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, claim);

        _ = t.Cell.Commit(tx);                       // the commit happens; its acknowledgement is "lost"
        Assert.True(t.Cell.TryGetAllocation(T(1), out var first));
        var again = t.Cell.Commit(tx).Detach();      // the scheduler times out and retries the same transaction
        Assert.True(again.Replayed);
        Assert.Equal(TransactionStatus.Committed, again.Status);
        Assert.Equal(first.Generation, again.Generation);
        Assert.Equal(1, t.Cell.AllocationCount);

        // The task then runs to completion and is released; a late duplicate must not bind it a second time.
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1), first.Generation));
        long version = t.Cell.Version;
        var late = t.Cell.Commit(tx).Detach();
        Assert.True(late.Replayed);
        Assert.Equal(TransactionStatus.Committed, late.Status);
        Assert.False(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(ResourceVector.Zero, t.View(t.Nodes[0]).Allocated);
    }

    [Fact]
    public void The_same_key_with_different_claims_is_rejected_as_reused_and_applies_nothing()
    {
        using var t = new TestCell();
        var original = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1));
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, original).Status);
        long version = t.Cell.Version;

        var variants = new (CommitMode Mode, ConflictDetection Detection, Claim[] Claims)[]
        {
            (CommitMode.Incremental, ConflictDetection.Fine, [original with { Task = T(2) }]),
            (CommitMode.Incremental, ConflictDetection.Fine, [original with { Node = t.Nodes[1] }]),
            (CommitMode.Incremental, ConflictDetection.Fine, [original with { Resources = R(1001, 1) }]),
            (CommitMode.Incremental, ConflictDetection.Fine, [original, t.ClaimOn(t.Nodes[1], T(2), R(1, 1))]),
            (CommitMode.AllOrNothing, ConflictDetection.Fine, [original]),
            (CommitMode.Incremental, ConflictDetection.Coarse, [original]),
        };
        foreach (var (mode, detection, claims) in variants)
        {
            var r = t.Commit(t.Lease, mode, detection, Key1, claims);
            Assert.Equal(TransactionStatus.IdempotencyKeyReused, r.Status);
            Assert.False(r.Replayed);
            Assert.All(Statuses(r), s => Assert.Equal(ClaimStatus.NotEvaluated, s));
        }
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(1, t.Cell.AllocationCount);
        // The original is still answered.
        Assert.True(t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, original).Replayed);
    }

    [Fact]
    public void The_same_key_with_a_claim_that_differs_only_in_tenant_priority_or_expected_version_is_a_different_transaction()
    {
        // A claim is (task, node, resources, expected version, tenant, priority, victims); a retry resends all of it.
        using var t = new TestCell();
        var original = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1), tenant: 1, priority: 2);
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, original).Status);

        foreach (var changed in new[] { original with { Tenant = new TenantId(2) }, original with { Priority = 9 }, original with { ExpectedNodeVersion = 5 } })
        {
            var r = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, changed);
            Assert.Equal(TransactionStatus.IdempotencyKeyReused, r.Status);
            Assert.False(r.Replayed);
        }
    }

    [Fact]
    public void The_same_key_with_different_victims_is_a_different_transaction()
    {
        using var t = new TestCell();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(10), R(100, 1)), t.ClaimOn(t.Nodes[0], T(11), R(100, 1))).Status);
        var a = t.ClaimOn(t.Nodes[0], T(1), R(100, 1), priority: 5, victims: [T(10)]);
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, a).Status);
        var b = a with { Victims = [T(11)] };
        Assert.Equal(TransactionStatus.IdempotencyKeyReused, t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, b).Status);
        Assert.True(t.Cell.TryGetAllocation(T(11), out _));
    }

    [Fact]
    public void Without_a_key_a_repeated_transaction_is_evaluated_again()
    {
        using var t = new TestCell();
        var claim = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1));
        Assert.Equal(TransactionStatus.Committed, t.Commit(claim).Status);
        var again = t.Commit(claim);
        Assert.False(again.Replayed);
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(again));
    }

    [Fact]
    public void Fencing_and_shape_failures_are_not_remembered_so_the_key_can_be_used_once_the_scheduler_is_current()
    {
        using var t = new TestCell();
        var claim = t.ClaimOn(t.Nodes[0], T(1), R(1000, 1));
        t.Time.Advance(LeaseTime);
        Assert.Equal(TransactionStatus.LeaseExpired, t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, claim).Status);
        var fresh = t.Acquire("sched");
        Assert.Equal(TransactionStatus.InvalidTransaction, t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, Key1).Status);

        var r = t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, Key1, claim);
        Assert.False(r.Replayed);
        Assert.Equal(TransactionStatus.Committed, r.Status);
    }

    [Fact]
    public void Keys_beyond_the_retention_are_forgotten_oldest_first_and_a_late_retry_is_evaluated_afresh()
    {
        using var t = new TestCell(configure: o => o.IdempotencyRetention = 2);
        var c1 = t.ClaimOn(t.Nodes[0], T(1), R(100, 1));
        var c2 = t.ClaimOn(t.Nodes[0], T(2), R(100, 1));
        var c3 = t.ClaimOn(t.Nodes[0], T(3), R(100, 1));
        var r1 = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, c1);
        t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key2, c2);
        t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key3, c3);
        Assert.Equal(3, t.Cell.AllocationCount);

        Assert.True(t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key3, c3).Replayed);
        Assert.True(t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key2, c2).Replayed);
        var late = t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, c1);
        Assert.False(late.Replayed);
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(late));   // still no second binding: the task is bound
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
        Assert.Equal(r1.Generation, a.Generation);
        // Key1 is remembered again (with its new result), which pushes Key2 out.
        Assert.True(t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key1, c1).Replayed);
        Assert.False(t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, Key2, c2).Replayed);
    }

    [Fact]
    public void Random_keys_are_never_none_and_differ()
    {
        var a = IdempotencyKey.NewRandom();
        var b = IdempotencyKey.NewRandom();
        Assert.False(a.IsNone);
        Assert.NotEqual(a, b);
        Assert.True(IdempotencyKey.None.IsNone);
    }
}
