using Omega.Cells;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 10 over TCP: overflowing and invalid requests, unknown tenants and borrowed idempotency keys each get a
/// documented typed answer, nothing is overcommitted or allocated by a tenant number, and the server keeps serving.
/// </summary>
public sealed class AdmissionWireTests
{
    private static readonly ResourceVector NodeCapacity = new(4000, 8L << 30);

    private static async Task<RawClient> SchedulerAsync(ServerFixture fx, string name = "tool")
    {
        var c = await RawClient.ConnectAsync(fx.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, name);
        return c;
    }

    private static async Task<ErrorCode> ErrorOf(RawClient c)
    {
        var f = await c.ReadFrameAsync();
        Assert.NotNull(f);
        Assert.Equal(MessageType.Error, f.Value.Type);
        Assert.True(Codec.TryDecode<ErrorMessage>(new System.Buffers.ReadOnlySequence<byte>(f.Value.Body), out var e, out var err), err);
        return e.Code;
    }

    [Fact]
    public async Task SubmitJob_with_overflowing_invalid_or_oversized_resources_gets_a_typed_error_and_nothing_is_queued()
    {
        await using var fx = ServerFixture.Start(engine: true, seed: cell => cell.AddNode(new NodeSpec("n0", NodeCapacity)));
        using var c = await SchedulerAsync(fx);
        // 1e12 GiB per task (what `omega submit --memory-gib 1e12` sent: the cast saturated at long.MaxValue).
        await c.SendAsync(2, new SubmitJob { JobId = 1, TaskCount = 1, PerTask = new ResourceVector(1000, long.MaxValue), Scheduler = "" });
        Assert.Equal(ErrorCode.InvalidResources, await ErrorOf(c));
        await c.SendAsync(3, new SubmitJob { JobId = 2, TaskCount = 1, PerTask = new ResourceVector(-1, 1), Scheduler = "" });
        Assert.Equal(ErrorCode.InvalidResources, await ErrorOf(c));
        await c.SendAsync(4, new SubmitJob { JobId = 3, TaskCount = 1, PerTask = ResourceVector.Zero, Scheduler = "" });
        Assert.Equal(ErrorCode.InvalidResources, await ErrorOf(c));
        // Valid, but larger than any node: refused instead of parked forever.
        await c.SendAsync(5, new SubmitJob { JobId = 4, TaskCount = 1, PerTask = new ResourceVector(1000, 1L << 40), Scheduler = "" });
        Assert.Equal(ErrorCode.RequestExceedsLargestNode, await ErrorOf(c));
        Assert.Equal(0, fx.Engine!.JobCount);
        // The connection is still usable and a sane job is placed.
        await c.SendAsync(6, new SubmitJob { JobId = 5, TaskCount = 1, PerTask = new ResourceVector(1000, 1 << 30), Scheduler = "" });
        Assert.Equal(0, (await c.ExpectAsync<SubmitJobReply>()).Status);
        await Wait.UntilAsync(() => fx.Cell.AllocationCount == 1, "the sane job is bound");
        Assert.Empty(fx.Cell.Audit());
    }

    [Fact]
    public async Task Commit_claims_that_would_overflow_or_name_an_unknown_tenant_are_refused_per_claim()
    {
        await using var fx = ServerFixture.Start(seed: cell => cell.AddNode(new NodeSpec("n0", NodeCapacity)));
        using var c = await SchedulerAsync(fx, "external");
        await c.SendAsync(2, new AcquireLease { Name = "external", DurationMs = 60_000 });
        var lease = await c.ExpectAsync<LeaseReply>();
        await c.SendAsync(3, new Commit
        {
            SchedulerId = lease.SchedulerId, Token = lease.Token,
            Claims =
            [
                new WireClaim(new TaskId(1, 0), 0, new ResourceVector(1000, 1 << 30), 0, 0, 0, null),
                new WireClaim(new TaskId(1, 1), 0, new ResourceVector(1, long.MaxValue - 10), 0, 0, 0, null),
                new WireClaim(new TaskId(1, 2), 0, new ResourceVector(1, 1), 0, 2_000_000_000, 0, null),
                new WireClaim(new TaskId(1, 3), 0, new ResourceVector(1, ResourceVector.MaxQuantity), 0, 0, 0, null),
            ],
        });
        var r = await c.ExpectAsync<CommitReply>();
        Assert.Equal([ClaimStatus.Applied, ClaimStatus.InvalidClaim, ClaimStatus.UnknownTenant, ClaimStatus.InsufficientResources], r.ClaimStatuses.ToArray());
        fx.Cell.Snapshot().TryGetNode(new NodeId(0), out var n0);
        Assert.Equal(new ResourceVector(1000, 1 << 30), n0.Allocated);
        Assert.Empty(fx.Cell.Audit());
    }

    [Fact]
    public async Task A_tenant_must_be_created_before_jobs_name_it_and_a_huge_tenant_number_is_just_an_unknown_name()
    {
        await using var fx = ServerFixture.Start(engine: true, seed: cell => cell.AddNode(new NodeSpec("n0", NodeCapacity)));
        using var c = await SchedulerAsync(fx);
        long heapBefore = GC.GetTotalMemory(forceFullCollection: false);
        await c.SendAsync(2, new SubmitJob { JobId = 1, Tenant = "2000000000", TaskCount = 1, PerTask = new ResourceVector(100, 1 << 20), Scheduler = "" });
        Assert.Equal(ErrorCode.UnknownTenant, await ErrorOf(c));
        Assert.True(GC.GetTotalMemory(forceFullCollection: false) - heapBefore < 256L << 20, "an unknown tenant must not allocate per-tenant state");

        await c.SendAsync(3, new Operate { Kind = OperateKind.CreateTenant, Target = "batch-team", Quota = new ResourceVector(2000, 4L << 30) });
        var created = await c.ExpectAsync<OperateReply>();
        Assert.Equal(OperateStatus.Ok, created.Status);
        Assert.Equal(1, created.TenantId);
        await c.SendAsync(4, new Operate { Kind = OperateKind.CreateTenant, Target = "batch-team" });
        Assert.Equal(ErrorCode.TenantExists, await ErrorOf(c));
        await c.SendAsync(5, new Operate { Kind = OperateKind.CreateTenant, Target = "no spaces allowed" });
        Assert.Equal(ErrorCode.InvalidRequest, await ErrorOf(c));

        await c.SendAsync(6, new SubmitJob { JobId = 2, Tenant = "batch-team", TaskCount = 3, PerTask = new ResourceVector(1000, 1 << 20), Scheduler = "" });
        Assert.Equal(0, (await c.ExpectAsync<SubmitJobReply>()).Status);
        // Quota 2 cores: two tasks bind, the third parks on the quota.
        await Wait.UntilAsync(() => fx.Cell.AllocationCount == 2, "two tasks within the tenant's quota");
        Assert.Equal(new ResourceVector(2000, 2 << 20), fx.Cell.GetTenantUsage(new TenantId(1)).Usage);

        await c.SendAsync(7, new Inspect { Target = InspectTarget.Tenants, Limit = 10 });
        var list = await c.ExpectAsync<InspectReply>();
        Assert.Equal(2, list.Total);
        Assert.StartsWith("default t0", list.Lines[0], StringComparison.Ordinal);
        Assert.StartsWith("batch-team t1", list.Lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tenant_creation_is_acknowledged_only_once_durable()
    {
        var publisher = new ManualPublisher();
        await using var fx = ServerFixture.Start(o => o.Publisher = publisher);
        using var c = await SchedulerAsync(fx);
        await c.SendAsync(2, new Operate { Kind = OperateKind.CreateTenant, Target = "late" });
        await Wait.UntilAsync(() => fx.Cell.TenantCount == 2, "the tenant is created in memory");
        // A later request is answered first: the creation's reply is held while its version is not durable.
        await c.SendAsync(3, new Inspect { Target = InspectTarget.Tenants, Limit = 10 });
        var first = await c.ReadFrameAsync();
        Assert.Equal((MessageType.InspectReply, 3u), (first!.Value.Type, first.Value.Rid));
        publisher.Version = fx.Cell.Version;
        fx.Server.PumpBindings();
        var reply = await c.ExpectAsync<OperateReply>();
        Assert.Equal(OperateStatus.Ok, reply.Status);
        Assert.Equal(1, reply.TenantId);
    }

    [Fact]
    public async Task Scheduler_B_replaying_scheduler_As_idempotency_key_is_not_told_As_result()
    {
        await using var fx = ServerFixture.Start(seed: cell => cell.AddNode(new NodeSpec("n0", NodeCapacity)));
        using var a = await SchedulerAsync(fx, "a");
        using var b = await SchedulerAsync(fx, "b");
        await a.SendAsync(2, new AcquireLease { Name = "a", DurationMs = 60_000 });
        var la = await a.ExpectAsync<LeaseReply>();
        await b.SendAsync(2, new AcquireLease { Name = "b", DurationMs = 60_000 });
        var lb = await b.ExpectAsync<LeaseReply>();
        var claim = new WireClaim(new TaskId(9, 0), 0, new ResourceVector(1000, 1 << 20), 0, 0, 0, null);
        await a.SendAsync(3, new Commit { SchedulerId = la.SchedulerId, Token = la.Token, KeyHigh = 5, KeyLow = 5, Claims = [claim] });
        Assert.Equal(TransactionStatus.Committed, (await a.ExpectAsync<CommitReply>()).Status);
        await b.SendAsync(3, new Commit { SchedulerId = lb.SchedulerId, Token = lb.Token, KeyHigh = 5, KeyLow = 5, Claims = [claim] });
        var rb = await b.ExpectAsync<CommitReply>();
        Assert.False(rb.Replayed);
        Assert.Equal(TransactionStatus.Rejected, rb.Status);
        Assert.Equal(ClaimStatus.TaskAlreadyBound, rb.ClaimStatuses.Span[0]);
        // A's own retry is still deduplicated.
        await a.SendAsync(4, new Commit { SchedulerId = la.SchedulerId, Token = la.Token, KeyHigh = 5, KeyLow = 5, Claims = [claim] });
        var ra = await a.ExpectAsync<CommitReply>();
        Assert.True(ra.Replayed);
        Assert.Equal(TransactionStatus.Committed, ra.Status);
    }

    private sealed class ManualPublisher : Omega.Server.IPublishableVersion
    {
        public long Version;

        public long PublishableVersion => Volatile.Read(ref Version);

        // The tests here hold back only the version gate (tenant creation); sequence-gated replies go at once.
        public long PublishableSequence => long.MaxValue;
    }
}
