using Xunit.Abstractions;
using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Reservations (issue 12): capacity held before binding, fenced, idempotent, consumed atomically by a bind.</summary>
public sealed class ReservationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(10);

    private static Claim Reserve(TestCell c, NodeId node, TaskId task, ResourceVector r, int tenant = 0, TimeSpan? ttl = null)
        => c.ClaimOn(node, task, r, tenant) with { Kind = ClaimKind.Reserve, Ttl = ttl ?? Ttl };

    private static Claim BindReserved(TestCell c, NodeId node, TaskId task, ResourceVector r, int tenant = 0)
        => c.ClaimOn(node, task, r, tenant) with { Kind = ClaimKind.BindReserved };

    [Fact]
    public void Reserve_holds_capacity_and_bind_consumes_it_in_the_same_commit()
    {
        using var c = new TestCell(nodes: 2);
        var n0 = c.Nodes[0];
        var r = c.Commit(Reserve(c, n0, T(1), R(3000, 1000), tenant: 1));
        Assert.Equal(TransactionStatus.Committed, r.Status);
        Assert.True(c.Cell.TryGetReservation(T(1), out var held));
        Assert.Equal(n0, held.Node);
        Assert.Equal(r.CellVersion, held.Generation);
        Assert.Equal(c.Time.GetUtcNow() + Ttl, held.ExpiresAt);
        // The hold counts against the node (snapshot readers see it) and the tenant's usage.
        Assert.Equal(R(3000, 1000), c.View(n0).Allocated);
        Assert.Equal(R(3000, 1000), c.Cell.GetTenantUsage(new TenantId(1)).Usage);
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(c.Commit(c.ClaimOn(n0, T(2), R(2000)))));
        // A reserved task is bound only through its reservation, on its node, for its tenant.
        Assert.Equal([ClaimStatus.TaskReserved], Statuses(c.Commit(c.ClaimOn(n0, T(1), R(3000, 1000), tenant: 1))));
        Assert.Equal([ClaimStatus.TaskReserved], Statuses(c.Commit(Reserve(c, c.Nodes[1], T(1), R(1000), tenant: 1))));
        Assert.Equal([ClaimStatus.ReservationMismatch], Statuses(c.Commit(BindReserved(c, c.Nodes[1], T(1), R(3000, 1000), tenant: 1))));
        Assert.Equal([ClaimStatus.ReservationMismatch], Statuses(c.Commit(BindReserved(c, n0, T(1), R(3000, 1000), tenant: 2))));
        Assert.Equal([ClaimStatus.ReservationNotFound], Statuses(c.Commit(BindReserved(c, n0, T(9), R(100)))));
        // The bind may differ from the hold (here larger); the check frees the hold first, so 3500 fits on 4000.
        var b = c.Commit(BindReserved(c, n0, T(1), R(3500, 1000), tenant: 1));
        Assert.Equal(TransactionStatus.Committed, b.Status);
        Assert.False(c.Cell.TryGetReservation(T(1), out _));
        Assert.True(c.Cell.TryGetAllocation(T(1), out var a));
        Assert.Equal(b.CellVersion, a.Generation);
        Assert.Equal(R(3500, 1000), c.View(n0).Allocated);
        Assert.Equal(1, c.View(n0).TaskCount);
        Assert.Equal(R(3500, 1000), c.Cell.GetTenantUsage(new TenantId(1)).Usage);
        c.AssertHealthy();
    }

    [Fact]
    public void Malformed_reserve_claims_are_invalid_and_the_table_is_bounded()
    {
        using var c = new TestCell(nodes: 1, configure: o => o.MaxReservations = 2);
        var n0 = c.Nodes[0];
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(c.Commit(Reserve(c, n0, T(1), R(10), ttl: TimeSpan.Zero))));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(c.Commit(Reserve(c, n0, T(1), R(10), ttl: TimeSpan.FromDays(2)))));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(c.Commit(Reserve(c, n0, T(1), R(10)) with { Victims = [T(5)] })));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(c.Commit(c.ClaimOn(n0, T(1), R(10)) with { Ttl = Ttl })));
        Assert.Equal([ClaimStatus.InvalidClaim], Statuses(c.Commit(c.ClaimOn(n0, T(1), R(10)) with { Kind = (ClaimKind)7 })));
        Assert.Equal(TransactionStatus.Committed, c.Commit(Reserve(c, n0, T(1), R(10)), Reserve(c, n0, T(2), R(10))).Status);
        Assert.Equal([ClaimStatus.ReservationLimitReached], Statuses(c.Commit(Reserve(c, n0, T(3), R(10)))));
        Assert.Equal(ClaimStatus.ReservationLimitReached.ToString(), Enum.GetName(ClaimStatus.ReservationLimitReached));
        Assert.True(c.Cell.Counters.Claims(ClaimStatus.ReservationLimitReached) == 1);
        c.AssertHealthy();
    }

    [Fact]
    public void A_gang_reservation_is_all_or_nothing()
    {
        using var c = new TestCell(nodes: 2);
        var r = c.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            Reserve(c, c.Nodes[0], T(1, 0), R(3000)), Reserve(c, c.Nodes[1], T(1, 1), R(3000)), Reserve(c, c.Nodes[1], T(1, 2), R(3000)));
        Assert.Equal(TransactionStatus.Rejected, r.Status);
        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.InsufficientResources], Statuses(r));
        Assert.Equal(0, c.Cell.ReservationCount);
        Assert.Equal(R(0), c.View(c.Nodes[0]).Allocated);
        c.AssertHealthy();
        // The whole gang bound from its holds in one all-or-nothing commit.
        Assert.Equal(TransactionStatus.Committed, c.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            Reserve(c, c.Nodes[0], T(1, 0), R(3000)), Reserve(c, c.Nodes[1], T(1, 1), R(3000))).Status);
        // A failing member rolls the consumption of the others back too: their holds are intact afterwards.
        r = c.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            BindReserved(c, c.Nodes[0], T(1, 0), R(3000)), BindReserved(c, c.Nodes[1], T(1, 1), R(3000)), BindReserved(c, c.Nodes[1], T(1, 2), R(1)));
        Assert.Equal([ClaimStatus.Aborted, ClaimStatus.Aborted, ClaimStatus.ReservationNotFound], Statuses(r));
        Assert.Equal(2, c.Cell.ReservationCount);
        Assert.Equal(0, c.Cell.AllocationCount);
        c.AssertHealthy();
        Assert.Equal(TransactionStatus.Committed, c.Commit(CommitMode.AllOrNothing, ConflictDetection.Fine,
            BindReserved(c, c.Nodes[0], T(1, 0), R(3000)), BindReserved(c, c.Nodes[1], T(1, 1), R(3000))).Status);
        Assert.Equal(0, c.Cell.ReservationCount);
        Assert.Equal(2, c.Cell.AllocationCount);
        c.AssertHealthy();
    }

    [Fact]
    public void An_expired_reservation_cannot_be_consumed_and_keeps_counting_until_it_is_released()
    {
        using var c = new TestCell(nodes: 1);
        var n0 = c.Nodes[0];
        c.Commit(Reserve(c, n0, T(1), R(3000)));
        c.Time.Advance(Ttl);
        Assert.Equal([ClaimStatus.ReservationExpired], Statuses(c.Commit(BindReserved(c, n0, T(1), R(3000)))));
        // Safe side: the expired hold is not free capacity until its release is recorded.
        Assert.Equal([ClaimStatus.InsufficientResources], Statuses(c.Commit(c.ClaimOn(n0, T(2), R(2000)))));
        Assert.Equal(1, c.Cell.CountOverdueReservations(TimeSpan.Zero));
        Assert.Equal(0, c.Cell.CountOverdueReservations(TimeSpan.FromSeconds(1)));
        var released = new List<CellReservation>();
        Assert.Equal(1, c.Cell.ReleaseExpiredReservations(100, released));
        Assert.Equal(T(1), released.Single().Task);
        Assert.Equal(1, c.Cell.ReservationsReleased(ReservationReleaseReason.Expired));
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(n0, T(2), R(2000))).Status);
        Assert.Equal(0, c.Cell.ReleaseExpiredReservations(100));
        c.AssertHealthy();
    }

    [Fact]
    public void A_reserve_retried_after_a_timeout_after_commit_reserves_once_and_another_scheduler_cannot_replay_it()
    {
        using var c = new TestCell(nodes: 1);
        var n0 = c.Nodes[0];
        var key = new IdempotencyKey(7, 42);
        var claim = Reserve(c, n0, T(1), R(1000), ttl: TimeSpan.FromMinutes(5));
        var first = c.Commit(c.Lease, CommitMode.Incremental, ConflictDetection.Fine, key, claim);
        Assert.Equal(TransactionStatus.Committed, first.Status);
        // The reply was lost; the scheduler restarts, its lease runs out, it gets a new token for the same identity and
        // retries the same reserve.
        c.Time.Advance(LeaseTime);
        var again = c.Acquire("sched");
        var retry = c.Commit(again, CommitMode.Incremental, ConflictDetection.Fine, key, claim);
        Assert.True(retry.Replayed);
        Assert.Equal(first.CellVersion, retry.CellVersion);
        Assert.Equal(1, c.Cell.ReservationCount);
        Assert.Equal(R(1000), c.View(n0).Allocated);
        Assert.True(c.Cell.TryGetReservation(T(1), out var held));
        Assert.Equal(first.CellVersion, held.Generation);
        // The same key with another TTL is another transaction: refused, not applied.
        Assert.Equal(TransactionStatus.IdempotencyKeyReused, c.Commit(again, CommitMode.Incremental, ConflictDetection.Fine, key, claim with { Ttl = TimeSpan.FromMinutes(6) }).Status);
        // The old token is fenced off.
        Assert.Equal(TransactionStatus.StaleFencingToken, c.Commit(c.Lease, CommitMode.Incremental, ConflictDetection.Fine, new IdempotencyKey(1, 1), Reserve(c, n0, T(2), R(1))).Status);
        // Another scheduler sending the key is validated as new: T(1) is reserved, so it gets TaskReserved, not a replay.
        var other = c.Acquire("other");
        var foreign = c.Commit(other, CommitMode.Incremental, ConflictDetection.Fine, key, claim);
        Assert.False(foreign.Replayed);
        Assert.Equal([ClaimStatus.TaskReserved], Statuses(foreign));
        Assert.Equal(1, c.Cell.ReservationCount);
        c.AssertHealthy();
    }

    [Fact]
    public void Removing_a_node_releases_its_reservations()
    {
        using var c = new TestCell(nodes: 2);
        c.Commit(Reserve(c, c.Nodes[0], T(1), R(1000)), Reserve(c, c.Nodes[1], T(2), R(1000)));
        Assert.Equal(NodeOpStatus.Ok, c.Cell.RemoveNode(c.Nodes[0], out _));
        Assert.False(c.Cell.TryGetReservation(T(1), out _));
        Assert.True(c.Cell.TryGetReservation(T(2), out _));
        Assert.Equal(R(1000), c.Cell.GetTenantUsage(default).Usage);
        c.AssertHealthy();
    }

    /// <summary>
    /// Two schedulers race for the same nodes with reservations, binds through reservations, plain binds, releases and
    /// expiry, each deciding on its own (often stale) snapshot; after every step the cell's audit (no node over capacity,
    /// no task both bound and reserved, every sum consistent) must be clean.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Two_schedulers_racing_with_reservations_never_overcommit(int run)
    {
        int seed = (Environment.TickCount & 0x7fffffff) + run;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var c = new TestCell(nodes: 4, capacity: R(4000, 4096));
        var leases = new[] { c.Lease, c.Acquire("second") };
        var snapshots = new[] { c.Cell.Snapshot(), c.Cell.Snapshot() };
        var tasks = new List<TaskId>();
        for (int j = 0; j < 40; j++) tasks.Add(T(j));
        long applied = 0, refused = 0;
        for (int step = 0; step < 3000; step++)
        {
            int s = rng.Next(2);
            if (rng.Next(4) == 0) snapshots[s] = c.Cell.Snapshot(); // otherwise decide on a stale snapshot
            var task = tasks[rng.Next(tasks.Count)];
            var node = c.Nodes[rng.Next(c.Nodes.Length)];
            long ver = snapshots[s].TryGetNode(node, out var nv) == SnapshotRead.Ok ? nv.Version : 0;
            var res = R(rng.Next(1, 16) * 250, rng.Next(1, 16) * 256);
            var detection = rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse;
            int op = rng.Next(10);
            CommitResult? r = null;
            switch (op)
            {
                case 0 or 1 or 2:
                    r = c.Commit(leases[s], CommitMode.Incremental, detection, IdempotencyKey.None,
                        new Claim(task, node, res, ver, new TenantId(rng.Next(4)), Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromSeconds(rng.Next(1, 5))));
                    break;
                case 3 or 4:
                    // Bind through the reservation if there is one (on the node it names, as a scheduler would read it).
                    if (c.Cell.TryGetReservation(task, out var held))
                        r = c.Commit(leases[s], CommitMode.Incremental, detection, IdempotencyKey.None,
                            new Claim(task, held.Node, rng.Next(2) == 0 ? held.Resources : res, ver, held.Tenant, Kind: ClaimKind.BindReserved));
                    break;
                case 5:
                    r = c.Commit(leases[s], CommitMode.Incremental, detection, IdempotencyKey.None, new Claim(task, node, res, ver, new TenantId(rng.Next(4))));
                    break;
                case 6:
                    c.Cell.Release(task);
                    break;
                case 7:
                    c.Cell.ReleaseReservation(task);
                    break;
                case 8:
                    c.Time.Advance(TimeSpan.FromMilliseconds(rng.Next(0, 1500)));
                    for (int i = 0; i < leases.Length; i++) leases[i] = c.Cell.RenewLease(leases[i], LeaseTime).Lease;
                    break;
                default:
                    c.Cell.ReleaseExpiredReservations(rng.Next(1, 5));
                    break;
            }
            if (r is { } rr)
            {
                if (rr.Status == TransactionStatus.Committed) applied++;
                else refused++;
            }
            var problems = c.Cell.Audit();
            Assert.True(problems.Count == 0, $"seed {seed}, step {step}, op {op}: {string.Join("; ", problems)}");
        }
        output.WriteLine($"applied {applied}, refused {refused}, reservations at end {c.Cell.ReservationCount}, bindings {c.Cell.AllocationCount}");
        Assert.True(applied > 100 && refused > 100, $"seed {seed}: the race must both succeed and conflict (applied {applied}, refused {refused})");
    }
}
