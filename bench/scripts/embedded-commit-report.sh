#!/usr/bin/env bash
# Runs every measurement of the embedded-commit perf report in one go and keeps the raw output:
#   machine facts, the allocation probe, the BenchmarkDotNet suite (a short custom job) and the throughput mode with
#   its same-run FASTER baseline.
# Usage: bench/scripts/embedded-commit-report.sh OUTPUT_DIR [throughput seconds] [throughput reps]
set -euo pipefail

out=${1:?usage: embedded-commit-report.sh OUTPUT_DIR [seconds] [reps]}
seconds=${2:-3}
reps=${3:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
project="$root/bench/Omega.Benchmarks"
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
machine_facts "$root" | tee "$out/machine.txt"

dotnet build -c Release "$project" -v quiet -nologo
dll="$project/bin/Release/net10.0/Omega.Benchmarks.dll"

dotnet "$dll" alloc | tee "$out/alloc.txt"

# BenchmarkDotNet: one launch, 3 warm-up and 10 measured iterations per benchmark. Shorter than the default job so the
# whole report fits in ~10 minutes on 2 cores; the confidence intervals in the tables say what that costs.
artifacts=$(mktemp -d)
dotnet "$dll" --filter '*' --launchCount 1 --warmupCount 3 --iterationCount 10 --artifacts "$artifacts" \
  | tee "$out/bdn-console.txt"
cp "$artifacts"/results/*-report-github.md "$out/"
rm -rf "$artifacts"

dotnet "$dll" throughput --seconds "$seconds" --reps "$reps" | tee "$out/throughput.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
