#!/usr/bin/env bash
# Round 11's quiet measurements for issues 14 and 15, one script, one session, alternating builds.
# usage: perf-reports/2026-12-07-round11/run.sh NEW_SHA OUT_DIR [parts]
#   parts: any of "build bind storage engine bdn frames recovery mainjob" (default: all, in that order)
# Builds are exported with `git archive` into /tmp/bis/SHA and built there (Release), so every build runs from the same
# kind of tree. Nothing else may run on the machine: quiet-check is recorded before and after each part.
set -u
NEW=${1:?NEW_SHA}; OUT=${2:?OUT_DIR}; PARTS=${3:-"build bind storage engine bdn frames recovery mainjob"}
BASE=174a6b3      # main before round 11
ISSUE=861be4d     # the commit issues 14 and 15 measured
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
Q=/work/shared/tools/quiet-check; R=/work/shared/tools/redis-baseline
ulimit -n 20000
has() { [[ " $PARTS " == *" $1 "* ]]; }
q() { echo "[$1 $(date -u +%H:%M:%S)] $($Q 3 2>&1 | head -1)" | tee -a "$OUT/quiet-check.txt"; }
bench() { local s=$1; shift; dotnet /tmp/bis/$s/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll "$@"; }
sbench() { local s=$1; shift; dotnet /tmp/bis/$s/bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench.dll "$@"; }
build() {
  local s=$1 d=/tmp/bis/$1
  if [ ! -f $d/bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench.dll ] || [ ! -f $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll ]; then
    mkdir -p $d; git -C "$ROOT" archive $s | tar -x -C $d
    for p in bench/Omega.Benchmarks bench/Omega.StorageBench; do
      OMEGA_SOURCE_COMMIT=$s dotnet build -c Release $d/$p -v quiet -nologo 2>&1 | grep -E "rror CS" | head -3
    done
  fi
}
{ echo "new=$NEW base=$BASE issue=$ISSUE"; uname -a; nproc; free -g | head -2; dotnet --version; } > "$OUT/machine.txt"

if has build; then for s in $NEW $BASE $ISSUE; do build $s; done; fi

if has bind; then
  q bind-start
  for round in 1 2 3; do
    order="$NEW $BASE $ISSUE"; [ $round = 2 ] && order="$ISSUE $BASE $NEW"
    echo "redis c=1000 round=$round $($R -c 1000 -P 16 -n 1000000 | tail -1)" | tee -a "$OUT/bind-1k.txt"
    for s in $order; do
      bench $s bindpath run --agents 1000 --depth 16 --seconds 10 2>/dev/null > "$OUT/bind-1k-$s-r$round.txt"
      echo "omega c=1000 round=$round $s $(grep -hE 'bind_rate|latency_commit|server_per|fleet_per' "$OUT/bind-1k-$s-r$round.txt" | tr '\n' ' ')" | tee -a "$OUT/bind-1k.txt"
    done
  done
  for round in 1 2; do
    echo "redis c=10000 round=$round $($R -c 10000 -P 16 -n 2000000 | tail -1)" | tee -a "$OUT/bind-10k.txt"
    for s in $NEW $BASE; do
      bench $s bindpath run --agents 10000 --depth 16 --seconds 10 2>/dev/null > "$OUT/bind-10k-$s-r$round.txt"
      echo "omega c=10000 round=$round $s $(grep -hE 'bind_rate|latency_commit|server_per|fleet_per' "$OUT/bind-10k-$s-r$round.txt" | tr '\n' ' ')" | tee -a "$OUT/bind-10k.txt"
    done
  done
  q bind-end
fi

if has storage; then
  q storage-start
  i=0
  for s in $NEW $BASE $BASE $NEW; do i=$((i+1)); rm -rf /tmp/sb-$s
    sbench $s throughput --seconds 10 --repeats 1 --dir /tmp/sb-$s > "$OUT/storage-$i-$s.txt" 2>&1; done
  sbench $NEW throughput --seconds 10 --repeats 1 --dir /tmp/sb-w --window-us 500 > "$OUT/storage-5-$NEW-window500.txt" 2>&1
  sbench $NEW throughput --seconds 10 --repeats 1 --dir /tmp/sb-i --inflight 1 > "$OUT/storage-6-$NEW-inflight1.txt" 2>&1
  q storage-end
fi

if has engine; then
  q engine-start
  i=0
  for s in $NEW $BASE $BASE $NEW $NEW $BASE; do i=$((i+1))
    bench $s throughput --seconds 3 --reps 1 --seed $i > "$OUT/throughput-$i-$s.txt" 2>&1
    bench $s sched --reps 1 --seed $i > "$OUT/sched-$i-$s.txt" 2>&1
  done
  bench $NEW floor --seconds 3 --reps 5 > "$OUT/floor.txt" 2>&1 || true
  q engine-end
fi

if has bdn; then
  q bdn-start
  (cd /tmp/bis/$NEW && COMMIT_SCALING_ONLY_BDN=1 bash bench/scripts/commit-scaling-report.sh "$OUT/bdn" /tmp/bis/$BASE 5 3 > "$OUT/bdn-console.txt" 2>&1)
  q bdn-end
fi

if has frames; then
  q frames-start
  bench $NEW --filter '*BindPathFrame*' --artifacts "$OUT/frames-bdn" > "$OUT/frames-bdn-console.txt" 2>&1
  q frames-end
fi

if has recovery; then
  q recovery-start
  (cd /tmp/bis/$NEW && bash bench/scripts/recovery-report.sh --bindings 10000000 --reps 3 --out "$OUT/recovery-10m.txt" > "$OUT/recovery-console.txt" 2>&1)
  q recovery-end
fi

if has mainjob; then
  q mainjob-start
  for r in 1 2 3; do (cd "$ROOT" && dotnet run -c Release --no-build --project src/Omega.Cli -- run > "$OUT/mainjob-$r.txt" 2>&1)
    echo "mainjob run $r: $(grep -iE 'bind latency|p50' "$OUT/mainjob-$r.txt" | head -3 | tr '\n' ' ')" | tee -a "$OUT/mainjob.txt"; done
  q mainjob-end
fi
echo done
