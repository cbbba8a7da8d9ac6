using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>
/// One minimal scenario per result code, and a check that every code of <see cref="ClaimStatus"/> and
/// <see cref="TransactionStatus"/> has one (adding a code without a scenario fails here). Also the order in which the
/// checks run when a claim has several problems.
/// </summary>
public sealed class ReasonCodeTests
{
    private static readonly Dictionary<ClaimStatus, Func<TestCell, CommitResult>> ClaimScenarios = new()
    {
        [ClaimStatus.Applied] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1))),
        [ClaimStatus.NotEvaluated] = t => t.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            new Claim(T(1), new NodeId(9), R(1, 1), 1), t.ClaimOn(t.Nodes[0], T(2), R(1, 1))),
        [ClaimStatus.NodeUnknown] = t => t.Commit(new Claim(T(1), new NodeId(9), R(1, 1), 1)),
        [ClaimStatus.NodeFenced] = t => WithStatus(t, NodeStatus.Fenced),
        [ClaimStatus.NodeDraining] = t => WithStatus(t, NodeStatus.Draining),
        [ClaimStatus.NodeDown] = t => WithStatus(t, NodeStatus.Down),
        [ClaimStatus.TaskAlreadyBound] = t => { t.Commit(t.ClaimOn(t.Nodes[1], T(1), R(1, 1))); return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1))); },
        [ClaimStatus.InsufficientResources] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(4001, 1))),
        [ClaimStatus.NodeVersionChanged] = t => t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(1), t.Nodes[0], R(1, 1), 0)),
        [ClaimStatus.QuotaExceeded] = t => { t.Cell.SetTenantQuota(new TenantId(1), R(10, 10)); return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(11, 1), tenant: 1)); },
        [ClaimStatus.Aborted] = t => t.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            t.ClaimOn(t.Nodes[0], T(2), R(1, 1)), new Claim(T(1), new NodeId(9), R(1, 1), 1)),
        [ClaimStatus.VictimNotFound] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), priority: 1, victims: [T(5)])),
        [ClaimStatus.VictimPriorityTooHigh] = t =>
        {
            t.Commit(t.ClaimOn(t.Nodes[0], T(5), R(1, 1), priority: 3));
            return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), priority: 3, victims: [T(5)]));
        },
        [ClaimStatus.InvalidClaim] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(-1, 1))),
        [ClaimStatus.UnknownTenant] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), tenant: 2_000_000_000)),
        [ClaimStatus.TaskReserved] = t => { Reserve(t, T(1)); return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1))); },
        [ClaimStatus.ReservationNotFound] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)) with { Kind = ClaimKind.BindReserved }),
        [ClaimStatus.ReservationMismatch] = t => { Reserve(t, T(1)); return t.Commit(t.ClaimOn(t.Nodes[1], T(1), R(1, 1)) with { Kind = ClaimKind.BindReserved }); },
        [ClaimStatus.ReservationExpired] = t =>
        {
            Reserve(t, T(1));
            t.Time.Advance(TimeSpan.FromSeconds(5));
            return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)) with { Kind = ClaimKind.BindReserved });
        },
        [ClaimStatus.ProtectedCapacity] = t => { t.Cell.SetTenantGuarantee(new TenantId(2), R(8000, 0)); return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), tenant: 1)); },
        [ClaimStatus.AntiAffinityViolated] = t =>
        {
            // Key shift 0: the job is its own group; its second task may not join the first on one node.
            var group = new PlacementGroup(0, PlacementScope.Node);
            t.Commit(t.ClaimOn(t.Nodes[0], new TaskId(1, 0), R(1, 1)) with { Group = group });
            return t.Commit(t.ClaimOn(t.Nodes[0], new TaskId(1, 1), R(1, 1)) with { Group = group });
        },
        [ClaimStatus.RecoveryBudgetHeld] = t =>
        {
            // Issue 13: a region whose whole capacity is promised to failover; its own critical work is held back.
            Assert.Null(Topology.Merge("r-b", "", null, out var labels));
            var node = t.Cell.AddNode(new NodeSpec("b0", R(4000, 8192), "fd", labels));
            Assert.Equal(RecoveryBudgetOpStatus.Ok, t.Cell.SetRecoveryBudget("r-b", R(4000, 0), 1000, out _));
            return t.Commit(t.ClaimOn(node, T(1), R(1, 1), priority: 1000));
        },
        [ClaimStatus.ReservationLimitReached] = t =>
        {
            for (int i = 0; i < 3; i++) Reserve(t, T(10 + i));
            return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)) with { Kind = ClaimKind.Reserve, Ttl = TimeSpan.FromSeconds(5) });
        },
    };

    // A 5-second reservation of 1 millicore on node 0 (the TestCell allows 3 reservations, see its MaxReservations below).
    private static void Reserve(TestCell t, TaskId task)
        => Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], task, R(1, 1)) with { Kind = ClaimKind.Reserve, Ttl = TimeSpan.FromSeconds(5) }).Status);

    private static readonly Dictionary<TransactionStatus, Func<TestCell, CommitResult>> TransactionScenarios = new()
    {
        [TransactionStatus.Committed] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1))),
        [TransactionStatus.PartiallyCommitted] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)), t.ClaimOn(t.Nodes[0], T(2), R(5000, 1))),
        [TransactionStatus.Rejected] = t => t.Commit(t.ClaimOn(t.Nodes[0], T(2), R(5000, 1))),
        [TransactionStatus.StaleFencingToken] = t =>
        {
            t.Cell.ReleaseLease(t.Lease);
            t.Acquire("sched");
            return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
        },
        [TransactionStatus.LeaseExpired] = t => { t.Time.Advance(LeaseTime); return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1))); },
        [TransactionStatus.UnknownScheduler] = t => t.Commit(t.Lease with { Id = new SchedulerId(3) }, CommitMode.Incremental, ConflictDetection.Fine,
            IdempotencyKey.None, t.ClaimOn(t.Nodes[0], T(1), R(1, 1))),
        [TransactionStatus.InvalidTransaction] = t => t.Commit(),
        [TransactionStatus.IdempotencyKeyReused] = t =>
        {
            var key = new IdempotencyKey(1, 2);
            t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, key, t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
            return t.Commit(t.Lease, CommitMode.Incremental, ConflictDetection.Fine, key, t.ClaimOn(t.Nodes[0], T(2), R(1, 1)));
        },
    };

    private static CommitResult WithStatus(TestCell t, NodeStatus status)
    {
        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(t.Nodes[0], status));
        return t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
    }

    public static TheoryData<ClaimStatus> AllClaimStatuses => new(Enum.GetValues<ClaimStatus>());

    public static TheoryData<TransactionStatus> AllTransactionStatuses => new(Enum.GetValues<TransactionStatus>());

    [Theory]
    [MemberData(nameof(AllClaimStatuses))]
    public void Every_claim_status_has_a_scenario_that_produces_it_and_is_counted(ClaimStatus status)
    {
        Assert.True(ClaimScenarios.TryGetValue(status, out var scenario), $"no scenario produces ClaimStatus.{status}");
        using var t = new TestCell(configure: o => o.MaxReservations = 3);
        long counted = t.Cell.Counters.Claims(status);
        var r = scenario(t);
        Assert.Contains(status, Statuses(r));
        Assert.True(t.Cell.Counters.Claims(status) > counted);
        Assert.Equal(status == ClaimStatus.Applied, r.AppliedCount > 0);
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(AllTransactionStatuses))]
    public void Every_transaction_status_has_a_scenario_that_produces_it_and_is_counted(TransactionStatus status)
    {
        Assert.True(TransactionScenarios.TryGetValue(status, out var scenario), $"no scenario produces TransactionStatus.{status}");
        using var t = new TestCell();
        long counted = t.Cell.Counters.Transactions(status);
        var r = scenario(t);
        Assert.Equal(status, r.Status);
        Assert.Equal(counted + 1, t.Cell.Counters.Transactions(status));
        Assert.Equal(status.AppliedAny(), r.AppliedCount > 0);
        Assert.Equal(r.ClaimStatuses.Length, Statuses(r).Length);
        t.AssertHealthy();
    }

    [Fact]
    public void Node_checks_come_before_the_task_check()
    {
        using var t = new TestCell();
        t.Commit(t.ClaimOn(t.Nodes[1], T(1), R(1, 1)));
        t.Cell.SetNodeStatus(t.Nodes[0], NodeStatus.Fenced);
        Assert.Equal([ClaimStatus.NodeFenced], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)))));
        Assert.Equal([ClaimStatus.NodeUnknown], Statuses(t.Commit(new Claim(T(1), new NodeId(9), R(1, 1), 1))));
    }

    [Fact]
    public void The_task_check_comes_before_victims_version_fit_and_quota()
    {
        using var t = new TestCell();
        t.Cell.SetTenantQuota(new TenantId(1), R(0, 0));
        t.Commit(t.ClaimOn(t.Nodes[1], T(1), R(1, 1)));
        var r = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(1), t.Nodes[0], R(9999, 1), 77, new TenantId(1), 5, [T(42)]));
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(r));
    }

    [Fact]
    public void Victims_come_before_the_version_check_and_the_version_check_before_fit_and_quota()
    {
        using var t = new TestCell();
        t.Cell.SetTenantQuota(new TenantId(1), R(0, 0));
        var victims = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(1), t.Nodes[0], R(9999, 1), 77, new TenantId(1), 5, [T(42)]));
        Assert.Equal([ClaimStatus.VictimNotFound], Statuses(victims));
        var version = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(1), t.Nodes[0], R(9999, 1), 77, new TenantId(1)));
        Assert.Equal([ClaimStatus.NodeVersionChanged], Statuses(version));
    }

    [Fact]
    public void Fit_comes_before_quota()
    {
        using var t = new TestCell();
        t.Cell.SetTenantQuota(new TenantId(1), R(0, 0));
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(9999, 1), tenant: 1))));
        Assert.Equal([ClaimStatus.QuotaExceeded], Statuses(t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1), tenant: 1))));
    }

    [Fact]
    public void Malformed_claims_are_invalid_whatever_else_is_wrong_with_them()
    {
        using var t = new TestCell();
        t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(t.Commit(new Claim(T(1), new NodeId(9), R(1, -1), 1))));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(t.Commit(new Claim(T(1), new NodeId(9), new ResourceVector(1, long.MaxValue), 1, new TenantId(-1)))));
        Assert.Equal([ClaimStatus.UnknownTenant], Statuses(t.Commit(new Claim(T(1), new NodeId(9), R(1, 1), 1, new TenantId(-1)))));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(t.Commit(new Claim(T(2), new NodeId(9), R(1, 1), 1, default, 3, [T(1), T(1)]))));
    }

    [Fact]
    public void A_transaction_over_the_claim_limit_is_invalid_and_applies_nothing()
    {
        using var t = new TestCell(configure: o => o.MaxClaimsPerTransaction = 2);
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)), t.ClaimOn(t.Nodes[0], T(2), R(1, 1)), t.ClaimOn(t.Nodes[0], T(3), R(1, 1)));
        Assert.Equal(TransactionStatus.InvalidTransaction, r.Status);
        Assert.Equal([ClaimStatus.NotEvaluated, ClaimStatus.NotEvaluated, ClaimStatus.NotEvaluated], Statuses(r));
        Assert.Equal(0, t.Cell.AllocationCount);
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)), t.ClaimOn(t.Nodes[0], T(2), R(1, 1))).Status);
    }

    [Fact]
    public void Conflict_codes_are_exactly_the_ones_a_resync_may_cure()
    {
        var conflicts = Enum.GetValues<ClaimStatus>().Where(s => s.IsConflict()).ToHashSet();
        Assert.Equal(new HashSet<ClaimStatus> { ClaimStatus.InsufficientResources, ClaimStatus.NodeVersionChanged, ClaimStatus.TaskAlreadyBound, ClaimStatus.VictimNotFound }, conflicts);
        var fencing = Enum.GetValues<TransactionStatus>().Where(s => s.IsFencingFailure()).ToHashSet();
        Assert.Equal(new HashSet<TransactionStatus> { TransactionStatus.StaleFencingToken, TransactionStatus.LeaseExpired, TransactionStatus.UnknownScheduler }, fencing);
    }
}
