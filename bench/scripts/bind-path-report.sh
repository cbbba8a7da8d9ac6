#!/usr/bin/env bash
# Bind-path perf report: committed placements delivered over loopback to a simulated agent fleet and acknowledged,
# per second, with commit->agent latency percentiles; and, in the same run, the Redis SET baseline with the same
# number of connections and pipeline depth (../shared/tools/redis-baseline, which installs Debian's redis if missing).
# Usage: bench/scripts/bind-path-report.sh OUTPUT_DIR [seconds] [reps] [depth]
set -euo pipefail

out=${1:?usage: bind-path-report.sh OUTPUT_DIR [seconds] [reps] [depth]}
seconds=${2:-10}
reps=${3:-3}
depth=${4:-16}
root=$(cd "$(dirname "$0")/../.." && pwd)
project="$root/bench/Omega.Benchmarks"
baseline="$root/../shared/tools/redis-baseline"
[ -x "$baseline" ] || baseline=/work/shared/tools/redis-baseline
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
machine_facts "$root" | tee "$out/machine.txt"

dotnet build -c Release "$project" -v quiet -nologo
dll="$project/bin/Release/net10.0/Omega.Benchmarks.dll"

: > "$out/runs.txt"
for agents in 1000 10000; do
  for rep in $(seq "$reps"); do
    echo "== omega agents=$agents depth=$depth rep=$rep load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out/runs.txt"
    dotnet "$dll" bindpath run --agents "$agents" --depth "$depth" --seconds "$seconds" 2>&1 | tee -a "$out/runs.txt" || true
    echo "== redis clients=$agents pipeline=$depth rep=$rep load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out/runs.txt"
    "$baseline" -c "$agents" -P "$depth" -n 1000000 2>&1 | tail -1 | tee -a "$out/runs.txt" || true
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
