using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using Omega.Benchmarks;
using Omega.Benchmarks.Throughput;

// Three entry points in one program, so one build serves a whole perf report:
//   throughput [...]  embedded commit throughput with the same-run FASTER baseline (ThroughputRunner)
//   alloc [...]       bytes per operation on each commit-path step (AllocationProbe)
//   bindpath [...]    bind path over loopback with a simulated agent fleet (BindPathBench)
//   decide-loop [...] the decision (or --engine step) of SchedulingBenchmarks in a loop, for perf record (SchedulingProfileLoop)
//   floor [...]       the placement floor: sample 2 nodes, one CAS on a packed word (PlacementFloor, issue 14)
//   sched [...]       the full scheduling engine draining a backlog, 1/2/4 workers and each mode (SchedulingThroughput)
//   hostile [...]     memory under hostile input: partial frames, million-task jobs, 1M mutated frames (HostileMemoryBench)
//   failover [...]    HA failover driver: 3-member etcd + 3 replicas, SIGKILL/SIGSTOP the leader (FailoverDriver)
//   cpreconcile [...] control plane: workloads reconciled to serving vs the engine alone, in process (ReconcileBench)
//   cpstart [...]     control plane: intent-to-started latency over TCP against omega serve (IntentToStartedBench)
//   extcommit [...]   external scheduler commit latency over TCP, TLS vs plaintext, against omega serve (ExternalCommitBench)
//   ha-soak [...]     high availability on etcd: commits through trim, compaction and defragmentation (HaSoak, issue 16)
//   anything else     BenchmarkDotNet's switcher over every [Benchmark] class here, e.g. --filter '*' --job short, or
//                     --filter '*BindPathFrame*' (the bind path's allocation per frame, issue 15; bench/README.md)
return args.Length > 0 && args[0] == "throughput" ? ThroughputRunner.Run(args[1..])
    : args.Length > 0 && args[0] == "bindpath" ? Omega.Benchmarks.BindPath.BindPathBench.Run(args[1..])
    : args.Length > 0 && args[0] == "alloc" ? AllocationProbe.Run(args[1..])
    : args.Length > 0 && args[0] == "sched" ? SchedulingThroughput.Run(args[1..])
    : args.Length > 0 && args[0] == "decide-loop" ? SchedulingProfileLoop.Run(args[1..])
    : args.Length > 0 && args[0] == "floor" ? PlacementFloor.Run(args[1..])
    : args.Length > 0 && args[0] == "cpreconcile" ? Omega.Benchmarks.ControlPlane.ReconcileBench.Run(args[1..])
    : args.Length > 0 && args[0] == "extcommit" ? Omega.Benchmarks.ControlPlane.ExternalCommitBench.Run(args[1..])
    : args.Length > 0 && args[0] == "cpstart" ? Omega.Benchmarks.ControlPlane.IntentToStartedBench.Run(args[1..])
    : args.Length > 0 && args[0] == "ha-soak" ? Omega.Benchmarks.HighAvailability.HaSoak.Run(args[1..])
    : args.Length > 0 && args[0] == "ha-compare" ? Omega.Benchmarks.HighAvailability.HaCompare.Run(args[1..])
    : args.Length > 0 && args[0] == "hostile" ? Omega.Benchmarks.Hostile.HostileMemoryBench.Run(args[1..])
    : args.Length > 0 && args[0] == "failover" ? Omega.Benchmarks.Failover.FailoverDriver.Run(args[1..])
    : RunBenchmarks(args);

static int RunBenchmarks(string[] args)
{
    // The benchmark child process is built per job; on a shared 2-core machine that build can take longer than
    // BenchmarkDotNet's default 2-minute timeout (seen here while other builds ran), so allow 10 minutes.
    var config = ManualConfig.Create(DefaultConfig.Instance).WithBuildTimeout(TimeSpan.FromMinutes(10));
    var summaries = BenchmarkSwitcher.FromAssembly(typeof(BenchCell).Assembly).Run(args, config);
    return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
}
