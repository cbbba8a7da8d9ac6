using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Node lifecycle (add, update, status, remove), claims against unusable nodes, double binding and release.</summary>
public sealed class NodeTests
{
    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void A_claim_on_a_node_id_that_was_never_added_is_node_unknown(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        var r = t.Commit(mode, detection,
            new Claim(T(1), new NodeId(2), R(1, 1), 1),
            new Claim(T(2), new NodeId(-1), R(1, 1), 1),
            new Claim(T(3), new NodeId(int.MaxValue), R(1, 1), 1));
        Assert.Equal(TransactionStatus.Rejected, r.Status);
        Assert.Equal(ClaimStatus.NodeUnknown, r[0]);
        if (mode == CommitMode.Incremental) Assert.Equal([ClaimStatus.NodeUnknown, ClaimStatus.NodeUnknown, ClaimStatus.NodeUnknown], Statuses(r));
        else Assert.Equal([ClaimStatus.NodeUnknown, ClaimStatus.NotEvaluated, ClaimStatus.NotEvaluated], Statuses(r));
    }

    [Theory]
    [InlineData(NodeStatus.Fenced, ClaimStatus.NodeFenced)]
    [InlineData(NodeStatus.Draining, ClaimStatus.NodeDraining)]
    [InlineData(NodeStatus.Down, ClaimStatus.NodeDown)]
    public void An_unschedulable_node_refuses_new_claims_but_keeps_and_releases_its_bindings(NodeStatus status, ClaimStatus expected)
    {
        using var t = new TestCell();
        var node = t.Nodes[0];
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(node, T(1), R(1000, 1))).Status);
        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(node, status));
        var view = t.View(node);
        Assert.Equal(status, view.Status);
        Assert.False(view.IsSchedulable);
        Assert.Equal(1, view.TaskCount);

        foreach (var detection in new[] { ConflictDetection.Fine, ConflictDetection.Coarse })
        {
            var r = t.Commit(CommitMode.Incremental, detection, t.ClaimOn(node, T(2), R(1, 1)));
            Assert.Equal([expected], Statuses(r));
        }
        Assert.True(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1)));

        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(node, NodeStatus.Schedulable));
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(node, T(2), R(1, 1))).Status);
    }

    [Fact]
    public void Setting_the_status_a_node_already_has_changes_nothing()
    {
        using var t = new TestCell();
        var before = t.View(t.Nodes[0]);
        long version = t.Cell.Version;
        Assert.Equal(NodeOpStatus.Ok, t.Cell.SetNodeStatus(t.Nodes[0], NodeStatus.Schedulable));
        Assert.Equal(before, t.View(t.Nodes[0]));
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.SetNodeStatus(t.Nodes[0], NodeStatus.Removed));
        Assert.Equal(NodeOpStatus.UnknownNode, t.Cell.SetNodeStatus(new NodeId(9), NodeStatus.Fenced));
    }

    [Fact]
    public void Removing_a_node_releases_its_bindings_hides_it_and_frees_its_name()
    {
        using var t = new TestCell();
        var node = t.Nodes[0];
        Assert.Equal(TransactionStatus.Committed, t.Commit(
            t.ClaimOn(node, T(1), R(1000, 1), tenant: 1), t.ClaimOn(node, T(2), R(500, 1), tenant: 1), t.ClaimOn(t.Nodes[1], T(3), R(500, 1), tenant: 1)).Status);
        var before = t.Cell.Snapshot();

        Assert.Equal(NodeOpStatus.Ok, t.Cell.RemoveNode(node, out var released));

        Assert.Equal([T(1), T(2)], released.Select(a => a.Task).OrderBy(x => x.Job.Value));
        Assert.All(released, a => Assert.Equal(node, a.Node));
        Assert.False(t.Cell.TryGetAllocation(T(1), out _));
        Assert.Equal(ReleaseStatus.NotBound, t.Cell.Release(T(2)));
        Assert.True(t.Cell.TryGetAllocation(T(3), out _));
        Assert.Equal(R(500, 1), t.Cell.GetTenantUsage(new TenantId(1)).Usage);
        Assert.Empty(t.Cell.GetAllocationsOnNode(node));
        Assert.Equal(SnapshotRead.NotFound, t.Cell.Snapshot().TryGetNode(node, out _));
        Assert.Equal(SnapshotRead.Ok, before.TryGetNode(node, out var old));  // an older snapshot still sees it
        Assert.Equal(2, old.TaskCount);
        Assert.False(t.Cell.TryGetNodeId("node-0", out _));

        Assert.Equal([ClaimStatus.NodeUnknown], Statuses(t.Commit(new Claim(T(4), node, R(1, 1), 99))));
        Assert.Equal(NodeOpStatus.UnknownNode, t.Cell.RemoveNode(node, out _));
        Assert.Equal(NodeOpStatus.UnknownNode, t.Cell.UpdateNode(node, new NodeSpec("node-0", R(1, 1))));
        Assert.Equal(NodeOpStatus.UnknownNode, t.Cell.SetNodeStatus(node, NodeStatus.Schedulable));

        var again = t.Cell.AddNode(new NodeSpec("node-0", DefaultCapacity));
        Assert.NotEqual(node, again);                          // ids are never reused
        Assert.True(t.Cell.TryGetNodeId("node-0", out var byName));
        Assert.Equal(again, byName);
        Assert.Equal(3, t.Cell.NodeCount);
        t.AssertHealthy();
    }

    [Fact]
    public void Adding_a_node_refuses_a_duplicate_name_a_negative_capacity_and_the_removed_status()
    {
        using var t = new TestCell(nodes: 1);
        long version = t.Cell.Version;
        Assert.Equal(NodeOpStatus.DuplicateName, t.Cell.AddNode(new NodeSpec("node-0", R(1, 1)), out _));
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.AddNode(new NodeSpec("neg", R(-1, 1)), out _));
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.AddNode(new NodeSpec("gone", R(1, 1)), out _, NodeStatus.Removed));
        Assert.Equal(version, t.Cell.Version);
        Assert.Equal(1, t.Cell.NodeCount);
        Assert.Throws<InvalidOperationException>(() => t.Cell.AddNode(new NodeSpec("node-0", R(1, 1))));

        Assert.Equal(NodeOpStatus.Ok, t.Cell.AddNode(new NodeSpec("fenced", R(1, 1)), out var id, NodeStatus.Fenced));
        Assert.Equal(NodeStatus.Fenced, t.View(id).Status);
        Assert.Equal(1, t.View(id).Version);
    }

    [Fact]
    public void Updating_a_node_below_what_is_allocated_is_refused_and_changes_nothing()
    {
        using var t = new TestCell();
        var node = t.Nodes[0];
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(node, T(1), R(3000, 100))).Status);
        var before = t.View(node);
        long version = t.Cell.Version;

        Assert.Equal(NodeOpStatus.CapacityBelowAllocated, t.Cell.UpdateNode(node, before.Spec.WithCapacity(R(2999, 8192))));
        Assert.Equal(NodeOpStatus.CapacityBelowAllocated, t.Cell.UpdateNode(node, before.Spec.WithCapacity(R(4000, 99))));
        Assert.Equal(before, t.View(node));
        Assert.Equal(version, t.Cell.Version);

        Assert.Equal(NodeOpStatus.Ok, t.Cell.UpdateNode(node, before.Spec.WithCapacity(R(3000, 100))));   // exactly full is fine
        var after = t.View(node);
        Assert.Equal(R(3000, 100), after.Capacity);
        Assert.Equal(ResourceVector.Zero, after.Free);
        Assert.False(after.Fits(R(1, 0)));
        Assert.Equal(before.Version + 1, after.Version);
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(t.Commit(t.ClaimOn(node, T(2), R(1, 0)))));
        t.AssertHealthy();
    }

    [Fact]
    public void Updating_a_node_may_not_rename_it_or_set_a_negative_capacity()
    {
        using var t = new TestCell();
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.UpdateNode(t.Nodes[0], new NodeSpec("other-name", R(1, 1))));
        Assert.Equal(NodeOpStatus.Invalid, t.Cell.UpdateNode(t.Nodes[0], new NodeSpec("node-0", R(1, -1))));
        Assert.Equal(NodeOpStatus.UnknownNode, t.Cell.UpdateNode(new NodeId(5), new NodeSpec("node-5", R(1, 1))));
        Assert.Equal(DefaultCapacity, t.View(t.Nodes[0]).Capacity);
    }

    [Fact]
    public void Updating_a_node_keeps_its_bindings_and_its_labels_become_visible_in_new_snapshots()
    {
        using var t = new TestCell();
        Assert.Equal(TransactionStatus.Committed, t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1000, 1))).Status);
        var labels = new Dictionary<string, string> { ["zone"] = "b" };
        Assert.Equal(NodeOpStatus.Ok, t.Cell.UpdateNode(t.Nodes[0], new NodeSpec("node-0", R(8000, 8192), "rack-9", labels, ["gpu"])));
        var view = t.View(t.Nodes[0]);
        Assert.Equal("rack-9", view.Spec.FailureDomain);
        Assert.Equal("b", view.Spec.Labels["zone"]);
        Assert.Equal(["gpu"], view.Spec.Taints);
        Assert.Equal(R(1000, 1), view.Allocated);
        Assert.Equal(R(7000, 8191), view.Free);
    }

    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void The_same_task_claimed_twice_in_one_transaction_binds_once(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        var r = t.Commit(mode, detection, t.ClaimOn(t.Nodes[0], T(1), R(100, 1)), t.ClaimOn(t.Nodes[1], T(1), R(100, 1)));
        if (mode == CommitMode.Incremental)
        {
            Assert.Equal(TransactionStatus.PartiallyCommitted, r.Status);
            Assert.Equal([ClaimStatus.Applied, ClaimStatus.TaskAlreadyBound], Statuses(r));
            Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
            Assert.Equal(t.Nodes[0], a.Node);
        }
        else
        {
            Assert.Equal(TransactionStatus.Rejected, r.Status);
            Assert.Equal([ClaimStatus.Aborted, ClaimStatus.TaskAlreadyBound], Statuses(r));
            Assert.Equal(0, t.Cell.AllocationCount);
        }
        t.AssertHealthy();
    }

    [Theory]
    [MemberData(nameof(CommitModeTests.AllCombinations), MemberType = typeof(CommitModeTests))]
    public void A_task_bound_by_another_scheduler_cannot_be_bound_again(CommitMode mode, ConflictDetection detection)
    {
        using var t = new TestCell();
        var other = t.Acquire("other");
        Assert.Equal(TransactionStatus.Committed, t.Commit(other, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None,
            t.ClaimOn(t.Nodes[1], T(1), R(100, 1))).Status);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var original));

        var r = t.Commit(mode, detection, t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.Equal([ClaimStatus.TaskAlreadyBound], Statuses(r));
        Assert.True(r[0].IsConflict());
        Assert.True(t.Cell.TryGetAllocation(T(1), out var still));
        Assert.Equal(original, still);
        Assert.Equal(1, t.Cell.AllocationCount);
    }

    [Fact]
    public void A_task_bound_again_after_release_gets_a_strictly_larger_generation()
    {
        using var t = new TestCell();
        var r1 = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1), r1.Generation));
        var r2 = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
        Assert.True(a.Generation > r1.Generation);
        Assert.Equal(r2.Generation, a.Generation);
    }

    [Fact]
    public void A_release_naming_an_older_generation_leaves_the_newer_binding_alone()
    {
        using var t = new TestCell();
        var r1 = t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(100, 1)));
        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1)));
        var r2 = t.Commit(t.ClaimOn(t.Nodes[1], T(1), R(200, 1)));
        long version = t.Cell.Version;

        Assert.Equal(ReleaseStatus.GenerationMismatch, t.Cell.Release(T(1), r1.Generation));   // a late report about the first binding
        Assert.Equal(version, t.Cell.Version);
        Assert.True(t.Cell.TryGetAllocation(T(1), out var a));
        Assert.Equal(r2.Generation, a.Generation);
        Assert.Equal(R(200, 1), t.View(t.Nodes[1]).Allocated);

        Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(1), r2.Generation));
        Assert.Equal(ReleaseStatus.NotBound, t.Cell.Release(T(1), r2.Generation));
        Assert.Equal(ReleaseStatus.NotBound, t.Cell.Release(T(77)));
        Assert.Equal(1, t.Cell.Counters.Releases(ReleaseStatus.GenerationMismatch));
        Assert.Equal(2, t.Cell.Counters.Releases(ReleaseStatus.NotBound));
        t.AssertHealthy();
    }

    [Fact]
    public void Allocations_on_a_node_are_listed_per_node()
    {
        using var t = new TestCell();
        t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1, 1)), t.ClaimOn(t.Nodes[0], T(2), R(1, 1)), t.ClaimOn(t.Nodes[1], T(3), R(1, 1)));
        Assert.Equal(2, t.Cell.GetAllocationsOnNode(t.Nodes[0]).Count);
        Assert.Single(t.Cell.GetAllocationsOnNode(t.Nodes[1]));
        Assert.Empty(t.Cell.GetAllocationsOnNode(new NodeId(9)));
        Assert.Equal(3, t.Cell.GetAllocations().Count);
    }
}
