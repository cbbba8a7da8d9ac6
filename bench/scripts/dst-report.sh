#!/usr/bin/env bash
# Runs the deterministic simulation over a range of seeds (docs/testing.md) for a perf-reports entry:
#   bench/scripts/dst-report.sh FROM TO [PARALLEL] [more omega dst options]
# By default it runs the UNIFIED harness (omega dst --unified --steps 1500: the control plane's controllers and scheduler
# workers behind the server's real protocol handler, agents, schedulers and an operator speaking real frames). Set
# DST_HARNESS=main for the main harness (omega dst) or DST_HARNESS=wire for the wire simulation alone (omega dst --wire).
# Prints the machine's facts, then violations (each with its replay command and trace), seeds per second and the faults
# injected. Ranges run separately merge by adding their counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
from=${1:?FROM}; to=${2:?TO}; par=${3:-$(nproc)}; shift $(( $# < 3 ? $# : 3 ))
case "${DST_HARNESS:-unified}" in
  unified) mode=(--unified); case " $* " in *" --steps "*) ;; *) mode+=(--steps 1500) ;; esac ;;
  wire) mode=(--wire) ;;
  main) mode=() ;;
  *) echo "DST_HARNESS must be unified, wire or main" >&2; exit 2 ;;
esac
bench/scripts/machine-facts.sh 2>/dev/null || true
git rev-parse HEAD 2>/dev/null | sed 's/^/commit: /' || true
echo "harness: ${DST_HARNESS:-unified}"
dotnet build src/Omega.Cli -c Release -v q --nologo >/dev/null
dotnet src/Omega.Cli/bin/Release/net10.0/omega.dll dst --seeds "${from}..${to}" --parallel "$par" "${mode[@]}" "$@"
