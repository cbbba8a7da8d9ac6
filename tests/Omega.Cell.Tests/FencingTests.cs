using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Scheduler leases, fencing tokens and the fencing check that precedes everything else in a commit.</summary>
public sealed class FencingTests
{
    [Fact]
    public void Every_grant_carries_a_token_larger_than_any_granted_before_across_identities()
    {
        using var t = new TestCell();
        var a = t.Acquire("a", TimeSpan.FromSeconds(1));
        var b = t.Acquire("b", TimeSpan.FromSeconds(1));
        Assert.True(b.Token > a.Token);
        Assert.True(a.Token > t.Lease.Token);
        Assert.NotEqual(a.Id, b.Id);
        t.Time.Advance(TimeSpan.FromSeconds(1));
        var a2 = t.Acquire("a");
        Assert.True(a2.Token > b.Token);
        Assert.Equal(a.Id, a2.Id);              // same identity, same scheduler id
        Assert.Equal(a2.Token, t.Cell.GetCurrentToken("a"));
        Assert.Null(t.Cell.GetCurrentToken("never"));
    }

    [Fact]
    public void A_grant_is_a_cell_change_and_gets_a_cell_version()
    {
        using var t = new TestCell();
        long before = t.Cell.Version;
        t.Acquire("other");
        Assert.Equal(before + 1, t.Cell.Version);
    }

    [Fact]
    public void The_old_holders_commit_after_the_identity_is_reacquired_is_rejected_as_stale_and_applies_nothing()
    {
        using var t = new TestCell();
        var old = t.Lease;
        t.Time.Advance(LeaseTime);
        var fresh = t.Acquire("sched");
        Assert.True(fresh.Token > old.Token);
        long version = t.Cell.Version;

        foreach (var mode in new[] { CommitMode.Incremental, CommitMode.AllOrNothing })
        {
            var r = t.Commit(old, mode, ConflictDetection.Fine, IdempotencyKey.None,
                t.ClaimOn(t.Nodes[0], T(1), R(100, 1)), t.ClaimOn(t.Nodes[1], T(2), R(100, 1)));
            Assert.Equal(TransactionStatus.StaleFencingToken, r.Status);
            Assert.Equal([ClaimStatus.NotEvaluated, ClaimStatus.NotEvaluated], Statuses(r));
            Assert.Equal(0, r.AppliedCount);
            Assert.True(r.Status.IsFencingFailure());
        }
        Assert.Equal(0, t.Cell.AllocationCount);
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(TransactionStatus.Committed, t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None,
            t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Fact]
    public void A_stale_token_is_checked_before_anything_else_even_for_an_empty_or_malformed_transaction()
    {
        using var t = new TestCell(configure: o => o.MaxClaimsPerTransaction = 1);
        var old = t.Lease;
        Assert.Equal(LeaseStatus.Renewed, t.Cell.ReleaseLease(old));   // documented: success is reported as Renewed
        var fresh = t.Acquire("sched");
        var key = new IdempotencyKey(1, 1);
        Assert.Equal(TransactionStatus.Committed, t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, key,
            t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);

        // Empty: would be InvalidTransaction with a current token.
        Assert.Equal(TransactionStatus.StaleFencingToken, t.Commit(old, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None).Status);
        Assert.Equal(TransactionStatus.InvalidTransaction, t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None).Status);
        // Too many claims, unknown node, bound task, reused key: all hidden behind the stale token.
        var r = t.Commit(old, CommitMode.AllOrNothing, ConflictDetection.Coarse, key,
            new Claim(T(1), new NodeId(77), R(-1, 0), 999), new Claim(T(1), t.Nodes[0], R(100, 1), 1));
        Assert.Equal(TransactionStatus.StaleFencingToken, r.Status);
        Assert.Equal([ClaimStatus.NotEvaluated, ClaimStatus.NotEvaluated], Statuses(r));
        // A retry of a committed keyed transaction with a stale token is not answered from the idempotency index.
        var retry = t.Commit(old, CommitMode.Incremental, ConflictDetection.Fine, key, t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.Equal(TransactionStatus.StaleFencingToken, retry.Status);
        Assert.False(retry.Replayed);
    }

    [Fact]
    public void A_commit_after_the_lease_expires_is_rejected_as_lease_expired_at_exactly_the_expiry_instant()
    {
        using var t = new TestCell();
        t.Time.Advance(LeaseTime - TimeSpan.FromTicks(1));
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);

        t.Time.Advance(TimeSpan.FromTicks(1));
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(2), R(100, 1)));
        Assert.Equal(TransactionStatus.LeaseExpired, r.Status);
        Assert.Equal([ClaimStatus.NotEvaluated], Statuses(r));
        Assert.True(r.Status.IsFencingFailure());
        Assert.False(t.Cell.TryGetAllocation(T(2), out _));
        // Expiry alone does not supersede the token: no other grant happened.
        Assert.Equal(t.Lease.Token, t.Cell.GetCurrentToken("sched"));
    }

    [Fact]
    public void Renewing_before_expiry_extends_the_lease_and_keeps_the_token()
    {
        using var t = new TestCell();
        t.Time.Advance(TimeSpan.FromSeconds(20));
        var renewed = t.Cell.RenewLease(t.Lease, TimeSpan.FromSeconds(30));
        Assert.Equal(LeaseStatus.Renewed, renewed.Status);
        Assert.True(renewed.Succeeded);
        Assert.Equal(t.Lease.Token, renewed.Lease.Token);
        Assert.Equal(t.Time.GetUtcNow() + TimeSpan.FromSeconds(30), renewed.Lease.ExpiresAt);

        t.Time.Advance(TimeSpan.FromSeconds(25));   // past the original expiry, within the renewed one
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
        t.Time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(TransactionStatus.LeaseExpired, t.Commit(t.ClaimOn(t.Nodes[0], T(2), R(100, 1))).Status);
    }

    [Fact]
    public void Renewing_under_another_identitys_name_is_refused_even_with_the_right_id_and_token()
    {
        using var t = new TestCell();
        var expiresAt = t.Lease.ExpiresAt;
        // Another client names itself "intruder" but quotes the real holder's id and (sequential, guessable) token.
        var forged = t.Lease with { Name = "intruder" };
        t.Time.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal(LeaseStatus.Invalid, t.Cell.RenewLease(forged, TimeSpan.FromSeconds(30)).Status);
        // Nothing was extended: the holder's lease still ends when it did.
        t.Time.Advance(expiresAt - t.Time.GetUtcNow());
        Assert.Equal(TransactionStatus.LeaseExpired, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Fact]
    public void Renewing_after_expiry_is_refused_as_expired_and_the_holder_must_acquire_a_new_token()
    {
        using var t = new TestCell();
        t.Time.Advance(LeaseTime);
        var r = t.Cell.RenewLease(t.Lease, LeaseTime);
        Assert.Equal(LeaseStatus.Expired, r.Status);
        Assert.False(r.Succeeded);
        Assert.Equal(TransactionStatus.LeaseExpired, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);

        var again = t.Acquire("sched");
        Assert.True(again.Token > t.Lease.Token);
        Assert.Equal(TransactionStatus.StaleFencingToken, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Fact]
    public void Acquiring_an_identity_whose_lease_is_unexpired_is_refused_until_it_expires()
    {
        using var t = new TestCell();
        var expiresAt = t.Lease.ExpiresAt;
        t.Time.Advance(LeaseTime - TimeSpan.FromSeconds(1));
        var r = t.Cell.AcquireLease("sched", LeaseTime);
        Assert.Equal(LeaseStatus.HeldByAnother, r.Status);
        Assert.Equal(expiresAt, r.HeldUntil);
        Assert.Equal(t.Lease.Token, t.Cell.GetCurrentToken("sched"));   // the refusal did not supersede the holder
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);

        t.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(LeaseStatus.Granted, t.Cell.AcquireLease("sched", LeaseTime).Status);
    }

    [Fact]
    public void A_superseded_holder_can_neither_renew_nor_release_the_new_holders_lease()
    {
        using var t = new TestCell();
        t.Time.Advance(LeaseTime);
        var fresh = t.Acquire("sched");

        Assert.Equal(LeaseStatus.Superseded, t.Cell.RenewLease(t.Lease, LeaseTime).Status);
        Assert.Equal(LeaseStatus.Superseded, t.Cell.ReleaseLease(t.Lease));
        Assert.Equal(TransactionStatus.Committed, t.Commit(fresh, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None,
            t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Fact]
    public void Releasing_a_lease_ends_it_at_once_and_lets_the_identity_be_acquired_with_a_larger_token()
    {
        using var t = new TestCell();
        Assert.Equal(LeaseStatus.Renewed, t.Cell.ReleaseLease(t.Lease));
        Assert.Equal(TransactionStatus.LeaseExpired, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
        Assert.Equal(LeaseStatus.Expired, t.Cell.RenewLease(t.Lease, LeaseTime).Status);

        var next = t.Acquire("sched");
        Assert.True(next.Token > t.Lease.Token);
        Assert.Equal(TransactionStatus.StaleFencingToken, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Fact]
    public void A_scheduler_id_that_was_never_granted_a_lease_is_unknown()
    {
        using var t = new TestCell();
        var ghost = new SchedulerLease(new SchedulerId(42), "ghost", t.Lease.Token, t.Lease.ExpiresAt);
        var r = t.Commit(ghost, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None, t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.Equal(TransactionStatus.UnknownScheduler, r.Status);
        Assert.Equal([ClaimStatus.NotEvaluated], Statuses(r));
        Assert.True(r.Status.IsFencingFailure());
        Assert.Equal(0, t.Cell.AllocationCount);
        Assert.Equal(LeaseStatus.Invalid, t.Cell.RenewLease(ghost, LeaseTime).Status);
        Assert.Equal(LeaseStatus.Invalid, t.Cell.ReleaseLease(ghost));
    }

    [Fact]
    public void A_token_of_another_identity_is_stale_for_this_one()
    {
        using var t = new TestCell();
        var other = t.Acquire("other");
        var forged = t.Lease with { Token = other.Token };
        Assert.Equal(TransactionStatus.StaleFencingToken,
            t.Commit(forged, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None, t.ClaimOn(t.Nodes[0], T(1), R(100, 1))).Status);
    }

    [Theory]
    [InlineData("", 10)]
    [InlineData("  ", 10)]
    [InlineData("x", 0)]
    [InlineData("x", -5)]
    public void Malformed_lease_requests_are_invalid(string name, int seconds)
    {
        using var t = new TestCell();
        Assert.Equal(LeaseStatus.Invalid, t.Cell.AcquireLease(name, TimeSpan.FromSeconds(seconds)).Status);
        if (seconds <= 0) Assert.Equal(LeaseStatus.Invalid, t.Cell.RenewLease(t.Lease, TimeSpan.FromSeconds(seconds)).Status);
    }
}
