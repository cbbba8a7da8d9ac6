#!/usr/bin/env bash
# Sourced by the report scripts: machine_facts ROOT prints what every perf report records about the run — when, which
# source commit, the machine (cores, CPU, memory, .NET) and how busy it was at the start.
# Measure a known commit: run a report from a clean export (git archive) when others edit the working tree, and pass
# the commit in OMEGA_SOURCE_COMMIT, since an export has no .git.
machine_facts() {
  local root=$1
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "source commit: ${OMEGA_SOURCE_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    echo "uncommitted files under src/: $(git -C "$root" status --porcelain -- src | wc -l)"
  fi
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "dotnet: $(dotnet --version)"
  echo "ulimit -n: $(ulimit -n)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  free -g
}
