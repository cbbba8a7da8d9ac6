using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;
using Xunit.Abstractions;

namespace Omega.ControlPlane.Tests;

/// <summary>The rollout controller: its state machine (Track, Plan, Advance) alone, then through the workload controller.</summary>
public sealed class RolloutControllerTests(ITestOutputHelper output)
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 1, 0, 0, 0, TimeSpan.Zero);

    private static WorkloadSpec Spec(long cpu = 1000, int replicas = 3) => new() { Replicas = replicas, Resources = new ResourceRequest { CpuMillis = cpu, MemoryBytes = 1L << 30 } };

    [Fact]
    public void Track_starts_a_rollout_only_for_a_new_template_and_never_restarts_a_rolled_back_one()
    {
        var s = new WorkloadStatus { Replicas = [new ReplicaAssignment(0, 0), new ReplicaAssignment(1, 1)] };
        Assert.True(RolloutController.Track(s, Spec(), 1, T0, batch: false));
        Assert.Equal((RolloutPhases.Complete, 1L, 1L), (s.Rollout.Phase, s.Rollout.Revision, s.Rollout.StableRevision));
        Assert.All(s.Replicas, a => Assert.Equal(1, a.Revision)); // replicas from before rollouts adopted as stable

        // Replica count and rollout settings are not template: nothing starts.
        var scaled = Spec(replicas: 7);
        scaled.MaxSurge = 4;
        scaled.MinReadySeconds = 3;
        Assert.False(RolloutController.Track(s, scaled, 2, T0, batch: false));
        Assert.Equal(RolloutPhases.Complete, s.Rollout.Phase);

        // A new template: target revision 3, the stable one kept for rollback.
        Assert.True(RolloutController.Track(s, Spec(cpu: 2000), 3, T0, batch: false));
        Assert.Equal((RolloutPhases.Progressing, 3L, 1L), (s.Rollout.Phase, s.Rollout.Revision, s.Rollout.StableRevision));
        Assert.Equal([1L, 3L], s.Templates.Select(t => t.Revision));
        Assert.Equal(2000, RolloutController.Find(s, 3)!.Spec.Resources.CpuMillis);

        // Rolled back: the spec still asks for revision 3's template, which is not started again.
        Assert.True(RolloutController.Advance(s, 3, 1, 0, 0, complete: false, T0.AddMinutes(11), T0, TimeSpan.FromMinutes(10), 3));
        Assert.Equal((RolloutPhases.RolledBack, 1L), (s.Rollout.Phase, s.Rollout.Revision));
        Assert.False(RolloutController.Track(s, Spec(cpu: 2000), 3, T0.AddMinutes(12), batch: false));
        Assert.Equal(1, s.Rollout.Revision);
        // Another template does start.
        Assert.True(RolloutController.Track(s, Spec(cpu: 1500), 4, T0.AddMinutes(13), batch: false));
        Assert.Equal((RolloutPhases.Progressing, 4L, 1L), (s.Rollout.Phase, s.Rollout.Revision, s.Rollout.StableRevision));
        Assert.Null(s.Rollout.FailedHash);
        // Reverting to the stable template mid-rollout targets it again.
        Assert.True(RolloutController.Track(s, Spec(), 5, T0.AddMinutes(14), batch: false));
        Assert.Equal((1L, 1L), (s.Rollout.Revision, s.Rollout.StableRevision));
        Assert.Single(s.Templates);
    }

    [Fact]
    public void Advance_completes_records_progress_and_rolls_back_past_the_deadline_with_the_reason_in_conditions()
    {
        var s = new WorkloadStatus();
        RolloutController.Track(s, Spec(), 1, T0, false);
        RolloutController.Track(s, Spec(cpu: 2000), 2, T0, false);
        var deadline = TimeSpan.FromSeconds(60);

        // Progress at +50 s moves the deadline.
        Assert.False(RolloutController.Advance(s, 3, 2, 1, 1, false, T0.AddSeconds(50), T0, deadline, 2));
        Assert.Equal(T0.AddSeconds(50), s.Rollout.LastProgressAt);
        Assert.Equal((2, 1, 1), (s.Rollout.Updated, s.Rollout.UpdatedReady, s.Rollout.UpdatedServing));
        Assert.False(RolloutController.Advance(s, 3, 3, 1, 1, false, T0.AddSeconds(100), T0, deadline, 2));
        Assert.Equal(ConditionStatus.False, Conditions.Find(s.Conditions, RolloutController.RolloutComplete)!.Status);
        // Time before the controller started (notBefore) does not count.
        Assert.False(RolloutController.Advance(s, 3, 3, 1, 1, false, T0.AddSeconds(150), T0.AddSeconds(140), deadline, 2));
        Assert.True(RolloutController.Advance(s, 3, 3, 1, 1, false, T0.AddSeconds(200), T0.AddSeconds(140), deadline, 2));
        Assert.Equal(RolloutPhases.RolledBack, s.Rollout.Phase);
        Assert.Equal((1L, 2L), (s.Rollout.Revision, s.Rollout.FailedRevision));
        var rolledBack = Conditions.Find(s.Conditions, RolloutController.RolledBack)!;
        Assert.Equal((ConditionStatus.True, "ProgressDeadlineExceeded"), (rolledBack.Status, rolledBack.Reason));
        Assert.Contains("2 of 3 replicas of revision 2 not serving", rolledBack.Message, StringComparison.Ordinal);
        Assert.Equal([1L], s.Templates.Select(t => t.Revision));

        // A next template rolls out and completes: it becomes stable, the old template is dropped, RolledBack clears.
        RolloutController.Track(s, Spec(cpu: 1500), 3, T0.AddSeconds(300), false);
        Assert.False(RolloutController.Advance(s, 3, 3, 3, 3, true, T0.AddSeconds(310), T0, deadline, 3));
        Assert.Equal((RolloutPhases.Complete, 3L, 3L), (s.Rollout.Phase, s.Rollout.Revision, s.Rollout.StableRevision));
        Assert.Equal([3L], s.Templates.Select(t => t.Revision));
        Assert.Equal(ConditionStatus.True, Conditions.Find(s.Conditions, RolloutController.RolloutComplete)!.Status);
        Assert.Equal((ConditionStatus.False, "NewRevision"), (Conditions.Find(s.Conditions, RolloutController.RolledBack)!.Status, Conditions.Find(s.Conditions, RolloutController.RolledBack)!.Reason));
    }

    [Fact]
    public void Plan_with_no_surge_retires_within_the_unavailability_budget_before_creating()
    {
        // 3 serving old replicas (revision 1), target 2, maxSurge 0, maxUnavailable 1.
        var live = new List<ReplicaView> { new(0, 0, 1, true), new(1, 1, 1, true), new(2, 2, 1, true) };
        var p = RolloutController.Plan(3, 0, 1, 2, live, liveSerials: 3);
        Assert.Equal([0], p.Retire); // only one: a second would leave 1 serving slot < 3 - 1
        Assert.Empty(p.Create);
        Assert.True(p.Blocked);
        // Next step: serial 0 released; slot 0 gets its new replica (within replicas + 0).
        live.RemoveAt(0);
        p = RolloutController.Plan(3, 0, 1, 2, live, liveSerials: 2);
        Assert.Equal([0], p.Create);
        Assert.Empty(p.Retire);
        // The new replica of slot 0 serves: slot 1's old one may go now.
        live.Add(new ReplicaView(0, 3, 2, true));
        p = RolloutController.Plan(3, 0, 1, 2, live, liveSerials: 3);
        Assert.Equal([1], p.Retire);
        // An unserving old replica is retired before a serving one, whatever the budget.
        live = [new(0, 0, 1, false), new(1, 1, 1, true), new(2, 2, 1, true)];
        p = RolloutController.Plan(3, 0, 3, 2, live, liveSerials: 3);
        Assert.Equal([0, 1, 2], p.Retire);
    }

    [Fact]
    public void Seeded_rollouts_never_exceed_replicas_plus_surge_nor_drop_below_the_unavailability_floor_and_complete()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        for (int round = 0; round < 200; round++)
        {
            int n = rng.Next(1, 12), surge = rng.Next(0, 4), unavailable = rng.Next(1, 4);
            if (surge == 0 && unavailable == 0) unavailable = 1;
            // Model: serial -> (slot, revision, serving); retired serials are released one step later.
            var live = new List<ReplicaView>();
            for (int i = 0; i < n; i++) live.Add(new ReplicaView(i, i, 1, true));
            var releasing = new List<int>();
            int nextSerial = n, steps = 0;
            while (live.Any(v => v.Revision != 2 || !v.Serving) || live.Count != n)
            {
                Assert.True(++steps < 500, $"seed {seed} round {round}: no convergence (n {n}, surge {surge}, unavailable {unavailable})");
                releasing.Clear(); // released by the act phase of the previous step
                var p = RolloutController.Plan(n, surge, unavailable, 2, live, live.Count + releasing.Count);
                foreach (int serial in p.Retire)
                {
                    live.RemoveAll(v => v.Serial == serial);
                    releasing.Add(serial);
                }
                foreach (int slot in p.Create) live.Add(new ReplicaView(slot, nextSerial++, 2, false));
                Assert.True(live.Count + releasing.Count <= n + surge, $"seed {seed}: {live.Count} live + {releasing.Count} releasing > {n} + {surge}");
                int servingSlots = live.Where(v => v.Serving).Select(v => v.Slot).Distinct().Count();
                Assert.True(servingSlots >= Math.Max(0, n - unavailable), $"seed {seed}: {servingSlots} serving slots < {n} - {unavailable}");
                // New replicas become ready with some probability per step (readiness takes a while).
                for (int i = 0; i < live.Count; i++)
                    if (!live[i].Serving && rng.Next(3) == 0) live[i] = live[i] with { Serving = true };
            }
        }
    }

    [Fact]
    public async Task A_template_change_replaces_every_replica_within_surge_and_an_unplaceable_one_is_rolled_back()
    {
        var time = new FakeTimeProvider(T0);
        using var cell = new Cell(new CellOptions { Time = time });
        using var plane = new Plane(cell, time);
        var w = Objects.Workload("web", replicas: 4);
        w.Spec.MaxSurge = 1;
        w.Spec.MaxUnavailable = 1;
        w.Spec.ProgressDeadlineSeconds = 20;
        Assert.True((await plane.Store.CreateAsync(w)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Converged("web", 4)));

        // New resources: every replica is replaced; never more than 4 + 1 bindings.
        var cur = plane.Get("web");
        cur.Spec.Resources.CpuMillis = 1500;
        var updated = await plane.Store.UpdateAsync(cur);
        Assert.True(updated.IsOk);
        long gen = updated.Object!.Metadata.Generation;
        int most = 0;
        Assert.True(await plane.RunUntil(() =>
        {
            var b = plane.Bindings(plane.Get("web"));
            most = Math.Max(most, b.Count);
            return b.Count == 4 && b.All(a => a.Resources.CpuMillis == 1500) && plane.Get("web").Status.Rollout.Phase == RolloutPhases.Complete;
        }));
        Assert.InRange(most, 4, 5);
        var done = plane.Get("web");
        Assert.Equal((gen, gen), (done.Status.Rollout.Revision, done.Status.Rollout.StableRevision));
        Assert.All(done.Status.Replicas, a => Assert.Equal(gen, a.Revision));
        Assert.True(Conditions.IsTrue(done.Status.Conditions, RolloutController.RolloutComplete));

        // A template no node can take: its replicas never serve; past the deadline the rollout is rolled back and the
        // stable template's replicas stay (or come back).
        done.Spec.NodeSelector["pool"] = "nowhere";
        Assert.True((await plane.Store.UpdateAsync(done)).IsOk);
        Assert.True(await plane.RunUntil(() => plane.Get("web").Status.Rollout.Phase == RolloutPhases.RolledBack && plane.Converged("web", 4)));
        var back = plane.Get("web");
        Assert.Equal(gen, back.Status.Rollout.Revision);
        Assert.True(Conditions.IsTrue(back.Status.Conditions, RolloutController.RolledBack));
        Assert.Equal("ProgressDeadlineExceeded", Conditions.Find(back.Status.Conditions, RolloutController.RolledBack)!.Reason);
        Assert.Equal(4, plane.Bindings(back).Count(a => a.Resources.CpuMillis == 1500));
        Assert.All(back.Status.Replicas, a => Assert.Equal(gen, a.Revision));
        Assert.Empty(cell.Audit());
    }
}
