#!/usr/bin/env python3
"""Prints wall time per test class from the TRX files `dotnet test` wrote (see Directory.Build.props).

Used by .ci/run after the test command, so a slow class is visible in every CI log."""
import glob, sys, xml.etree.ElementTree as ET
from collections import defaultdict

ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}

def seconds(d):
    h, m, s = d.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)

per_class = defaultdict(lambda: [0.0, 0, 0])
for path in glob.glob(sys.argv[1] + "/*.trx"):
    root = ET.parse(path).getroot()
    cls = {}
    for d in root.iterfind(".//t:UnitTest", ns):
        m = d.find("t:TestMethod", ns)
        cls[d.get("id")] = m.get("className") if m is not None else "?"
    for r in root.iterfind(".//t:UnitTestResult", ns):
        c = per_class[cls.get(r.get("testId"), "?")]
        c[0] += seconds(r.get("duration", "0:0:0"))
        c[1] += 1
        c[2] += r.get("outcome") != "Passed"

total = sum(v[0] for v in per_class.values())
print(f"{'test class':70} {'tests':>6} {'failed':>6} {'seconds':>8}")
for name, (t, n, f) in sorted(per_class.items(), key=lambda kv: -kv[1][0]):
    print(f"{name:70} {n:6} {f:6} {t:8.1f}")
print(f"{'total (sum of test durations; projects run in parallel)':70} {sum(v[1] for v in per_class.values()):6} {sum(v[2] for v in per_class.values()):6} {total:8.1f}")

# The CI log keeps only its tail: print every test that did not pass, with its message and output, after the table.
failed = []
for path in glob.glob(sys.argv[1] + "/*.trx"):
    root = ET.parse(path).getroot()
    for r in root.iterfind(".//t:UnitTestResult", ns):
        if r.get("outcome") == "Passed":
            continue
        msg = r.findtext(".//t:ErrorInfo/t:Message", default="", namespaces=ns)
        stack = r.findtext(".//t:ErrorInfo/t:StackTrace", default="", namespaces=ns)
        out = r.findtext(".//t:Output/t:StdOut", default="", namespaces=ns)
        failed.append((r.get("testName"), r.get("outcome"), r.get("duration"), msg, stack, out))
for name, outcome, dur, msg, stack, out in failed:
    print(f"\n=== {outcome}: {name} ({dur})")
    print(msg.strip()[:4000])
    print("\n".join(stack.strip().splitlines()[:12]))
    if out.strip():
        print("--- output (last 40 lines)")
        print("\n".join(out.strip().splitlines()[-40:]))
