using Omega.Cells;

namespace Omega.Simulation.Tests;

public class DeterminismTests
{
    private static SimulationConfig Small(long seed) =>
        Presets.Build(new PresetOptions { Machines = 300, Duration = 3 * 3600, Seed = seed }, ConflictDetection.Coarse, CommitMode.Incremental,
            serviceJobTime: 10, batchSchedulers: 2, batchRate: 3, batchDuration: 600)
        with { JobKinds = [
            new JobKindSpec("batch", 5.0 / 3, 8, 600, Presets.BatchTask, ["batch-0", "batch-1"]),
            new JobKindSpec("service", 60, 4, 10_000, Presets.ServiceTask, ["service"]) ] };

    [Fact]
    public void Same_seed_gives_identical_metrics()
    {
        var a = Simulator.Run(Small(42));
        var b = Simulator.Run(Small(42));
        Assert.Empty(a.AuditProblems);
        Assert.True(a.Group("batch").CleanTransactions > 100, "the run must do real work");
        Assert.True(a.Group("service").ConflictedTransactions > 0, "coarse detection with a slow service scheduler must see conflicts");
        Assert.Equal(TestWorlds.Fingerprint(a), TestWorlds.Fingerprint(b));
    }

    [Fact]
    public void Same_seed_gives_identical_metrics_when_runs_execute_in_parallel()
    {
        var points = Enumerable.Range(0, 4).Select(_ => new PresetPoint("t", Small(9), ConflictDetection.Coarse, CommitMode.Incremental, 10, 2, 3)).ToList();
        var results = Presets.Run(points, parallelism: 4);
        var first = TestWorlds.Fingerprint(results[0].Result);
        Assert.All(results, r => Assert.Equal(first, TestWorlds.Fingerprint(r.Result)));
    }

    [Fact]
    public void Different_seed_gives_different_metrics()
    {
        var a = Simulator.Run(Small(42));
        var b = Simulator.Run(Small(43));
        Assert.NotEqual(TestWorlds.Fingerprint(a), TestWorlds.Fingerprint(b));
    }

    [Fact]
    public void Random_streams_are_fixed_by_seed_and_stream()
    {
        var a = new SimRandom(5, 1);
        var b = new SimRandom(5, 1);
        var c = new SimRandom(5, 2);
        var xs = Enumerable.Range(0, 100).Select(_ => a.NextUInt64()).ToArray();
        Assert.Equal(xs, Enumerable.Range(0, 100).Select(_ => b.NextUInt64()).ToArray());
        Assert.NotEqual(xs, Enumerable.Range(0, 100).Select(_ => c.NextUInt64()).ToArray());
        // A known value pins the algorithm: a change to the generator changes every simulation result.
        // (Values computed once with this implementation; they must never change across machines or .NET versions.)
        var pinned = new SimRandom(1, 0);
        Assert.Equal(4768932952251265552UL, pinned.NextUInt64());
        Assert.Equal(0.13181187242533726, pinned.Exponential(1));
    }

    [Fact]
    public void Deterministic_log_matches_the_platform_log_closely()
    {
        var rng = new SimRandom(3);
        for (int i = 0; i < 100_000; i++)
        {
            double x = rng.NextUnitOpenZero() * Math.Pow(10, rng.NextInt(40) - 20);
            double expected = Math.Log(x);
            Assert.True(Math.Abs(DeterministicMath.Log(x) - expected) <= 4e-16 * Math.Max(1, Math.Abs(expected)), $"log({x:R})");
        }
        Assert.Equal(0.0, DeterministicMath.Log(1.0));
        Assert.True(double.IsNaN(DeterministicMath.Log(0)));
        Assert.Equal(Math.Log(double.Epsilon), DeterministicMath.Log(double.Epsilon), 12);
    }

    [Fact]
    public void Exponential_draws_have_the_requested_mean()
    {
        var rng = new SimRandom(11);
        double sum = 0;
        const int n = 200_000;
        for (int i = 0; i < n; i++) sum += rng.Exponential(5);
        Assert.InRange(sum / n, 4.95, 5.05);
    }
}
