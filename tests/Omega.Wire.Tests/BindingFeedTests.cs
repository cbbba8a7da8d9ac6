using Omega.Cells;

namespace Omega.Wire.Tests;

/// <summary>The cell's binding listener seam: only published changes, in version order, with their versions.</summary>
public sealed class BindingFeedTests
{
    private sealed class Recorder : IBindingListener
    {
        public readonly List<(BindingChange Change, TaskId Task, long Generation, long Version)> Events = new();
        public readonly List<long> Completed = new();

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
            => Events.Add((change, allocation.Task, allocation.Generation, version));

        public void OnVersionComplete(long version) => Completed.Add(version);
    }

    [Fact]
    public void Listener_sees_applied_binds_releases_preemptions_and_removals_but_never_a_rolled_back_gang()
    {
        using var cell = new Cell();
        var n0 = cell.AddNode(new NodeSpec("n0", new ResourceVector(2000, 1 << 30)));
        var n1 = cell.AddNode(new NodeSpec("n1", new ResourceVector(2000, 1 << 30)));
        var rec = new Recorder();
        long attachedAt = cell.AddBindingListener(rec);
        Assert.Equal(cell.Version, attachedAt);
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var r = new ResourceVector(1000, 1 << 20);

        // Incremental, one claim rejected: only the applied one is reported, at the commit's version.
        var tx = new Transaction(lease).Add(new Claim(new TaskId(1, 0), n0, r, 0)).Add(new Claim(new TaskId(1, 1), n0, new ResourceVector(5000, 1), 0));
        var c1 = cell.Commit(tx);
        Assert.Equal(TransactionStatus.PartiallyCommitted, c1.Status);
        Assert.Equal([(BindingChange.Bound, new TaskId(1, 0), c1.CellVersion, c1.CellVersion)], rec.Events);
        Assert.Equal([c1.CellVersion], rec.Completed);

        // All-or-nothing that fails on its second claim: the first claim was applied then rolled back; nothing reported.
        var gang = new Transaction(lease, CommitMode.AllOrNothing).Add(new Claim(new TaskId(2, 0), n1, r, 0)).Add(new Claim(new TaskId(2, 1), n1, new ResourceVector(9999, 1), 0));
        Assert.Equal(TransactionStatus.Rejected, cell.Commit(gang).Status);
        Assert.Single(rec.Events);

        // Preemption: the victim's unbind and the new bind share one version, victim first.
        var pre = new Transaction(lease).Add(new Claim(new TaskId(3, 0), n0, new ResourceVector(2000, 1 << 20), 0, default, 5, [new TaskId(1, 0)]));
        var c3 = cell.Commit(pre);
        Assert.Equal(TransactionStatus.Committed, c3.Status);
        Assert.Equal((BindingChange.Unbound, new TaskId(1, 0), c1.CellVersion, c3.CellVersion), rec.Events[1]);
        Assert.Equal((BindingChange.Bound, new TaskId(3, 0), c3.CellVersion, c3.CellVersion), rec.Events[2]);

        // Release, then node removal.
        Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(3, 0)));
        Assert.Equal((BindingChange.Unbound, new TaskId(3, 0), c3.CellVersion, cell.Version), rec.Events[3]);
        var c5 = cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(4, 0), n1, r, 0)));
        Assert.Equal(NodeOpStatus.Ok, cell.RemoveNode(n1, out _));
        Assert.Equal((BindingChange.Unbound, new TaskId(4, 0), c5.CellVersion, cell.Version), rec.Events[^1]);

        // Versions never go backwards, and every reported version was completed.
        for (int i = 1; i < rec.Events.Count; i++) Assert.True(rec.Events[i].Version >= rec.Events[i - 1].Version);
        Assert.All(rec.Events, e => Assert.Contains(e.Version, rec.Completed));

        Assert.True(cell.RemoveBindingListener(rec));
        cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(5, 0), n0, r, 0)));
        Assert.Equal(6, rec.Events.Count);
        Assert.False(cell.RemoveBindingListener(rec));
    }
}
