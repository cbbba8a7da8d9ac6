using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Snapshot isolation, the bounded version history per node (TooOld) and table growth.</summary>
public sealed class SnapshotTests
{
    [Fact]
    public void A_snapshot_keeps_showing_its_version_while_commits_releases_and_node_changes_happen()
    {
        using var t = new TestCell(nodes: 3);
        t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1000, 1)));
        var snap = t.Cell.Snapshot();
        Assert.Equal(t.Cell.Version, snap.Version);
        Assert.Equal(3, snap.NodeCount);
        var before = t.Nodes.Select(n => { Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(n, out var v)); return v; }).ToArray();

        t.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine, t.ClaimOn(t.Nodes[0], T(2), R(1000, 1)), t.ClaimOn(t.Nodes[1], T(3), R(1000, 1)));
        t.Cell.Release(T(1));
        t.Cell.SetNodeStatus(t.Nodes[2], NodeStatus.Draining);
        t.Cell.UpdateNode(t.Nodes[1], new NodeSpec("node-1", R(9000, 9000)));

        Assert.True(t.Cell.Version > snap.Version);
        for (int i = 0; i < before.Length; i++)
        {
            Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(t.Nodes[i], out var now));
            Assert.Equal(before[i], now);
        }
        Assert.Equal(R(1000, 1), t.View(t.Nodes[0]).Allocated);
        Assert.Equal(NodeStatus.Draining, t.View(t.Nodes[2]).Status);
        Assert.Equal(R(9000, 9000), t.View(t.Nodes[1]).Capacity);
    }

    [Fact]
    public void A_snapshot_is_a_small_value_that_can_be_copied_and_read_again()
    {
        using var t = new TestCell();
        var a = t.Cell.Snapshot();
        var b = a;
        t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(1000, 1)));
        Assert.Equal(SnapshotRead.Ok, b.TryGetNode(t.Nodes[0], out var v));
        Assert.Equal(0, v.TaskCount);
        Assert.Equal(a.Version, b.Version);
    }

    [Fact]
    public void A_node_changed_as_many_times_as_the_history_depth_since_the_snapshot_reads_as_too_old()
    {
        using var t = new TestCell();
        var snap = t.Cell.Snapshot();
        Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(t.Nodes[0], out var original));

        for (int i = 0; i < NodeSlot.Depth - 1; i++) t.Commit(t.ClaimOn(t.Nodes[0], T(i + 1), R(10, 1)));
        Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(t.Nodes[0], out var stillOld));
        Assert.Equal(original, stillOld);

        t.Commit(t.ClaimOn(t.Nodes[0], T(100), R(10, 1)));   // the Depth-th change overwrites the version the snapshot needs
        Assert.Equal(SnapshotRead.TooOld, snap.TryGetNode(t.Nodes[0], out var none));
        Assert.Equal(default, none);
        // Other nodes are unaffected, and a fresh snapshot reads the node.
        Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(t.Nodes[1], out _));
        Assert.Equal(NodeSlot.Depth, t.View(t.Nodes[0]).TaskCount);
    }

    [Fact]
    public void Releases_also_use_up_the_history_of_a_node()
    {
        using var t = new TestCell();
        t.Commit(t.ClaimOn(t.Nodes[0], T(1), R(10, 1)), t.ClaimOn(t.Nodes[0], T(2), R(10, 1)), t.ClaimOn(t.Nodes[0], T(3), R(10, 1)),
            t.ClaimOn(t.Nodes[0], T(4), R(10, 1)));
        var snap = t.Cell.Snapshot();
        for (int i = 1; i <= NodeSlot.Depth; i++) Assert.Equal(ReleaseStatus.Released, t.Cell.Release(T(i)));
        Assert.Equal(SnapshotRead.TooOld, snap.TryGetNode(t.Nodes[0], out _));
        Assert.Equal(0, t.View(t.Nodes[0]).TaskCount);
    }

    [Fact]
    public void A_node_added_after_the_snapshot_is_not_found_in_it()
    {
        using var t = new TestCell();
        var snap = t.Cell.Snapshot();
        var added = t.Cell.AddNode(new NodeSpec("late", DefaultCapacity));
        Assert.Equal(SnapshotRead.NotFound, snap.TryGetNode(added, out _));
        Assert.Equal(SnapshotRead.NotFound, snap.TryGetNode(new NodeId(-1), out _));
        Assert.Equal(SnapshotRead.NotFound, snap.TryGetNode(new NodeId(1000), out _));
        Assert.Equal(2, snap.NodeCount);
        Assert.Equal(SnapshotRead.Ok, t.Cell.Snapshot().TryGetNode(added, out var view));
        Assert.Equal("late", view.Spec.Name);
        Assert.Equal(1, view.Version);
    }

    [Fact]
    public void Nodes_added_beyond_the_initial_capacity_are_readable_from_old_and_new_snapshots()
    {
        using var t = new TestCell(nodes: 0, configure: o => o.InitialNodeCapacity = 16);
        for (int i = 0; i < 16; i++) t.Cell.AddNode(new NodeSpec($"a{i}", R(1000, 10)));
        t.Commit(t.ClaimOn(new NodeId(3), T(1), R(100, 1)));
        var beforeGrowth = t.Cell.Snapshot();

        for (int i = 0; i < 50; i++) t.Cell.AddNode(new NodeSpec($"b{i}", R(2000, 20)));   // grows the table (twice)
        t.Commit(t.ClaimOn(new NodeId(3), T(2), R(100, 1)), t.ClaimOn(new NodeId(60), T(3), R(100, 1)));
        var afterGrowth = t.Cell.Snapshot();

        Assert.Equal(16, beforeGrowth.NodeCount);
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(SnapshotRead.Ok, beforeGrowth.TryGetNode(new NodeId(i), out var v));
            Assert.Equal($"a{i}", v.Spec.Name);
            Assert.Equal(i == 3 ? 1 : 0, v.TaskCount);
        }
        Assert.Equal(SnapshotRead.NotFound, beforeGrowth.TryGetNode(new NodeId(16), out _));

        Assert.Equal(66, afterGrowth.NodeCount);
        for (int i = 0; i < 66; i++)
        {
            Assert.Equal(SnapshotRead.Ok, afterGrowth.TryGetNode(new NodeId(i), out var v));
            Assert.Equal(i < 16 ? $"a{i}" : $"b{i - 16}", v.Spec.Name);
            Assert.Equal(i == 3 ? 2 : i == 60 ? 1 : 0, v.TaskCount);
        }
        Assert.True(t.Cell.TryGetNodeId("b49", out var last));
        Assert.Equal(65, last.Value);
        t.AssertHealthy();
    }

    [Fact]
    public void A_removed_node_is_not_found_in_new_snapshots_but_still_readable_in_older_ones()
    {
        using var t = new TestCell();
        var old = t.Cell.Snapshot();
        t.Cell.RemoveNode(t.Nodes[1], out _);
        Assert.Equal(SnapshotRead.Ok, old.TryGetNode(t.Nodes[1], out var v));
        Assert.Equal(NodeStatus.Schedulable, v.Status);
        Assert.Equal(SnapshotRead.NotFound, t.Cell.Snapshot().TryGetNode(t.Nodes[1], out _));
        Assert.Equal(2, t.Cell.Snapshot().NodeCount);   // ids are dense and never reused
    }

    [Fact]
    public void A_rejected_transaction_or_a_lease_change_publishes_no_node_version()
    {
        using var t = new TestCell();
        var snap = t.Cell.Snapshot();
        for (int i = 0; i < NodeSlot.Depth + 2; i++)
        {
            t.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine, t.ClaimOn(t.Nodes[0], T(1), R(10, 1)), t.ClaimOn(t.Nodes[0], T(2), R(9999, 1)));
            t.Acquire($"s{i}");
        }
        Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(t.Nodes[0], out _));
    }
}
