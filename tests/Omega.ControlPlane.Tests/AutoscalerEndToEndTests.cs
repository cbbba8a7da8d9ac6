using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;
using Omega.Scheduling;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// The node-pool autoscaler against the real chain (issue 13, item 7): the scheduling engine parks replicas with its own
/// reasons, the workload controller writes them and the readiness agents reported (<see cref="Cell.ReportBindingPhase"/>,
/// what the server calls on a TaskReport) into status, and the autoscaler reads that. No status is written by hand.
/// </summary>
public sealed class AutoscalerEndToEndTests
{
    private sealed class Rig : IDisposable
    {
        public readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        public readonly Cell Cell;
        public readonly ObjectStore Store;
        public readonly SchedulingEngine Engine;
        public readonly ManualControllerScheduler Scheduler;
        public readonly ControllerRunner Runner;
        public readonly NodePoolAutoscaler Autoscaler;

        public Rig()
        {
            Cell = new Cell(new CellOptions { Time = Time });
            Cell.CreateTenant("t1", null, out _);
            // Two nodes of region r1 that no pool owns: 8 cores.
            for (int i = 0; i < 2; i++)
            {
                Assert.Null(Topology.Merge("r1", "r1-a", null, out var labels));
                Cell.AddNode(new NodeSpec($"r1-{i}", ResourceVector.FromCoresAndGiB(4, 16), "rack-r1", labels));
            }
            Store = new ObjectStore(Cell, new ObjectStoreOptions { Time = Time });
            var scheduling = new SchedulingOptions { Time = Time, Seed = 13 };
            scheduling.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 3 });
            Engine = new SchedulingEngine(Cell, scheduling);
            Scheduler = new ManualControllerScheduler(Time);
            // Readiness as agents report it (the host's choice), not "bound is ready".
            var controller = new WorkloadController(Store, Engine, Time, new WorkloadControllerOptions
            {
                Observer = ReplicaObserver.AgentReported(Cell),
                // A parked replica is retried under a new serial after this; between the retry and its next park the
                // workload has no pending reason. Long enough that the steps below see the reason the engine gave.
                ParkedRetryDelay = TimeSpan.FromSeconds(30),
            });
            Runner = controller.CreateRunner(Scheduler, new ControllerRunnerOptions { ResyncPeriod = TimeSpan.FromSeconds(2) });
            Runner.Start();
            Autoscaler = new NodePoolAutoscaler(Store, Cell, new ManualControllerScheduler(Time));
        }

        public async Task<bool> RunUntil(Func<bool> done, int rounds = 400)
        {
            for (int i = 0; i < rounds; i++)
            {
                Scheduler.RunUntilIdle();
                Engine.RunUntilIdle();
                Scheduler.RunUntilIdle();
                if (done()) return true;
                Time.Advance(TimeSpan.FromMilliseconds(250));
                await Task.Yield();
            }
            return done();
        }

        public Workload Get(string name) => Store.Get<Workload>("t1", name)!;

        public List<Allocation> Bindings(string name)
        {
            long prefix = WorkloadController.JobFor(Get(name).Metadata.Uid, 0).Value;
            return Cell.GetAllocations().Where(a => (a.Task.Job.Value & ~((1L << WorkloadController.SerialBits) - 1)) == prefix).ToList();
        }

        // What an agent's TaskReport does on the server: running, then ready, for every bound replica of the workload.
        public void AgentsReportReady(string name)
        {
            foreach (var a in Bindings(name))
            {
                Assert.Equal(BindingPhaseStatus.Ok, Cell.ReportBindingPhase(a.Task, a.Node, a.Generation, BindingPhase.Started));
                Assert.Equal(BindingPhaseStatus.Ok, Cell.ReportBindingPhase(a.Task, a.Node, a.Generation, BindingPhase.Ready));
            }
        }

        public int PoolNodes(string pool)
        {
            var s = Cell.Snapshot();
            int n = 0;
            for (int i = 0; i < s.NodeCount; i++)
                if (s.TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok && v.Spec.Labels.TryGetValue(NodePool.PoolLabel, out var p) && p == pool) n++;
            return n;
        }

        public string? Held(string pool)
        {
            var c = Conditions.Find(Store.Get<NodePool>("", pool)!.Status.Conditions, "ScaleUpHeld");
            return c is { Status: ConditionStatus.True } ? c.Reason : null;
        }

        public void Dispose()
        {
            Autoscaler.Dispose();
            Runner.Dispose();
            Engine.Dispose();
            Store.Dispose();
            Cell.Dispose();
        }
    }

    [Fact]
    public async Task The_autoscaler_scales_for_capacity_pending_only_within_its_step_limit_and_never_while_readiness_is_low()
    {
        using var rig = new Rig();
        var pool = new NodePool();
        pool.Metadata.Name = "general";
        pool.Spec.NodeCapacity = new ResourceRequest { CpuMillis = 4000, MemoryBytes = 16L << 30 };
        pool.Spec.MaxNodes = 10;
        pool.Spec.MaxScaleUpPerStep = 2;
        Assert.True((await rig.Store.CreateAsync(pool)).IsOk);

        // 20 one-core replicas on 8 cores: 12 wait for capacity.
        Assert.True((await rig.Store.CreateAsync(Objects.Workload("needs-room", replicas: 20))).IsOk);
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status is { Bound: 8, PendingReason: not null }), "8 bound, the rest parked with a reason");
        Assert.Equal(PendingClass.Capacity, PendingReasons.Classify(rig.Get("needs-room").Status.PendingReason!));
        // 3 replicas that must live in r9, where no node is and no node of the pool will ever be. The engine names the
        // first filter that rejected each node, and the resource fit runs before residency: on the full r1 nodes their
        // reason reads like capacity. The autoscaler must still not grow the pool for them.
        var resident = Objects.Workload("resident", replicas: 3);
        resident.Spec.Topology.RequiredRegions = ["r9"];
        Assert.True((await rig.Store.CreateAsync(resident)).IsOk);
        Assert.True(await rig.RunUntil(() => rig.Get("resident").Status.PendingReason is not null), "the residency replicas parked");
        Assert.Contains("rejected for InsufficientResources", rig.Get("resident").Status.PendingReason!, StringComparison.Ordinal);
        Assert.False(NodePoolAutoscaler.CanHost(pool, rig.Get("resident").Spec));
        Assert.True(NodePoolAutoscaler.CanHost(pool, rig.Get("needs-room").Spec));

        // No agent has reported any replica running, let alone ready: 0 of 8 ready. Ten steps, a second apart while the
        // engine and the controller keep running, and no node.
        for (int step = 0; step < 10; step++)
        {
            Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
            Assert.Equal("LowReadiness", rig.Held("general"));
            await rig.RunUntil(() => false, rounds: 4);
        }
        Assert.Equal(0, rig.PoolNodes("general"));
        Assert.Equal(10, rig.Autoscaler.Held);

        // The agents report the 8 ready: capacity is now the bottleneck. 12 cores are missing (3 nodes); the step adds 2.
        // Fixable by this pool: the 12, not the 3 residency replicas.
        rig.AgentsReportReady("needs-room");
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status.Ready == 8), "8 ready in status");
        Assert.Equal(2, await rig.Autoscaler.StepAsync(default));
        Assert.Equal(2, rig.PoolNodes("general"));
        var status = rig.Store.Get<NodePool>("", "general")!.Status;
        Assert.Equal((12, 3), (status.PendingFixable, status.PendingUnfixable));
        // Until the scheduler uses them, the next step adds nothing.
        Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
        Assert.Equal("CapacityNotAbsorbed", rig.Held("general"));

        // The parked replicas are retried and land on the new nodes; once ready, the last 4 need one more node.
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status is { Bound: 16, PendingReason: not null }), "16 bound on the grown pool, 4 parked again");
        rig.AgentsReportReady("needs-room");
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status.Ready == 16), "16 ready");
        Assert.Equal(1, await rig.Autoscaler.StepAsync(default));   // 4 cores missing: one node, under the step limit
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status.Bound == 20), "20 bound");
        rig.AgentsReportReady("needs-room");
        Assert.True(await rig.RunUntil(() => rig.Get("needs-room").Status is { Ready: 20, PendingReason: null }), "all ready, nothing pending for capacity");

        // Only the residency replicas still wait, every node full, their reason still naming the resource fit: no more
        // nodes however many steps run, and none of them went to the pool.
        Assert.True(await rig.RunUntil(() => rig.Get("resident").Status.PendingReason?.Contains("rejected for InsufficientResources", StringComparison.Ordinal) == true),
            "the residency replicas parked again on the full cell");
        for (int step = 0; step < 5; step++) Assert.Equal(0, await rig.Autoscaler.StepAsync(default));
        Assert.Equal(3, rig.PoolNodes("general"));
        status = rig.Store.Get<NodePool>("", "general")!.Status;
        Assert.Equal((0, 3), (status.PendingFixable, status.PendingUnfixable));
        Assert.Null(rig.Held("general"));
        Assert.Equal(0, rig.Get("resident").Status.Bound);
        Assert.Equal(3, rig.Autoscaler.NodesAdded);
        Assert.Empty(rig.Cell.Audit());
    }

    [Theory]
    [InlineData("3 task(s) unplaced after 3 attempts; no feasible node for 3 task(s) on the last attempt: 4 of 4 nodes considered rejected for ResidencyViolation")]
    [InlineData("3 task(s) unplaced after 3 attempts; no feasible node for 3 task(s) on the last attempt: 4 of 4 nodes considered rejected for RegionAvoided")]
    public void Residency_and_region_avoidance_reasons_are_constraints_not_other(string reason)
        => Assert.Equal(PendingClass.Constraint, PendingReasons.Classify(reason));

    [Fact]
    public void A_pool_hosts_only_replicas_its_nodes_could_run_by_region_and_node_selector()
    {
        var pool = new NodePool();
        pool.Metadata.Name = "eu";
        pool.Spec.Labels[Topology.RegionLabel] = "eu-central";
        pool.Spec.Labels["disk"] = "ssd";
        var any = Objects.Workload("any").Spec;
        Assert.True(NodePoolAutoscaler.CanHost(pool, any));
        var ledger = Objects.Workload("ledger").Spec;
        ledger.Topology.RequiredRegions = ["eu-central"];
        ledger.NodeSelector["disk"] = "ssd";
        ledger.NodeSelector[NodePool.PoolLabel] = "eu";
        Assert.True(NodePoolAutoscaler.CanHost(pool, ledger));
        ledger.NodeSelector["disk"] = "hdd";
        Assert.False(NodePoolAutoscaler.CanHost(pool, ledger));
        var us = Objects.Workload("us").Spec;
        us.Topology.RequiredRegions = ["us-east"];
        Assert.False(NodePoolAutoscaler.CanHost(pool, us));
        var notEu = Objects.Workload("not-eu").Spec;
        notEu.Topology.AvoidRegions = ["eu-central"];
        Assert.False(NodePoolAutoscaler.CanHost(pool, notEu));
    }
}
