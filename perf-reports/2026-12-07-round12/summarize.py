#!/usr/bin/env python3
"""Medians of the round-12 runs (run.sh): throughput cases, sched configs, FASTER RMW and the floor, and the ratios the
issue's targets are stated in. Usage: summarize.py OUT"""
import re, sys, glob, statistics as st, collections as co

out = sys.argv[1]
num = lambda s: float(s.replace(',', ''))
tp = co.defaultdict(list)      # (case, threads) -> claims/s (or RMWs/s)
for f in sorted(glob.glob(f"{out}/throughput-rep*.txt")):
    for line in open(f):
        m = re.match(r"rep \d+ \| (\d)T \| (.+?)\s+\|\s+([\d,]+) ops/s \|\s+([\d,]+) (\w+)/s", line)
        if m: tp[(m.group(2).strip(), int(m.group(1)))].append(num(m.group(4)))
sc = co.defaultdict(list)      # (config, workers) -> (placements/s, conflict fraction)
rmw = co.defaultdict(list)     # threads -> RMWs/s (sched processes)
for f in sorted(glob.glob(f"{out}/sched-rep*.txt")):
    for line in open(f):
        m = re.match(r"rep \d+ \| FASTER RMW baseline \| (\d)T \|\s+([\d,]+) RMWs/s", line)
        if m: rmw[int(m.group(1))].append(num(m.group(2))); continue
        m = re.match(r"rep \d+ \| (\S+)\s+\| (\d)W \|\s+([\d,]+) placements/s.*?conflict fraction ([\d.]+)", line)
        if m: sc[(m.group(1), int(m.group(2)))].append((num(m.group(3)), float(m.group(4))))
floor = co.defaultdict(list)
for line in open(f"{out}/floor.txt") if glob.glob(f"{out}/floor.txt") else []:
    m = re.match(r"rep \d+ \| (\d)T \|\s+([\d,]+) placements/s", line)
    if m: floor[int(m.group(1))].append(num(m.group(2)))

med = lambda xs: st.median(xs) if xs else float('nan')
rng = lambda xs: f"{min(xs):,.0f}..{max(xs):,.0f}" if xs else "-"
faster_tp = {t: med(v) for (c, t), v in tp.items() if c.startswith("FASTER")}
print("## Embedded commit throughput (claims/s; medians of the reps; one process per rep)\n")
print("| case | threads | reps | median | min..max | ÷ FASTER RMW same threads | ÷ FASTER RMW 2T |")
print("|---|---:|---:|---:|---|---:|---:|")
for (c, t), v in sorted(tp.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    print(f"| {c} | {t} | {len(v)} | {med(v):,.0f} | {rng(v)} | {med(v)/faster_tp.get(t, float('nan')):.2f} | {med(v)/faster_tp.get(2, float('nan')):.2f} |")
print("\n2T ÷ 1T per case:\n")
for c in sorted({c for c, _ in tp}):
    if (c, 1) in tp and (c, 2) in tp: print(f"- {c}: {med(tp[(c, 2)]) / med(tp[(c, 1)]):.2f}")
print("\nPer-rep ratio concurrent ÷ plain lock (same process):\n")
pairs = [("engine single-claim Fine (commit+release), concurrent path", "engine single-claim Fine (commit+release), plain lock path"),
         ("engine 8-claim batch Incremental Fine (commit+8 releases), concurrent path", "engine 8-claim batch Incremental Fine (commit+8 releases), plain lock path")]
for a, b in pairs:
    for t in (1, 2):
        if (a, t) in tp and (b, t) in tp:
            r = [x / y for x, y in zip(tp[(a, t)], tp[(b, t)])]
            print(f"- {a.split(',')[0]} {t}T: median {med(r):.2f} (reps {', '.join(f'{x:.2f}' for x in r)})")
print("\n## Scheduling engine (sched, 10k nodes; placements/s)\n")
b2 = med(rmw[2])
print(f"FASTER RMW in the sched processes: 1T {med(rmw[1]):,.0f} ({rng(rmw[1])}), 2T {b2:,.0f} ({rng(rmw[2])})\n")
print("| config | workers | reps | median placements/s | min..max | conflict fraction | ÷ FASTER 2T | ÷ floor 2T |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
f2 = med(floor[2])
for (c, w), v in sorted(sc.items()):
    p = [x for x, _ in v]
    print(f"| {c} | {w} | {len(v)} | {med(p):,.0f} | {rng(p)} | {med([y for _, y in v]):.4f} | {med(p)/b2:.2f} | {med(p)/f2:.4f} |")
print(f"\nPlacement floor: 1T {med(floor[1]):,.0f} ({rng(floor[1])}), 2T {f2:,.0f} ({rng(floor[2])})")
