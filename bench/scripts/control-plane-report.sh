#!/usr/bin/env bash
# Control-plane perf report (issue 12) and external-scheduler commit latency over TLS (issue 11), full scale.
# Usage: bench/scripts/control-plane-report.sh OUTPUT_DIR [cpreconcile|cpstart|extcommit ...]   (default: all three)
# Each runner prints nproc and quiet-check itself; this script waits for a quiet machine first (quiet-check, up to
# 10 minutes), records the machine facts, and keeps each runner's full output and its BENCH_JSON line.
set -euo pipefail

out=${1:?usage: control-plane-report.sh OUTPUT_DIR [cpreconcile|cpstart|extcommit ...]}
shift
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(cpreconcile cpstart extcommit)
root=$(cd "$(dirname "$0")/../.." && pwd)
quiet="$root/../shared/tools/quiet-check"
[ -x "$quiet" ] || quiet=/work/shared/tools/quiet-check
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
dotnet build -c Release "$root/src/Omega.Cli" -v quiet -nologo
dotnet build -c Release "$root/bench/Omega.Benchmarks" -v quiet -nologo
dll="$root/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll"
machine_facts "$root" | tee "$out/machine.txt"

declare -A cmd=(
  [cpreconcile]="cpreconcile --nodes 10000 --replicas 100000 --workloads 100 --reps 3"
  [cpstart]="cpstart --nodes 10000 --agent-procs 4 --fill 0.7 --rate 1000 --seconds 60 --replicas-per-workload 50 --lifetime 20 --probe-rate 100"
  [extcommit]="extcommit --reps 3 --seconds 20 --warmup 3 --rate 2000 --schedulers 4 --depth 8 --claims 1 --agents 100"
)
for r in "${runs[@]}"; do
  [ -n "${cmd[$r]:-}" ] || { echo "unknown runner $r" >&2; exit 2; }
  for _ in $(seq 40); do "$quiet" >/dev/null && break; sleep 15; done
  echo "== $r: dotnet $dll ${cmd[$r]}" | tee "$out/$r.txt"
  # shellcheck disable=SC2086
  dotnet "$dll" ${cmd[$r]} 2>&1 | tee -a "$out/$r.txt" || true
  grep '^BENCH_JSON ' "$out/$r.txt" | cut -d' ' -f2- > "$out/$r.json" || true
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
