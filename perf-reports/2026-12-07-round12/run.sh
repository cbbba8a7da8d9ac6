#!/usr/bin/env bash
# Round 12 (issue 14): the concurrent commit path against the plain lock path, same binary, same process per rep;
# FASTER RMW and the placement floor measured in the same session. Usage: run.sh OUT [reps] [seconds]
set -euo pipefail
out=${1:?usage: run.sh OUT [reps] [seconds]}
reps=${2:-5}
seconds=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
dll="$root/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll"
[[ -f "$dll" ]] || { echo "build bench/Omega.Benchmarks -c Release first" >&2; exit 1; }
q() { /work/shared/tools/quiet-check 2>&1 | tail -1; }
{ echo "commit: $(git -C "$root" rev-parse --short HEAD)"; echo "start: $(date -u +%FT%TZ)"; echo "quiet-check before: $(q)"; nproc; } | tee "$out/machine.txt"
for ((rep = 1; rep <= reps; rep++)); do
  echo "== rep $rep throughput ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  dotnet "$dll" throughput --seconds "$seconds" --reps 1 --seed "$rep" --concurrent --only "plain lock path|concurrent path" > "$out/throughput-rep$rep.txt"
  echo "== rep $rep sched ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  dotnet "$dll" sched --reps 1 --seed "$rep" --concurrent --only "Incremental+Fine|Incremental+Fine,concurrent|AllOrNothing+Fine|AllOrNothing+Fine,concurrent" > "$out/sched-rep$rep.txt"
done
echo "== floor ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
dotnet "$dll" floor --seconds "$seconds" --reps "$reps" > "$out/floor.txt"
{ echo "end: $(date -u +%FT%TZ)"; echo "quiet-check after: $(q)"; } | tee -a "$out/machine.txt"
python3 "$(dirname "$0")/summarize.py" "$out" | tee "$out/summary.md"
