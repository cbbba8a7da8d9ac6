#!/usr/bin/env python3
"""Summary of bench/scripts/commit-scaling-report.sh's alternating processes (issue 14).

Usage: commit-scaling-summary.py OUTPUT_DIR  (reads {current,baseline}-throughput-repN.txt and -sched-repN.txt)

Throughput: each process measured its own FASTER RMW rep right after its engine cases, so each engine figure is divided
by the FASTER figure of the same process and thread count (the "paired ratio"); the builds are compared by the medians
of their paired ratios, which cancels machine drift between processes. The plain lock path is the default of both
builds: "plain lock path" in the current tree, and the one single-claim Fine case of a baseline without a combiner.
Sched: placements/s per build and worker count, and (current tree) where the workers' time went.
"""
import glob
import os
import re
import statistics
import sys

out = sys.argv[1]
ROW = re.compile(r"^rep \d+ \| (\d)T \| (.+?)\s+\|\s+([\d,]+) ops/s \|\s+([\d,]+) (claims|RMWs)/s")
SCHED = re.compile(r"^rep \d+ \| (\S+)\s+\| (\d)W \|\s+([\d,]+) placements/s")
BLOCKED = re.compile(r"lock blocked/tx (\S+)")  # issue 14 round 8 (bounded spin); absent in older builds
BREAKDOWN = re.compile(r"worker time: decide ([\d.]+) % commit ([\d.]+) % other ([\d.]+) % idle ([\d.]+) % \| cpu/wall (\S+) \| blocks/job (\S+) \| lock contended/tx (\S+)")


def num(s):
    return float(s.replace(",", ""))


def throughput(build):
    """{(threads, case): [paired ratio per process]}, {(threads, case): [claims/s]}"""
    ratios, rates = {}, {}
    for path in sorted(glob.glob(os.path.join(out, f"{build}-throughput-rep*.txt"))):
        rows = {}
        for line in open(path, encoding="utf-8"):
            m = ROW.match(line)
            if m:
                rows[(int(m.group(1)), m.group(2).strip())] = num(m.group(4))
        for (t, case), v in rows.items():
            if case == "FASTER RMW baseline":
                continue
            rates.setdefault((t, case), []).append(v)
            f = rows.get((t, "FASTER RMW baseline"))
            if f:
                ratios.setdefault((t, case), []).append(v / f)
    return ratios, rates


def med(xs):
    return statistics.median(xs) if xs else float("nan")


print("# Issue 14 summary (alternating processes)\n")
cur_r, cur_v = throughput("current")
base_r, base_v = throughput("baseline")
lock_cur = "engine single-claim Fine (commit+release), plain lock path"
lock_base = "engine single-claim Fine (commit+release)"
# A baseline that already has the combiner (any ref after 704a577, e.g. 1ad7e88^1 or main) reports its plain lock path
# under the same name as the current tree: compare like with like.
if any(case == lock_cur for (_, case) in base_r):
    lock_base = lock_cur
print("## Single-claim Fine commit+release, plain lock path, each rep ÷ FASTER RMW of the same process\n")
print("| threads | current: median claims/s | current: median paired ratio | baseline: median claims/s | baseline: median paired ratio | current ÷ baseline (paired ratios) |")
print("|---:|---:|---:|---:|---:|---:|")
for t in (1, 2):
    c, b = cur_r.get((t, lock_cur), []), base_r.get((t, lock_base), [])
    rel = med(c) / med(b) if c and b else float("nan")
    print(f"| {t} | {med(cur_v.get((t, lock_cur), [])):,.0f} | {med(c):.3f} (n={len(c)}) | {med(base_v.get((t, lock_base), [])):,.0f} | {med(b):.3f} (n={len(b)}) | {rel:.3f} |")
print("\nAll current-tree cases, median paired ratio to FASTER RMW:\n")
print("| case | threads | median claims/s | median ÷ FASTER (same process) |")
print("|---|---:|---:|---:|")
for (t, case), rs in sorted(cur_r.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"| {case} | {t} | {med(cur_v[(t, case)]):,.0f} | {med(rs):.3f} |")

# Issue 14: the node-striped path (CommitPath.Striped) against the plain lock path, both in the same current-tree process
# (throughput --striped): per process, striped claims/s ÷ plain-lock claims/s of the same rep, then the median.
def paired_same_process(build, a, b):
    """[a/b per process] for each thread count, a and b being case names of the same throughput process."""
    res = {}
    for path in sorted(glob.glob(os.path.join(out, f"{build}-throughput-rep*.txt"))):
        rows = {}
        for line in open(path, encoding="utf-8"):
            m = ROW.match(line)
            if m:
                rows[(int(m.group(1)), m.group(2).strip())] = num(m.group(4))
        for t in (1, 2):
            if (t, a) in rows and (t, b) in rows:
                res.setdefault(t, []).append(rows[(t, a)] / rows[(t, b)])
    return res


striped_pairs = [
    ("single-claim Fine commit+release", "engine single-claim Fine (commit+release), striped path", lock_cur),
    ("8-claim batch Incremental Fine", "engine 8-claim batch Incremental Fine (commit+8 releases), striped path",
     "engine 8-claim batch Incremental Fine (commit+8 releases), plain lock path"),
]
if any(case == striped_pairs[0][1] for (_, case) in cur_r):
    print("\n## Striped vs plain lock path (current tree, same process, issue 14)\n")
    print("| workload | threads | striped: median claims/s | plain lock: median claims/s | striped ÷ plain lock (median of per-process ratios) | striped 2T ÷ 1T |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, a, b in striped_pairs:
        pairs = paired_same_process("current", a, b)
        one, two = med(cur_v.get((1, a), [])), med(cur_v.get((2, a), []))
        for t in (1, 2):
            rs = pairs.get(t, [])
            scale = f"{two / one:.2f}" if t == 2 and one == one and one > 0 else ""
            print(f"| {label} | {t} | {med(cur_v.get((t, a), [])):,.0f} | {med(cur_v.get((t, b), [])):,.0f} | {med(rs):.3f} (n={len(rs)}) | {scale} |")

print("\n## Scheduling engine (sched), placements/s per process\n")
print("| build | config | workers | median placements/s | reps | deciding | committing | other in step | idle | cpu ÷ wall | blocks per job | lock contended per tx | lock blocked per tx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for build in ("current", "baseline"):
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, f"{build}-sched-rep*.txt"))):
        for line in open(path, encoding="utf-8"):
            m = SCHED.match(line)
            if not m:
                continue
            key = (m.group(1), int(m.group(2)))
            b = BREAKDOWN.search(line)
            k = BLOCKED.search(line)
            rows.setdefault(key, []).append((num(m.group(3)), b.groups() if b else None, float(k.group(1)) if k else None))
    for (config, w), reps in rows.items():
        parts = ["-"] * 7
        bd = [r[1] for r in reps if r[1]]
        if bd:
            parts = [f"{med([float(x[i]) for x in bd]):.1f} %" for i in range(4)]
            parts += [f"{med([float(x[i]) for x in bd if x[i] != 'NaN']):.3f}" if any(x[i] != 'NaN' for x in bd) else "n/a" for i in range(4, 7)]
        blocked = [r[2] for r in reps if r[2] is not None]
        parts.append(f"{med(blocked):.3f}" if blocked else "n/a")
        print(f"| {build} | {config} | {w} | {med([r[0] for r in reps]):,.0f} | {len(reps)} | " + " | ".join(parts) + " |")

# Decision cost (BenchmarkDotNet SchedulingBenchmarks, one table per build): one row per build and method, so the
# current tree's decision (issue 14, round 9: overlapped probes, per-decision table, pool arrays, devirtualised
# built-ins) reads against the baseline build of the same run. Target: DecidePerPlacement <= 0.2 us and 0 B.
print("\n## Decision cost (BenchmarkDotNet, per placement)\n")
print("| build | method | mean | median | allocated |")
print("|---|---|---:|---:|---:|")
for build in ("current", "baseline"):
    path = os.path.join(out, f"{build}-scheduling-bdn.md")
    if not os.path.exists(path):
        print(f"| {build} | (no BenchmarkDotNet table) | | | |")
        continue
    header = None
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        if cells[0] == "Method":
            header = cells
            continue
        if header is None or set(cells[0]) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        print(f"| {build} | {row.get('Method', '?')} | {row.get('Mean', '?')} | {row.get('Median', '?')} | {row.get('Allocated', '?')} |")
