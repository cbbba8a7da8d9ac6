using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Incremental and all-or-nothing transactions under fine and coarse conflict detection.</summary>
public sealed class CommitModeTests
{
    public static TheoryData<CommitMode, ConflictDetection> AllCombinations => new()
    {
        { CommitMode.Incremental, ConflictDetection.Fine },
        { CommitMode.Incremental, ConflictDetection.Coarse },
        { CommitMode.AllOrNothing, ConflictDetection.Fine },
        { CommitMode.AllOrNothing, ConflictDetection.Coarse },
    };

    public static TheoryData<CommitMode> Modes => new() { CommitMode.Incremental, CommitMode.AllOrNothing };

    public static TheoryData<ConflictDetection> Detections => new() { ConflictDetection.Fine, ConflictDetection.Coarse };

    [Theory]
    [MemberData(nameof(AllCombinations))]
    public void A_valid_claim_commits_binds_the_task_at_the_new_cell_version_and_bumps_the_node_version(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        long before = t.Cell.Version;
        var node = t.View(t.Nodes[0]);

        var r = t.Commit(mode, detection, t.ClaimOn(node.Id, T(1), R(1000, 512)));

        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.True(r.IsCommitted);
        Assert.False(r.Replayed);
        Assert.Equal(1, r.AppliedCount);
        Assert.Equal([ClaimStatus.Applied], Statuses(r));
        Assert.Equal(before + 1, r.CellVersion);
        Assert.Equal(before + 1, t.Cell.Version);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
        Assert.Equal(new Allocation(T(1), node.Id, R(1000, 512), default, 0, r.Generation), a);
        var after = t.View(node.Id);
        Assert.Equal(node.Version + 1, after.Version);
        Assert.Equal(R(1000, 512), after.Allocated);
        Assert.Equal(1, after.TaskCount);
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(AllCombinations))]
    public void A_transaction_whose_only_claim_fails_is_rejected_and_changes_nothing(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        long before = t.Cell.Version;
        var view = t.View(t.Nodes[0]);

        var r = t.Commit(mode, detection, t.ClaimOn(view.Id, T(1), R(5000, 1)));

        Assert.Equal(TransactionStatus.Rejected, r.Status);
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(r));
        Assert.Equal(0, r.AppliedCount);
        Assert.Equal(before, r.CellVersion);
        Assert.Equal(before, t.Cell.Version);
        Assert.Equal(view, t.View(view.Id));
        Assert.Equal(0, t.Cell.AllocationCount);
    }

    [Theory]
    [MemberData(nameof(Detections))]
    public void Incremental_applies_the_claims_that_validate_and_reports_the_rest(ConflictDetection detection)
    {
        using var t = new TestCell(nodes: 3);
        t.Cell.SetNodeStatus(t.Nodes[2], NodeStatus.Draining);

        var r = t.Commit(CommitMode.Incremental, detection,
            t.ClaimOn(t.Nodes[0], T(1), R(1000, 1)),
            t.ClaimOn(t.Nodes[1], T(2), R(9000, 1)),
            t.ClaimOn(t.Nodes[1], T(3), R(1000, 1)),
            t.ClaimOn(t.Nodes[2], T(4), R(1000, 1)));

        Assert.Equal(TransactionStatus.PartiallyCommitted, r.Status);
        Assert.Equal([ClaimStatus.Applied, ClaimStatus.InsufficientResources, ClaimStatus.Applied, ClaimStatus.NodeDraining], Statuses(r));
        Assert.Equal(2, r.AppliedCount);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a1));
        Assert.True(t.Cell.TryGetAllocation(T(3), out var a3));
        Assert.Equal(r.Generation, a1.Generation);
        Assert.Equal(r.Generation, a3.Generation);
        Assert.False(t.Cell.TryGetAllocation(T(2), out _));
        Assert.False(t.Cell.TryGetAllocation(T(4), out _));
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(Detections))]
    public void All_or_nothing_rolls_back_at_the_first_failure_aborting_earlier_claims_and_skipping_later_ones(ConflictDetection detection)
    {
        using var t = new TestCell(nodes: 3);
        var oldSnapshot = t.Cell.Snapshot();
        var views = t.Nodes.Select(t.View).ToArray();
        long before = t.Cell.Version;

        var r = t.Commit(CommitMode.AllOrNothing, detection,
            t.ClaimOn(t.Nodes[0], T(1), R(1000, 1), tenant: 1),
            t.ClaimOn(t.Nodes[1], T(2), R(1000, 1), tenant: 1),
            t.ClaimOn(t.Nodes[0], T(3), R(1000, 1), tenant: 1),   // a second claim on a touched node
            t.ClaimOn(t.Nodes[2], T(4), R(9000, 1), tenant: 1),   // does not fit
            t.ClaimOn(t.Nodes[2], T(5), R(1000, 1), tenant: 1));

        Assert.Equal(TransactionStatus.Rejected, r.Status);
        Assert.Equal(
            [ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.InsufficientResources, ClaimStatus.NotEvaluated],
            Statuses(r));
        Assert.Equal(0, r.AppliedCount);
        Assert.Equal(before, r.CellVersion);
        Assert.Equal(before, t.Cell.Version);
        Assert.Equal(0, t.Cell.AllocationCount);
        Assert.Empty(t.Cell.GetAllocations());
        Assert.Equal(ResourceVector.Zero, t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        // Nothing visible in any snapshot, and the node versions are restored.
        foreach (var v in views)
        {
            Assert.Equal(v, t.View(v.Id));
            Assert.Equal(SnapshotRead.Ok, oldSnapshot.TryGetNode(v.Id, out var old));
            Assert.Equal(v, old);
        }
        // A coarse claim made on the pre-rollback version still commits.
        var later = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(6), views[0].Id, R(100, 1), views[0].Version));
        Assert.Equal(TransactionStatus.Committed, later.Status);
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(Detections))]
    public void All_or_nothing_commits_claims_on_several_nodes_at_one_generation(ConflictDetection detection)
    {
        using var t = new TestCell(nodes: 3);
        var r = t.Commit(CommitMode.AllOrNothing, detection,
            t.ClaimOn(t.Nodes[0], T(1, 0), R(1000, 1)),
            t.ClaimOn(t.Nodes[1], T(1, 1), R(1000, 1)),
            t.ClaimOn(t.Nodes[2], T(1, 2), R(1000, 1)));

        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.Equal(3, r.AppliedCount);
        var generations = t.Cell.GetAllocations().Select(a => a.Generation).Distinct().ToList();
        Assert.Equal([r.Generation], generations);
        Assert.All(t.Nodes, n => Assert.Equal(2, t.View(n).Version));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void After_a_concurrent_placement_fine_detection_accepts_a_claim_that_fits_but_coarse_rejects_it(CommitMode mode)
    {
        using var fine = new TestCell();
        using var coarse = new TestCell();
        foreach (var t in new[] { fine, coarse })
        {
            var seen = t.View(t.Nodes[0]);   // the scheduler's snapshot
            Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(99), R(500, 1))).Status); // someone else places
            var claim = new Claim(T(1), seen.Id, R(1000, 1), seen.Version);
            var r = t.Commit(mode, t == fine ? ConflictDetection.Fine : ConflictDetection.Coarse, claim);
            if (t == fine)
            {
                Assert.Equal(TransactionStatus.Committed, r.Status);
                Assert.Equal(R(1500, 2), t.View(t.Nodes[0]).Allocated);
            }
            else
            {
                Assert.Equal(TransactionStatus.Rejected, r.Status);
                Assert.Equal([ClaimStatus.NodeVersionChanged], Statuses(r));
                Assert.Equal(R(500, 1), t.View(t.Nodes[0]).Allocated);
                Assert.True(r.CellVersion >= t.Cell.Version, "a rejected result names a version to re-sync to");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Several_claims_of_one_coarse_transaction_on_the_same_node_all_succeed_and_bump_its_version_once(CommitMode mode)
    {
        using var t = new TestCell();
        var seen = t.View(t.Nodes[0]);

        var r = t.Commit(mode, ConflictDetection.Coarse,
            new Claim(T(1), seen.Id, R(1000, 1), seen.Version),
            new Claim(T(2), seen.Id, R(1000, 1), seen.Version),
            new Claim(T(3), seen.Id, R(1000, 1), seen.Version));

        Assert.Equal(TransactionStatus.Committed, r.Status);
        var after = t.View(seen.Id);
        Assert.Equal(seen.Version + 1, after.Version);
        Assert.Equal(3, after.TaskCount);
        // The next coarse transaction must use the new version.
        var stale = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(4), seen.Id, R(10, 1), seen.Version));
        Assert.Equal([ClaimStatus.NodeVersionChanged], Statuses(stale));
        var fresh = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(4), seen.Id, R(10, 1), after.Version));
        Assert.Equal(TransactionStatus.Committed, fresh.Status);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Claims_of_one_fine_transaction_see_the_resources_taken_by_earlier_claims(CommitMode mode)
    {
        using var t = new TestCell(capacity: R(2500, 100));
        var r = t.Commit(mode, ConflictDetection.Fine,
            t.ClaimOn(t.Nodes[0], T(1), R(1000, 1)),
            t.ClaimOn(t.Nodes[0], T(2), R(1000, 1)),
            t.ClaimOn(t.Nodes[0], T(3), R(1000, 1)));

        if (mode == CommitMode.Incremental)
        {
            Assert.Equal(TransactionStatus.PartiallyCommitted, r.Status);
            Assert.Equal([ClaimStatus.Applied, ClaimStatus.Applied, ClaimStatus.InsufficientResources], Statuses(r));
            Assert.Equal(R(2000, 2), t.View(t.Nodes[0]).Allocated);
        }
        else
        {
            Assert.Equal([ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.InsufficientResources], Statuses(r));
            Assert.Equal(ResourceVector.Zero, t.View(t.Nodes[0]).Allocated);
        }
        t.AssertHealthy();
    }

    [Fact]
    public void A_release_frees_resources_without_bumping_the_node_version_so_coarse_claims_made_before_it_still_commit()
    {
        using var t = new TestCell();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(3000, 1))).Status);
        var seen = t.View(t.Nodes[0]);
        long cellBefore = t.Cell.Version;

        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1)));

        var after = t.View(t.Nodes[0]);
        Assert.Equal(seen.Version, after.Version);        // documented choice: releases only add room
        Assert.Equal(cellBefore + 1, t.Cell.Version);     // but it is a change of the cell
        Assert.Equal(ResourceVector.Zero, after.Allocated);
        var r = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse, new Claim(T(2), seen.Id, R(3500, 1), seen.Version));
        Assert.Equal(TransactionStatus.Committed, r.Status);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Coarse_detection_still_refuses_to_overcommit_a_node_whose_version_is_unchanged(CommitMode mode)
    {
        using var t = new TestCell();
        var seen = t.View(t.Nodes[0]);
        var r = t.Commit(mode, ConflictDetection.Coarse, new Claim(T(1), seen.Id, R(4001, 1), seen.Version));
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(r));
        Assert.Equal(0, t.Cell.AllocationCount);
    }

    [Fact]
    public void A_claim_that_exactly_fills_a_node_fits_in_every_dimension()
    {
        using var t = new TestCell(capacity: new ResourceVector(4000, 8192, 2, 100));
        var r = t.Commit(t.ClaimOn(t.Nodes[0], T(1), new ResourceVector(4000, 8192, 2, 100)));
        Assert.Equal(TransactionStatus.Committed, r.Status);
        var over = t.Commit(t.ClaimOn(t.Nodes[1], T(2), new ResourceVector(0, 0, 0, 101)));
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(over));
        var gpu = t.Commit(t.ClaimOn(t.Nodes[1], T(3), new ResourceVector(0, 0, 3)));
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(gpu));
    }

    [Theory]
    [InlineData(NodeStatus.Draining)]
    [InlineData(NodeStatus.Fenced)]
    public void A_status_round_trip_or_a_spec_change_bumps_the_node_version_so_coarse_claims_from_before_fail(NodeStatus status)
    {
        using var t = new TestCell();
        var seen0 = t.View(t.Nodes[0]);
        var seen1 = t.View(t.Nodes[1]);
        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(seen0.Id, status));
        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(seen0.Id, NodeStatus.Schedulable));
        Assert.Equal(NodeOpStatus.Ok, t.Cell.UpdateNode(seen1.Id, seen1.Spec.WithCapacity(R(8000, 8192))));

        var r = t.Commit(CommitMode.Incremental, ConflictDetection.Coarse,
            new Claim(T(1), seen0.Id, R(100, 1), seen0.Version),
            new Claim(T(2), seen1.Id, R(100, 1), seen1.Version));
        Assert.Equal([ClaimStatus.NodeVersionChanged, ClaimStatus.NodeVersionChanged], Statuses(r));
        var fine = t.Commit(CommitMode.Incremental, ConflictDetection.Fine,
            new Claim(T(1), seen0.Id, R(100, 1), seen0.Version),
            new Claim(T(2), seen1.Id, R(100, 1), seen1.Version));
        Assert.Equal(TransactionStatus.Committed, fine.Status);
    }

    [Fact]
    public void A_reused_transaction_object_reports_each_commit_separately()
    {
        using var t = new TestCell();
        var tx = new Transaction(t.Lease);
        tx.Add(t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        var first = t.Cell.Commit(tx).Detach();
        tx.Reset(t.Lease, CommitMode.AllOrNothing, ConflictDetection.Coarse);
        Assert.Equal(0, tx.Count);
        tx.Add(t.ClaimOn(t.Nodes[1], T(2), R(100, 1))).Add(t.ClaimOn(t.Nodes[1], T(1), R(100, 1)));
        var second = t.Cell.Commit(tx);

        Assert.Equal(TransactionStatus.Committed, first.Status);
        Assert.Equal([ClaimStatus.Applied], Statuses(first));
        Assert.Equal(TransactionStatus.Rejected, second.Status);
        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.TaskAlreadyBound], Statuses(second));
        Assert.False(t.Cell.TryGetAllocation(T(2), out _));
    }
}
