using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>The quota controller applies Quota objects to the cell's limit and guarantee and reports usage.</summary>
public sealed class QuotaControllerTests
{
    private static Quota NewQuota(string tenant, string name, ResourceVector limit, ResourceVector guaranteed) => new()
    {
        Metadata = new ObjectMeta { Name = name, Tenant = tenant },
        Spec = new QuotaSpec
        {
            Limit = new ResourceRequest { CpuMillis = limit.CpuMillis, MemoryBytes = limit.MemoryBytes },
            Protected = new ResourceRequest { CpuMillis = guaranteed.CpuMillis, MemoryBytes = guaranteed.MemoryBytes },
        },
    };

    [Fact]
    public async Task A_quota_object_sets_the_cells_limit_and_guarantee_reports_usage_and_its_deletion_clears_them()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var n0 = cell.AddNode(new NodeSpec("n0", new ResourceVector(8000, 1 << 30)));
        var team = cell.CreateTenant("team");
        var other = cell.CreateTenant("other");
        using var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time });
        var scheduler = new ManualControllerScheduler(time);
        var controller = new QuotaController(store, cell, time, new QuotaControllerOptions { UsageRefresh = TimeSpan.FromSeconds(1) });
        using var runner = controller.CreateRunner(scheduler);
        runner.Start();

        Assert.True((await store.CreateAsync(NewQuota("team", "quota", new ResourceVector(4000, 1 << 29), new ResourceVector(3000, 0)))).IsOk);
        Assert.True((await store.CreateAsync(NewQuota("team", "second", new ResourceVector(7000, 1 << 30), default))).IsOk);
        Assert.True((await store.CreateAsync(NewQuota("ghost", "quota", new ResourceVector(1, 1), default))).IsOk);
        Assert.False((await store.CreateAsync(NewQuota("team", "bad", new ResourceVector(1000, 1), new ResourceVector(2000, 0)))).IsOk); // protected > limit
        await RunAsync(scheduler, time, () => Conditions.IsTrue(store.Get<Quota>("team", "quota")!.Status.Conditions, "Applied"));

        Assert.Equal(new ResourceVector(4000, 1 << 29), cell.GetTenantUsage(team).Quota);
        Assert.Equal(new ResourceVector(3000, 0), cell.GetTenantGuarantee(team).Guaranteed);
        Assert.Equal("Duplicate", Conditions.Find(store.Get<Quota>("team", "second")!.Status.Conditions, "Applied")!.Reason);
        Assert.Equal("UnknownTenant", Conditions.Find(store.Get<Quota>("ghost", "quota")!.Status.Conditions, "Applied")!.Reason);

        // Enforced at commit: the other tenant cannot take the guaranteed share; the team cannot pass its limit.
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        tx.Add(new Claim(new TaskId(1, 0), n0, new ResourceVector(5500, 0), 0, other));
        Assert.Equal(ClaimStatus.ProtectedCapacity, cell.Commit(tx).ClaimStatuses.Span[0]);
        tx.Reset(lease);
        tx.Add(new Claim(new TaskId(2, 0), n0, new ResourceVector(2500, 1 << 20), 0, team));
        tx.Add(new Claim(new TaskId(3, 0), n0, new ResourceVector(2000, 1 << 20), 0, team));
        var r = cell.Commit(tx);
        Assert.Equal([ClaimStatus.Applied, ClaimStatus.QuotaExceeded], r.ClaimStatuses.ToArray());

        // Status shows usage (refreshed on the controller's period).
        await RunAsync(scheduler, time, () => store.Get<Quota>("team", "quota")!.Status.Used.CpuMillis == 2500);
        var q = store.Get<Quota>("team", "quota")!;
        Assert.Equal(500, q.Status.Unmet.CpuMillis);
        Assert.Equal(q.Metadata.Generation, q.Status.ObservedGeneration);

        // A spec change is applied (level-triggered: the cell's values follow the object).
        q.Spec.Limit.CpuMillis = 6000;
        Assert.True((await store.UpdateAsync(q)).IsOk);
        await RunAsync(scheduler, time, () => cell.GetTenantUsage(team).Quota?.CpuMillis == 6000);
        // A value changed behind the controller's back (an operator over the wire) is put back: the object owns it.
        cell.SetTenantGuarantee(team, null);
        await RunAsync(scheduler, time, () => cell.GetTenantGuarantee(team).Guaranteed is not null);

        // Deletion waits for the finalizer, which clears the cell's limit and guarantee.
        var del = await store.DeleteAsync(new ObjectKey(Quota.KindName, "team", "quota"));
        Assert.True(del.IsOk);
        await RunAsync(scheduler, time, () => store.Get<Quota>("team", "quota") is null);
        Assert.Null(cell.GetTenantGuarantee(team).Guaranteed);
        // The remaining (younger) object now owns the tenant's limits and applies them.
        await RunAsync(scheduler, time, () => cell.GetTenantUsage(team).Quota == new ResourceVector(7000, 1 << 30));
        Assert.Empty(cell.Audit());
    }

    private static async Task RunAsync(ManualControllerScheduler scheduler, FakeTimeProvider time, Func<bool> done)
    {
        for (int i = 0; i < 200 && !done(); i++)
        {
            scheduler.RunUntilIdle();
            if (done()) return;
            time.Advance(TimeSpan.FromMilliseconds(250));
            await Task.Yield();
        }
        Assert.True(done(), "the controller converged");
    }
}
