#!/usr/bin/env bash
# Recovery of N bindings (issue 15: target <= 5 s and <= 2.5 GiB resident at 10M): builds a store of N bindings once
# (checkpointed), then opens it REPS times, each in a fresh process, and prints per open the recovery seconds, its
# phases (checkpoint verify / FasterKV recover / scan into the cell / journal replay / rebuild) and the peak resident
# memory of that process (VmHWM, and /usr/bin/time's maxrss), then the medians.
#
#   bench/scripts/recovery-report.sh [--bindings N] [--reps R] [--dir D] [--out FILE] [--keep]
#
# Defaults: N=10000000, R=3, D=a temp directory (removed at the end unless --keep), FILE=stdout only.
# Run it on a quiet machine for figures (the coordinator does); at 1M it is a correctness check on any machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=10000000; reps=3; dir=""; out=""; keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bindings) n=$2; shift 2;;
    --reps) reps=$2; shift 2;;
    --dir) dir=$2; shift 2;;
    --out) out=$2; shift 2;;
    --keep) keep=1; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
if [[ -z "$dir" ]]; then dir=$(mktemp -d /tmp/omega-recovery.XXXXXX); else mkdir -p "$dir"; fi
log() { if [[ -n "$out" ]]; then tee -a "$out"; else cat; fi; }
dotnet build bench/Omega.StorageBench -c Release -v q -nologo >/dev/null
bin=bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench
echo "=== recovery-report: $n bindings, $reps opens, dir $dir, load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, commit $(git rev-parse --short HEAD)" | log
"$bin" recovery --allocations "$n" --phase build --dir "$dir" 2>&1 | log
lines=()
for rep in $(seq "$reps"); do
  echo "=== open $rep/$reps load $(cut -d' ' -f1-3 /proc/loadavg)" | log
  res=$(/usr/bin/time -f "maxrss_kb=%M wall_s=%e" "$bin" recovery --allocations "$n" --phase open --dir "$dir" 2>&1)
  echo "$res" | log
  line=$(echo "$res" | grep '^RECOVERY ' | tail -1)
  maxrss=$(echo "$res" | grep -o 'maxrss_kb=[0-9]*' | tail -1 | cut -d= -f2)
  lines+=("$line maxrss_mib=$((maxrss / 1024))")
done
# Medians of each field over the opens.
printf '%s\n' "${lines[@]}" | python3 -c '
import sys, statistics
rows = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in sys.stdin if l.strip()]
keys = ["open_s", "verify_s", "recover_s", "scan_s", "replay_s", "rebuild_s", "peak_rss_mib", "maxrss_mib", "working_set_mib"]
print("=== medians over %d opens of %s bindings:" % (len(rows), rows[0]["bindings"]))
for k in keys:
    vals = [float(r[k]) for r in rows]
    print("  %-16s %10.3f   (runs: %s)" % (k, statistics.median(vals), ", ".join("%g" % v for v in vals)))
' | log
if [[ $keep -eq 0 ]]; then rm -rf "$dir"; fi
