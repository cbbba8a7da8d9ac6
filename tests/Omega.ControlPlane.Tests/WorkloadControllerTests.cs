using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;

namespace Omega.ControlPlane.Tests;

/// <summary>One control plane over a cell: store, engine, workload controller and its runner on a manual scheduler.</summary>
internal sealed class Plane : IDisposable
{
    private readonly bool _durable;

    public Plane(Cell cell, FakeTimeProvider time, IDurabilityWaiter? durability = null, bool addNodes = true, Action<ObjectStore, SchedulingOptions>? configure = null)
    {
        _durable = durability is not null;
        Cell = cell;
        Time = time;
        // Tenants exist before use; a reopened cell already has them.
        if (!cell.TryGetTenant("t1", out _)) cell.CreateTenant("t1", null, out _);
        if (addNodes)
            for (int i = 0; i < 8; i++) cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(4, 16), $"rack-{i % 2}"));
        Store = new ObjectStore(cell, new ObjectStoreOptions { Time = time }, durability);
        var options = new SchedulingOptions { Time = time, Seed = 11 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 3 });
        configure?.Invoke(Store, options);
        Engine = new SchedulingEngine(cell, options);
        Scheduler = new ManualControllerScheduler(time);
        Controller = new WorkloadController(Store, Engine, time);
        Runner = Controller.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(2) });
        Runner.Start();
    }

    public Cell Cell { get; }
    public FakeTimeProvider Time { get; }
    public ObjectStore Store { get; }
    public SchedulingEngine Engine { get; }
    public ManualControllerScheduler Scheduler { get; }
    public WorkloadController Controller { get; }
    public ControllerRunner Runner { get; }

    /// <summary>Runs controller and engine steps, advancing virtual time, until <paramref name="done"/> or the round limit.</summary>
    public async Task<bool> RunUntil(Func<bool> done, int rounds = 400)
    {
        for (int i = 0; i < rounds; i++)
        {
            Scheduler.RunUntilIdle();
            Engine.RunUntilIdle();
            Scheduler.RunUntilIdle();
            if (done()) return true;
            Time.Advance(TimeSpan.FromMilliseconds(250));
            // Let a watch wake-up posted from the thread pool arrive, and (durable) the group commit complete an ack.
            if (_durable) await Task.Delay(1);
            else await Task.Yield();
        }
        return done();
    }

    public Workload Get(string name) => Store.Get<Workload>("t1", name)!;

    public bool Converged(string name, int replicas)
    {
        var w = Store.Get<Workload>("t1", name);
        return w is not null && w.Status.ObservedGeneration == w.Metadata.Generation && w.Status.Ready == replicas
               && w.Status.Bound == replicas && Bindings(w).Count == replicas
               && Conditions.Find(w.Status.Conditions, "Progressing")?.Reason == "Converged";
    }

    /// <summary>Every binding in the cell whose job id belongs to <paramref name="w"/>'s job id space.</summary>
    public List<Allocation> Bindings(Workload w)
    {
        long prefix = WorkloadController.JobFor(w.Metadata.Uid, 0).Value;
        return Cell.GetAllocations().Where(a => (a.Task.Job.Value & ~((1L << WorkloadController.SerialBits) - 1)) == prefix).ToList();
    }

    public void Dispose()
    {
        Runner.Dispose();
        Engine.Dispose();
        Store.Dispose();
    }
}

public class WorkloadControllerTests
{
    [Fact]
    public async Task A_workload_reaches_its_replicas_then_scales_up_and_down_within_its_disruption_budget()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        await plane.Store.CreateAsync(Objects.Workload("web", replicas: 3));
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 3)));
        var w = plane.Get("web");
        Assert.Contains(Workload.BindingsFinalizer, w.Metadata.Finalizers);
        Assert.Equal(1, w.Status.ObservedGeneration);
        Assert.True(Conditions.IsTrue(w.Status.Conditions, "Available"));
        Assert.Equal(3, w.Status.Serving);

        w.Spec.Replicas = 7;
        Assert.True((await plane.Store.UpdateAsync(w)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 7)));
        Assert.Equal(2, plane.Get("web").Status.ObservedGeneration);

        // Scale down 7 → 2 with maxUnavailable 2: each step takes at most two ready replicas away.
        w = plane.Get("web");
        w.Spec.Replicas = 2;
        w.Spec.MaxUnavailable = 2;
        Assert.True((await plane.Store.UpdateAsync(w)).IsOk);
        var counts = new List<int>();
        Assert.True(await plane.RunUntil(() =>
        {
            counts.Add(plane.Bindings(plane.Get("web")).Count);
            return plane.Converged("web", 2);
        }));
        for (int i = 1; i < counts.Count; i++) Assert.True(counts[i - 1] - counts[i] <= 2, $"step {i}: {counts[i - 1]} → {counts[i]}");
        Assert.Equal(2, counts[^1]);
        Assert.Equal(new[] { 0, 1 }, plane.Get("web").Status.Replicas.Select(r => r.Slot));
        Assert.Empty(cell.Audit());
    }

    [Fact]
    public async Task A_lost_replica_is_replaced_and_a_deleted_workload_releases_its_bindings_before_it_goes()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        await plane.Store.CreateAsync(Objects.Workload("web", replicas: 4));
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 4)));
        var victim = plane.Bindings(plane.Get("web"))[0];
        Assert.Equal(ReleaseStatus.Released, cell.Release(victim.Task)); // released from outside (a lost node)
        Assert.Equal(3, plane.Bindings(plane.Get("web")).Count);
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 4)));

        var del = await plane.Store.DeleteAsync(new ObjectKey(Workload.KindName, "t1", "web"));
        Assert.False(del.Removed); // the controller's finalizer holds it
        var uidPrefix = plane.Get("web");
        Assert.True(await plane.RunUntil(() => plane.Store.Get<Workload>("t1", "web") is null));
        Assert.Empty(plane.Bindings(uidPrefix));
        Assert.Equal(0, cell.AllocationCount);
    }

    [Fact]
    public async Task After_restarts_at_any_point_the_controller_converges_with_no_duplicate_binding()
    {
        using var dir = new TempDir();
        var time = dir.Time;
        // Run 1: create, let the controller write its plan and submit, but stop before the engine places anything.
        using (var cs = dir.Open())
        {
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs));
            Assert.True((await plane.Store.CreateAsync(Objects.Workload("web", replicas: 5))).IsOk);
            // Controller steps only (no engine step): the finalizer, then the write-ahead plan and the submissions.
            // Durable acknowledgements complete on the group-commit thread: await the condition, with a bound.
            for (int i = 0; i < 2000 && plane.Get("web").Status.Replicas.Count < 5; i++)
            {
                plane.Scheduler.RunUntilIdle();
                time.Advance(TimeSpan.FromMilliseconds(1));
                await Task.Delay(1);
            }
            Assert.Equal(5, plane.Get("web").Status.Replicas.Count); // the serials are durable (write-ahead)
            Assert.Equal(0, cs.Cell.AllocationCount);
        }
        // Run 2: a fresh engine knows no jobs; the controller resubmits the same serials. Stop after a partial placement.
        using (var cs = dir.Open())
        {
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs), addNodes: false);
            Assert.Equal(5, plane.Get("web").Status.Replicas.Count);
            plane.Scheduler.RunUntilIdle();
            plane.Engine.Workers[0].Step(); // one placement step, then "crash"
            await cs.WaitForVersionAsync(cs.Cell.Version);
            Assert.InRange(cs.Cell.AllocationCount, 1, 5);
        }
        // Run 3: converge; scale up, crash again mid-way, converge again.
        using (var cs = dir.Open())
        {
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs), addNodes: false);
            Assert.True(await plane.RunUntil(() => plane.Converged("web", 5)));
            var w = plane.Get("web");
            Assert.Equal(5, w.Status.NextSerial); // no serial was spent twice for a slot
            w.Spec.Replicas = 8;
            Assert.True((await plane.Store.UpdateAsync(w)).IsOk);
            plane.Scheduler.RunUntilIdle();
            plane.Engine.Workers[0].Step();
            await cs.WaitForVersionAsync(cs.Cell.Version);
        }
        using (var cs = dir.Open())
        {
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs), addNodes: false);
            Assert.True(await plane.RunUntil(() => plane.Converged("web", 8)));
            var w = plane.Get("web");
            var bindings = plane.Bindings(w);
            Assert.Equal(8, bindings.Count);
            Assert.Equal(8, bindings.Select(b => b.Task).Distinct().Count());
            var serials = w.Status.Replicas.Select(r => WorkloadController.TaskFor(w.Metadata.Uid, r.Serial)).ToHashSet();
            Assert.All(bindings, b => Assert.Contains(b.Task, serials));
            Assert.Equal(8, w.Status.Replicas.Select(r => r.Slot).Distinct().Count());
            Assert.Equal(w.Metadata.Generation, w.Status.ObservedGeneration);
            Assert.Empty(cs.Cell.Audit());
        }
    }
}
