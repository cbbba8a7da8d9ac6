#!/usr/bin/env bash
# Issue 15's measurements in one session, for perf-reports/YYYY-MM-DD-bindpath:
#   1. bind path vs Redis: `Omega.Benchmarks bindpath run` (plaintext, then --tls) alternating with
#      ../shared/tools/redis-baseline (redis-benchmark SET) at the same connection count and pipeline depth, at 1,000 and
#      10,000 connections, REPS runs each;
#   2. the README's main job (`omega run`, default pace, TLS and credentials on): bind latency p50/p99/p99.9 from commit to
#      agent, including the group commit, REPS runs, each with its --report folder (charts of the latency distribution);
#   3. durable vs in-memory: `Omega.StorageBench throughput` (pipelined durable claims/s against in-memory claims/s in the
#      same process, closed-loop ack p50/p99);
#   4. recovery of RECOVERY_N (default 10M) bindings: open time and its phases, and peak resident memory (VmHWM) of a
#      fresh process that only opens the store.
# Each measurement runs on the build of this tree and, alternating with it, on every --baseline REF (a git ref exported
# with `git archive` and built in a temp directory), so a report compares old and new on the same machine in one session.
#
# Usage: bench/scripts/bindpath-report.sh [--out DIR] [--baseline REF]... [--reps N] [--seconds S] [--depth P]
#                                         [--recovery N] [--skip redis,mainjob,storage,recovery] [--wait-quiet]
#                                         [--connections "1000 10000"] [--mainjob-seconds 30]
#   e.g. bench/scripts/bindpath-report.sh --baseline 704a577 --wait-quiet
# --wait-quiet waits (up to 30 min) until ../shared/tools/quiet-check passes before each section. Every run records the
# load average before it; numbers measured while others build are not to be published (re-run instead).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/perf-reports/$(date -u +%Y-%m-%d)-bindpath"
baselines=()
reps=3
seconds=10
depth=16
recovery_n=10000000
skip=""
wait_quiet=0
connections="1000 10000"
mainjob_seconds=30
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2;;
    --baseline) baselines+=("$2"); shift 2;;
    --reps) reps=$2; shift 2;;
    --seconds) seconds=$2; shift 2;;
    --depth) depth=$2; shift 2;;
    --recovery) recovery_n=$2; shift 2;;
    --skip) skip=$2; shift 2;;
    --wait-quiet) wait_quiet=1; shift;;
    --connections) connections=$2; shift 2;;
    --mainjob-seconds) mainjob_seconds=$2; shift 2;;
    -h|--help) sed -n 2,24p "$0"; exit 0;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
skipped() { case ",$skip," in *",$1,"*) return 0;; *) return 1;; esac; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
tools="$root/../shared/tools"
[ -x "$tools/redis-baseline" ] || tools=/work/shared/tools
redis_baseline=${OMEGA_REDIS_BASELINE:-$tools/redis-baseline}
work=$(mktemp -d /tmp/omega-bindpath-report.XXXXXX)
trap 'rm -rf "$work"' EXIT
# 10,000 agents hold 10,000 sockets in the fleet process and as many in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$root/bench/scripts/machine-facts.sh"
machine_facts "$root" | tee "$out/machine.txt"
echo "baselines: ${baselines[*]:-none}; reps $reps; seconds $seconds; depth $depth; recovery $recovery_n" | tee -a "$out/machine.txt"

load() { cut -d' ' -f1-3 /proc/loadavg; }
quiet() {
  [ -x "$tools/quiet-check" ] || return 0
  if [ "$wait_quiet" = 1 ]; then
    local waited=0
    until "$tools/quiet-check" 3 0.3 >>"$out/quiet-check.txt" 2>&1; do
      sleep 20; waited=$((waited + 20))
      [ $waited -ge 1800 ] && { echo "machine still busy after 30 min; measuring anyway (see quiet-check.txt)" | tee -a "$out/machine.txt"; break; }
    done
  fi
  echo "== $1: $("$tools/quiet-check" 3 0.3 2>&1 | head -1)" | tee -a "$out/quiet-check.txt"
}

# ---------------------------------------------------------------- builds
# name -> directory holding a built tree; "current" is this checkout.
declare -A tree
names=(current)
tree[current]=$root
build_tree() {
  local dir=$1
  for p in bench/Omega.Benchmarks bench/Omega.StorageBench src/Omega.Cli; do
    dotnet build "$dir/$p" -c Release -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; echo "build of $dir/$p failed" >&2; exit 1; }
  done
}
build_tree "$root"
for ref in "${baselines[@]}"; do
  commit=$(git -C "$root" rev-parse --short "$ref") || { echo "unknown ref $ref" >&2; exit 2; }
  name="base-$commit"
  dir="$work/$name"
  mkdir -p "$dir"
  git -C "$root" archive "$commit" | tar -x -C "$dir"
  echo "building baseline $ref ($commit) in $dir" | tee -a "$out/machine.txt"
  build_tree "$dir"
  tree[$name]=$dir
  names+=("$name")
done
bench_dll() { echo "${tree[$1]}/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll"; }
storage_bin() { echo "${tree[$1]}/bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench"; }
omega_dll() { echo "${tree[$1]}/src/Omega.Cli/bin/Release/net10.0/omega.dll"; }

# ---------------------------------------------------------------- 1. bind path vs Redis
if ! skipped redis; then
  quiet "bind path vs redis"
  : > "$out/bindpath-runs.txt"
  for agents in $connections; do
    for rep in $(seq "$reps"); do
      for name in "${names[@]}"; do
        for mode in plaintext tls; do
          flag=""; [ "$mode" = tls ] && flag="--tls"
          echo "=== build=$name agents=$agents depth=$depth mode=$mode rep=$rep load=$(load)" | tee -a "$out/bindpath-runs.txt"
          timeout $((seconds * 6 + 180)) dotnet "$(bench_dll "$name")" bindpath run --agents "$agents" --depth "$depth" --seconds "$seconds" $flag 2>&1 \
            | tee -a "$out/bindpath-runs.txt" || echo "run failed" | tee -a "$out/bindpath-runs.txt"
        done
      done
      echo "=== redis clients=$agents pipeline=$depth rep=$rep load=$(load)" | tee -a "$out/bindpath-runs.txt"
      "$redis_baseline" -c "$agents" -P "$depth" -n 1000000 2>&1 | tail -1 | tee -a "$out/bindpath-runs.txt" || true
    done
  done
fi

# ---------------------------------------------------------------- 2. the main job's bind latency
if ! skipped mainjob; then
  quiet "main job"
  : > "$out/mainjob-runs.txt"
  for rep in $(seq "$reps"); do
    for name in "${names[@]}"; do
      echo "=== build=$name omega run (default pace, TLS) rep=$rep load=$(load)" | tee -a "$out/mainjob-runs.txt"
      rm -rf "$work/run-data"
      timeout 300 dotnet "$(omega_dll "$name")" run --seconds "$mainjob_seconds" --data "$work/run-data" --report "$out/mainjob-$name-$rep" >"$work/run.txt" 2>&1 || echo "run failed" >>"$work/run.txt"
      grep -E "omega run:|placements/s  |bind latency|commit latency|durability|invariants|run failed" "$work/run.txt" | tee -a "$out/mainjob-runs.txt"
      cp "$work/run.txt" "$out/mainjob-$name-$rep.txt"
    done
  done
fi

# ---------------------------------------------------------------- 3. durable vs in-memory claims
if ! skipped storage; then
  quiet "durable vs in-memory"
  : > "$out/storage-throughput.txt"
  for name in "${names[@]}"; do
    echo "=== build=$name throughput load=$(load)" | tee -a "$out/storage-throughput.txt"
    "$(storage_bin "$name")" throughput --seconds 5 --repeats "$reps" --dir "$work/storage" 2>&1 | tee -a "$out/storage-throughput.txt"
  done
fi

# ---------------------------------------------------------------- 4. recovery and resident memory
if ! skipped recovery; then
  quiet "recovery"
  : > "$out/recovery.txt"
  for name in "${names[@]}"; do
    bin=$(storage_bin "$name")
    if grep -q -- '--phase' "${tree[$name]}/bench/Omega.StorageBench/Program.cs"; then
      # Build once, then open REPS times, each in a fresh process: its VmHWM is recovery's own peak.
      echo "=== build=$name recovery $recovery_n: building the store load=$(load)" | tee -a "$out/recovery.txt"
      "$bin" recovery --allocations "$recovery_n" --phase build --dir "$work/recovery" 2>&1 | tee -a "$out/recovery.txt"
      for rep in $(seq "$reps"); do
        echo "=== build=$name recovery open rep=$rep load=$(load)" | tee -a "$out/recovery.txt"
        /usr/bin/time -f "maxrss_kb=%M wall_s=%e" "$bin" recovery --allocations "$recovery_n" --phase open --dir "$work/recovery" 2>&1 | tee -a "$out/recovery.txt"
      done
      rm -rf "$work/recovery"
    else
      # An older build builds and opens in one process: its maxrss includes the builder's heap (say so in the report).
      for rep in $(seq "$reps"); do
        echo "=== build=$name recovery $recovery_n (build + open in one process; maxrss includes the build) rep=$rep load=$(load)" | tee -a "$out/recovery.txt"
        /usr/bin/time -f "maxrss_kb=%M wall_s=%e" "$bin" recovery --allocations "$recovery_n" --dir "$work/recovery" 2>&1 | tee -a "$out/recovery.txt"
      done
    fi
  done
fi

# ---------------------------------------------------------------- summary (medians)
{
  echo "# summary (medians over reps; raw lines in the *-runs.txt / *.txt files)"
  median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
  if [ -f "$out/bindpath-runs.txt" ]; then
    for agents in $connections; do
      for name in "${names[@]}"; do
        for mode in plaintext tls; do
          sel=$(awk -v h="=== build=$name agents=$agents depth=$depth mode=$mode " 'index($0,"===")==1 {on = index($0,h)==1} on' "$out/bindpath-runs.txt")
          rate=$(echo "$sel" | sed -n 's/^bind_rate_per_s=//p' | median)
          p50=$(echo "$sel" | sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' | median)
          p99=$(echo "$sel" | sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' | median)
          echo "bindpath agents=$agents build=$name mode=$mode binds/s=$rate p50_us=$p50 p99_us=$p99"
        done
      done
      redis=$(awk -v h="=== redis clients=$agents " 'index($0,"===")==1 {on = index($0,h)==1} on && /^[0-9]/' "$out/bindpath-runs.txt" | cut -d, -f5 | median)
      echo "redis clients=$agents SET/s=$redis"
    done
  fi
  if [ -f "$out/mainjob-runs.txt" ]; then
    for name in "${names[@]}"; do
      lat=$(awk -v h="=== build=$name omega run" 'index($0,"===")==1 {on = index($0,h)==1} on && /bind latency/' "$out/mainjob-runs.txt")
      p50=$(echo "$lat" | sed -n 's/.*│ *\([0-9.]*\) ms \/ \([0-9.]*\) ms \/ \([0-9.]*\) ms.*/\1/p' | median)
      p99=$(echo "$lat" | sed -n 's/.*│ *\([0-9.]*\) ms \/ \([0-9.]*\) ms \/ \([0-9.]*\) ms.*/\2/p' | median)
      echo "mainjob build=$name bind_p50_ms=$p50 bind_p99_ms=$p99"
    done
  fi
  [ -f "$out/storage-throughput.txt" ] && grep -E "^=== build=|^\| |durable / |group-commit thread CPU" "$out/storage-throughput.txt"
  [ -f "$out/recovery.txt" ] && grep -E "^=== build=|^\| |VmHWM|maxrss_kb|^built |^checkpoint \(apply" "$out/recovery.txt"
  echo "load average at end: $(load)"
} | tee "$out/summary.txt"
