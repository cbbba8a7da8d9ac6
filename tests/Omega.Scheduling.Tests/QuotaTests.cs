using Omega.Cells;
using Xunit.Abstractions;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Hard tenant quotas: enforced at commit, so concurrent workers cannot jointly exceed one.</summary>
public sealed class QuotaTests(ITestOutputHelper output)
{
    /// <summary>
    /// Deterministic race: worker "a" reads the tenant's usage (0 of 2 cores) and, while it is still deciding, worker "b"
    /// commits 2 cores of the same tenant. "a"'s decision passes the advisory quota filter, but the cell refuses its claim.
    /// </summary>
    [Fact]
    public void The_cell_refuses_a_claim_decided_on_stale_quota_usage()
    {
        var hook = new HookFilter();
        using var t = new TestEngine(o =>
        {
            o.Kinds.Add(new SchedulerKindOptions { Name = "a", MaxAttempts = 3, Pipeline = () => DecisionRecordTests.PipelineWith(hook) });
            o.Kinds.Add(new SchedulerKindOptions { Name = "b" });
        });
        for (int i = 0; i < 4; i++) t.Add(Node($"n{i}"));
        var tenant = new TenantId(5);
        t.Engine.SetTenantQuota(tenant, R(2, 100));
        var ja = t.Submit(Job(1, cores: 2, tenant: 5), "a");
        var jb = t.Submit(Job(2, cores: 2, tenant: 5), "b");
        hook.OnFirstCall = () => Assert.Equal(StepOutcome.Placed, t.Worker("b").Step());

        Assert.Equal(StepOutcome.Requeued, t.Worker("a").Step());

        Assert.Equal(ClaimStatus.QuotaExceeded, t.Engine.Explain(new TaskId(1, 0))!.ForTask(0)!.Value.Claim);
        Assert.Equal(1, t.Cell.Counters.Claims(ClaimStatus.QuotaExceeded));
        Assert.Equal(2000, t.Cell.GetTenantUsage(tenant).Usage.CpuMillis);
        t.Settle();
        var s = t.Status(ja);
        Assert.Equal(JobPhase.Parked, s.Phase);
        Assert.Contains("QuotaExceeded", s.ParkedReason, StringComparison.Ordinal);
        Assert.Equal(2000, t.Cell.GetTenantUsage(tenant).Usage.CpuMillis);
        AssertEngineMatchesCell(t.Engine, t.Cell, [ja, jb]);
    }

    [Fact]
    public async Task Concurrent_workers_never_jointly_exceed_a_hard_quota()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} to replay the job mix; thread interleaving is not replayable)");
        var rng = new Random(seed);
        var cell = new Cell(new CellOptions { InitialNodeCapacity = 64 }).WithTenants();
        for (int i = 0; i < 40; i++) cell.AddNode(Node($"n{i}", cores: 8, memGiB: 64, domain: $"rack-{i % 8}"));
        var tenant = new TenantId(1);
        var quota = R(50, 1000);
        cell.SetTenantQuota(tenant, quota);
        var options = new SchedulingOptions { Seed = seed };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 3, MaxAttempts = 3, Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(4) });
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 2, MaxAttempts = 3, Detection = ConflictDetection.Coarse, Backoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(4) });
        var engine = new SchedulingEngine(cell, options);
        var jobs = new List<JobSpec>();
        for (int i = 0; i < 300; i++)
        {
            var j = Job(i + 1, tasks: rng.Next(1, 4), cores: 1, tenant: 1, gang: rng.Next(4) == 0);
            Assert.True(engine.Submit(j, i % 3 == 0 ? "service" : "batch").Accepted);
            jobs.Add(j);
        }
        // Another tenant without quota shares the cell, so the quota is the only thing that stops tenant 1.
        for (int i = 0; i < 20; i++)
        {
            var j = Job(1000 + i, tasks: 2, cores: 1, tenant: 2);
            Assert.True(engine.Submit(j).Accepted);
            jobs.Add(j);
        }

        await using (engine)
        {
            engine.Start();
            await WaitUntil(() => AllSettled(engine, jobs), TimeSpan.FromSeconds(30), () => Describe(engine, jobs));
        }

        var (usage, q) = cell.GetTenantUsage(tenant);
        output.WriteLine($"tenant 1 usage {usage}; quota conflicts at commit {cell.Counters.Claims(ClaimStatus.QuotaExceeded)}; " +
            $"busyness batch {engine.Busyness("batch")}, service {engine.Busyness("service")}");
        Assert.Equal(quota, q);
        Assert.True(usage.FitsWithin(quota), $"usage {usage} exceeds quota {quota}");
        Assert.Equal(50_000, usage.CpuMillis); // demand is 12x the quota: it is filled, exactly
        Assert.Equal(40, cell.GetTenantUsage(new TenantId(2)).Usage.CpuMillis / 1000);
        AssertEngineMatchesCell(engine, cell, jobs);
        foreach (var j in jobs)
        {
            Assert.True(engine.TryGetJob(j.Id, out var st));
            if (st.Phase == JobPhase.Parked) Assert.False(string.IsNullOrWhiteSpace(st.ParkedReason));
            if (j.Gang) Assert.True(st.Bound == 0 || st.Bound == j.TaskCount, $"gang {j.Id} half bound: {st.Bound}/{j.TaskCount}");
        }
        cell.Dispose();
    }
}
