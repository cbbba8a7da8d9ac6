using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using Omega.Cells;
using Omega.Dst;

namespace Omega.Cli;

/// <summary>
/// <c>omega dst</c>: the deterministic simulation of the whole control plane (docs/testing.md). <c>--seed S</c> replays one
/// seed exactly (with <c>--trace</c>, every event); <c>--seeds A..B</c> is the bench entry point: it runs a range and prints
/// seeds per second, violations and the faults injected.
/// </summary>
internal static class DstCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var seed = new Option<long?>("--seed") { Description = "Replay one seed (prints its trace hash and, on a violation, the events that led to it)." };
        var seeds = new Option<string?>("--seeds") { Description = "Run a range of seeds, A..B inclusive (the bench: prints seeds/s and fault counts)." };
        var trace = new Option<bool>("--trace") { Description = "With --seed: print every event of the run." };
        var steps = new Option<int>("--steps") { Description = "Steps with faults per seed (then the run must converge).", DefaultValueFactory = _ => 400 };
        var faultRate = new Option<double>("--fault-rate") { Description = "Multiplies every fault's probability (0: no faults).", DefaultValueFactory = _ => 1 };
        var buggify = new Option<string?>("--buggify") { Description = "Comma-separated broken variants to run with: SkipTokenCheck, AckBeforeDurable, SkipIdempotencyReplay, SkipReservationExpiry, SkipCapacityCheck, SkipOverrideExpiry." };
        var wire = new Option<bool>("--wire") { Description = "Run the wire simulation instead: simulated agents and external schedulers speak real frames to the server's real protocol handler through a faulty network, with server crashes (docs/testing.md). --buggify also takes ReplyBeforeDurable." };
        var unified = new Option<bool>("--unified") { Description = "Run the unified harness: the wire simulation with the control plane behind the real protocol handler (object store, scheduler workers, controllers), authentication on, and an operator client writing and watching objects, draining nodes, raising quotas, rolling policies back and revoking credentials over the wire (docs/testing.md). --buggify also takes ReplyBeforeDurable, WatchResumeGap, ForgetRevocationOnRestart, SkipDrainCheck, SkipOutboxReseed, SkipTaskBoundCheck. Runs past its quiet steps until everything converged (the convergence checker)." };
        var parallel = new Option<int>("--parallel") { Description = "With --seeds: seeds run at once (each run is single-threaded).", DefaultValueFactory = _ => 1 };
        var cmd = new Command("dst", "Deterministic simulation of the control plane: the real cell, object store, scheduler workers and controllers with simulated time, disk, network and faults, from one seed.")
        {
            seed, seeds, trace, steps, faultRate, buggify, parallel, wire, unified,
        };
        cmd.SetAction(r =>
        {
            var o = new DstOptions { Steps = r.GetValue(steps), FaultRate = r.GetValue(faultRate), FullTrace = r.GetValue(trace) };
            string? error = null;
            long from = 0, to = 0;
            if (r.GetValue(seed) is { } s && r.GetValue(seeds) is not null) error = "give --seed or --seeds, not both";
            else if (r.GetValue(seed) is { } one) from = to = one;
            else if (r.GetValue(seeds) is { } range)
            {
                var parts = range.Split("..", StringSplitOptions.TrimEntries);
                if (parts.Length != 2 || !long.TryParse(parts[0], NumberStyles.Integer, C, out from) || !long.TryParse(parts[1], NumberStyles.Integer, C, out to) || to < from)
                    error = "--seeds must be A..B with A <= B";
            }
            else error = "give --seed S or --seeds A..B";
            if (error is null && o.Steps is < 1 or > 1_000_000) error = "--steps must be between 1 and 1,000,000";
            if (error is null && (double.IsNaN(o.FaultRate) || o.FaultRate is < 0 or > 100)) error = "--fault-rate must be between 0 and 100";
            if (error is null && r.GetValue(parallel) is < 1 or > 256) error = "--parallel must be between 1 and 256";
            if (error is null && r.GetValue(buggify) is { } b)
                foreach (var name in b.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    if (!Enum.TryParse<Buggify>(name, ignoreCase: true, out var flag) || flag == Buggify.None || !Enum.IsDefined(flag)) { error = $"--buggify: unknown variant '{name}'"; break; }
                    o.Buggify |= flag;
                }
            if (error is not null)
            {
                Console.Error.WriteLine($"omega dst: {error}");
                return 2;
            }
            string build = typeof(DstSimulation).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
            Func<long, DstResult> run = r.GetValue(unified)
                ? s => UnifiedSimulation.RunSeed(s, new WireOptions { Steps = o.Steps, Buggify = o.Buggify, FullTrace = o.FullTrace })
                : r.GetValue(wire)
                ? s => WireSimulation.RunSeed(s, new WireOptions { Steps = o.Steps, Buggify = o.Buggify, FullTrace = o.FullTrace })
                : s => DstSimulation.RunSeed(s, o);
            if (r.GetValue(seed) is not null)
            {
                var res = run(from);
                Console.Write(res.ToString());
                if (o.FullTrace && res.Ok) foreach (var e in res.Trace) Console.WriteLine("  " + e);
                Console.WriteLine("faults: " + Faults(res.FaultCounts));
                Console.WriteLine(string.Create(C, $"decisions replayed: {res.DecisionsReplayed}"));
                if (r.GetValue(unified)) Console.WriteLine(string.Create(C, $"unified: {res.ObjectWritesAcknowledged} object writes acknowledged, {res.WatchEvents} watch events"));
                if (r.GetValue(wire) || r.GetValue(unified)) Console.WriteLine(string.Create(C, $"wire: {res.FramesHandled} frames handled, {res.CommitsAcknowledged} commits acknowledged, {res.BindingsReceived} bindings pushed"));
                if (!res.Ok) Console.WriteLine($"build: {build}");
                return res.Ok ? 0 : 1;
            }
            return RunRange(from, to, o, r.GetValue(parallel), build, run, r.GetValue(wire) || r.GetValue(unified), r.GetValue(unified));
        });
        return cmd;
    }

    private static int RunRange(long from, long to, DstOptions o, int parallel, string build, Func<long, DstResult> run, bool wire, bool unified)
    {
        long frames = 0, acked = 0, pushed = 0, objectAcks = 0, watchEvents = 0;
        var faults = new long[Enum.GetValues<DstFault>().Length];
        var failed = new List<DstResult>();
        long runs = 0, replayed = 0;
        var gate = new Lock();
        var sw = Stopwatch.StartNew();
        Parallel.For(from, to + 1, new ParallelOptions { MaxDegreeOfParallelism = parallel }, s =>
        {
            var res = run(s);
            lock (gate)
            {
                runs++;
                frames += res.FramesHandled;
                acked += res.CommitsAcknowledged;
                pushed += res.BindingsReceived;
                objectAcks += res.ObjectWritesAcknowledged;
                watchEvents += res.WatchEvents;
                replayed += res.DecisionsReplayed;
                for (int i = 0; i < faults.Length; i++) faults[i] += res.FaultCounts[i];
                if (!res.Ok)
                {
                    failed.Add(res);
                    Console.Write(res.ToString());
                }
            }
        });
        double secs = sw.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(C, $"seeds {from}..{to}: {runs} run, {failed.Count} violation(s), {secs:0.0} s, {runs / Math.Max(secs, 1e-9):0.0} seeds/s ({(unified ? "unified, " : wire ? "wire, " : "")}parallel {parallel}, {o.Steps} steps each, fault rate {o.FaultRate}, buggify {o.Buggify})"));
        Console.WriteLine("faults: " + Faults(faults));
        if (wire) Console.WriteLine(string.Create(C, $"wire: {frames} frames handled by the real protocol handler, {acked} commits acknowledged, {pushed} bindings pushed to agents"));
        if (unified) Console.WriteLine(string.Create(C, $"unified: {objectAcks} object writes acknowledged to the operator, {watchEvents} watch events delivered"));
        if (!wire || unified) Console.WriteLine(string.Create(C, $"decisions replayed: {replayed} (every scheduler decision, replayed from its record to the same choice)"));
        if (failed.Count > 0)
        {
            failed.Sort(static (a, b) => a.Seed.CompareTo(b.Seed));
            Console.WriteLine("failing seeds: " + string.Join(' ', failed.Select(f => f.Seed.ToString(C))) + $" (build {build}); replay: omega dst{(unified ? " --unified" : wire ? " --wire" : "")} --seed S --trace");
        }
        return failed.Count == 0 ? 0 : 1;
    }

    private static string Faults(IReadOnlyList<long> counts)
        => string.Join(", ", Enum.GetValues<DstFault>().Select(f => string.Create(C, $"{f} {counts[(int)f]}")));
}
