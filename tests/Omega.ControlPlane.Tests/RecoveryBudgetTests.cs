using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Recovery budgets (issue 13): a region's budget reports allocated, consumed by failover (critical replicas away from
/// their first preferred region), reclaimable lower-priority work, and turns Exhausted once failover has used it up.
/// </summary>
public sealed class RecoveryBudgetTests
{
    [Fact]
    public async Task A_budget_counts_failover_replicas_as_consumed_lower_priorities_as_reclaimable_and_reports_exhaustion()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        NodeId Add(string name, string region)
        {
            Assert.Null(Topology.Merge(region, "", null, out var labels));
            return cell.AddNode(new NodeSpec(name, new ResourceVector(8000, 32L << 30), "fd", labels));
        }
        var home = Add("a0", "r-a");
        var b0 = Add("b0", "r-b");
        var b1 = Add("b1", "r-b");
        var tenant = cell.CreateTenant("critical");
        using var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time });
        var scheduler = new ManualControllerScheduler(time);
        var controller = new RecoveryBudgetController(store, cell, time, new RecoveryBudgetControllerOptions { Refresh = TimeSpan.FromSeconds(1) });
        using var runner = controller.CreateRunner(scheduler);
        runner.Start();

        var w = Objects.Workload("risk-api", replicas: 4, tenant: "critical");
        w.Spec.Priority = 1000;
        w.Spec.Topology.PreferredRegions = ["r-a", "r-b"];
        var created = await store.CreateAsync(w);
        Assert.True(created.IsOk, created.Message);
        long uid = created.Object!.Metadata.Uid;
        Assert.False((await store.CreateAsync(new RecoveryBudget { Metadata = new ObjectMeta { Name = "bad" }, Spec = new RecoveryBudgetSpec { Region = "R_B", Capacity = new ResourceRequest { CpuMillis = 1 } } })).IsOk);
        var budget = await store.CreateAsync(new RecoveryBudget
        {
            Metadata = new ObjectMeta { Name = "r-b" },
            Spec = new RecoveryBudgetSpec { Region = "r-b", Capacity = new ResourceRequest { CpuMillis = 4000 }, MinPriority = 1000 },
        });
        Assert.True(budget.IsOk, budget.Message);

        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        void Bind(TaskId task, NodeId node, long cpu, int priority)
        {
            var tx = new Transaction(lease);
            tx.Add(new Claim(task, node, new ResourceVector(cpu, 1 << 30), 0, tenant, priority));
            Assert.True(cell.Commit(tx).IsCommitted);
        }
        // At home in r-a: consumes nothing of r-b's budget. Filler in r-b: reclaimable.
        Bind(WorkloadController.TaskFor(uid, 0), home, 2000, 1000);
        Bind(new TaskId(5, 0), b0, 6000, 0);
        await Until(scheduler, time, () => store.Get<RecoveryBudget>("", "r-b")!.Status.Reclaimable.CpuMillis == 6000);
        var s = store.Get<RecoveryBudget>("", "r-b")!.Status;
        Assert.Equal(4000, s.Allocated.CpuMillis);
        Assert.Equal(0, s.Consumed.CpuMillis);
        Assert.False(s.Exhausted);
        Assert.True(Conditions.IsTrue(s.Conditions, "Backed"));

        // Failover into r-b: consumed; once 4 cores are used the budget is exhausted.
        Bind(WorkloadController.TaskFor(uid, 1), b1, 2000, 1000);
        await Until(scheduler, time, () => store.Get<RecoveryBudget>("", "r-b")!.Status.Consumed.CpuMillis == 2000);
        Assert.False(store.Get<RecoveryBudget>("", "r-b")!.Status.Exhausted);
        Bind(WorkloadController.TaskFor(uid, 2), b1, 2000, 1000);
        await Until(scheduler, time, () => store.Get<RecoveryBudget>("", "r-b")!.Status.Exhausted);
        Assert.True(Conditions.IsTrue(store.Get<RecoveryBudget>("", "r-b")!.Status.Conditions, "Exhausted"));
    }

    private static async Task Until(ManualControllerScheduler scheduler, FakeTimeProvider time, Func<bool> done)
    {
        for (int i = 0; i < 200 && !done(); i++)
        {
            scheduler.RunUntilIdle();
            await Task.Yield();
            time.Advance(TimeSpan.FromMilliseconds(500));
            scheduler.RunUntilIdle();
        }
        Assert.True(done(), "condition not reached");
    }
}
