using BenchmarkDotNet.Running;
using Omega.Benchmarks;
using Omega.Benchmarks.Throughput;

// Three entry points in one program, so one build serves a whole perf report:
//   throughput [...]  embedded commit throughput with the same-run FASTER baseline (ThroughputRunner)
//   alloc [...]       bytes per operation on each commit-path step (AllocationProbe)
//   bindpath [...]    bind path over loopback with a simulated agent fleet (BindPathBench)
//   anything else     BenchmarkDotNet's switcher, e.g. --filter '*' --job short
return args.Length > 0 && args[0] == "throughput" ? ThroughputRunner.Run(args[1..])
    : args.Length > 0 && args[0] == "bindpath" ? Omega.Benchmarks.BindPath.BindPathBench.Run(args[1..])
    : args.Length > 0 && args[0] == "alloc" ? AllocationProbe.Run(args[1..])
    : RunBenchmarks(args);

static int RunBenchmarks(string[] args)
{
    var summaries = BenchmarkSwitcher.FromAssembly(typeof(BenchCell).Assembly).Run(args);
    return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
}
