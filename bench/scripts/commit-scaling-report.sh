#!/usr/bin/env bash
# Issue 14's measurements in one go, for the current tree AND a baseline commit, on the same machine in the same run:
#   1. throughput: single-claim Fine commit+release at 1 and 2 threads (combining path and the plain lock path of the
#      same binary) against the same-run raw FASTER RMW baseline;
#   2. sched: the full scheduling engine, 10,000 nodes, 1/2/4 workers, placements/s and the conflict fraction, with the
#      same-run FASTER baseline;
#   3. floor: the placement floor (sample 2 nodes, one CAS on a packed word) at 1 and 2 threads, current build only;
#   4. decision cost: BenchmarkDotNet SchedulingBenchmarks (DecidePerPlacement, SubmitScheduleCompletePerPlacement) with
#      [MemoryDiagnoser] (µs and bytes per placement), for the current tree AND the baseline build: summary.md prints one
#      row per build and method ("Decision cost"), so a decision-path change reads against the same run's baseline.
# Each with >= 5 reps (BenchmarkDotNet: 10 measured iterations). Run it on a quiet machine (nothing else building);
# machine.txt records the load at start and end of each part.
#
# Throughput and sched run as ALTERNATING PROCESSES, one rep each (current, baseline, baseline, current, ...), and every
# throughput process measures its own FASTER RMW baseline in the same rep: the 2026-12-06 run measured the current tree
# first and the baseline minutes later, and FASTER's own 1-thread figure differed by 24 % between the two halves, which
# read as a 17 % "regression" of the current tree (paired with its own FASTER rep it was 0.92 against the baseline's
# 0.80). summary.md pairs each process's engine figure with the FASTER figure of the same process.
#
# The current build also runs the node-striped commit path (CommitPath.Striped, `--striped`) in the same processes as its
# plain lock path: throughput cases "..., striped path" and sched configs ",striped", so summary.md's "Striped vs plain
# lock" table compares old and new path from one quiet run, paired rep by rep (the baseline build, which may predate the
# flag, is never given it).
#
# Usage: bench/scripts/commit-scaling-report.sh OUTPUT_DIR [BASELINE] [reps] [seconds]
#   COMMIT_SCALING_BDN=0 in the environment skips part 4 (the BenchmarkDotNet decision cost), e.g. for a striped-path-only run.
#   COMMIT_SCALING_ONLY_BDN=1 runs part 4 alone (both builds), e.g. after a quiet throughput/sched run made without it.
#   BASELINE: a git ref of this repository (default 704a577, main before issue 14), exported with `git archive` into a
#             temp dir and built there; or a directory holding an already built Omega.Benchmarks.dll; or "none".
# Example: bench/scripts/commit-scaling-report.sh perf-reports/2026-12-06-commit-scaling/run-1 704a577 5 3
# Round 9 (issue 14, the decision path; commit14's base 039d142):
#          bench/scripts/commit-scaling-report.sh perf-reports/2026-12-07-commit-scaling/run-3 039d142 5 3
set -euo pipefail

out=${1:?usage: commit-scaling-report.sh OUTPUT_DIR [BASELINE] [reps] [seconds]}
baseline=${2:-704a577}
reps=${3:-5}
seconds=${4:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

. "$root/bench/scripts/machine-facts.sh"
machine_facts "$root" | tee "$out/machine.txt"
echo "baseline: $baseline" | tee -a "$out/machine.txt"

dotnet build -c Release "$root/bench/Omega.Benchmarks" -v quiet -nologo
current="$root/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll"

base_dll=""
tmp=""
if [[ "$baseline" != "none" ]]; then
  if [[ -d "$baseline" ]]; then
    base_dll=$(find "$baseline" -name Omega.Benchmarks.dll -path '*bin/Release*' | head -1)
  else
    tmp=$(mktemp -d)
    echo "building baseline $baseline in $tmp" | tee -a "$out/machine.txt"
    git -C "$root" archive "$baseline" | tar -x -C "$tmp"
    OMEGA_SOURCE_COMMIT=$baseline dotnet build -c Release "$tmp/bench/Omega.Benchmarks" -v quiet -nologo
    base_dll="$tmp/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll"
  fi
  [[ -f "$base_dll" ]] || { echo "baseline Omega.Benchmarks.dll not found" >&2; exit 1; }
fi

one_rep() { # NAME DLL REP: one throughput process and one sched process, one rep each
  local name=$1 dll=$2 rep=$3
  local extra=()
  [[ "$name" == current ]] && extra=(--striped) # issue 14: the striped path beside the plain lock path, same process
  echo "== rep $rep $name: throughput ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  dotnet "$dll" throughput --seconds "$seconds" --reps 1 --seed "$rep" "${extra[@]}" | tee "$out/$name-throughput-rep$rep.txt"
  echo "== rep $rep $name: sched ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  dotnet "$dll" sched --reps 1 --seed "$rep" "${extra[@]}" | tee "$out/$name-sched-rep$rep.txt"
}

bdn() { # NAME DLL
  local name=$1 dll=$2
  echo "== $name: decision cost, BenchmarkDotNet ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  local artifacts
  artifacts=$(mktemp -d)
  dotnet "$dll" --filter '*SchedulingBenchmarks*' --launchCount 1 --warmupCount 3 --iterationCount 10 --artifacts "$artifacts" \
    | tee "$out/$name-bdn-console.txt"
  cp "$artifacts"/results/*-report-github.md "$out/$name-scheduling-bdn.md" || true
  rm -rf "$artifacts"
}

only_bdn=${COMMIT_SCALING_ONLY_BDN:-0}
for ((rep = 1; rep <= reps && only_bdn != 1; rep++)); do
  # ABBA order: neither build always runs first (a falling load average or a warming CPU favours the later one).
  if [[ -z "$base_dll" ]]; then
    one_rep current "$current" "$rep"
  elif (( rep % 2 == 1 )); then
    one_rep current "$current" "$rep"; one_rep baseline "$base_dll" "$rep"
  else
    one_rep baseline "$base_dll" "$rep"; one_rep current "$current" "$rep"
  fi
done
if [[ "$only_bdn" != 1 ]]; then
  echo "== placement floor ($(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
  dotnet "$current" floor --seconds "$seconds" --reps "$reps" | tee "$out/floor.txt"
fi
if [[ "${COMMIT_SCALING_BDN:-1}" != 0 ]]; then
  bdn current "$current"
  [[ -n "$base_dll" ]] && bdn baseline "$base_dll"
fi
[[ -n "$tmp" ]] && rm -rf "$tmp"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
python3 "$root/bench/scripts/commit-scaling-summary.py" "$out" | tee "$out/summary.md"
