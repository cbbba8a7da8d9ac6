using Omega.Scheduling.Pipeline;

namespace Omega.Benchmarks;

/// <summary>
/// <c>decide-loop [--seconds S] [--engine]</c>: runs <see cref="SchedulingBenchmarks.DecidePerPlacement"/> (or, with
/// --engine, <see cref="SchedulingBenchmarks.SubmitScheduleCompletePerPlacement"/>) in a plain loop, so
/// <c>perf record -e cpu-clock</c> with <c>DOTNET_PerfMapEnabled=1</c> can attribute the cost by function without
/// BenchmarkDotNet's child processes. It first prints a checksum of the nodes chosen by the first 10,000 decisions:
/// two builds whose decisions are the same for the same seed print the same checksum. It prints no wall-clock timing
/// (BenchmarkDotNet measures that); with --cpu it prints the process CPU time per placement of the loop, a rough guide
/// for comparing two builds on a loaded machine, not a result.
/// </summary>
internal static class SchedulingProfileLoop
{
    public static int Run(string[] args)
    {
        double seconds = 20;
        bool engine = false, cpu = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--seconds" && i + 1 < args.Length) seconds = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
            else if (args[i] == "--engine") engine = true;
            else if (args[i] == "--cpu") cpu = true;
        }
        var b = new SchedulingBenchmarks();
        b.Setup();
        try
        {
            // FNV-1a over (task index, node id, score bits) of every claim: any change of choice or score changes it.
            ulong hash = 14695981039346656037UL;
            for (int d = 0; d < 10_000; d++)
            {
                b.DecidePerPlacement();
                foreach (PlannedClaim c in b.LastPlanned)
                {
                    hash = (hash ^ (ulong)c.TaskIndex) * 1099511628211UL;
                    hash = (hash ^ (ulong)c.Node.Id.Value) * 1099511628211UL;
                    hash = (hash ^ (ulong)BitConverter.DoubleToInt64Bits(c.Score)) * 1099511628211UL;
                }
            }
            Console.WriteLine($"decision checksum (10,000 decisions of 16 tasks, seed 7): {hash:x16}");
            var cpuStart = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
            var until = DateTime.UtcNow.AddSeconds(seconds);
            long calls = 0;
            while (DateTime.UtcNow < until)
            {
                for (int i = 0; i < 1000; i++)
                {
                    if (engine) b.SubmitScheduleCompletePerPlacement();
                    else b.DecidePerPlacement();
                }
                calls += 1000;
            }
            Console.WriteLine($"{(engine ? "engine steps" : "decisions")}: {calls}");
            if (cpu)
            {
                var spent = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpuStart;
                Console.WriteLine($"process CPU per placement: {spent.TotalMilliseconds * 1e6 / (calls * 16.0):F1} ns (loaded machine: a guide only)");
            }
        }
        finally
        {
            b.Cleanup();
        }
        return 0;
    }
}
