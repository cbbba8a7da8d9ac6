using Omega.Cells;
using Omega.Scheduling.Pipeline;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// The per-job score cache (issue 14) must give exactly the decision that re-scoring every candidate for every task gives,
/// so decisions stay replayable: same tasks on the same nodes with bit-identical scores, same statistics.
/// </summary>
public sealed class ScoreCacheTests(ITestOutputHelper output)
{
    [Fact]
    public void Cached_scores_give_exactly_the_uncached_decision()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var cell = new Cell(new CellOptions { InitialNodeCapacity = 400 });
        for (int i = 0; i < 300; i++)
        {
            var labels = new Dictionary<string, string>
            {
                [Omega.Topology.RegionLabel] = $"r{i % 3}",
                [Omega.Topology.ZoneLabel] = $"r{i % 3}-z{i % 5}",
            };
            // Some nodes share failure domains, some have none (the empty domain is a domain too for counts).
            string domain = i % 7 == 0 ? "" : $"rack-{i % 23}";
            cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(16, 64), domain, labels));
        }
        var lease = cell.AcquireLease("fill", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        for (int k = 0; k < 600; k++)
        {
            tx.Reset(lease, CommitMode.Incremental, ConflictDetection.Fine);
            tx.Add(new Claim(new TaskId(1_000_000 + k, 0), new NodeId(rng.Next(300)), ResourceVector.FromCoresAndGiB(rng.Next(1, 4), 4), 0));
            cell.Commit(tx);
        }

        var cached = PlacementPipeline.CreateDefault();
        var plain = PlacementPipeline.CreateDefault();
        plain.ScoreCaching = false;
        var outA = new List<PlannedClaim>();
        var outB = new List<PlannedClaim>();
        var statsA = new PlanStats();
        var statsB = new PlanStats();
        var snapshot = cell.Snapshot();
        int placements = 0;
        for (int j = 0; j < 300; j++)
        {
            int tasks = rng.Next(1, 41);
            var group = rng.Next(3) switch
            {
                0 => default,
                1 => new PlacementGroup(0, PlacementScope.None, PlacementScope.Node),
                _ => new PlacementGroup(0, rng.Next(2) == 0 ? PlacementScope.None : PlacementScope.FailureDomain, PlacementScope.FailureDomain),
            };
            var topology = rng.Next(4) switch
            {
                0 => TopologyConstraints.None,
                1 => new TopologyConstraints(null, null, [$"r{rng.Next(3)}"], TopologySpread.None),
                2 => new TopologyConstraints(null, null, null, TopologySpread.Zone),
                _ => new TopologyConstraints(null, null, null, TopologySpread.Region),
            };
            var job = new JobSpec(new JobId(j + 1), default, 0, tasks, ResourceVector.FromCoresAndGiB(rng.Next(1, 5), rng.Next(1, 9))) { Group = group, Topology = topology };
            var indexes = Enumerable.Range(0, tasks).ToArray();
            int planSeed = rng.Next();
            outA.Clear();
            outB.Clear();
            cached.Plan(job, indexes, snapshot, default, ReadOnlySpan<NodeId>.Empty, new Random(planSeed), outA, statsA, null, cell);
            plain.Plan(job, indexes, snapshot, default, ReadOnlySpan<NodeId>.Empty, new Random(planSeed), outB, statsB, null, cell);
            Assert.True(outA.Count == outB.Count, $"seed {seed} job {j}: {outA.Count} vs {outB.Count} placements");
            for (int i = 0; i < outA.Count; i++)
            {
                Assert.True(outA[i].TaskIndex == outB[i].TaskIndex && outA[i].Node.Id == outB[i].Node.Id
                    && BitConverter.DoubleToInt64Bits(outA[i].Score) == BitConverter.DoubleToInt64Bits(outB[i].Score),
                    $"seed {seed} job {j} ({group}, {topology.Spread}) claim {i}: cached {outA[i].Node.Id} {outA[i].Score:R}, uncached {outB[i].Node.Id} {outB[i].Score:R}");
            }
            Assert.Equal(statsB.NodesConsidered, statsA.NodesConsidered);
            Assert.Equal(statsB.Feasible, statsA.Feasible);
            Assert.Equal(statsB.Unplaceable, statsA.Unplaceable);
            Assert.Equal(statsB.TopScores, statsA.TopScores);
            placements += outA.Count;
        }
        Assert.True(placements > 1000, $"seed {seed}: only {placements} placements compared");
    }
}
