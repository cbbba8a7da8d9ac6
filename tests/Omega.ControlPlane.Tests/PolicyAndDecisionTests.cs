using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;

namespace Omega.ControlPlane.Tests;

/// <summary>SchedulerPolicy parsing and revisions, decisions naming their revision, and durable decision reconstruction.</summary>
public class PolicyAndDecisionTests
{
    private static FakeTimeProvider Clock() => new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    [Theory]
    [InlineData("""{"weights":{"bin-packing":2}}""", null)]
    [InlineData("""{"kind":"SchedulerPolicy","spec":{"filters":{"taints":false},"parameters":{"feasibleFloor":"4"},"priorityRules":[{"atLeast":100,"preempt":true}]}}""", null)]
    [InlineData("""{"weights":{"no-such":1}}""", "weights.no-such: unknown scorer")]
    [InlineData("""{"filters":{"resource-fit":false}}""", "filters.resource-fit: cannot be switched off")]
    [InlineData("""{"weights":{"bin-packing":-1}}""", "weights.bin-packing: must be a number")]
    [InlineData("""{"weights":{"bin-packing":5000}}""", "weights.bin-packing: must be a number")]
    [InlineData("""{"parameters":{"feasibleFloor":"zero"}}""", "parameters.feasibleFloor: must be an integer")]
    [InlineData("""{"parameters":{"color":"1"}}""", "parameters.color: unknown parameter")]
    [InlineData("""{"priorityRules":[{"atLeast":5},{"atLeast":5}]}""", "atLeast 5 appears twice")]
    [InlineData("""{"kind":"Workload","spec":{}}""", "kind must be SchedulerPolicy")]
    [InlineData("""{"weights":""", "malformed JSON")]
    public void Policy_documents_are_parsed_and_validated_with_the_field_named(string json, string? error)
    {
        bool ok = PolicyRevisions.TryParse(json, out var settings, out var problem);
        if (error is null)
        {
            Assert.True(ok, problem);
            Assert.NotNull(settings.Compile(7));
        }
        else
        {
            Assert.False(ok);
            Assert.Contains(error, problem, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_compiled_policy_applies_switches_weights_parameters_and_priority_rules()
    {
        Assert.True(PolicyRevisions.TryParse("""{"filters":{"taints":false},"weights":{"domain-spread":0,"bin-packing":3},"priorityRules":[{"atLeast":0,"preempt":false},{"atLeast":500,"preempt":true}]}""", out var s, out var e), e);
        var p = s.Compile(4);
        Assert.Equal(4, p.Revision);
        Assert.DoesNotContain("taints", p.FilterNames);
        Assert.Contains("group-anti-affinity", p.FilterNames);
        Assert.DoesNotContain(p.ScorerWeights, w => w.Name == "domain-spread");
        Assert.Contains(("bin-packing", 3.0), p.ScorerWeights);
        Assert.False(p.MayPreempt(100));
        Assert.True(p.MayPreempt(500));
        Assert.False(CompiledPolicy.Default.MayPreempt(0));
        Assert.True(CompiledPolicy.Default.MayPreempt(1));
    }

    [Fact]
    public async Task Revisions_are_staged_promoted_and_rolled_back_durably_across_a_restart()
    {
        using var dir = new TempDir();
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, new ObjectStoreOptions { Time = dir.Time }, TempDir.Durability(cs));
            using var revisions = new PolicyRevisions(store, new PolicySource(), dir.Time);
            Assert.Equal(0, revisions.Load());
            Assert.Equal(PolicyStatus.NothingToUndo, (await revisions.RollbackAsync()).Status);
            Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":1}}""", out var s1, out _));
            Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":9}}""", out var s2, out _));
            var r1 = await revisions.StageAsync(s1);
            var r2 = await revisions.StageAsync(s2);
            Assert.Equal((PolicyStatus.Ok, 1), (r1.Status, r1.Revision));
            Assert.Equal((PolicyStatus.Ok, 2), (r2.Status, r2.Revision));
            Assert.Equal(0, revisions.ActiveRevision); // staged is not active
            Assert.Equal(PolicyStatus.RevisionNotFound, (await revisions.PromoteAsync(3)).Status);
            Assert.True((await revisions.PromoteAsync(1)).IsOk);
            Assert.Equal(PolicyStatus.NothingToUndo, (await revisions.RollbackAsync()).Status); // r1 was the first promoted
            Assert.True((await revisions.PromoteAsync(2)).IsOk);
            Assert.Equal(2, revisions.Source.Current.Revision);
            var (list, _) = revisions.History();
            Assert.Equal(["superseded", "active"], list.Select(r => r.State));
            var undo = await revisions.RollbackAsync();
            Assert.True(undo.IsOk, undo.Message);
            Assert.Equal(1, undo.Revision);
            Assert.Equal(1, revisions.Source.Current.Revision);
            var (_, history) = revisions.History();
            Assert.Equal(["promote", "promote", "rollback"], history.Select(h => h.Action));
            Assert.Equal((1, 2), (history[^1].Revision, history[^1].From));
        }
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, new ObjectStoreOptions { Time = dir.Time }, TempDir.Durability(cs));
            var source = new PolicySource();
            using var revisions = new PolicyRevisions(store, source, dir.Time);
            Assert.Equal(1, revisions.Load()); // the rollback survived the restart
            Assert.Equal(1, source.Current.Revision);
            Assert.Equal(["active", "superseded"], revisions.History().Revisions.Select(r => r.State));
            // Staging continues after the highest revision kept.
            Assert.True(PolicyRevisions.TryParse("{}", out var s3, out _));
            Assert.Equal(3, (await revisions.StageAsync(s3)).Revision);
        }
    }

    [Fact]
    public async Task A_decision_records_the_policy_revision_and_a_rollback_changes_the_next_decisions()
    {
        var time = Clock();
        using var cell = new Cell(new CellOptions { Time = time });
        cell.CreateTenant("t1", null, out _);
        for (int i = 0; i < 4; i++) cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(8, 32), $"rack-{i % 2}"));
        using var store = new ObjectStore(cell, new ObjectStoreOptions { Time = time });
        var source = new PolicySource();
        using var revisions = new PolicyRevisions(store, source, time);
        var options = new SchedulingOptions { Time = time, Seed = 3, Policy = source };
        options.Kinds.Add(new SchedulerKindOptions { Name = "s", Workers = 1 });
        using var engine = new SchedulingEngine(cell, options);
        cell.TryGetTenant("t1", out var t1);

        int Decide(long job)
        {
            Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId(job), t1, 0, 1, ResourceVector.FromCoresAndGiB(1, 1))).Status);
            engine.RunUntilIdle();
            return engine.Decisions.ForJob(new JobId(job))!.PolicyRevision;
        }

        Assert.Equal(0, Decide(1)); // the built-in policy
        Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":1}}""", out var a, out _));
        Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":0},"filters":{"taints":false}}""", out var b, out _));
        await revisions.StageAsync(a);
        await revisions.StageAsync(b);
        Assert.True((await revisions.PromoteAsync(1)).IsOk);
        Assert.Equal(1, Decide(2));
        Assert.True((await revisions.PromoteAsync(2)).IsOk);
        Assert.Equal(2, Decide(3));
        Assert.Contains("with policy r2", engine.Explain(new TaskId(3, 0))!.Explain(), StringComparison.Ordinal);
        Assert.True((await revisions.RollbackAsync()).IsOk);
        Assert.Equal(1, Decide(4));

        // The rollback changes behaviour, not only the label: revision 2 switched the taint filter off, revision 1 has it.
        cell.AddNode(new NodeSpec("tainted", ResourceVector.FromCoresAndGiB(64, 256), "rack-9", taints: ["gpu-only"]));
        for (int i = 0; i < 4; i++) Assert.Equal(NodeOpStatus.Ok, cell.SetNodeStatus(new NodeId(i), NodeStatus.Draining));
        Assert.Equal(1, Decide(5));
        Assert.False(cell.TryGetAllocation(new TaskId(5, 0), out _)); // r1 honours the taint: not placed
        Assert.True((await revisions.PromoteAsync(2)).IsOk);
        Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId(6), t1, 0, 1, ResourceVector.FromCoresAndGiB(1, 1))).Status);
        engine.RunUntilIdle();
        Assert.True(cell.TryGetAllocation(new TaskId(6, 0), out var placed)); // r2 ignores taints
        Assert.Equal("tainted", cell.Snapshot().TryGetNode(placed.Node, out var v) == SnapshotRead.Ok ? v.Spec.Name : "");
    }

    [Fact]
    public async Task Workload_anti_affinity_reaches_the_engine_and_the_cell_keeps_replicas_apart()
    {
        var time = Clock();
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time); // 8 nodes over rack-0 and rack-1
        var w = Objects.Workload("spread", replicas: 3);
        w.Spec.AntiAffinity = AntiAffinity.FailureDomain;
        Assert.True((await plane.Store.CreateAsync(w)).IsOk);
        await plane.RunUntil(() => plane.Get("spread").Status.Bound == 2 && plane.Get("spread").Status.PendingReason is not null);
        var bindings = plane.Bindings(plane.Get("spread"));
        Assert.Equal(2, bindings.Count); // two racks, one replica each; the third cannot be placed
        var racks = bindings.Select(a => cell.Snapshot().TryGetNode(a.Node, out var v) == SnapshotRead.Ok ? v.Spec.FailureDomain : "?").ToHashSet();
        Assert.Equal(2, racks.Count);
        Assert.Contains("AntiAffinity", plane.Get("spread").Status.PendingReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_workload_generations_decisions_survive_a_restart_and_explain_shows_their_fields()
    {
        using var dir = new TempDir();
        var time = dir.Time;
        long generation;
        using (var cs = dir.Open())
        {
            DecisionArchive? archive = null;
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs), configure: (store, o) =>
            {
                archive = new DecisionArchive(store);
                o.DecisionSink = archive;
            });
            cs.Cell.TryGetTenant("t1", out var t1);
            cs.Cell.SetTenantQuota(t1, ResourceVector.FromCoresAndGiB(100, 400));
            var w = Objects.Workload("api", replicas: 2);
            Assert.True((await plane.Store.CreateAsync(w)).IsOk);
            Assert.True(await plane.RunUntil(() => plane.Converged("api", 2)));
            generation = plane.Get("api").Metadata.Generation;
            Assert.True(await archive!.FlushAsync() >= 2);
            Assert.Equal(0, archive.Failed);
            await archive.DisposeAsync();
        }
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, new ObjectStoreOptions { Time = time }, TempDir.Durability(cs));
            await using var archive = new DecisionArchive(store);
            var kept = archive.For("t1", "api", generation);
            Assert.Equal(2, kept.Select(d => d.Spec.Slot).Distinct().Count());
            var d = kept[0].Spec;
            Assert.Equal(generation, d.WorkloadGeneration);
            Assert.Equal(0, d.PolicyRevision);
            Assert.True(d.SnapshotVersion > 0);
            Assert.True(d.NodesConsidered is > 0 and <= 8);
            Assert.Equal("Committed", d.CommitStatus);
            Assert.StartsWith("workload-controller", d.NextOwner, StringComparison.Ordinal);
            Assert.NotEmpty(d.TenantQuota); // the quota at decision time
            Assert.Contains($"workload t1/api generation {generation}", d.Text, StringComparison.Ordinal);
            Assert.Contains("tenant usage at decision", d.Text, StringComparison.Ordinal);
            Assert.Contains("next owner:", d.Text, StringComparison.Ordinal);
            Assert.Empty(archive.For("t1", "api", generation + 1));
        }
    }
}
