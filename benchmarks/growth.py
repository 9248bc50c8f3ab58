"""Issue 5 target 2: the simulator's cost per page grows no faster than log n.

The scan_rate workload (every 4th page a copy of one of 16 templates, the rest
unique; smart_scan off) at 16 Ki, 64 Ki and 256 Ki pages, three full scans each,
``Machine(events=False)``.  Each size runs in a fresh subprocess (so one size's
garbage cannot slow the next), best of --repeat runs.

Criterion: cost(n) / cost(16 Ki) <= log2(n) / log2(16 Ki) * 1.1 for every n, where
cost is the process CPU time per page (time.process_time(): other processes on the
machine do not count; wall-clock figures are printed too).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time

from _common import build_sim, print_machine, result

SIZES = (16 * 1024, 64 * 1024, 256 * 1024)
SLACK = 1.1
SCANS = 3


def measure(n_pages: int) -> dict:
    m, _p, _addr = build_sim(n_pages, events=False)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    w0, c0 = time.perf_counter(), time.process_time()
    m.ksmd.run_full_scans(SCANS)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    s = m.ksm.stats()
    return {"n": n_pages, "wall": wall, "cpu": cpu, "pages_shared": s["pages_shared"],
            "pages_sharing": s["pages_sharing"]}


def in_subprocess(n_pages: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n_pages)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    print_machine()
    print(f"workload: scan_rate's, {SCANS} full scans, best of {args.repeat}; cost = CPU "
          f"time per page visit")
    rows = []
    for n in SIZES:
        runs = [in_subprocess(n) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["cpu"])
        best["wall"] = min(r["wall"] for r in runs)
        visits = SCANS * n
        best["cost_us"] = best["cpu"] / visits * 1e6
        rows.append(best)
        print(f"  {n // 1024:>4} Ki pages: {visits / best['cpu']:>9,.0f} pages/s CPU "
              f"({best['cost_us']:.2f} us/page), {visits / best['wall']:>9,.0f} pages/s wall; "
              f"pages_shared={best['pages_shared']} pages_sharing={best['pages_sharing']}")
    base = rows[0]
    ok = True
    worst = 0.0
    for r in rows[1:]:
        ratio = r["cost_us"] / base["cost_us"]
        limit = math.log2(r["n"]) / math.log2(base["n"]) * SLACK
        good = ratio <= limit
        ok &= good
        worst = max(worst, ratio / limit)
        print(f"  cost({r['n'] // 1024} Ki)/cost(16 Ki) = {ratio:.2f}, limit log2 ratio x "
              f"{SLACK} = {limit:.2f} {'ok' if good else 'TOO FAST A GROWTH'}")
    last = rows[-1]
    result("growth", f"cost(256 Ki)/cost(16 Ki) {last['cost_us'] / base['cost_us']:.2f} "
           f"({base['cost_us']:.2f} -> {last['cost_us']:.2f} us/page) target <= "
           f"{math.log2(last['n']) / math.log2(base['n']) * SLACK:.2f} "
           f"(log2(n)/log2(16 Ki) x {SLACK})", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
