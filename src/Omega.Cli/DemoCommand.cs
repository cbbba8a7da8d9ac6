using System.CommandLine;
using Omega.Cells;

namespace Omega.Cli;

/// <summary><c>omega demo</c>: the embedded engine under concurrent optimistic schedulers.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var nodes = new Option<int>("--nodes") { Description = "Nodes in the cell.", DefaultValueFactory = _ => 10_000 };
        var workers = new Option<int>("--workers") { Description = "Concurrent scheduler workers (each with its own lease).", DefaultValueFactory = _ => 4 };
        var seconds = new Option<double>("--seconds") { Description = "How long to run.", DefaultValueFactory = _ => 10 };
        var batch = new Option<int>("--batch") { Description = "Claims per transaction.", DefaultValueFactory = _ => 16 };
        var detection = new Option<ConflictDetection>("--detection") { Description = "Conflict detection: Fine or Coarse.", DefaultValueFactory = _ => ConflictDetection.Fine };
        var mode = new Option<CommitMode>("--mode") { Description = "Commit mode: Incremental or AllOrNothing.", DefaultValueFactory = _ => CommitMode.Incremental };
        var utilization = new Option<double>("--utilization") { Description = "Target CPU utilization the workload holds the cell at (0-1).", DefaultValueFactory = _ => 0.7 };
        var seed = new Option<int?>("--seed") { Description = "Random seed (printed; default: random)." };
        var cmd = new Command("demo", "Run the embedded engine: a cell of nodes, several concurrent workers committing placements; prints placements/s and the conflict fraction.")
        {
            nodes, workers, seconds, batch, detection, mode, utilization, seed,
        };
        cmd.SetAction(r =>
        {
            string? error =
                r.GetValue(nodes) is < 1 or > 10_000_000 ? "--nodes must be between 1 and 10,000,000" :
                r.GetValue(workers) is < 1 or > 256 ? "--workers must be between 1 and 256" :
                r.GetValue(seconds) is <= 0 or > 86_400 ? "--seconds must be positive and at most 86400" :
                r.GetValue(batch) is < 1 or > 10_000 ? "--batch must be between 1 and 10,000" :
                r.GetValue(utilization) is <= 0 or >= 1 ? "--utilization must be between 0 and 1 (exclusive)" : null;
            if (error is not null)
            {
                Console.Error.WriteLine($"omega demo: {error}");
                return 2;
            }
            var options = new EmbeddedDemo.Options(
                r.GetValue(nodes), r.GetValue(workers), TimeSpan.FromSeconds(r.GetValue(seconds)), r.GetValue(batch),
                r.GetValue(detection), r.GetValue(mode), r.GetValue(utilization), r.GetValue(seed) ?? Random.Shared.Next());
            var result = EmbeddedDemo.Run(options, Console.Out);
            return result.AuditProblems.Count == 0 ? 0 : 3;
        });
        return cmd;
    }
}
