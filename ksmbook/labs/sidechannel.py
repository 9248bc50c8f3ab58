"""Chapter 10's experiment: what a write-timing attacker learns from KSM.

An attacker VM and a victim VM run on one simulated host.  The victim's guest holds
pages the attacker wants to know about; the attacker's guest plants *candidate*
pages, half of them exact copies of victim pages (right guesses, "positives") and
half near misses that differ in one byte (wrong guesses, "negatives"), as CAIN
(Barresi et al., WOOT 2015) plants one guess per page.  ksmd scans; then the
attacker writes one byte to every candidate and times the write.  A merged page is
read-only everywhere, so its write takes EPT-violation exits and a copy-on-write:
microseconds instead of a nanosecond.

Where the numbers come from:

* the simulated cost of each write is ``vm.access_log`` -- the kernel's cost model
  (ksmbook/kernel/costs.py, sourced there) summed over the exits and host faults the
  simulated KVM really took;
* what the attacker's *timer* reads on top of that is ``TimerNoise``: a seeded
  log-normal jitter plus rare outliers (an interrupt, ksmd waking up).  Those are
  **simulator parameters chosen to look plausible, not measurements**, and they live
  here, in the experiment, never in the kernel.

Defences (``DEFENCES``), each a switch of ``run_experiment``:

* ``none``: KSM merges across VMs (run=1, all guest RAM mergeable, as QEMU asks);
* ``ksm_off``: run=0, nothing merges;
* ``zero_only``: *a model* of a deduplicator that only merges all-zero pages (as
  Windows 10 1903+ merges only "safe" pages).  Linux has no such mode; we let KSM
  (with use_zero_pages where the kernel has it) see only the pages that are all zero;
* ``vusion``: *a model* of VUsion's "same behaviour" rule (Oliverio et al., SOSP 2017):
  every page considered for fusion loses its access rights whether or not it merged,
  so merged and unmerged pages fault alike.  The simulator has no VUsion; it does the
  same thing to every candidate page with ``fork()`` of the attacker's VMM, which
  write-protects every host PTE and zaps every spte (copy_page_range's
  invalidate_range_start), exactly what a merge does to a merged page.  The child does
  nothing and exits after the probes.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..kernel import costs
from ..kernel.machine import Machine
from ..kernel.memory import PG_ksm, PG_zero
from ..kernel.mm import MADV_MERGEABLE
from ..kernel.pagetable import pte_pfn, pte_present
from ..uapi import KSM_SYSFS

PAGE_SIZE = 4096

DEFENCES = {
    "none": "no defence: KSM merges across VMs",
    "ksm_off": "KSM off (run=0)",
    "zero_only": "only all-zero pages merge (a model)",
    "vusion": "VUsion-like same behaviour (a model)",
}
PROBES = ("write", "read")


@dataclass(frozen=True)
class TimerNoise:
    """What the attacker's clock adds to a simulated access.  **Simulator parameters**,
    chosen to look plausible, not measured: change them and watch the histogram.

    A reading is ``(sim_ns + timer_ns) * LogNormal(0, jitter_sigma)``, plus, with
    probability ``outlier_rate``, an outlier of ``LogNormal(ln(outlier_median_ns),
    outlier_sigma)`` ns (an interrupt or ksmd preempting the probe).
    """
    timer_ns: int = costs.DEFAULT.timer_ns      # the one measured number: costs.py
    jitter_sigma: float = 0.3
    outlier_rate: float = 0.005
    outlier_median_ns: float = 6000.0
    outlier_sigma: float = 0.7

    def read(self, sim_ns: float, rng: random.Random) -> float:
        t = (sim_ns + self.timer_ns) * rng.lognormvariate(0.0, self.jitter_sigma)
        if rng.random() < self.outlier_rate:
            t += rng.lognormvariate(math.log(self.outlier_median_ns), self.outlier_sigma)
        return t


QUIET = TimerNoise()
NOISY = TimerNoise(outlier_rate=0.05)


@dataclass(frozen=True)
class Probe:
    """One candidate page: the truth, what the simulator charged, what the timer read."""
    index: int
    positive: bool            # the guess equals a victim page
    merged: bool              # its host frame was a KSM page (or the zero page) when probed
    sim_ns: tuple             # simulated ns of the probe, one per repeat
    exits: tuple              # EPT-violation exits of the probe, one per repeat
    measured_ns: float        # what the attacker uses: the smallest reading of the repeats


@dataclass(frozen=True)
class Rates:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def fpr(self) -> float:
        return self.fp / max(self.fp + self.tn, 1)

    def __str__(self):
        return (f"threshold {self.threshold:,.0f} ns: TPR {self.tpr:.1%} ({self.tp}/"
                f"{self.tp + self.fn}), FPR {self.fpr:.1%} ({self.fp}/{self.fp + self.tn})")


@dataclass(frozen=True)
class Experiment:
    """The probes of one run of the attack, and how it was set up."""
    kernel: str
    defence: str
    probe: str
    scans: int
    repeats: int
    noise: TimerNoise
    seed: int
    probes: tuple
    zero_probe_ns: tuple = field(default=())   # writes to the attacker's own zero pages

    def measured(self, positive: bool) -> list[float]:
        return [p.measured_ns for p in self.probes if p.positive is positive]

    def rates(self, threshold: float) -> Rates:
        """Call a candidate "merged, so the victim has it" when its reading >= threshold."""
        tp = sum(1 for p in self.probes if p.positive and p.measured_ns >= threshold)
        fp = sum(1 for p in self.probes if not p.positive and p.measured_ns >= threshold)
        pos = sum(1 for p in self.probes if p.positive)
        return Rates(threshold, tp, fp, len(self.probes) - pos - fp, pos - tp)

    def roc(self) -> list[Rates]:
        """Rates at every distinct threshold, from 'everything positive' to 'nothing'."""
        cuts = sorted({p.measured_ns for p in self.probes})
        return [self.rates(t) for t in cuts] + [self.rates(math.inf)]

    def auc(self) -> float:
        """Area under the ROC curve: 0.5 is a coin, 1.0 a perfect oracle."""
        pts = sorted({(r.fpr, r.tpr) for r in self.roc()})
        return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))

    def best(self) -> Rates:
        """The threshold with the largest TPR - FPR (Youden's J)."""
        return max(self.roc(), key=lambda r: (r.tpr - r.fpr, -r.threshold))

    @property
    def merged_fraction(self) -> float:
        pos = [p for p in self.probes if p.positive]
        return sum(p.merged for p in pos) / max(len(pos), 1)


def _page(rng: random.Random, i: int, ps: int) -> bytes:
    head = f"victim page {i:04d} ".encode()
    return head + rng.randbytes(ps - len(head))


def _near_miss(page: bytes, rng: random.Random) -> bytes:
    """The same page with one byte changed: a wrong guess."""
    pos = rng.randrange(32, len(page))
    return page[:pos] + bytes([page[pos] ^ (1 + rng.randrange(255))]) + page[pos + 1:]


def _is_merged(m, process, addr: int) -> bool:
    pte = process.mm.pagetables.get_pte(addr)
    if not pte_present(pte):
        return False
    page = m.memory.pages.get(pte_pfn(pte))
    return bool(page is not None and page.flags & (PG_ksm | PG_zero))


def _guest(m, name: str, contents, extra_zero_pages: int = 0):
    """A VMM process whose guest writes ``contents`` (one bytes object per page) into its
    RAM, then ``extra_zero_pages`` pages of zeroes.  Returns (process, addr, vm, pages)."""
    ps = m.page_size
    p = m.spawn(name)
    n = len(contents) + extra_zero_pages
    addr = p.mmap(n * ps)
    vm = m.kvm.create_vm(p, addr, n * ps)
    for i, data in enumerate(contents):
        vm.guest_write(i * ps, data)
    for i in range(len(contents), n):
        vm.guest_write(i * ps, bytes(ps))           # free guest memory: zeroes
    return p, addr, vm, n


def _madvise_zero_pages(process, vm, addr: int, npages: int, ps: int) -> None:
    """The zero-only model: only the guest pages that are all zero become mergeable."""
    zero = bytes(ps)
    for i in range(npages):
        if process.read(addr + i * ps, ps) == zero:
            process.madvise(addr + i * ps, ps, MADV_MERGEABLE)


@dataclass
class Planted:
    """A host after the attacker planted its guesses and ksmd ran: ``hosts`` maps
    "victim"/"attacker" to (VMM process, guest RAM address, KVM vm, pages);
    ``guesses`` holds (bytes, is a right guess) per candidate page of the attacker."""
    machine: Machine
    hosts: dict
    guesses: list


def plant(kernel: str = "6.18", defence: str = "none", *, candidates: int = 256,
          scans: int = 2, seed: int = 0, zero_pages: int = 4,
          page_size: int = PAGE_SIZE) -> Planted:
    """The plant-and-wait half of a round: the victim's secrets, the attacker's guesses
    (every other one a near miss), both guests mergeable (or the defence's model), and
    ``scans`` full scans of ksmd, which is stopped (run=0) before anything is probed."""
    if defence not in DEFENCES:
        raise ValueError(f"defence must be one of {list(DEFENCES)}, not {defence!r}")
    rng = random.Random(seed)
    ps = page_size
    secrets = [_page(rng, i, ps) for i in range((candidates + 1) // 2)]
    guesses = [(s, True) if i % 2 == 0 else (_near_miss(s, rng), False)
               for i, s in enumerate(secrets[j // 2] for j in range(candidates))]
    m = Machine(kernel, page_size=ps)
    hosts = {"victim": _guest(m, "victim-qemu", secrets, zero_pages),
             "attacker": _guest(m, "attacker-qemu", [g for g, _ in guesses], zero_pages)}
    if defence == "zero_only":
        if "use_zero_pages" in m.sysfs.listdir(KSM_SYSFS):
            m.sysfs.write(f"{KSM_SYSFS}/use_zero_pages", "1")
        for p, addr, vm, n in hosts.values():
            _madvise_zero_pages(p, vm, addr, n, ps)
    else:
        for p, addr, vm, n in hosts.values():
            p.madvise(addr, n * ps, MADV_MERGEABLE)
    if defence != "ksm_off":
        m.sysfs.write(f"{KSM_SYSFS}/run", "1")
        m.ksmd.run_full_scans(scans)
        m.sysfs.write(f"{KSM_SYSFS}/run", "0")             # no scan runs during the probes
    return Planted(m, hosts, guesses)


def is_merged(planted: Planted, index: int) -> bool:
    """Whether the attacker's candidate page ``index`` is mapped to a KSM page (or the
    zero page) now."""
    p, addr, _vm, _n = planted.hosts["attacker"]
    return _is_merged(planted.machine, p, addr + index * planted.machine.page_size)


def trial(kernel: str = "6.18", defence: str = "none", *, candidates: int = 256,
          scans: int = 2, probe: str = "write", seed: int = 0, zero_pages: int = 4,
          page_size: int = PAGE_SIZE) -> dict:
    """One plant-wait-probe round on a fresh host; returns the raw, noise-free results."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, not {probe!r}")
    planted = plant(kernel, defence, candidates=candidates, scans=scans, seed=seed,
                    zero_pages=zero_pages, page_size=page_size)
    m, hosts, guesses, ps = planted.machine, planted.hosts, planted.guesses, page_size
    p, addr, vm, n = hosts["attacker"]
    merged = [_is_merged(m, p, addr + i * ps) for i in range(n)]
    child = p.fork("attacker-qemu-vusion") if defence == "vusion" else None

    def access(i: int):
        if probe == "write":
            vm.guest_write(i * ps + 8, b"\x01")
        else:
            vm.guest_read(i * ps + 8, 1)
        return vm.last_access

    rows = []
    for i, (_g, positive) in enumerate(guesses):
        a = access(i)
        rows.append((i, positive, merged[i], a.ns, a.exits))
    zero_rows = [access(i) for i in range(len(guesses), n)]
    vm.check_invariants()
    if child is not None:
        child.exit()
    return {"rows": rows, "zero": [(a.ns, a.exits) for a in zero_rows]}


def run_experiment(kernel: str = "6.18", defence: str = "none", *, candidates: int = 256,
                   scans: int = 2, probe: str = "write", repeats: int = 1,
                   noise: TimerNoise = QUIET, seed: int = 0, zero_pages: int = 4) -> Experiment:
    """``repeats`` rounds (fresh pages each: a probe unmerges what it touches); each
    candidate's reading is the smallest of its rounds.  Deterministic given ``seed``."""
    rounds = [trial(kernel, defence, candidates=candidates, scans=scans, probe=probe,
                    seed=seed + 1000 * r, zero_pages=zero_pages) for r in range(repeats)]
    clock = random.Random(f"timer-{seed}-{kernel}-{defence}-{probe}")
    probes = []
    for i in range(candidates):
        row = [rnd["rows"][i] for rnd in rounds]
        readings = [noise.read(ns, clock) for (_i, _pos, _mg, ns, _ex) in row]
        probes.append(Probe(i, row[0][1], all(r[2] for r in row), tuple(r[3] for r in row),
                            tuple(r[4] for r in row), min(readings)))
    zero = tuple(noise.read(ns, clock) for ns, _ex in rounds[0]["zero"])
    return Experiment(kernel, defence, probe, scans, repeats, noise, seed, tuple(probes), zero)


# --- the signal per era ----------------------------------------------------------

@dataclass(frozen=True)
class Signal:
    """Noise-free cost of one probe kind on one kernel: merged vs unmerged candidates."""
    kernel: str
    probe: str
    merged_ns: int
    unmerged_ns: int
    merged_exits: int
    unmerged_exits: int

    @property
    def gap_ns(self) -> int:
        return self.merged_ns - self.unmerged_ns


def signal(kernel: str, probe: str = "write", defence: str = "none",
           candidates: int = 8) -> Signal:
    """The simulator's cost of a probe on a right guess (merged) and a wrong one."""
    rows = trial(kernel, defence, candidates=candidates, probe=probe, zero_pages=0)["rows"]
    pos = [r for r in rows if r[1]]
    neg = [r for r in rows if not r[1]]
    if len({(r[3], r[4]) for r in pos}) != 1 or len({(r[3], r[4]) for r in neg}) != 1:
        raise AssertionError(f"{kernel}: probes of one class cost different amounts: {rows}")
    return Signal(kernel, probe, pos[0][3], neg[0][3], pos[0][4], neg[0][4])


def signal_table(kernels=("2.6.32", "3.7", "6.10", "6.18"), probes=PROBES) -> list[Signal]:
    return [signal(k, p) for k in kernels for p in probes]


# --- how long the attacker waits ---------------------------------------------------

def merge_delay(kernel: str = "6.18", *, steady_scans: int = 0, pages: int = 16,
                smart_scan: bool | None = None, max_scans: int = 40, seed: int = 0) -> int:
    """Full scans, counted from the moment the attacker plants copies of ``pages``
    victim pages, until every copy is merged.  The victim's pages sat unmerged for
    ``steady_scans`` scans before (which is what smart scan, 6.7+, looks at)."""
    rng = random.Random(seed)
    ps = PAGE_SIZE
    m = Machine(kernel, page_size=ps)
    secrets = [_page(rng, i, ps) for i in range(pages)]
    v, va, _vvm, _n = _guest(m, "victim-qemu", secrets)
    v.madvise(va, pages * ps, MADV_MERGEABLE)
    if smart_scan is not None and "smart_scan" in m.sysfs.listdir(KSM_SYSFS):
        m.sysfs.write(f"{KSM_SYSFS}/smart_scan", str(int(smart_scan)))
    m.sysfs.write(f"{KSM_SYSFS}/run", "1")
    m.ksmd.run_full_scans(steady_scans)
    a, aa, _avm, _n = _guest(m, "attacker-qemu", secrets)
    a.madvise(aa, pages * ps, MADV_MERGEABLE)
    for n in range(1, max_scans + 1):
        m.ksmd.run_full_scans(1)
        if all(_is_merged(m, a, aa + i * ps) for i in range(pages)):
            return n
    raise AssertionError(f"{kernel}: copies not merged after {max_scans} full scans")


def time_to_merge(kernel: str = "6.18", *, victim_pages: int = 500,
                  attacker_pages: int = 500, seed: int = 0) -> dict:
    """How long the attacker waits, with ksmd at its defaults (pages_to_scan 100,
    sleep_millisecs 20, smart_scan off where the kernel has it).

    Both VMs' pages were written before ksmd started; the victim's last page holds the
    secret and the attacker's first page is its copy.  Returns the simulated
    milliseconds, ksmd's wake-ups (batches) and the full scans until the copy merged.
    """
    rng = random.Random(seed)
    ps = PAGE_SIZE
    m = Machine(kernel, page_size=ps)
    secret = _page(rng, 0, ps)
    v, va, _vvm, _n = _guest(m, "victim-qemu", [_page(rng, i + 1, ps) for i in range(
        victim_pages - 1)] + [secret])
    v.madvise(va, victim_pages * ps, MADV_MERGEABLE)
    a, aa, _avm, _n = _guest(m, "attacker-qemu", [secret] + [_page(rng, 10_000 + i, ps)
                                                             for i in range(1, attacker_pages)])
    a.madvise(aa, attacker_pages * ps, MADV_MERGEABLE)
    if "smart_scan" in m.sysfs.listdir(KSM_SYSFS):
        m.sysfs.write(f"{KSM_SYSFS}/smart_scan", "0")
    start, batches = m.clock_ns, m.ksmd.batches
    m.sysfs.write(f"{KSM_SYSFS}/run", "1")
    while not _is_merged(m, a, aa):
        m.advance(1)
        if m.clock_ns - start > 600_000_000_000:
            raise AssertionError("not merged after 10 simulated minutes")
    return {"ms": (m.clock_ns - start) / 1e6, "batches": m.ksmd.batches - batches,
            "full_scans": m.ksm.stats()["full_scans"],
            "pages_to_scan": m.ksm.pages_to_scan, "sleep_millisecs": m.ksm.sleep_millisecs}
