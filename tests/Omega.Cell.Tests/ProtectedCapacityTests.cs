using Xunit.Abstractions;
using static Omega.Cells.Tests.TestCell;

namespace Omega.Cells.Tests;

/// <summary>Protected capacity (issue 12): other tenants' work cannot take the capacity a tenant's unmet guarantee needs.</summary>
public sealed class ProtectedCapacityTests(ITestOutputHelper output)
{
    private static readonly TenantId A = new(1), B = new(2), C = new(3);

    [Fact]
    public void Another_tenant_cannot_take_capacity_a_guarantee_needs_but_the_guaranteed_tenant_can()
    {
        using var c = new TestCell(nodes: 2, capacity: R(4000, 8192));
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantGuarantee(B, R(6000, 0)));
        Assert.Equal((R(8000, 16384), R(6000, 0)), c.Cell.GetProtectedCapacityState());
        // A may take 2000 (8000 free − 2000 = 6000 ≥ B's unmet 6000), not one millicore more.
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(1), R(2000, 100), tenant: 1)).Status);
        Assert.Equal([ClaimStatus.ProtectedCapacity], Statuses(c.Commit(c.ClaimOn(c.Nodes[0], T(2), R(1, 0), tenant: 1))));
        // A memory-only claim does not grow A's CPU: memory is not protected, so it passes.
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(3), R(0, 100), tenant: 1)).Status);
        // Reservations count like bindings.
        Assert.Equal([ClaimStatus.ProtectedCapacity], Statuses(c.Commit(c.ClaimOn(c.Nodes[1], T(4), R(500, 0), tenant: 3) with { Kind = ClaimKind.Reserve, Ttl = TimeSpan.FromSeconds(5) })));
        // B grows within its guarantee freely, and may go beyond it into capacity nobody is promised.
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[1], T(5), R(4000, 0), tenant: 2)).Status);
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(6), R(2000, 0), tenant: 2)).Status);
        Assert.Equal((R(6000, 0), R(0, 0)), (c.Cell.GetTenantGuarantee(B).Guaranteed!.Value, c.Cell.GetTenantGuarantee(B).Unmet));
        // Once B's guarantee is met, nothing is protected any more: only the node's fit limits A.
        c.Cell.Release(T(6));
        Assert.Equal([ClaimStatus.ProtectedCapacity], Statuses(c.Commit(c.ClaimOn(c.Nodes[0], T(7), R(1000, 0), tenant: 1))));
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantGuarantee(B, null));
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(7), R(1000, 0), tenant: 1)).Status);
        c.AssertHealthy();
    }

    [Fact]
    public void Preempting_another_tenants_work_does_not_pay_for_a_claim_and_lost_capacity_holds_growth_back()
    {
        using var c = new TestCell(nodes: 2, capacity: R(4000, 8192));
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(1), R(3000, 0), tenant: 2, priority: 0)).Status);
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantGuarantee(B, R(5000, 0)));
        // Free 5000, B's unmet 2000. A preempting B's task to take 4000: the evicted 3000 are B's guaranteed work, so
        // they are not counted as freed: 5000 − 4000 < 2000 → refused (after it B's unmet would be 5000, free 4000).
        Assert.Equal([ClaimStatus.ProtectedCapacity], Statuses(c.Commit(c.ClaimOn(c.Nodes[0], T(2), R(4000, 0), tenant: 1, priority: 5, T(1)))));
        Assert.True(c.Cell.TryGetAllocation(T(1), out _));
        // Capacity lost (a node drained): free drops to 1000, below B's unmet 2000; A cannot grow at all, B still can.
        Assert.Equal(NodeOpStatus.Ok, c.Cell.SetNodeStatus(c.Nodes[1], NodeStatus.Draining));
        Assert.Equal((R(1000, 8192), R(2000, 0)), c.Cell.GetProtectedCapacityState());
        Assert.Equal([ClaimStatus.ProtectedCapacity], Statuses(c.Commit(c.ClaimOn(c.Nodes[0], T(3), R(1, 0), tenant: 1))));
        Assert.Equal(TransactionStatus.Committed, c.Commit(c.ClaimOn(c.Nodes[0], T(4), R(1000, 0), tenant: 2)).Status);
        Assert.Equal(TenantOpStatus.UnknownTenant, c.Cell.SetTenantGuarantee(new TenantId(99), R(1, 1)));
        Assert.Equal(TenantOpStatus.InvalidQuota, c.Cell.SetTenantGuarantee(A, new ResourceVector(-1, 0)));
        c.AssertHealthy();
    }

    /// <summary>
    /// Two schedulers on stale snapshots commit claims, reservations and preemptions for four tenants with hard quotas
    /// and oversubscribed-or-not guarantees; after every step the audit is clean (no node over capacity, no tenant over
    /// its quota, the incremental guarantee state equal to a recomputation) and no claim ever turned "every guarantee is
    /// satisfiable" (free ≥ Σ unmet) into false.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Quota_and_protected_capacity_hold_under_two_racing_schedulers(int run)
    {
        int seed = (Environment.TickCount & 0x7fffffff) + 7919 * run;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var c = new TestCell(nodes: 6, capacity: R(4000, 4096));
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantQuota(A, R(9000, 9000)));
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantGuarantee(B, R(rng.Next(4, 12) * 1000, rng.Next(1, 8) * 1024)));
        Assert.Equal(TenantOpStatus.Ok, c.Cell.SetTenantGuarantee(C, R(rng.Next(2, 10) * 1000, rng.Next(1, 8) * 1024)));
        var leases = new[] { c.Lease, c.Acquire("second") };
        var snapshots = new[] { c.Cell.Snapshot(), c.Cell.Snapshot() };
        int protectedRefusals = 0, quotaRefusals = 0, applied = 0;
        for (int step = 0; step < 4000; step++)
        {
            int s = rng.Next(2);
            if (rng.Next(3) == 0) snapshots[s] = c.Cell.Snapshot();
            var task = T(rng.Next(60));
            var node = c.Nodes[rng.Next(c.Nodes.Length)];
            long ver = snapshots[s].TryGetNode(node, out var nv) == SnapshotRead.Ok ? nv.Version : 0;
            var (free, unmet) = c.Cell.GetProtectedCapacityState();
            bool satisfiable = (free - unmet).IsNonNegative;
            int op = rng.Next(8);
            if (op < 5)
            {
                var claim = new Claim(task, node, R(rng.Next(1, 9) * 250, rng.Next(1, 9) * 128), ver, new TenantId(rng.Next(4)), rng.Next(3));
                if (op == 3) claim = claim with { Kind = ClaimKind.Reserve, Ttl = TimeSpan.FromSeconds(30) };
                if (op == 4)
                {
                    var onNode = c.Cell.GetAllocationsOnNode(node);
                    if (onNode.Count > 0) claim = claim with { Priority = 5, Victims = [onNode[rng.Next(onNode.Count)].Task] };
                }
                var r = c.Commit(leases[s], CommitMode.Incremental, rng.Next(2) == 0 ? ConflictDetection.Fine : ConflictDetection.Coarse, IdempotencyKey.None, claim);
                var st = r.ClaimStatuses.Span[0];
                if (st == ClaimStatus.Applied) applied++;
                if (st == ClaimStatus.ProtectedCapacity) protectedRefusals++;
                if (st == ClaimStatus.QuotaExceeded) quotaRefusals++;
                if (satisfiable)
                {
                    var after = c.Cell.GetProtectedCapacityState();
                    Assert.True((after.Free - after.UnmetTotal).IsNonNegative, $"seed {seed}, step {step}: claim {claim} ({st}) broke the guarantees: free {after.Free}, unmet {after.UnmetTotal}");
                }
            }
            else if (op == 5) c.Cell.Release(task);
            else if (op == 6) c.Cell.ReleaseReservation(task);
            else
            {
                // The other scheduler commits with the CPU of a task, so that both race on the same fresh state.
                var other = leases[1 - s];
                var r = c.Commit(other, CommitMode.Incremental, ConflictDetection.Fine, IdempotencyKey.None, new Claim(T(100 + rng.Next(20)), node, R(500, 64), 0, new TenantId(rng.Next(4))));
                if (r.ClaimStatuses.Span[0] == ClaimStatus.Applied) applied++;
            }
            var problems = c.Cell.Audit();
            Assert.True(problems.Count == 0, $"seed {seed}, step {step}: {string.Join("; ", problems)}");
        }
        output.WriteLine($"applied {applied}, protected-capacity refusals {protectedRefusals}, quota refusals {quotaRefusals}");
        Assert.True(protectedRefusals > 0 && applied > 100, $"seed {seed}: the run must exercise the check (applied {applied}, refused {protectedRefusals})");
    }
}
