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
        // The workload controller records this (not running here): the group's home is its first preferred region.
        Assert.Equal(RecoveryBudgetOpStatus.Ok, cell.SetFailoverHome(WorkloadController.JobFor(uid, 0).Value >> WorkloadController.SerialBits, WorkloadController.SerialBits, "r-a", out _));
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
        Assert.True(controller.IsExhausted("r-b"));
        Assert.Equal(2, store.Get<RecoveryBudget>("", "r-b")!.Status.Consumers);
    }

    [Fact]
    public async Task The_controller_sets_the_cells_budget_a_recovery_override_suspends_it_for_its_ttl_and_deletion_clears_it()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        Assert.Null(Topology.Merge("r-b", "", null, out var labels));
        var b0 = cell.AddNode(new NodeSpec("b0", new ResourceVector(8000, 32L << 30), "fd", labels));
        var tenant = cell.CreateTenant("critical");
        using var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time });
        var scheduler = new ManualControllerScheduler(time);
        using var controller = new RecoveryBudgetController(store, cell, time, new RecoveryBudgetControllerOptions { Refresh = TimeSpan.FromSeconds(1) });
        using var runner = controller.CreateRunner(scheduler);
        runner.Start();
        Assert.True((await store.CreateAsync(new RecoveryBudget
        {
            Metadata = new ObjectMeta { Name = "r-b" },
            Spec = new RecoveryBudgetSpec { Region = "r-b", Capacity = new ResourceRequest { CpuMillis = 6000 }, MinPriority = 1000 },
        })).IsOk);
        await Until(scheduler, time, () => cell.RecoveryBudgets.Count == 1);
        Assert.Contains(RecoveryBudgetController.Finalizer, store.Get<RecoveryBudget>("", "r-b")!.Metadata.Finalizers);

        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        int serial = 0;
        ClaimStatus Bind(long cpu)
        {
            var tx = new Transaction(lease);
            tx.Add(new Claim(new TaskId(100 + serial++, 0), b0, new ResourceVector(cpu, 0), 0, tenant, 1000));
            return cell.Commit(tx)[0];
        }
        // The region's own critical work may not eat into the 6 cores promised to failover: 2 of 8 cores only.
        Assert.Equal(ClaimStatus.Applied, Bind(2000));
        Assert.Equal(ClaimStatus.RecoveryBudgetHeld, Bind(1000));

        // An operator's recovery override suspends the gate for its TTL; the status says who and until when.
        Assert.True((await store.CreateAsync(new Override
        {
            Metadata = new ObjectMeta { Name = "use-reserve" },
            Spec = new OverrideSpec { Type = OverrideType.RecoveryOverride, Target = "r-b", TtlSeconds = 60, Reason = "billing surge", Author = "alice" },
        })).IsOk);
        await Until(scheduler, time, () => cell.RecoveryBudgets.Count == 0);
        var overridden = Conditions.Find(store.Get<RecoveryBudget>("", "r-b")!.Status.Conditions, "Overridden")!;
        Assert.Equal((ConditionStatus.True, "RecoveryOverride"), (overridden.Status, overridden.Reason));
        Assert.Contains("use-reserve", overridden.Message, StringComparison.Ordinal);
        Assert.Equal(ClaimStatus.Applied, Bind(1000));

        // TTL over: the gate is back without anyone deleting the override.
        time.Advance(TimeSpan.FromSeconds(61));
        await Until(scheduler, time, () => cell.RecoveryBudgets.Count == 1);
        Assert.False(Conditions.IsTrue(store.Get<RecoveryBudget>("", "r-b")!.Status.Conditions, "Overridden"));
        Assert.Equal(ClaimStatus.RecoveryBudgetHeld, Bind(1000));

        // Deleting the budget clears it in the cell before the finalizer goes.
        Assert.True((await store.DeleteAsync(new ObjectKey(RecoveryBudget.KindName, "", "r-b"))).IsOk);
        await Until(scheduler, time, () => store.Get<RecoveryBudget>("", "r-b") is null);
        Assert.Empty(cell.RecoveryBudgets);
        Assert.Equal(ClaimStatus.Applied, Bind(1000));
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
