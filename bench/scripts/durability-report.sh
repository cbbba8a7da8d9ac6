#!/usr/bin/env bash
# Durability measurements for perf-reports/YYYY-MM-DD-durability: machine, load, throughput/latency (same run:
# in-memory vs journaled vs durable vs raw FasterLog), recovery time with 1M and 10M allocations, and the crash harness.
# Usage: bench/scripts/durability-report.sh [out-dir] [crash-cycles]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-perf-reports/$(date -u +%Y-%m-%d)-durability}"
cycles="${2:-200}"
mkdir -p "$out"
dotnet build bench/Omega.StorageBench -c Release -v q >/dev/null
dotnet build bench/Omega.CrashHost -c Release -v q >/dev/null
{
  echo "date: $(date -u +%FT%TZ)"; echo "nproc: $(nproc)"; free -g | head -2; echo "dotnet: $(dotnet --version)"
  echo "load before: $(cat /proc/loadavg)"
} > "$out/machine.txt"
bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench throughput --seconds 5 --repeats 3 | tee "$out/throughput.txt"
echo "load after throughput: $(cat /proc/loadavg)" >> "$out/machine.txt"
for n in 1000000 10000000; do
  bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench recovery --allocations "$n" | tee -a "$out/recovery.txt"
  bench/Omega.StorageBench/bin/Release/net10.0/Omega.StorageBench recovery --allocations "$n" --no-checkpoint 1 | tee -a "$out/recovery.txt"
done
echo "load after recovery: $(cat /proc/loadavg)" >> "$out/machine.txt"
bench/Omega.CrashHost/bin/Release/net10.0/Omega.CrashHost drive --cycles "$cycles" --seed "${SEED:-20261201}" | tee "$out/crash.txt"
