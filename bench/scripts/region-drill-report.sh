#!/usr/bin/env bash
# Regional failover drill (issue 13), full scale, for the coordinator's quiet runs:
#   1. `omega drill region-loss` at 10,200 agents over TCP (3 regions x 3,400, 4 agent processes per region), 5 runs,
#      seeds 1-5: time to 4 serving replicas per critical workload and the recovery breakdown
#      (t=0 -> region signal -> fenced -> bound on agent -> ready -> status serving);
#   2. the same scenario in virtual time at 100,002 nodes (`omega drill region-loss-sim`, 3 x 33,334), budgets 0/16/64;
#   3. `--mode partition` at 3 x 300 in-process agents, 2 runs (the lost region's agents stay connected but every byte
#      is dropped, so detection comes from leases; the partition heals after recovery).
# Usage: bench/scripts/region-drill-report.sh [OUTPUT_DIR] [drill|sim|partition ...]   (default: all three, into
#        perf-reports/2026-12-06-region-drill)
# Waits for a quiet machine before each part (quiet-check, up to 10 minutes), records the machine facts and the load
# before and after, and keeps every run's full output and report directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/perf-reports/2026-12-06-region-drill}
[ $# -gt 0 ] && shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(drill sim partition)
quiet="$root/../shared/tools/quiet-check"
[ -x "$quiet" ] || quiet=/work/shared/tools/quiet-check
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
dotnet build -c Release "$root/src/Omega.Cli" -v quiet -nologo
omega=(dotnet "$root/src/Omega.Cli/bin/Release/net10.0/omega.dll")
machine_facts "$root" | tee "$out/machine.txt"

wait_quiet() {
  for _ in $(seq 40); do "$quiet" >/dev/null 2>&1 && break; sleep 15; done
  "$quiet" 2>&1 | tee -a "$out/quiet-check.txt" || true
}

for p in "${parts[@]}"; do
  case "$p" in
    drill)
      for i in 1 2 3 4 5; do
        wait_quiet
        echo "== drill run $i" | tee "$out/drill-$i.txt"
        "${omega[@]}" drill region-loss --regions 3 --agents-per-region 3400 --agent-processes 4 --timeout-seconds 120 \
          --seed "$i" --report "$out/drill-$i" 2>&1 | tee -a "$out/drill-$i.txt" || true
      done ;;
    sim)
      for b in 0 16 64; do
        wait_quiet
        echo "== virtual 100k, budget $b cores" | tee "$out/sim-100k-budget-$b.txt"
        "${omega[@]}" drill region-loss-sim --regions 3 --nodes-per-region 33334 --budget-cores "$b" --seed 1 2>&1 \
          | tee -a "$out/sim-100k-budget-$b.txt" || true
      done ;;
    partition)
      for i in 1 2; do
        wait_quiet
        echo "== partition run $i" | tee "$out/partition-$i.txt"
        "${omega[@]}" drill region-loss --mode partition --regions 3 --agents-per-region 300 --objective-seconds 30 \
          --timeout-seconds 90 --seed "$i" --report "$out/partition-$i" 2>&1 | tee -a "$out/partition-$i.txt" || true
      done ;;
    *) echo "unknown part $p (drill, sim, partition)" >&2; exit 2 ;;
  esac
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
# The summary lines the README's tables are filled from.
grep -h -E '^  (risk-api|billing-api) |p50 .* max |breakdown|objective:|invariants:|healed' "$out"/drill-*.txt "$out"/partition-*.txt 2>/dev/null || true
grep -h -E 'objective|budget ' "$out"/sim-100k-budget-*.txt 2>/dev/null || true
