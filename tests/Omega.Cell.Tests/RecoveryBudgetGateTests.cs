using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Recovery budgets enforced at commit (issue 13, item 2): a region's own critical work cannot take the capacity promised
/// to failover; failover consumes the budget in its own committed, fenced transaction (and may preempt reclaimable work
/// to get it); lower priorities use the capacity meanwhile as reclaimable work.
/// </summary>
public sealed class RecoveryBudgetGateTests(ITestOutputHelper output)
{
    private static ResourceVector Cpu(long m) => new(m, 0);

    // Group key shift 20, as the workload controller uses: jobs (g << 20) | serial belong to group g.
    private static TaskId Task(long group, int serial) => new(new JobId((group << 20) | (uint)serial), 0);

    private sealed class Region : IDisposable
    {
        public readonly Cell Cell = new();
        public readonly NodeId[] A, B;
        public readonly TenantId Tenant;
        public readonly SchedulerLease Lease;

        public Region(int nodesPerRegion = 2, long cpu = 8000)
        {
            A = Add("r-a", nodesPerRegion, cpu);
            B = Add("r-b", nodesPerRegion, cpu);
            Tenant = Cell.CreateTenant("t1");
            Lease = Cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        }

        private NodeId[] Add(string region, int n, long cpu)
        {
            var ids = new NodeId[n];
            for (int i = 0; i < n; i++)
            {
                Assert.Null(Topology.Merge(region, "", null, out var labels));
                ids[i] = Cell.AddNode(new NodeSpec($"{region}-{i}", Cpu(cpu), region, labels));
            }
            return ids;
        }

        public ClaimStatus Bind(TaskId task, NodeId node, long cpu, int priority, params TaskId[] victims)
        {
            var tx = new Transaction(Lease);
            tx.Add(new Claim(task, node, Cpu(cpu), 0, Tenant, priority, victims.Length > 0 ? victims : null));
            return Cell.Commit(tx).ClaimStatuses.Span[0];
        }

        public void Dispose() => Cell.Dispose();
    }

    [Fact]
    public void A_regions_own_critical_work_cannot_take_the_budget_but_failover_consumes_it_and_lower_priorities_use_it_as_reclaimable()
    {
        using var r = new Region();
        var cell = r.Cell;
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-b", Cpu(8000), 1000, out long v));
        Assert.True(v > 0);
        Assert.Equal(RecoveryBudgetOpStatus.Unchanged, cell.SetRecoveryBudget("r-b", Cpu(8000), 1000, out _));
        Assert.Equal(RecoveryBudgetOpStatus.Invalid, cell.SetRecoveryBudget("R_B", Cpu(1), 1000, out _));
        Assert.Equal(RecoveryBudgetOpStatus.Invalid, cell.SetRecoveryBudget("r-b", Cpu(0), 1000, out _));
        // Group 1 lives in r-a (failover into r-b consumes r-b's budget); group 2 is r-b's own critical service.
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(1, 20, "r-a", out _));
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(2, 20, "r-b", out _));
        Assert.Equal("r-a", cell.GetFailoverHome(Task(1, 7).Job));

        // Best-effort filler takes 6 of r-b's 16 cores: allowed, it stays reclaimable.
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(9, 0), r.B[0], 6000, 0));
        // r-b's own critical work: 4 + 4 cores leave headroom 16 − 8 = 8 = the budget; one core more is refused.
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(2, 0), r.B[1], 4000, 1000));
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(2, 1), r.B[1], 4000, 1000));
        Assert.Equal(ClaimStatus.RecoveryBudgetHeld, r.Bind(Task(2, 2), r.B[0], 1000, 1000));
        // A task with no home is the region's own work too; lower priorities are never refused.
        Assert.Equal(ClaimStatus.RecoveryBudgetHeld, r.Bind(new TaskId(77, 0), r.B[0], 1000, 1500));
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(9, 1), r.B[0], 2000, 999));
        var u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
        Assert.Equal((Cpu(8000), Cpu(0), Cpu(8000), 0, false, true), (u.Allocated, u.Consumed, u.Reclaimable, u.Consumers, u.Exhausted, u.Backed));

        // Failover from r-a: never refused by the budget; it preempts the filler in the same transaction and consumes.
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(1, 0), r.B[0], 6000, 1000, Task(9, 0)));
        u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
        Assert.Equal((Cpu(6000), 1, Cpu(2000), false), (u.Consumed, u.Consumers, u.Remaining, u.Exhausted));
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(1, 1), r.B[0], 2000, 1000, Task(9, 1)));
        u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
        Assert.Equal((Cpu(8000), true), (u.Consumed, u.Exhausted));
        // Failover placed at home consumes nothing of r-a (no budget there) and r-b's accounting ignores it.
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(1, 2), r.A[0], 1000, 1000));
        Assert.Equal(Cpu(8000), cell.GetRecoveryBudgetUsage("r-b")!.Value.Consumed);

        // Released failover gives the budget back; the region's own work is held again.
        Assert.Equal(ReleaseStatus.Released, cell.Release(Task(1, 1)));
        Assert.Equal(Cpu(6000), cell.GetRecoveryBudgetUsage("r-b")!.Value.Consumed);
        Assert.Equal(ClaimStatus.RecoveryBudgetHeld, r.Bind(Task(2, 2), r.B[0], 1000, 1000));
        // Clearing the budget lifts the gate at once.
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-b", null, 0, out _));
        Assert.Null(cell.GetRecoveryBudgetUsage("r-b"));
        Assert.Equal(ClaimStatus.Applied, r.Bind(Task(2, 2), r.B[0], 1000, 1000));
        Assert.Empty(cell.Audit());
    }

    [Fact]
    public void Concurrent_regional_commits_never_leave_the_region_unable_to_back_its_unconsumed_budget()
    {
        // Property: starting Backed, no interleaving of home-critical, failover, filler commits (with preemption) and
        // releases on several threads makes free + reclaimable < the unconsumed budget. Seeded; the seed is printed.
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed} (thread i uses new Random(seed + i))");
        using var r = new Region(nodesPerRegion: 8, cpu: 8000);
        var cell = r.Cell;
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetRecoveryBudget("r-b", Cpu(32000), 1000, out _));
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(1, 20, "r-a", out _));
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(2, 20, "r-b", out _));
        int held = 0, applied = 0, violations = 0;
        string? firstViolation = null;
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                var rng = new Random(seed + id);
                var lease = cell.AcquireLease($"w{id}", TimeSpan.FromHours(1)).Lease;
                var tx = new Transaction(lease);
                for (int i = 0; i < 1500; i++)
                {
                    int roll = rng.Next(100);
                    int kind = roll < 40 ? 0 : roll < 55 ? 1 : roll < 92 ? 2 : 3; // home critical, failover, filler, release
                    var node = r.B[rng.Next(r.B.Length)];
                    long group = kind switch { 0 => 2, 1 => 1, _ => 9 };
                    var task = Task(group, id * 100_000 + i);
                    if (kind == 3)
                    {
                        // Release something of this thread's own.
                        var mine = cell.GetAllocationsOnNode(node);
                        foreach (var a in mine) { if (rng.Next(4) == 0) cell.Release(a.Task, a.Generation); }
                        continue;
                    }
                    int priority = kind == 2 ? rng.Next(0, 999) : 1000;
                    TaskId[]? victims = null;
                    if (kind == 1)
                    {
                        var lower = new List<TaskId>();
                        foreach (var a in cell.GetAllocationsOnNode(node)) if (a.Priority < 1000 && lower.Count < 2) lower.Add(a.Task);
                        victims = lower.Count > 0 ? lower.ToArray() : null;
                    }
                    tx.Reset(lease);
                    tx.Add(new Claim(task, node, Cpu(rng.Next(1, 9) * 500), 0, r.Tenant, priority, victims));
                    var s = cell.Commit(tx).ClaimStatuses.Span[0];
                    if (s == ClaimStatus.RecoveryBudgetHeld) Interlocked.Increment(ref held);
                    if (s == ClaimStatus.Applied) Interlocked.Increment(ref applied);
                    if (s == ClaimStatus.RecoveryBudgetHeld && kind != 0) { Interlocked.Increment(ref violations); firstViolation ??= $"{kind} refused"; }
                    var u = cell.GetRecoveryBudgetUsage("r-b")!.Value;
                    if (!u.Backed) { Interlocked.Increment(ref violations); firstViolation ??= $"not backed after {task}: {u}"; }
                }
            });
        }
        foreach (var th in threads) th.Start();
        foreach (var th in threads) th.Join();
        output.WriteLine($"applied {applied}, held back {held}");
        Assert.True(violations == 0, $"seed {seed}: {firstViolation}");
        Assert.True(held > 0, $"seed {seed}: the gate never engaged");
        Assert.Empty(cell.Audit());
    }
}
