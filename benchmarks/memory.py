"""Issue 5 target 4: peak RSS while simulating 1 GiB of guest memory, < 1.25 GiB.

262,144 pages of 4 KiB (1 GiB of guest memory, every page written) in one process,
the scan_rate workload shape (every 4th page a copy of one of 16 templates, the rest
unique, so the scans merge a quarter of them), MADV_MERGEABLE, then three full scans
(``Machine(events=False)``).  The peak resident set (``ru_maxrss``) is measured in a
fresh subprocess that does nothing else, so the figure is the simulation's alone:
the interpreter, ksmbook, the frames' bytes and every structure around them.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from _common import PAGE_SIZE, build_sim, print_machine, result

PAGES = 262_144
SCANS = 3
TARGET = int(1.25 * 2**30)
MiB = 2**20


def child() -> dict:
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    t0 = time.perf_counter()
    m, _p, _addr = build_sim(PAGES, events=False)
    built = rss()
    t1 = time.perf_counter()
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(SCANS)
    t2 = time.perf_counter()
    s = m.ksm.stats()
    return {"peak": rss(), "after_build": built, "build_s": t1 - t0, "scan_s": t2 - t1,
            "frames": len(m.memory.pages), "pages_shared": s["pages_shared"],
            "pages_sharing": s["pages_sharing"], "full_scans": s["full_scans"]}


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        print(json.dumps(child()))
        return 0
    print_machine()
    guest = PAGES * PAGE_SIZE
    print(f"scene: {PAGES:,} pages of {PAGE_SIZE} B = {guest / 2**30:.2f} GiB of guest memory, "
          f"{SCANS} full scans, measured in a subprocess")
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    over = r["peak"] - guest
    print(f"  after writing the pages: {r['after_build'] / MiB:,.0f} MiB ({r['build_s']:.1f} s)")
    print(f"  peak over the run:       {r['peak'] / MiB:,.0f} MiB ({r['scan_s']:.1f} s of "
          f"scanning); {over / MiB:,.0f} MiB beyond the guest bytes = "
          f"{over / PAGES:,.0f} B per page")
    print(f"  after {r['full_scans']} full scans: pages_shared={r['pages_shared']} "
          f"pages_sharing={r['pages_sharing']}, {r['frames']:,} frames allocated")
    ok = r["peak"] < TARGET
    result("memory", f"peak RSS {r['peak'] / 2**30:.3f} GiB ({r['peak'] / MiB:,.0f} MiB) "
           f"target < 1.25 GiB ({TARGET / MiB:,.0f} MiB)", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
