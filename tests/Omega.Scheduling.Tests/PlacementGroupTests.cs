using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Scheduling.Pipeline;
using Xunit.Abstractions;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>
/// Constraint groups (PlacementGroup): the anti-affinity filter and spread scorer over live bindings, the cell's
/// authoritative check at commit, and a seeded concurrent run whose invariant is checked after every step.
/// </summary>
public sealed class PlacementGroupTests(ITestOutputHelper output) : IDisposable
{
    private const int Shift = 20; // like the workload controller: jobs agreeing above bit 20 are one group
    private readonly Cell _cell = new();

    public void Dispose() => _cell.Dispose();

    private static JobSpec Member(long group, int serial, PlacementScope anti, PlacementScope spread = PlacementScope.None, double cores = 1)
        => new(new JobId((group << Shift) | (uint)serial), default, 0, 1, R(cores)) { Group = new PlacementGroup(Shift, anti, spread) };

    private int _schedulers;

    // Plans every task of the job (a filter's context after it holds the tentative placements too).
    private (List<PlannedClaim> Planned, PlanStats Stats, PlacementContext Context) Plan(JobSpec job)
        => PlanTasks(job, job.TaskCount);

    // A context with no tentative placement: what the filters see for the job's first task.
    private PlacementContext ContextFor(JobSpec job) => PlanTasks(job, 0).Context;

    private (List<PlannedClaim> Planned, PlanStats Stats, PlacementContext Context) PlanTasks(JobSpec job, int tasks)
    {
        var pipeline = FullScanPipeline();
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        pipeline.Plan(job, Enumerable.Range(0, tasks).ToArray(), _cell.Snapshot(), default, [], new Random(1), planned, stats, view: _cell);
        return (planned, stats, pipeline.Context);
    }

    private CommitResult Bind(JobSpec job, NodeId node)
    {
        // A scheduler identity per claim, as if many schedulers raced (a live lease's name cannot be acquired again).
        var lease = _cell.AcquireLease($"other-{++_schedulers}", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        tx.Add(new Claim(job.Task(0), node, job.PerTask, View(_cell, node).Version, default, 0, null, Group: job.Group));
        return _cell.Commit(tx).Detach();
    }

    [Fact]
    public void AntiAffinity_filter_rejects_a_node_holding_a_member_of_the_group_and_accepts_others()
    {
        var a = _cell.AddNode(Node("a", domain: "d0"));
        var b = _cell.AddNode(Node("b", domain: "d0"));
        Assert.True(Bind(Member(7, 0, PlacementScope.Node), a).IsCommitted);

        var ctx = ContextFor(Member(7, 1, PlacementScope.Node));
        var filter = new GroupAntiAffinityFilter();
        Assert.Equal(FilterStatus.AntiAffinity, filter.Filter(ctx, View(_cell, a)));
        Assert.Equal(FilterStatus.Feasible, filter.Filter(ctx, View(_cell, b)));
        // Another group is not affected; nor is a job of the same group without anti-affinity.
        var other = ContextFor(Member(8, 0, PlacementScope.Node));
        Assert.Equal(FilterStatus.Feasible, filter.Filter(other, View(_cell, a)));
        var none = ContextFor(Member(7, 2, PlacementScope.None));
        Assert.Equal(FilterStatus.Feasible, filter.Filter(none, View(_cell, a)));
        // Domain scope: both nodes share d0, so both are out.
        var dom = ContextFor(Member(7, 3, PlacementScope.FailureDomain));
        Assert.Equal(FilterStatus.AntiAffinity, filter.Filter(dom, View(_cell, a)));
        Assert.Equal(FilterStatus.AntiAffinity, filter.Filter(dom, View(_cell, b)));
    }

    [Fact]
    public void Pipeline_places_a_multi_task_anti_affine_job_one_task_per_node_and_reports_the_rest_unplaceable()
    {
        for (int i = 0; i < 3; i++) _cell.AddNode(Node($"n{i}", cores: 64, domain: $"d{i}"));
        var job = new JobSpec(new JobId(1), default, 0, 5, R(1)) { Group = new PlacementGroup(0, PlacementScope.Node) };
        var (planned, stats, _) = Plan(job);
        Assert.Equal(3, planned.Count);
        Assert.Equal(3, planned.Select(p => p.Node.Id).Distinct().Count());
        Assert.Equal(2, stats.Unplaceable);
        // Without the constraint all five fit (the nodes have room for 64 each).
        var (free, freeStats, _) = Plan(new JobSpec(new JobId(2), default, 0, 5, R(1)));
        Assert.Equal(5, free.Count);
        Assert.Equal(0, freeStats.Unplaceable);
    }

    [Fact]
    public void Domain_anti_affinity_rejects_every_node_of_an_occupied_domain_and_counts_the_reason()
    {
        var a0 = _cell.AddNode(Node("a0", domain: "d0"));
        _cell.AddNode(Node("a1", domain: "d0"));
        var b0 = _cell.AddNode(Node("b0", domain: "d1"));
        Assert.True(Bind(Member(3, 0, PlacementScope.FailureDomain), a0).IsCommitted);
        var (planned, stats, _) = Plan(Member(3, 1, PlacementScope.FailureDomain));
        Assert.Equal(b0, Assert.Single(planned).Node.Id);
        Assert.Equal(2, stats.FilteredByReason[(int)FilterStatus.AntiAffinity]);
        Assert.True(Bind(Member(3, 1, PlacementScope.FailureDomain), b0).IsCommitted);
        var (none, noneStats, _) = Plan(Member(3, 2, PlacementScope.FailureDomain));
        Assert.Empty(none);
        Assert.Equal(FilterStatus.AntiAffinity, noneStats.DominantRejection);
    }

    [Fact]
    public void Group_spread_scorer_prefers_nodes_and_domains_with_fewer_members()
    {
        var a = _cell.AddNode(Node("a", domain: "d0"));
        var b = _cell.AddNode(Node("b", domain: "d0"));
        var c = _cell.AddNode(Node("c", domain: "d1"));
        Assert.True(Bind(Member(5, 0, PlacementScope.None), a).IsCommitted);
        var scorer = new GroupSpreadScorer();
        var byNode = ContextFor(Member(5, 1, PlacementScope.None, PlacementScope.Node));
        Assert.True(scorer.Score(byNode, View(_cell, b)) > scorer.Score(byNode, View(_cell, a)));
        Assert.Equal(scorer.Score(byNode, View(_cell, b)), scorer.Score(byNode, View(_cell, c)));
        var byDomain = ContextFor(Member(5, 1, PlacementScope.None, PlacementScope.FailureDomain));
        Assert.True(scorer.Score(byDomain, View(_cell, c)) > scorer.Score(byDomain, View(_cell, b)));
        // With spread on, the pipeline picks the empty domain although bin-packing alone would not mind.
        var (planned, _, _) = Plan(Member(5, 1, PlacementScope.None, PlacementScope.FailureDomain));
        Assert.Equal(c, Assert.Single(planned).Node.Id);
        // A job asking for no spread scores every node the same.
        var neutral = ContextFor(Member(5, 1, PlacementScope.None));
        Assert.Equal(scorer.Score(neutral, View(_cell, a)), scorer.Score(neutral, View(_cell, c)));
    }

    [Fact]
    public void Cell_rejects_a_second_member_at_commit_even_when_the_scheduler_skipped_the_filter()
    {
        var a = _cell.AddNode(Node("a", domain: "d0"));
        var a2 = _cell.AddNode(Node("a2", domain: "d0"));
        var b = _cell.AddNode(Node("b", domain: "d1"));
        var empty = _cell.AddNode(Node("e", domain: ""));
        var empty2 = _cell.AddNode(Node("e2", domain: ""));
        Assert.True(Bind(Member(9, 0, PlacementScope.Node), a).IsCommitted);
        var r = Bind(Member(9, 1, PlacementScope.Node), a);
        Assert.Equal(ClaimStatus.AntiAffinityViolated, r.ClaimStatuses.Span[0]);
        Assert.True(Bind(Member(9, 1, PlacementScope.Node), a2).IsCommitted);
        // Domain scope: d0 is taken (by either member), d1 is free; an empty domain is a domain of its own per node.
        Assert.Equal(ClaimStatus.AntiAffinityViolated, Bind(Member(9, 2, PlacementScope.FailureDomain), a2).ClaimStatuses.Span[0]);
        Assert.True(Bind(Member(9, 2, PlacementScope.FailureDomain), b).IsCommitted);
        Assert.True(Bind(Member(9, 3, PlacementScope.FailureDomain), empty).IsCommitted);
        Assert.True(Bind(Member(9, 4, PlacementScope.FailureDomain), empty2).IsCommitted);
        // Two members in one transaction on one node: the second sees the first.
        var lease = _cell.AcquireLease("tx", TimeSpan.FromHours(1)).Lease;
        var c = _cell.AddNode(Node("c", domain: "d2"));
        var tx = new Transaction(lease);
        var m5 = Member(9, 5, PlacementScope.Node);
        var m6 = Member(9, 6, PlacementScope.Node);
        tx.Add(new Claim(m5.Task(0), c, m5.PerTask, View(_cell, c).Version, Group: m5.Group));
        tx.Add(new Claim(m6.Task(0), c, m6.PerTask, View(_cell, c).Version, Group: m6.Group));
        var both = _cell.Commit(tx).Detach();
        Assert.Equal([ClaimStatus.Applied, ClaimStatus.AntiAffinityViolated], both.ClaimStatuses.ToArray());
        // A released member frees its node for the group.
        Assert.Equal(ReleaseStatus.Released, _cell.Release(m5.Task(0)));
        Assert.True(Bind(m6, c).IsCommitted);
    }

    [Fact]
    public void Concurrent_workers_never_place_two_members_of_an_anti_affine_group_together()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_PLACEMENT_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (replay with OMEGA_PLACEMENT_SEED={seed})");
        var rng = new Random(seed);
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        using var cell = new Cell(new CellOptions { Time = time });
        int domains = 4, perDomain = 3;
        for (int d = 0; d < domains; d++)
            for (int i = 0; i < perDomain; i++) cell.AddNode(Node($"n{d}-{i}", cores: 32, memGiB: 128, domain: $"d{d}"));

        var options = new SchedulingOptions { Time = time, Seed = seed };
        // Backoff zero: a job that found nothing is retried at once (the fake clock never moves), parked after 30 attempts (a lost race is an attempt).
        options.Kinds.Add(new SchedulerKindOptions { Name = "w", Workers = 3, MaxAttempts = 30, Backoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero, Preemption = false });
        using var engine = new SchedulingEngine(cell, options);
        var groups = new List<(long Group, PlacementScope Scope, int Replicas)>();
        var jobs = new List<JobSpec>();
        for (int g = 1; g <= 6; g++)
        {
            var scope = rng.Next(2) == 0 ? PlacementScope.Node : PlacementScope.FailureDomain;
            int replicas = scope == PlacementScope.Node ? rng.Next(6, 16) : rng.Next(2, 7); // sometimes more than fit
            groups.Add((g, scope, replicas));
            for (int r = 0; r < replicas; r++) jobs.Add(Member(g, r, scope, cores: 1 + rng.Next(3)));
        }
        foreach (var j in jobs.OrderBy(_ => rng.Next())) Assert.Equal(EnqueueStatus.Accepted, engine.Submit(j).Status);

        var scopeOf = groups.ToDictionary(g => g.Group, g => g.Scope);
        var nodeDomain = new Dictionary<NodeId, string>();
        var snap = cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++) { snap.TryGetNode(new NodeId(i), out var v); nodeDomain[v.Id] = v.Spec.FailureDomain; }
        void CheckInvariant(string when)
        {
            var seen = new HashSet<(long, string)>();
            foreach (var al in cell.GetAllocations())
            {
                long g = al.Task.Job.Value >> Shift;
                string place = scopeOf[g] == PlacementScope.Node ? al.Node.ToString() : nodeDomain[al.Node];
                Assert.True(seen.Add((g, place)), $"[seed {seed}] {when}: two members of group {g} ({scopeOf[g]}) on {place}");
            }
        }

        // Also a raw scheduler that ignores the filters and claims straight on the cell: only the commit check stops it.
        var rawLease = cell.AcquireLease("raw", TimeSpan.FromDays(1)).Lease;
        var rawTasks = new List<JobSpec>();
        for (int g = 1; g <= 6; g++) rawTasks.Add(Member(g, 100, scopeOf[g]));
        int rawRejected = 0;

        bool Settled() => jobs.All(j => engine.TryGetJob(j.Id, out var st) && st.Phase is JobPhase.Placed or JobPhase.Parked);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        var threads = new List<Thread>();
        Exception? failure = null;
        for (int w = 0; w < engine.Workers.Count; w++)
        {
            var worker = engine.Workers[w];
            threads.Add(new Thread(() =>
            {
                try
                {
                    while (!Settled() && DateTime.UtcNow < deadline)
                    {
                        var outcome = worker.Step();
                        CheckInvariant($"after a step of worker {worker.Index} ({outcome})");
                        if (outcome == StepOutcome.Idle) Thread.Yield();
                    }
                }
                catch (Exception e) { failure ??= e; }
            }));
        }
        threads.Add(new Thread(() =>
        {
            try
            {
                var local = new Random(seed ^ 0x5EED);
                var tx = new Transaction(rawLease);
                foreach (var t in rawTasks)
                    for (int attempt = 0; attempt < 20 && !cell.TryGetAllocation(t.Task(0), out _); attempt++)
                    {
                        var node = new NodeId(local.Next(domains * perDomain));
                        tx.Reset(rawLease);
                        tx.Add(new Claim(t.Task(0), node, t.PerTask, 0, Group: t.Group));
                        var r = cell.Commit(tx);
                        if (r.ClaimStatuses.Span[0] == ClaimStatus.AntiAffinityViolated) Interlocked.Increment(ref rawRejected);
                        CheckInvariant("after a raw commit");
                    }
            }
            catch (Exception e) { failure ??= e; }
        }));
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        if (failure is not null) throw new Xunit.Sdk.XunitException($"[seed {seed}] {failure}");
        Assert.True(Settled(), $"[seed {seed}] not settled before the deadline");
        CheckInvariant("at the end");

        // Every group got as many members placed as its scope allows (nodes for Node, domains for FailureDomain),
        // unless it asked for fewer: the constraint blocks only what it must.
        foreach (var (g, scope, replicas) in groups)
        {
            int placed = cell.GetAllocations().Count(a => a.Task.Job.Value >> Shift == g);
            int room = scope == PlacementScope.Node ? domains * perDomain : domains;
            Assert.True(placed <= room, $"[seed {seed}] group {g}: {placed} placed, room {room}");
            Assert.True(placed >= Math.Min(room, replicas), $"[seed {seed}] group {g} ({scope}): {placed} placed of {replicas}, room {room}");
        }
        output.WriteLine($"raw claims rejected for anti-affinity: {rawRejected}");
    }
}
