#!/usr/bin/env bash
sha=$1; d=/tmp/bis/$sha
if [ ! -f $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll ]; then
  rm -rf $d; mkdir -p $d; git -C /work/main archive $sha | tar -x -C $d
  OMEGA_SOURCE_COMMIT=$sha dotnet build -c Release $d/bench/Omega.Benchmarks -v quiet -nologo 2>&1 | grep -E "rror CS" | head -3
fi
ulimit -n 20000
r1=$(dotnet $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll bindpath run --agents 1000 --depth 16 --seconds 10 2>/dev/null | grep -oE 'bind_rate_per_s=[0-9]+' | cut -d= -f2)
r2=$(dotnet $d/bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll bindpath run --agents 1000 --depth 16 --seconds 10 2>/dev/null | grep -oE 'bind_rate_per_s=[0-9]+' | cut -d= -f2)
echo "$sha $r1 $r2 $(git -C /work/main log -1 --format='%ad %s' --date=format:%H:%M $sha | cut -c1-80)" | tee -a /tmp/bis/bisect2.txt
