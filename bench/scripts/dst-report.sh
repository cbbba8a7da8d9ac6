#!/usr/bin/env bash
# Runs the deterministic control-plane simulation over a range of seeds (docs/testing.md) for a perf-reports entry:
#   bench/scripts/dst-report.sh FROM TO [PARALLEL] [more omega dst options]
# Prints the machine's facts, then `omega dst --seeds FROM..TO`: violations (each with its replay command and trace),
# seeds per second and the faults injected. Ranges run separately merge by adding their counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
from=${1:?FROM}; to=${2:?TO}; par=${3:-$(nproc)}; shift $(( $# < 3 ? $# : 3 ))
bench/scripts/machine-facts.sh 2>/dev/null || true
git rev-parse HEAD 2>/dev/null | sed 's/^/commit: /' || true
dotnet build src/Omega.Cli -c Release -v q --nologo >/dev/null
dotnet src/Omega.Cli/bin/Release/net10.0/omega.dll dst --seeds "${from}..${to}" --parallel "$par" "$@"
