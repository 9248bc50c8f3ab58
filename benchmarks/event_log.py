"""Issue 13: with events on, the event log stays bounded (Machine(event_limit=...)).

A long run with events on: 16,384 pages of the issue-5 workload, 30 full scans.
After every few scans the figure prints the process's resident set (VmRSS from
/proc/self/status) and how many events Machine.events.history keeps, for the
default ring (event_limit=EVENT_LIMIT) and for an unbounded log
(event_limit=None), each in its own process.  Target: with the default ring, RSS
after the last scan is within 8 MiB of RSS once the ring has filled.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _common import build_sim, print_machine, result

PAGES = 16384
SCANS = 30
EVERY = 3
SLACK_MIB = 8.0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(limit) -> None:
    m, _p, _a = build_sim(PAGES, events=True, event_limit=limit)
    m.sysfs.write("/sys/kernel/mm/ksm/pages_to_scan", str(PAGES + 64))
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    # no subscriber: the ring then keeps the emitters' tuples, as in the book's
    # default use (a subscriber makes every event a record object at once); the
    # events emitted are what the unbounded log keeps
    rows = []
    t0 = time.process_time()
    for done in range(EVERY, SCANS + 1, EVERY):
        m.ksmd.run_full_scans(EVERY)
        rows.append((done, rss_mib(), len(m.events.history)))
    print(json.dumps({"rows": rows, "cpu": time.process_time() - t0}))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(None if sys.argv[2] == "None" else int(sys.argv[2]))
        return 0
    from ksmbook.kernel.machine import EVENT_LIMIT
    print_machine()
    print(f"workload: {PAGES:,} pages, events on, {SCANS} full scans; RSS and events kept")
    runs = {}
    for limit in (EVENT_LIMIT, None):
        out = subprocess.run([sys.executable, __file__, "--child", str(limit)],
                             capture_output=True, text=True, check=True).stdout
        runs[limit] = json.loads(out.strip().splitlines()[-1])
    print(f"{'scans':>5} | {'ring ' + format(EVENT_LIMIT, ','):>24} | {'unbounded':>24} | emitted while scanning")
    print(f"{'':>5} | {'RSS MiB':>10} {'kept':>13} | {'RSS MiB':>10} {'kept':>13} |")
    for a, b in zip(runs[EVENT_LIMIT]["rows"], runs[None]["rows"]):
        print(f"{a[0]:>5} | {a[1]:>10.1f} {a[2]:>13,} | {b[1]:>10.1f} {b[2]:>13,} | {b[2]:,}")
    first, last = runs[None]["rows"][0], runs[None]["rows"][-1]
    per_event = (last[1] - first[1]) * 2**20 / max(last[2] - first[2], 1)
    print(f"unbounded log: {per_event:.0f} B of RSS per event kept (scans {first[0]} -> "
          f"{last[0]}); events on CPU {runs[EVENT_LIMIT]['cpu']:.2f} s with the ring")
    rows = runs[EVENT_LIMIT]["rows"]
    full = next(r for r in rows if r[2] == EVENT_LIMIT)
    growth = rows[-1][1] - full[1]
    return 0 if result("event_log", f"ring RSS {full[1]:.0f} -> {rows[-1][1]:.0f} MiB after "
                       f"the ring filled (+{growth:.1f} MiB; unbounded +"
                       f"{runs[None]['rows'][-1][1] - full[1]:.0f} MiB) target <= "
                       f"+{SLACK_MIB:g} MiB", growth <= SLACK_MIB) else 1


if __name__ == "__main__":
    sys.exit(main())
