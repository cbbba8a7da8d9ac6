#!/usr/bin/env bash
# usage: try.sh SHA  -> builds bench at SHA (first time), runs bindpath 1k plaintext twice
set -u
sha=$1; d=/tmp/bis/$sha
if [ ! -f $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll ]; then
  rm -rf $d; mkdir -p $d; git -C /work/main archive $sha | tar -x -C $d
  OMEGA_SOURCE_COMMIT=$sha dotnet build -c Release $d/bench/Omega.Benchmarks -v quiet -nologo 2>&1 | grep -E "rror CS|Warn.*err" | head -3
fi
ulimit -n 20000
for r in 1 2; do
  dotnet $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll bindpath run --agents 1000 --depth 16 --seconds 10 2>/dev/null | grep -E "bind_rate|server_per|fleet_per" | tr '\n' ' '; echo
done | sed "s/^/$sha /" | tee -a /tmp/bis/results.txt
