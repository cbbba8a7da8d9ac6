using Omega.Cells;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;
using Xunit.Abstractions;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// Issue 18, item 4: decision replay from the log. Decisions of real workload reconciles are kept durably with their
/// inputs; after a restart of the data directory the replayer re-runs the real pipeline on the reconstructed state and
/// must reach the recorded choice for the same reasons, and a replay under another policy revision shows the difference.
/// </summary>
public sealed class DecisionReplayTests(ITestOutputHelper output)
{
    // 300 nodes (more than the pipeline's 128-probe budget, so the sampling draws random node ids and the decision's
    // random stream matters), of mixed sizes, labels, taints, failure domains and load; one draining.
    private static void BuildCell(Cell cell, int seed)
    {
        var rng = new Random(seed);
        cell.CreateTenant("t1", ResourceVector.FromCoresAndGiB(500, 2000), out _);
        for (int i = 0; i < 300; i++)
        {
            var labels = new Dictionary<string, string> { ["disk"] = i % 3 == 0 ? "ssd" : "hdd" };
            string[]? taints = i % 10 == 0 ? ["gpu-only"] : null;
            var cap = i % 4 == 0 ? ResourceVector.FromCoresAndGiB(16, 64) : ResourceVector.FromCoresAndGiB(4, 16);
            cell.AddNode(new NodeSpec($"n{i}", cap, $"rack-{i % 12}", labels, taints));
        }
        cell.SetNodeStatus(new NodeId(7), NodeStatus.Draining);
        // Background load, so bin-packing and spread see different nodes differently.
        var lease = cell.AcquireLease("load", TimeSpan.FromDays(1)).Lease;
        var tx = new Transaction(lease);
        for (int i = 0; i < 300; i++)
            if (rng.Next(3) == 0) tx.Add(new Claim(new TaskId(new JobId(9_000_000 + i), 0), new NodeId(i), ResourceVector.FromCoresAndGiB(rng.Next(1, 4), rng.Next(1, 8)), 0));
        Assert.True(cell.Commit(tx).AppliedCount > 50);
    }

    private static Workload Make(string name, int replicas, Action<WorkloadSpec>? edit = null)
    {
        var w = Objects.Workload(name, replicas);
        edit?.Invoke(w.Spec);
        return w;
    }

    [Fact]
    public async Task A_random_sample_of_kept_decisions_replays_to_the_same_choice_and_a_policy_change_shows_the_difference()
    {
        int seed = Environment.TickCount & 0xFFFF;
        output.WriteLine($"sample seed {seed}");
        using var dir = new TempDir();
        var time = dir.Time;
        using (var cs = dir.Open())
        {
            BuildCell(cs.Cell, 5);
            DecisionArchive? archive = null;
            PolicyRevisions? revisions = null;
            using var plane = new Plane(cs.Cell, time, TempDir.Durability(cs), addNodes: false, configure: (store, o) =>
            {
                archive = new DecisionArchive(store, new DecisionArchiveOptions { KeepFirstPerGeneration = 1000 });
                o.DecisionSink = archive;
                revisions = new PolicyRevisions(store, new PolicySource(), time);
                o.Policy = revisions.Source;
            });
            // Revision 1 is active for the placements below, so the records name it and the replay must compile it from the store.
            Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":2,"domain-spread":1}}""", out var r1, out _));
            Assert.True((await revisions!.StageAsync(r1)).IsOk);
            Assert.True((await revisions.PromoteAsync(1)).IsOk);
            Assert.True((await plane.Store.CreateAsync(Make("web", 12))).IsOk);
            Assert.True((await plane.Store.CreateAsync(Make("ssd", 6, s => s.NodeSelector["disk"] = "ssd"))).IsOk);
            Assert.True((await plane.Store.CreateAsync(Make("gpu", 4, s => { s.Tolerations.Add("gpu-only"); s.AntiAffinity = AntiAffinity.FailureDomain; }))).IsOk);
            Assert.True((await plane.Store.CreateAsync(Make("big", 3, s => s.Resources = new ResourceRequest { CpuMillis = 12_000, MemoryBytes = 8L << 30 }))).IsOk);
            Assert.True(await plane.RunUntil(() => plane.Get("web").Status.Bound == 12 && plane.Get("ssd").Status.Bound == 6 && plane.Get("gpu").Status.Bound == 4 && plane.Get("big").Status.Bound == 3));
            // A policy change after the decisions: revision 2 weighs differently and switches the taint filter off.
            Assert.True(PolicyRevisions.TryParse("""{"weights":{"bin-packing":0,"domain-spread":3},"filters":{"taints":false}}""", out var r2, out _));
            Assert.True((await revisions.StageAsync(r2)).IsOk);
            Assert.True((await revisions.PromoteAsync(2)).IsOk);
            Assert.True(await archive!.FlushAsync() >= 25);
            Assert.Equal(0, archive.Failed);
            await archive.DisposeAsync();
            revisions.Dispose();
        }

        // Reopen the data directory: everything below comes from the journal.
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, new ObjectStoreOptions { Time = time }, TempDir.Durability(cs));
            var replayer = new DecisionReplayer(store);
            var all = replayer.All();
            Assert.True(all.Count >= 25, $"{all.Count} records kept");
            Assert.All(all, d => Assert.NotNull(d.Spec.Inputs));
            var rng = new Random(seed);
            var sample = all.OrderBy(_ => rng.Next()).Take(20).ToList();
            int sampled = 0;
            foreach (var d in sample)
            {
                var report = replayer.Replay(d);
                Assert.True(report.Same, report.ToString());
                Assert.Equal(1, report.ReplayedRevision);
                // The replay really chose something comparable: the recorded facts are not empty.
                Assert.Equal(d.Spec.Inputs!.ToInputs().TaskIndexes().Length, report.Outcome!.Facts.Choices.Count);
                Assert.Contains(report.Outcome.Facts.Choices, c => c.Node is not null);
                sampled++;
            }
            Assert.Equal(20, sampled);
            Assert.Contains(all, d => d.Spec.Inputs!.Probes.Distinct().Count() < 300 && d.Spec.Inputs.Probes.Count > 0); // random sampling, not a full scan

            // The same decisions under revision 2: the scores (weights) and the filters (taints off) differ, and the report says how.
            int changedNode = 0, changedFilter = 0;
            foreach (var d in all)
            {
                var report = replayer.Replay(d, policyRevision: 2);
                Assert.False(report.Same);
                Assert.Contains("policy: recorded r1, replayed under r2", report.Differences);
                if (report.Differences.Any(x => x.StartsWith("task ", StringComparison.Ordinal) && !x.Contains(" score ", StringComparison.Ordinal) || ChosenNodeDiffers(report))) changedNode++;
                if (report.Differences.Any(x => x.StartsWith("filtered Taint", StringComparison.Ordinal))) changedFilter++;
            }
            output.WriteLine($"{all.Count} replayed under r2: {changedNode} chose another node, {changedFilter} filtered differently");
            Assert.True(changedNode > 0);
            Assert.True(changedFilter > 0);
            Assert.Contains("DIFFERENT under policy r2", replayer.Replay(all[0], 2).ToString(), StringComparison.Ordinal);

            // The comparison can fail: a record whose inputs were altered (another random stream) no longer replays the same.
            var tampered = all.First(d => d.Spec.Inputs!.Probes.Count > 8);
            tampered.Spec.Inputs!.Seed ^= 0x5DEECE66DL;
            var bad = replayer.Replay(tampered);
            Assert.False(bad.Same);
            Assert.Contains(bad.Outcome!.Notes, n => n.Contains("left the recorded one", StringComparison.Ordinal));

            Assert.NotNull(replayer.Find($"t1/{all[0].Metadata.Name}"));
            Assert.NotNull(replayer.Find(all[0].Metadata.Name));
            Assert.Null(replayer.Find("t1/no-such"));
        }
    }

    private static bool ChosenNodeDiffers(DecisionReplayReport r)
    {
        for (int i = 0; i < r.Recorded.Choices.Count; i++)
            if (r.Recorded.Choices[i].Node != r.Outcome!.Facts.Choices[i].Node) return true;
        return false;
    }

    [Fact]
    public void The_engine_records_inputs_that_replay_to_the_same_choice_with_groups_selectors_tolerations_and_no_feasible_node()
    {
        using var cell = new Cell();
        BuildCell(cell, 9);
        cell.TryGetTenant("t1", out var t1);
        var options = new SchedulingOptions { Seed = 4 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "s", Workers = 1, MaxAttempts = 2 });
        using var engine = new SchedulingEngine(cell, options);
        // A gang-free multi-task job with a node-scoped group (spread and anti-affinity read the live view), jobs with
        // selectors and tolerations, and one that cannot be placed at all (filter reasons only).
        Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId(1L << 20), t1, 5, 6, ResourceVector.FromCoresAndGiB(1, 1)) { Group = new PlacementGroup(20, PlacementScope.Node, PlacementScope.FailureDomain) }).Status);
        Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId((1L << 20) + 1), t1, 5, 3, ResourceVector.FromCoresAndGiB(1, 1)) { Group = new PlacementGroup(20, PlacementScope.Node, PlacementScope.FailureDomain) }).Status);
        Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId(2), t1, 0, 2, ResourceVector.FromCoresAndGiB(2, 2), requiredLabels: new Dictionary<string, string> { ["disk"] = "ssd" }, tolerations: ["gpu-only"])).Status);
        Assert.Equal(EnqueueStatus.Accepted, engine.Submit(new JobSpec(new JobId(3), t1, 0, 1, ResourceVector.FromCoresAndGiB(1, 1), requiredLabels: new Dictionary<string, string> { ["disk"] = "nvme" })).Status);
        engine.RunUntilIdle();
        int n = 0;
        foreach (var job in new long[] { 1L << 20, (1L << 20) + 1, 2, 3 })
        {
            var rec = engine.Decisions.ForJob(new JobId(job))!;
            Assert.NotNull(rec.Inputs);
            var outcome = DecisionReplay.Replay(rec.Inputs!, CompiledPolicy.Default, rec.TenantUsage, rec.TenantQuota);
            var diff = DecisionFacts.From(rec).Differences(outcome.Facts);
            Assert.True(diff.Count == 0 && outcome.Notes.Count == 0, $"job {job}: {string.Join("; ", diff)} | {string.Join("; ", outcome.Notes)}\n{rec.Explain()}");
            n++;
        }
        Assert.Equal(4, n);
        Assert.NotEmpty(engine.Decisions.ForJob(new JobId((1L << 20) + 1))!.Inputs!.GroupReads); // the second group job read live members
        Assert.Empty(engine.Decisions.ForJob(new JobId(3))!.Tasks); // unplaceable (filter reasons only), still replayed the same
    }
}
