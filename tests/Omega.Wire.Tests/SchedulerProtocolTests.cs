using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>An external scheduler process over the wire: lease, sync (full and delta), commit, conflicts, fencing.</summary>
public sealed class SchedulerProtocolTests
{
    private static async Task<(RawClient C, LeaseReply Lease)> SchedulerAsync(ServerFixture fx, string name, long durationMs = 60_000)
    {
        var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, name);
        await c.SendAsync(2, new AcquireLease { Name = name, DurationMs = durationMs });
        var lease = await c.ExpectAsync<LeaseReply>();
        Assert.Equal((byte)LeaseStatus.Granted, lease.Status);
        return (c, lease);
    }

    private static async Task<SyncReply> SyncAsync(RawClient c, long since)
    {
        await c.SendAsync(3, new Sync { Since = since });
        return await c.ExpectAsync<SyncReply>();
    }

    private static async Task<CommitReply> CommitAsync(RawClient c, LeaseReply lease, byte detection, params WireClaim[] claims)
    {
        await c.SendAsync(4, new Commit { SchedulerId = lease.SchedulerId, Token = lease.Token, Mode = 0, Detection = detection, Claims = claims });
        return await c.ExpectAsync<CommitReply>();
    }

    [Fact]
    public async Task External_scheduler_syncs_commits_conflicts_resyncs_and_succeeds()
    {
        await using var fx = ServerFixture.Start(seed: cell =>
        {
            for (int i = 0; i < 5; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 8L << 30), $"fd{i % 2}"));
        });
        var (c, lease) = await SchedulerAsync(fx, "external");
        using var _ = c;
        var full = await SyncAsync(c, 0);
        Assert.True(full.Full);
        Assert.Equal(5, full.Nodes.Count);
        Assert.Equal(-1, full.NextNode);
        var n2 = full.Nodes[2];
        Assert.Equal("n2", n2.Name);

        // Commit against the synced view (coarse: the node version must be unchanged).
        var r1 = await CommitAsync(c, lease, 1, new WireClaim(new TaskId(1, 0), n2.Id, new ResourceVector(1000, 1 << 30), n2.NodeVersion, 0, 0, null));
        Assert.Equal(TransactionStatus.Committed, r1.Status);
        Assert.Equal(fx.Cell.Version, r1.Version);

        // Another (in-process) scheduler changes n2 behind our back.
        var other = fx.Cell.AcquireLease("in-process", TimeSpan.FromMinutes(1)).Lease;
        fx.Cell.Snapshot().TryGetNode(new NodeId(n2.Id), out var now);
        Assert.True(fx.Cell.Commit(new Transaction(other).Add(new TaskId(2, 0), now, new ResourceVector(1000, 1 << 30))).IsCommitted);

        // Our next claim uses the stale node version: a conflict, reported with the version to re-sync to.
        var r2 = await CommitAsync(c, lease, 1, new WireClaim(new TaskId(1, 1), n2.Id, new ResourceVector(1000, 1 << 30), n2.NodeVersion + 1, 0, 0, null));
        Assert.Equal(TransactionStatus.Rejected, r2.Status);
        Assert.Equal(ClaimStatus.NodeVersionChanged, r2.ClaimStatuses.Span[0]);
        Assert.Equal(fx.Cell.Version, r2.Version);

        // Delta sync since our last commit: only n2 changed.
        var delta = await SyncAsync(c, r1.Version);
        Assert.False(delta.Full);
        var changed = Assert.Single(delta.Nodes);
        Assert.Equal(n2.Id, changed.Id);
        Assert.Equal(2, changed.TaskCount);
        Assert.Equal(new ResourceVector(2000, 2L << 30), changed.Allocated);

        var r3 = await CommitAsync(c, lease, 1, new WireClaim(new TaskId(1, 1), n2.Id, new ResourceVector(1000, 1 << 30), changed.NodeVersion, 0, 0, null));
        Assert.Equal(TransactionStatus.Committed, r3.Status);
        Assert.Equal(3, fx.Cell.AllocationCount);
        // Fine-grained overcommit is refused with the same reason code as the embedded API.
        var r4 = await CommitAsync(c, lease, 0, new WireClaim(new TaskId(1, 2), n2.Id, new ResourceVector(2000, 1 << 30), 0, 0, 0, null));
        Assert.Equal(ClaimStatus.InsufficientResources, r4.ClaimStatuses.Span[0]);
        Assert.Empty(fx.Cell.Audit());
    }

    [Fact]
    public async Task Stale_fencing_token_is_rejected_over_the_wire()
    {
        await using var fx = ServerFixture.Start(fakeTime: true, seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 8L << 30))));
        var (c, first) = await SchedulerAsync(fx, "sched", durationMs: 5_000);
        using var _ = c;
        fx.Fake!.Advance(TimeSpan.FromSeconds(6));
        // The lease expired: a successor (same identity) gets a newer token.
        await c.SendAsync(5, new AcquireLease { Name = "sched", DurationMs = 5_000 });
        var second = await c.ExpectAsync<LeaseReply>();
        Assert.Equal((byte)LeaseStatus.Granted, second.Status);
        Assert.True(second.Token > first.Token);
        long v = fx.Cell.Version;
        var r = await CommitAsync(c, first, 0, new WireClaim(new TaskId(3, 0), 0, new ResourceVector(10, 10), 0, 0, 0, null));
        Assert.Equal(TransactionStatus.StaleFencingToken, r.Status);
        Assert.Equal(ClaimStatus.NotEvaluated, r.ClaimStatuses.Span[0]);
        Assert.Equal(v, fx.Cell.Version);
        Assert.Equal(0, fx.Cell.AllocationCount);
        // Renewing with the stale token is refused too.
        await c.SendAsync(6, new RenewLease { SchedulerId = first.SchedulerId, Name = "sched", Token = first.Token, DurationMs = 5_000 });
        Assert.Equal((byte)LeaseStatus.Superseded, (await c.ExpectAsync<LeaseReply>()).Status);
        var ok = await CommitAsync(c, second, 0, new WireClaim(new TaskId(3, 0), 0, new ResourceVector(10, 10), 0, 0, 0, null));
        Assert.Equal(TransactionStatus.Committed, ok.Status);
    }

    [Fact]
    public async Task Submit_and_query_a_job_through_the_engine()
    {
        await using var fx = ServerFixture.Start(engine: true, seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 8L << 30))));
        using var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler);
        await c.SendAsync(2, new SubmitJob { JobId = 42, TaskCount = 2, PerTask = new ResourceVector(500, 1 << 20), Scheduler = "" });
        Assert.Equal(0, (await c.ExpectAsync<SubmitJobReply>()).Status);
        await c.SendAsync(3, new SubmitJob { JobId = 42, TaskCount = 2, PerTask = new ResourceVector(500, 1 << 20), Scheduler = "" });
        Assert.Equal((int)Omega.Scheduling.EnqueueStatus.DuplicateJob, (await c.ExpectAsync<SubmitJobReply>()).Status);
        JobStatusReply st = default;
        for (uint i = 0; i < 2000; i++)
        {
            await c.SendAsync(10 + i, new QueryJob { JobId = 42 });
            st = await c.ExpectAsync<JobStatusReply>();
            if (st.Bound == 2 && st.Phase == (int)Omega.Scheduling.JobPhase.Placed) break;
            await Task.Delay(5);
        }
        Assert.True(st.Found);
        Assert.Equal(2, st.Bound);
        Assert.Equal((int)Omega.Scheduling.JobPhase.Placed, st.Phase);
    }
}
