#!/usr/bin/env bash
# Runs every measurement of the scheduling perf report (issue 4) in one go and keeps the raw output:
#   machine facts, the BenchmarkDotNet scheduling benchmarks (per-placement time and bytes) and the `sched` mode:
#   the full engine draining a backlog at 10,000 nodes with 1/2/4 workers and each commit mode, plus the FASTER
#   baseline in the same run.
# Usage: bench/scripts/scheduling-report.sh OUTPUT_DIR [reps]
set -euo pipefail

out=${1:?usage: scheduling-report.sh OUTPUT_DIR [reps]}
reps=${2:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
project="$root/bench/Omega.Benchmarks"
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
machine_facts "$root" | tee "$out/machine.txt"

dotnet build -c Release "$project" -v quiet -nologo
dll="$project/bin/Release/net10.0/Omega.Benchmarks.dll"

artifacts=$(mktemp -d)
dotnet "$dll" --filter '*SchedulingBenchmarks*' --launchCount 1 --warmupCount 3 --iterationCount 10 --artifacts "$artifacts" \
  | tee "$out/bdn-console.txt"
cp "$artifacts"/results/*-report-github.md "$out/"
rm -rf "$artifacts"

dotnet "$dll" sched --reps "$reps" | tee "$out/sched.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
