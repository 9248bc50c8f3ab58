"""Chapter 06's experiment: what ksmd's knobs buy, in memory saved and in ksmd CPU.

A *workload* is a few processes (think QEMU processes holding guest RAM) with pages of
four kinds: copies of a few templates (they merge), zero-filled pages, unique pages
(they never merge), and volatile pages that their owner rewrites all the time.
``run_timeline`` lets simulated time pass with ksmd waking every ``sleep_millisecs``
(``Machine.advance``, i.e. ksm_scan_thread()'s loop) and samples KSM's counters.

The cost model is the simulator's, stated once: every page ksmd processes costs
``SCAN_COST_NS`` (5.5 µs) of ksmd CPU, the rate measured for the real ksmd on the
machine this book was built on; ksmd's CPU share is that cost over elapsed time.
Memory saved is what ``general_profit`` counts before its subtraction: frames freed
by merging (``pages_sharing``) and by zero-page merging (``ksm_zero_pages``), at
PAGE_SIZE each.  ``general_profit`` (6.4+, mm/ksm.c general_profit_show()) then
subtracts ``sizeof(struct ksm_rmap_item)`` for every rmap_item ksmd keeps: a page
that is scanned and never merges costs memory.

Nothing here draws or touches the host's KSM; ``ksmbook.viz.tuning`` draws it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel.ksm.ksmd import SCAN_COST_NS
from ..kernel.machine import Machine
from ..kernel.mm import MADV_MERGEABLE
from ._build import page_of, require_counts
from ..uapi import KSM_SYSFS



@dataclass(frozen=True)
class Workload:
    """Per process: ``copies`` pages that are copies of ``templates`` templates (shared
    by all processes), ``zeros`` zero-filled pages, ``unique`` pages of their own and
    ``volatile`` pages rewritten every ``rewrite_ms`` of simulated time."""
    processes: int = 4
    copies: int = 192
    templates: int = 16
    zeros: int = 32
    unique: int = 32
    volatile: int = 0
    rewrite_ms: int = 50

    @property
    def pages(self) -> int:
        return self.processes * (self.copies + self.zeros + self.unique + self.volatile)

    def __post_init__(self):
        require_counts(self, ("processes", "copies", "templates", "zeros", "unique", "volatile",
                              "rewrite_ms"))
        if self.copies and not self.templates:
            raise ValueError("Workload.templates must be >= 1 when copies > 0")
        if not self.rewrite_ms:
            raise ValueError("Workload.rewrite_ms must be >= 1")


@dataclass
class Sample:
    t_ms: float
    full_scans: int
    pages_to_scan: int
    pages_shared: int
    pages_sharing: int
    pages_unshared: int
    pages_volatile: int
    pages_skipped: int
    ksm_zero_pages: int
    general_profit: int
    saved_bytes: int
    ksmd_cpu_ms: float
    cpu_percent: float        # ksmd CPU over the last sample interval


@dataclass
class Timeline:
    label: str
    knobs: dict
    workload: Workload
    samples: list[Sample] = field(default_factory=list)

    @property
    def final(self) -> Sample:
        return self.samples[-1]

    def time_to_save(self, fraction: float = 0.9) -> float | None:
        """Simulated ms until ``fraction`` of the final saving was reached (None: never)."""
        goal = fraction * self.final.saved_bytes
        if goal <= 0:
            return None
        return next((s.t_ms for s in self.samples if s.saved_bytes >= goal), None)

    def mean_cpu_percent(self) -> float:
        return 100.0 * self.final.ksmd_cpu_ms / self.final.t_ms if self.final.t_ms else 0.0


def _contents(workload: Workload, i: int, ps: int):
    """Process ``i``'s pages in order: copies, zeros, unique, volatile."""
    for j in range(workload.copies):
        yield page_of(ps, b"template %d " % (j % workload.templates))
    zero = bytes(ps)
    for _ in range(workload.zeros):
        yield zero
    for j in range(workload.unique):
        yield page_of(ps, b"guest %d unique page %d " % (i, j))
    for j in range(workload.volatile):
        yield page_of(ps, b"guest %d volatile page %d v0 " % (i, j))


def build(workload: Workload, knobs: dict | None = None, *, kernel: str = "6.18",
          page_size: int = 4096) -> tuple[Machine, list]:
    """A machine with the workload mapped, filled and MADV_MERGEABLE, knobs written, run=1.

    Returns the machine and the volatile ranges ``[(process, addr, npages)]``."""
    m = Machine(kernel, page_size=page_size, events=False)
    ps = page_size
    for name, value in (knobs or {}).items():
        m.sysfs.write(f"{KSM_SYSFS}/{name}", str(value))
    volatile = []
    for i in range(workload.processes):
        p = m.spawn(f"guest{i + 1}")
        per = workload.copies + workload.zeros + workload.unique + workload.volatile
        if not per:
            continue
        addr = p.mmap(per * ps)
        # written page by page: one buffer of the whole area would double the peak
        # memory of chapter 06's advisor machine
        for j, content in enumerate(_contents(workload, i, ps)):
            p.write(addr + j * ps, content)
        p.madvise(addr, per * ps, MADV_MERGEABLE)
        if workload.volatile:
            volatile.append((p, addr + (per - workload.volatile) * ps, workload.volatile))
    m.sysfs.write(f"{KSM_SYSFS}/run", "1")
    return m, volatile


def _sample(m: Machine, last_cpu_ns: int, interval_ms: float) -> Sample:
    c = m.ksm.stats()
    cpu_ns = m.ksm.ksmd_cpu_ns
    return Sample(
        t_ms=m.clock_ns / 1e6, full_scans=c["full_scans"], pages_to_scan=m.ksm.pages_to_scan,
        pages_shared=c["pages_shared"], pages_sharing=c["pages_sharing"],
        pages_unshared=c["pages_unshared"], pages_volatile=c["pages_volatile"],
        pages_skipped=c["pages_skipped"], ksm_zero_pages=c["ksm_zero_pages"],
        general_profit=c["general_profit"],
        saved_bytes=(c["pages_sharing"] + c["ksm_zero_pages"]) * m.page_size,
        ksmd_cpu_ms=cpu_ns / 1e6,
        cpu_percent=100.0 * (cpu_ns - last_cpu_ns) / (interval_ms * 1e6) if interval_ms else 0.0)


def run_timeline(knobs: dict | None = None, workload: Workload = Workload(), *,
                 duration_ms: int = 4000, sample_ms: int = 100, label: str | None = None,
                 kernel: str = "6.18", page_size: int = 4096) -> Timeline:
    """Let ``duration_ms`` of simulated time pass and sample every ``sample_ms``.

    Volatile pages are rewritten every ``workload.rewrite_ms`` (their owner keeps
    changing them), so their checksum never holds still for a whole scan."""
    if not isinstance(duration_ms, int) or duration_ms <= 0:
        raise ValueError(f"duration_ms must be a positive int, not {duration_ms!r}")
    if not isinstance(sample_ms, int) or not 0 < sample_ms <= duration_ms:
        raise ValueError(f"sample_ms must be an int in 1..duration_ms, not {sample_ms!r}")
    knobs = dict(knobs or {})
    m, volatile = build(workload, knobs, kernel=kernel, page_size=page_size)
    tl = Timeline(label or ", ".join(f"{k}={v}" for k, v in knobs.items()) or "defaults",
                  knobs, workload)
    tl.samples.append(_sample(m, 0, 0))
    t = 0
    next_sample = sample_ms
    next_rewrite = workload.rewrite_ms
    version = 0
    last_cpu = 0
    while t < duration_ms:
        stop = min(next_sample, next_rewrite if volatile else next_sample, duration_ms)
        m.advance(stop - t)
        t = stop
        if volatile and t >= next_rewrite:
            version += 1
            for p, addr, n in volatile:
                for j in range(n):
                    p.write(addr + j * m.page_size, b"v%d " % version)
            next_rewrite += workload.rewrite_ms
        if t >= next_sample or t >= duration_ms:
            tl.samples.append(_sample(m, last_cpu, sample_ms))
            last_cpu = m.ksm.ksmd_cpu_ns
            next_sample += sample_ms
    return tl


#: The chapter's sweeps: one knob moved at a time from the defaults.
PAGES_TO_SCAN = (100, 400, 1600)
SLEEP_MILLISECS = (20, 100)


def sweep(knob: str, values, workload: Workload = Workload(), *, base: dict | None = None,
          duration_ms: int = 4000, sample_ms: int = 100) -> list[Timeline]:
    """One timeline per value of ``knob`` (the others at ``base`` or the defaults)."""
    out = []
    for v in values:
        knobs = {**(base or {}), knob: v}
        out.append(run_timeline(knobs, workload, duration_ms=duration_ms, sample_ms=sample_ms,
                                label=f"{knob}={v}"))
    return out


def scan_cost_ns() -> int:
    """The cost model's one number: simulated ksmd CPU per processed page."""
    return SCAN_COST_NS


def summary_table(timelines: list[Timeline]) -> str:
    """The text twin of the sweeps: per run, the final saving, profit, CPU and speed.
    At most 76 characters a line (the run column as wide as its longest label), so
    that it does not wrap in an 800 px window."""
    run_w = max([len(tl.label) for tl in timelines] + [3])
    head = (f"{'run':<{run_w}} {'saved MiB':>9} {'profit MiB':>10} {'scans':>5} "
            f"{'ksmd CPU%':>9} {'90% saved':>9}")
    lines = [head]
    for tl in timelines:
        f = tl.final
        t90 = tl.time_to_save()
        lines.append(f"{tl.label:<{run_w}} {f.saved_bytes / 2**20:>9.2f} "
                     f"{f.general_profit / 2**20:>10.2f} {f.full_scans:>5} "
                     f"{tl.mean_cpu_percent():>9.2f} "
                     f"{(f'{t90:.0f} ms' if t90 is not None else 'never'):>9}")
    return "\n".join(lines)
