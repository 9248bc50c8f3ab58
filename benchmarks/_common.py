"""Shared by the benchmarks: the issue-5 workload, machine facts, RESULT lines.

Not a benchmark itself: ``make bench`` runs ``benchmarks/[!_]*.py``.
"""
from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAGE_SIZE = 4096
N_TEMPLATES = 16
TEMPLATE_EVERY = 4          # every 4th page is a copy of one of the templates
SEED = 5                    # issue 5
CHUNK_PAGES = 256           # the workload is written 1 MiB at a time (no 1 GiB temporary)


def workload_chunks(n_pages: int, page_size: int = PAGE_SIZE):
    """The issue-5 workload as (first_page, bytes) chunks of CHUNK_PAGES pages.

    Page i is template (i // 4) % 16 when i % 4 == 0, else unique.  Unique pages
    are seeded pseudo-random bytes, the same in every run, in the simulator and in
    the kernel child; two of them differ in their first bytes, as real data mostly
    does.
    """
    rng = random.Random(SEED)
    templates = [rng.randbytes(page_size) for _ in range(N_TEMPLATES)]
    for first in range(0, n_pages, CHUNK_PAGES):
        count = min(CHUNK_PAGES, n_pages - first)
        chunk = bytearray(rng.randbytes(count * page_size))
        for i in range(first, first + count):
            if i % TEMPLATE_EVERY == 0:
                off = (i - first) * page_size
                chunk[off:off + page_size] = templates[(i // TEMPLATE_EVERY) % N_TEMPLATES]
        yield first, bytes(chunk)


def expected_merge(n_pages: int, max_page_sharing: int = 256) -> tuple[int, int]:
    """(pages_shared, pages_sharing) after the third full scan, from the workload's shape."""
    shared = sharing = 0
    copies = (n_pages + TEMPLATE_EVERY - 1) // TEMPLATE_EVERY
    for t in range(N_TEMPLATES):
        c = len(range(t, copies, N_TEMPLATES))
        if c >= 2:
            kpages = -(-c // max_page_sharing)      # one KSM page per max_page_sharing mappers
            shared += kpages
            sharing += c - kpages
    return shared, sharing


def build_sim(n_pages: int, *, events: bool = False, smart_scan: int = 0, chunks=None,
              **machine):
    """A simulated machine with one process holding the workload, MADV_MERGEABLE,
    smart_scan off, run still 0.  Returns (machine, process, addr)."""
    import ksmbook
    m = ksmbook.Machine(events=events, **machine)
    p = m.spawn("bench")
    addr = p.mmap(n_pages * PAGE_SIZE)
    for first, data in (workload_chunks(n_pages) if chunks is None else chunks):
        p.write(addr + first * PAGE_SIZE, data)
    p.madvise(addr, n_pages * PAGE_SIZE, ksmbook.MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/smart_scan", str(smart_scan))
    return m, p, addr


def machine_facts() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def print_machine() -> None:
    f = machine_facts()
    print(f"machine: {f['nproc']} CPUs ({f['cpu']}), Linux {f['kernel']}, "
          f"Python {f['python']} ({platform.python_implementation()})")


def result(name: str, text: str, ok: bool | None) -> bool:
    """The one closing line every benchmark prints: PASS, FAIL, or NOT CHECKED (None:
    the figure to compare with could not be measured here; counted as not passing)."""
    word = "NOT CHECKED" if ok is None else "PASS" if ok else "FAIL"
    print(f"RESULT {name}: {text} {word}", flush=True)
    return bool(ok)
