using System.Diagnostics;
using Omega.Benchmarks.ControlPlane;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>
/// The control-plane bench runners (bench/Omega.Benchmarks cpreconcile, cpstart, extcommit) compute their published
/// percentiles with <see cref="LatencyRecorder"/> and join agent records to workload writes with <see cref="ReplicaJobs"/>:
/// both checked here on inputs whose answer is known, so a number in a perf report is the number the samples say.
/// </summary>
public sealed class BenchRecorderTests
{
    [Fact]
    public void Percentiles_are_nearest_rank_over_every_sample_in_any_order()
    {
        var r = new LatencyRecorder();
        var rng = new Random(7);
        foreach (long v in Enumerable.Range(1, 1000).Select(i => (long)i).OrderBy(_ => rng.Next())) r.Add(v);
        var s = r.Summarize();
        Assert.Equal(1000, s.Count);
        Assert.Equal(500, s.P50Us);   // ceil(0.50 * 1000) = 500th smallest
        Assert.Equal(990, s.P99Us);   // ceil(0.99 * 1000) = 990th smallest
        Assert.Equal(1000, s.MaxUs);

        // 101 samples: ceil(0.5 * 101) = 51st, ceil(0.99 * 101) = 100th; one outlier is the max, not the p99.
        var odd = new LatencyRecorder();
        for (int i = 1; i <= 100; i++) odd.Add(i * 10);
        odd.Add(1_000_000);
        var o = odd.Summarize();
        Assert.Equal((101, 510L, 1000L, 1_000_000L), (o.Count, o.P50Us, o.P99Us, o.MaxUs));
    }

    [Fact]
    public void Empty_and_single_sample_and_tick_conversion()
    {
        Assert.Equal(new LatencySummary(0, 0, 0, 0), new LatencyRecorder().Summarize());
        var one = new LatencyRecorder();
        one.AddTicks(Stopwatch.Frequency / 4); // 250 ms
        Assert.Equal(new LatencySummary(1, 250_000, 250_000, 250_000), one.Summarize());
    }

    [Fact]
    public void Concurrent_adds_are_all_kept()
    {
        var r = new LatencyRecorder();
        Parallel.For(0, 8, t => { for (int i = 0; i < 10_000; i++) r.Add(t * 10_000 + i); });
        var s = r.Summarize();
        Assert.Equal(80_000, s.Count);
        Assert.Equal(79_999, s.MaxUs);
        Assert.Equal(39_999, s.P50Us);
    }

    [Fact]
    public void A_replica_job_id_names_its_workload_uid_and_plain_jobs_are_not_replicas()
    {
        foreach (var (uid, serial) in new[] { (1L, 0), (41L, 7), ((1L << 42) - 1, (1 << 20) - 1), (123_456_789L, 99_999) })
        {
            long job = WorkloadController.JobFor(uid, serial).Value;
            Assert.True(ReplicaJobs.IsReplica(job));
            Assert.Equal(uid, ReplicaJobs.WorkloadUid(job));
        }
        Assert.False(ReplicaJobs.IsReplica(1L << 40)); // the intent-to-started bench's first probe job
        Assert.False(ReplicaJobs.IsReplica(12345));
    }
}
