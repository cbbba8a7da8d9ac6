#!/usr/bin/env python3
"""Summarise a round-11 run directory: medians per build of the engine (throughput, sched), storage and bind-path lines."""
import re, sys, glob, os, statistics as st
d = sys.argv[1]
def med(xs): return st.median(xs) if xs else float('nan')
def num(s): return float(s.replace(',', ''))

print("## Engine: single-claim Fine and sched, per build (median over processes; ratio = same-process FASTER)\n")
rows = {}
for f in sorted(glob.glob(os.path.join(d, 'throughput-*.txt'))):
    b = f.split('-')[-1][:-4]
    fast = {}
    cases = {}
    for line in open(f):
        m = re.match(r'rep \d+ \| (\d)T \| (.+?)\s+\|\s+([\d,]+) ops/s \|\s+([\d,]+) (claims|RMWs)/s', line)
        if not m: continue
        t, case, rate = int(m.group(1)), m.group(2).strip(), num(m.group(4))
        if case.startswith('FASTER RMW'): fast[t] = rate
        else: cases[(case, t)] = rate
    for (case, t), r in cases.items():
        rows.setdefault((b, case, t), []).append((r, r / fast[t] if t in fast else float('nan')))
    for t, r in fast.items(): rows.setdefault((b, 'FASTER RMW', t), []).append((r, 1.0))
print("| build | case | threads | median claims/s | median ÷ FASTER | n |\n|---|---|---:|---:|---:|---:|")
for (b, case, t), v in sorted(rows.items()):
    print(f"| {b} | {case} | {t} | {med([x for x,_ in v]):,.0f} | {med([y for _,y in v]):.2f} | {len(v)} |")

print("\n| build | sched config | workers | median placements/s | median ÷ FASTER 2T (same process) | n |\n|---|---|---:|---:|---:|---:|")
srows = {}
for f in sorted(glob.glob(os.path.join(d, 'sched-*.txt'))):
    b = f.split('-')[-1][:-4]
    f2 = None; res = []
    for line in open(f):
        m = re.match(r'rep \d+ \| FASTER RMW baseline \| 2T \|\s+([\d,]+)', line)
        if m: f2 = num(m.group(1))
        m = re.match(r'rep \d+ \| (\S+)\s+\| (\d)W \|\s+([\d,]+) placements/s', line)
        if m: res.append((m.group(1), int(m.group(2)), num(m.group(3))))
    for c, w, r in res: srows.setdefault((b, c, w), []).append((r, r / f2 if f2 else float('nan')))
for (b, c, w), v in sorted(srows.items()):
    print(f"| {b} | {c} | {w} | {med([x for x,_ in v]):,.0f} | {med([y for _,y in v]):.2f} | {len(v)} |")

print("\n## Storage (one process per line)\n\n| file | in-memory | journaled | durable pipelined | durable ÷ in-memory | closed loop claims/s | ack p50 / p99 ms | CPU µs/claim in-mem / journaled / durable |\n|---|---:|---:|---:|---:|---:|---:|---:|")
P = dict(mem=r'in-memory commit \(no journal\), claims/s \| ([\d,]+)', jour=r'journaled commit, durability not awaited, claims/s \| ([\d,]+)',
         dur=r'durable, pipelined: claims acknowledged after group commit, claims/s \| ([\d,]+)', ratio=r'durable / in-memory = ([\d.]+)',
         cl=r'durable, closed loop: 256 async submitters awaiting CommitDurableAsync, claims/s \| ([\d,]+)',
         p50=r'ack latency p50 \(closed loop\), ms \| ([\d.]+)', p99=r'ack latency p99 \(closed loop\), ms \| ([\d.]+)')
for f in sorted(glob.glob(os.path.join(d, 'storage-*.txt'))):
    t = open(f).read()
    v = {k: (re.search(p, t).group(1) if re.search(p, t) else '?') for k, p in P.items()}
    cpu = ' / '.join(c for c in re.findall(r'process CPU \([^)]*\): \d+ ms, ([\d.]+) µs per claim', t)[:3])
    name = os.path.basename(f)
    print(f"| {name} | {v['mem']} | {v['jour']} | {v['dur']} | {v['ratio']} | {v['cl']} | {v['p50']} / {v['p99']} | {cpu} |")
