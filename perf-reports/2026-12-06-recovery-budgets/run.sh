#!/bin/sh
# Issue 13 (rb13): region-loss recovery with the control-plane load report, and the 100k-node virtual-time drill.
# Run on a QUIET machine from the repository root: sh perf-reports/2026-12-06-recovery-budgets/run.sh
set -eu
out=perf-reports/2026-12-06-recovery-budgets
dotnet build src/Omega.Cli -c Release
omega="dotnet src/Omega.Cli/bin/Release/net10.0/omega.dll"
uptime > "$out/machine-load.txt"
# 1. The real drill at 10,200 agents over TCP, 5 runs (time to 4 serving, commits/s, evictions/s, queue age).
for i in 1 2 3 4 5; do
  $omega drill region-loss --regions 3 --agents-per-region 3400 --agent-processes 4 --timeout-seconds 120 \
    --seed "$i" --report "$out/run-$i" | tee "$out/run-$i.txt"
done
# 2. The same scenario in virtual time at 100,000 nodes (3 regions x 33,334), three budget sizes.
for b in 0 16 64; do
  $omega drill region-loss-sim --regions 3 --nodes-per-region 33334 --budget-cores "$b" --seed 1 | tee "$out/sim-100k-budget-$b.txt"
done
uptime >> "$out/machine-load.txt"
