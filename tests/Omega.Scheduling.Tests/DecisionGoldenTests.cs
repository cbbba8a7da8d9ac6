using Omega.Cells;
using Omega.Scheduling.Pipeline;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// Decisions must not change when the decision path is made cheaper (issue 14): a decision record is replayed against
/// the code that runs now, and the simulator's results must stay the same on the same seed. This test pins the exact
/// output of the default pipeline — every chosen node, bit-identical scores, and the statistics a decision record keeps
/// — over a varied, seeded workload (shared and empty failure domains, regions and zones, taints, labels, unschedulable
/// nodes, partly full nodes, tenant quotas, constraint groups, topology preferences and spreads, tasks bound elsewhere)
/// to a fingerprint computed with the decision code of main before the issue-14 decision work (039d142). Any change of
/// choice semantics changes the fingerprint.
/// </summary>
public sealed class DecisionGoldenTests(ITestOutputHelper output)
{
    // FNV-1a over the whole workload's decisions, from 039d142's PlacementPipeline (identical with and without score caching).
    private const ulong Golden = 0xF168967795DF7FB4UL;

    private const int Seed = 14_014;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Default_pipeline_decisions_are_those_of_the_reference_implementation(bool scoreCaching)
    {
        output.WriteLine($"seed {Seed}, score caching {scoreCaching}");
        ulong h = Run(scoreCaching, out int placements);
        output.WriteLine($"fingerprint 0x{h:X16} over {placements} placements");
        Assert.True(placements > 3_000, $"only {placements} placements compared");
        Assert.True(h == Golden, $"decision fingerprint 0x{h:X16} differs from the reference 0x{Golden:X16}: the default pipeline's choices changed");
    }

    private static ulong Run(bool scoreCaching, out int placements)
    {
        var rng = new Random(Seed);
        using var cell = new Cell(new CellOptions { InitialNodeCapacity = 2_048 });
        string[] domains = new string[40];
        for (int i = 0; i < domains.Length; i++) domains[i] = $"rack-{i}";
        for (int i = 0; i < 1_500; i++)
        {
            var labels = new Dictionary<string, string>
            {
                [Omega.Topology.RegionLabel] = $"r{i % 3}",
                [Omega.Topology.ZoneLabel] = $"r{i % 3}-z{i % 5}",
            };
            if (i % 4 == 0) labels["disk"] = "ssd";
            // Domain strings: some shared instances, some equal but distinct instances, some empty.
            string domain = i % 9 == 0 ? "" : i % 2 == 0 ? domains[i % 40] : new string($"rack-{i % 40}".AsSpan());
            string[]? taints = i % 31 == 0 ? ["gpu"] : null;
            var status = i % 97 == 0 ? NodeStatus.Draining : NodeStatus.Schedulable;
            Assert.Equal(NodeOpStatus.Ok, cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(16, 64), domain, labels, taints), out _, status));
        }
        Assert.Equal(TenantOpStatus.Ok, cell.CreateTenant("capped", ResourceVector.FromCoresAndGiB(2_000, 100_000), out var capped));
        var lease = cell.AcquireLease("fill", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        for (int k = 0; k < 6_000; k++)
        {
            tx.Reset(lease, CommitMode.Incremental, ConflictDetection.Fine);
            var tenant = k % 3 == 0 ? capped : default;
            tx.Add(new Claim(new TaskId(1 + k % 700, 1_000 + k), new NodeId(rng.Next(1_500)), ResourceVector.FromCoresAndGiB(rng.Next(1, 4), rng.Next(1, 9)), 0, tenant));
            cell.Commit(tx);
        }

        var pipeline = PlacementPipeline.CreateDefault();
        pipeline.ScoreCaching = scoreCaching;
        var planned = new List<PlannedClaim>();
        var stats = new PlanStats();
        var snapshot = cell.Snapshot();
        ulong h = 14695981039346656037UL;
        void Mix(long v) { for (int b = 0; b < 8; b++) { h ^= (byte)(v >> (8 * b)); h *= 1099511628211UL; } }
        placements = 0;
        var bound = new List<NodeId>();
        for (int j = 0; j < 500; j++)
        {
            int tasks = rng.Next(1, 41);
            var group = rng.Next(4) switch
            {
                0 => default,
                1 => new PlacementGroup((byte)rng.Next(1, 12), PlacementScope.None, PlacementScope.Node),
                2 => new PlacementGroup((byte)rng.Next(1, 12), PlacementScope.None, PlacementScope.FailureDomain),
                _ => rng.Next(2) == 0 ? default : new PlacementGroup(0, PlacementScope.Node, PlacementScope.None),
            };
            var topology = rng.Next(5) switch
            {
                0 => TopologyConstraints.None,
                1 => new TopologyConstraints(null, null, [$"r{rng.Next(3)}", $"r{rng.Next(3)}"], TopologySpread.None),
                2 => new TopologyConstraints(null, null, null, TopologySpread.Zone),
                3 => new TopologyConstraints([$"r{rng.Next(3)}"], null, null, TopologySpread.None),
                _ => TopologyConstraints.None,
            };
            var labels = rng.Next(6) == 0 ? new Dictionary<string, string> { ["disk"] = "ssd" } : null;
            string[]? tolerations = rng.Next(5) == 0 ? ["gpu"] : null;
            var tenant = rng.Next(3) == 0 ? capped : default;
            var job = new JobSpec(new JobId(10_000 + j), tenant, 0, tasks, ResourceVector.FromCoresAndGiB(rng.Next(1, 6), rng.Next(1, 17)), false, labels, tolerations)
                { Group = group, Topology = topology };
            var indexes = new int[tasks];
            for (int i = 0; i < tasks; i++) indexes[i] = i;
            bound.Clear();
            for (int i = rng.Next(3) == 0 ? rng.Next(1, 4) : 0; i > 0; i--) bound.Add(new NodeId(rng.Next(1_500)));
            var usage = rng.Next(2) == 0 ? cell.GetTenantUsage(tenant) : (ResourceVector.FromCoresAndGiB(1_990, 1_000), ResourceVector.FromCoresAndGiB(2_000, 100_000));
            planned.Clear();
            pipeline.Plan(job, indexes, snapshot, usage, bound.ToArray(), new Random(rng.Next()), planned, stats, null, rng.Next(4) == 0 ? null : cell);
            Mix(planned.Count);
            foreach (var p in planned)
            {
                Mix(p.TaskIndex);
                Mix(p.Node.Id.Value);
                Mix(BitConverter.DoubleToInt64Bits(p.Score));
            }
            Mix(stats.NodesConsidered);
            Mix(stats.Feasible);
            Mix(stats.Unplaceable);
            Mix(stats.PreferenceFallbacks);
            foreach (int f in stats.FilteredByReason) Mix(f);
            foreach (var (node, score) in stats.TopScores) { Mix(node.Value); Mix(BitConverter.DoubleToInt64Bits(score)); }
            foreach (int id in pipeline.ProbedNodes) Mix(id);
            foreach (var (node, members) in pipeline.Context.GroupReads) { Mix(node); Mix(members); }
            placements += planned.Count;
        }
        return h;
    }
}
