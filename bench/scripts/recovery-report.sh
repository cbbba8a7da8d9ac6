#!/usr/bin/env bash
# Recovery of N bindings (issue 15: target <= 5 s and <= 2.5 GiB resident at 10M): builds a store of N bindings once
# (checkpointed, which also writes the compact checkpoint), then opens it REPS times by EACH path, each open in a fresh
# process: from the compact checkpoint (the default) and by the full scan of FasterKV's log (--full-scan 1, the path
# before the compact format), alternating A B / B A per rep so drift hits both alike. Prints per open the path, the
# recovery seconds, its phases (checkpoint verify / FasterKV recover / load into the cell (scan or compact) / journal
# replay / rebuild), the peak resident memory of that process (VmHWM, and /usr/bin/time's maxrss) and the managed bytes
# per binding after a full GC, then the medians per path.
#
#   bench/scripts/recovery-report.sh [--bindings N] [--reps R] [--dir D] [--out FILE] [--keep] [--paths "compact scan"]
#
# Defaults: N=10000000, R=3, D=a temp directory (removed at the end unless --keep), FILE=stdout only.
# Run it on a quiet machine for figures (the coordinator does); at 1M it is a correctness check on any machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=10000000; reps=3; dir=""; out=""; keep=0; paths="compact scan"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bindings) n=$2; shift 2;;
    --reps) reps=$2; shift 2;;
    --dir) dir=$2; shift 2;;
    --out) out=$2; shift 2;;
    --keep) keep=1; shift;;
    --paths) paths=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
if [[ -z "$dir" ]]; then dir=$(mktemp -d /tmp/omega-recovery.XXXXXX); else mkdir -p "$dir"; fi
log() { if [[ -n "$out" ]]; then tee -a "$out"; else cat; fi; }
dotnet build bench/Omega.StorageBench -c Release -v q -nologo >/dev/null
bin=bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench
echo "=== recovery-report: $n bindings, $reps opens per path ($paths), dir $dir, load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, commit $(git rev-parse --short HEAD)" | log
"$bin" recovery --allocations "$n" --phase build --dir "$dir" 2>&1 | log
ls -l "$dir"/recovery-"$n"/checkpoints/ 2>/dev/null | grep -E 'omega-compact|omega-bindings' | log || true
lines=()
read -r -a order <<< "$paths"
for rep in $(seq "$reps"); do
  # ABBA: odd reps in the given order, even reps reversed.
  if (( rep % 2 == 0 )); then this=(); for (( i=${#order[@]}-1; i>=0; i-- )); do this+=("${order[$i]}"); done; else this=("${order[@]}"); fi
  for path in "${this[@]}"; do
    flag=(); [[ "$path" == "scan" ]] && flag=(--full-scan 1)
    echo "=== open $rep/$reps path $path load $(cut -d' ' -f1-3 /proc/loadavg)" | log
    res=$(/usr/bin/time -f "maxrss_kb=%M wall_s=%e" "$bin" recovery --allocations "$n" --phase open --dir "$dir" "${flag[@]}" 2>&1)
    echo "$res" | log
    line=$(echo "$res" | grep '^RECOVERY ' | tail -1)
    mem=$(echo "$res" | grep '^MEMORY ' | tail -1 | cut -d' ' -f2-)
    maxrss=$(echo "$res" | grep -o 'maxrss_kb=[0-9]*' | tail -1 | cut -d= -f2)
    lines+=("$line $mem maxrss_mib=$((maxrss / 1024))")
  done
done
# Medians of each field over the opens, per path.
printf '%s\n' "${lines[@]}" | python3 -c '
import sys, statistics
rows = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in sys.stdin if l.strip()]
keys = ["open_s", "verify_s", "recover_s", "scan_s", "replay_s", "rebuild_s", "peak_rss_mib", "maxrss_mib", "working_set_mib", "allocated_mib", "managed_mib", "managed_bytes_per_binding", "working_set_bytes_per_binding"]
for path in sorted(set(r["path"] for r in rows)):
    sel = [r for r in rows if r["path"] == path]
    print("=== medians over %d opens of %s bindings, path %s (scan_s = the load into the cell: %s):" % (len(sel), sel[0]["bindings"], path, "compact file" if path == "compact" else "FasterKV log scan"))
    for k in keys:
        vals = [float(r[k]) for r in sel if k in r]
        if vals: print("  %-30s %12.3f   (runs: %s)" % (k, statistics.median(vals), ", ".join("%g" % v for v in vals)))
' | log
if [[ $keep -eq 0 ]]; then rm -rf "$dir"; fi
