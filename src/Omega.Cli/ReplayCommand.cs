using System.CommandLine;
using System.Globalization;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Storage;

namespace Omega.Cli;

/// <summary>
/// <c>omega replay decision</c> (issue 18, "decision replay from the log"; docs/testing.md): opens a stopped server's data
/// directory, finds a kept decision record and re-runs the real scheduler pipeline on the state the decision read, under
/// the policy revision it used (or <c>--policy-revision N</c>), and prints whether it reaches the same choice for the same
/// reasons or exactly what differs. Exit codes: 0 the replay matches, 1 it differs or cannot run (no such record, no inputs
/// kept, the directory in use), 2 a usage error.
/// </summary>
internal static class ReplayCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var id = new Argument<string?>("id") { Description = "The decision record: TENANT/NAME or NAME (see --list).", Arity = ArgumentArity.ZeroOrOne };
        var data = new Option<string?>("--data") { Description = "The data directory of a stopped omega serve (default: the user's local data folder, omega/default)." };
        var revision = new Option<int?>("--policy-revision") { Description = "Replay under this policy revision instead of the recorded one (shows what it would have chosen)." };
        var all = new Option<bool>("--all") { Description = "Replay every kept decision record (one line each, then a summary)." };
        var list = new Option<bool>("--list") { Description = "List the kept decision records' ids, oldest first." };
        var decision = new Command("decision", "Re-run a kept placement decision from the data directory and show that the scheduler reaches the same choice, or what differs.")
        {
            id, data, revision, all, list,
        };
        decision.SetAction(r =>
        {
            string? one = r.GetValue(id);
            bool doAll = r.GetValue(all), doList = r.GetValue(list);
            int modes = (one is null ? 0 : 1) + (doAll ? 1 : 0) + (doList ? 1 : 0);
            if (modes != 1)
            {
                Console.Error.WriteLine("omega replay decision: give one of ID, --all or --list");
                return 2;
            }
            if (r.GetValue(revision) is < 0)
            {
                Console.Error.WriteLine("omega replay decision: --policy-revision must not be negative");
                return 2;
            }
            string dir = r.GetValue(data) ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "omega", "default");
            if (!Directory.Exists(dir))
            {
                Console.Error.WriteLine($"omega replay decision: no data directory at {dir}");
                return 1;
            }
            ICellStore store;
            try
            {
                // Read-only use: no checkpoint on close, so replaying never rewrites the directory it reads.
                store = CellStore.Open(new StorageOptions { DataDirectory = dir, CheckpointInterval = null, CheckpointOnDispose = false, Warning = _ => { } });
            }
            catch (StorageLockedException)
            {
                Console.Error.WriteLine($"omega replay decision: the data directory {dir} is in use by a running server; stop it first (replay reads a stopped server's journal)");
                return 1;
            }
            catch (StorageCorruptionException e)
            {
                Console.Error.WriteLine($"omega replay decision: the data directory {dir} cannot be opened: {e.Message}");
                return 1;
            }
            using (store)
            {
                using var objects = new ObjectStore(store.Cell);
                var replayer = new DecisionReplayer(objects);
                if (doList)
                {
                    var kept = replayer.All();
                    foreach (var d in kept)
                        Console.WriteLine(string.Create(C, $"{d.Metadata.Tenant}/{d.Metadata.Name}  workload {d.Spec.Workload} g{d.Spec.WorkloadGeneration} slot {d.Spec.Slot} r{d.Spec.PolicyRevision} v{d.Spec.SnapshotVersion} {d.Spec.Outcome}{(d.Spec.Inputs is null ? " (no inputs)" : "")}"));
                    Console.WriteLine(string.Create(C, $"{kept.Count} decision record(s) kept"));
                    return 0;
                }
                if (doAll)
                {
                    int same = 0, different = 0;
                    foreach (var d in replayer.All())
                    {
                        var rep = replayer.Replay(d, r.GetValue(revision));
                        if (rep.Same) { same++; Console.WriteLine($"SAME      {d.Metadata.Tenant}/{d.Metadata.Name}"); }
                        else
                        {
                            different++;
                            string why = rep.Problem ?? string.Join("; ", [.. rep.Differences, .. rep.Outcome!.Notes]);
                            Console.WriteLine($"DIFFERENT {d.Metadata.Tenant}/{d.Metadata.Name}: {why}");
                        }
                    }
                    Console.WriteLine(string.Create(C, $"{same + different} replayed: {same} same, {different} different"));
                    return different == 0 ? 0 : 1;
                }
                var found = replayer.Find(one!);
                if (found is null)
                {
                    Console.Error.WriteLine($"omega replay decision: no decision record '{one}' is kept in {dir} (see --list)");
                    return 1;
                }
                var report = replayer.Replay(found, r.GetValue(revision));
                Console.Write(report.ToString());
                return report.Same ? 0 : 1;
            }
        });
        return new Command("replay", "Replay from the log: re-run a kept decision against the state it read.") { decision };
    }
}
