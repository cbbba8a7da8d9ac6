using Microsoft.Extensions.Time.Testing;

namespace Omega.Cells.Tests;

public class SmokeTests
{
    [Fact]
    public void Single_claim_commits_and_frees_on_release()
    {
        var time = new FakeTimeProvider();
        using var cell = new Cell(TestCommitPath.Apply(new CellOptions { Time = time }));
        var node = cell.AddNode(new NodeSpec("a", new ResourceVector(4000, 1 << 30)));
        var lease = cell.AcquireLease("batch", TimeSpan.FromSeconds(10)).Lease;
        var snap = cell.Snapshot();
        Assert.Equal(SnapshotRead.Ok, snap.TryGetNode(node, out var view));
        var tx = new Transaction(lease).Add(new TaskId(1, 0), view, new ResourceVector(1000, 1 << 20));
        var r = cell.Commit(tx);
        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.True(cell.TryGetAllocation(new TaskId(1, 0), out var a));
        Assert.Equal(r.Generation, a.Generation);
        // The old snapshot still shows the node empty; a new one shows the claim.
        snap.TryGetNode(node, out var before);
        Assert.Equal(ResourceVector.Zero, before.Allocated);
        cell.Snapshot().TryGetNode(node, out var after);
        Assert.Equal(1000, after.Allocated.CpuMillis);
        Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(1, 0)));
        cell.Snapshot().TryGetNode(node, out var freed);
        Assert.Equal(ResourceVector.Zero, freed.Allocated);
        Assert.Empty(cell.Audit());
    }
}
