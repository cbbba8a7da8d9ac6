using Omega.Cells;
using Omega.Scheduling.Pipeline;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>Explain's counts: "nodes considered" counts distinct nodes, not random probes that hit a node twice.</summary>
public sealed class ExplainCountTests
{
    [Fact]
    public void Nodes_considered_counts_distinct_nodes_each_either_filtered_or_feasible()
    {
        using var cell = new Cell();
        // More nodes than the probe budget (128): the pipeline samples at random, and 128 draws among 200 repeat some.
        for (int i = 0; i < 200; i++) cell.AddNode(Node($"n{i}", labels: Labels(("zone", i % 2 == 0 ? "a" : "b"))));
        var job = Job(1, labels: Labels(("zone", "c"))); // fits nowhere: every node read is filtered
        var pipeline = PlacementPipeline.CreateDefault();
        var stats = new PlanStats();
        pipeline.Plan(job, [0], cell.Snapshot(), default, [], new Random(42), new List<PlannedClaim>(), stats);
        int filtered = stats.FilteredByReason.Sum();
        Assert.Equal(filtered + stats.Feasible, stats.NodesConsidered);
        Assert.True(stats.NodesConsidered < 128, $"{stats.NodesConsidered} considered: repeated probes were counted");
        Assert.True(stats.NodesConsidered > 64);
    }
}
