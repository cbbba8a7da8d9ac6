using Omega.Cells;
using Omega.Scheduling.Pipeline;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// A pipeline remembers, per node id, the failure-domain string it last saw there and that string's dense id, across
/// decisions (issue 14, decision cost). A remembered id must never be used for a node that now has another domain: a
/// pipeline that has planned on other cells (same node ids, other domains) must decide exactly as a fresh pipeline does.
/// </summary>
public sealed class DomainInterningTests(ITestOutputHelper output)
{
    [Fact]
    public void A_reused_pipeline_decides_like_a_fresh_one_when_node_ids_change_domain()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        // Three cells with the same node ids and different domain layouts (few racks, many racks, equal strings in
        // distinct instances), so the same node id maps to different domain strings from one cell to the next.
        using var a = MakeCell(i => $"rack-{i % 5}");
        using var b = MakeCell(i => i % 4 == 0 ? "" : $"rack-{i % 37}");
        using var c = MakeCell(i => new string($"rack-{(i * 7) % 11}".AsSpan()));
        var cells = new[] { a, b, c };

        var reused = PlacementPipeline.CreateDefault();
        var outReused = new List<PlannedClaim>();
        var outFresh = new List<PlannedClaim>();
        var statsReused = new PlanStats();
        var statsFresh = new PlanStats();
        int compared = 0;
        for (int j = 0; j < 120; j++)
        {
            var cell = cells[rng.Next(cells.Length)];
            int tasks = rng.Next(4, 33);
            var group = rng.Next(2) == 0 ? default : new PlacementGroup(0, PlacementScope.None, PlacementScope.FailureDomain);
            var job = new JobSpec(new JobId(j + 1), default, 0, tasks, ResourceVector.FromCoresAndGiB(rng.Next(1, 5), rng.Next(1, 9))) { Group = group };
            var indexes = Enumerable.Range(0, tasks).ToArray();
            int planSeed = rng.Next();
            var snapshot = cell.Snapshot();
            outReused.Clear();
            outFresh.Clear();
            reused.Plan(job, indexes, snapshot, default, ReadOnlySpan<NodeId>.Empty, new Random(planSeed), outReused, statsReused, null, cell);
            PlacementPipeline.CreateDefault().Plan(job, indexes, snapshot, default, ReadOnlySpan<NodeId>.Empty, new Random(planSeed), outFresh, statsFresh, null, cell);
            Assert.True(outReused.Count == outFresh.Count, $"seed {seed} job {j}: {outReused.Count} vs {outFresh.Count} placements");
            for (int i = 0; i < outReused.Count; i++)
            {
                Assert.True(outReused[i].TaskIndex == outFresh[i].TaskIndex && outReused[i].Node.Id == outFresh[i].Node.Id
                    && BitConverter.DoubleToInt64Bits(outReused[i].Score) == BitConverter.DoubleToInt64Bits(outFresh[i].Score),
                    $"seed {seed} job {j} claim {i}: reused {outReused[i].Node.Id} {outReused[i].Score:R}, fresh {outFresh[i].Node.Id} {outFresh[i].Score:R}");
                compared++;
            }
        }
        output.WriteLine($"{compared} placements compared");
        Assert.True(compared > 1_000, $"only {compared} placements compared");
    }

    private static Cell MakeCell(Func<int, string> domainOf)
    {
        var cell = new Cell(new CellOptions { InitialNodeCapacity = 256 });
        for (int i = 0; i < 200; i++)
            Assert.Equal(NodeOpStatus.Ok, cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(64, 256), domainOf(i)), out _));
        return cell;
    }
}
