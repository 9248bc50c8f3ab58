"""Chapter 08's experiment: many guests on one host, as alike or as different as you make them.

A guest here is what KVM makes of it on the host: a QEMU process whose guest RAM is one
big anonymous, MADV_MERGEABLE mapping (QEMU does that madvise for every guest with
``-machine mem-merge=on``, the default).  Its pages come in four kinds:

* ``kernel``: the guest kernel's text and data; identical across guests that boot the
  same kernel build, unless KASLR relocates it differently in each (then every page differs);
* ``libs``: shared libraries and binaries; identical across guests of the same distro;
* ``zero``: free guest memory, zero-filled until the guest uses it;
* ``private``: the guest's own data, unique.

``measure`` builds the guests, lets ksmd do enough full scans for everything that can
merge to merge, and reports the frames saved, per kind, and ksmd's CPU under the
simulator's cost model (5.5 µs per processed page, see chapter 06).  ``diverge`` then
makes the guests write into their free and library pages (they run, update, allocate),
and a second measurement shows what is lost.  Nothing here draws; ``ksmbook.viz.guests``
draws it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel.machine import Machine
from ..kernel.mm import MADV_MERGEABLE
from ..kernel.pagetable import pte_pfn, pte_present
from ._build import page_of, require_counts
from ..uapi import KSM_SYSFS

KINDS = ("kernel", "libs", "zero", "private")


@dataclass(frozen=True)
class GuestImage:
    """Pages of each kind in one guest (4 KiB each: the default is 2 MiB of guest RAM)."""
    kernel: int = 96
    libs: int = 160
    zero: int = 160
    private: int = 96

    @property
    def pages(self) -> int:
        return self.kernel + self.libs + self.zero + self.private

    def __post_init__(self):
        require_counts(self, KINDS)


#: How alike the guests are.  ``distros``: how many different distributions the guests
#: run, round robin (each has its own kernel build and libraries); ``kaslr``: each guest's
#: kernel relocated differently (no kernel page alike across guests).
MIXES = {
    "identical": dict(distros=1, kaslr=False),
    "identical, KASLR": dict(distros=1, kaslr=True),
    "3 distros": dict(distros=3, kaslr=False),
}


@dataclass
class Measurement:
    mix: str
    guests: int
    image: GuestImage
    pages: int                      # guest pages in all
    saved: dict = field(default_factory=dict)   # frames saved per kind
    full_scans: int = 0
    ksmd_cpu_ms: float = 0.0
    counters: dict = field(default_factory=dict)

    @property
    def saved_total(self) -> int:
        return sum(self.saved.values())

    @property
    def saved_percent(self) -> float:
        return 100.0 * self.saved_total / self.pages if self.pages else 0.0

    @property
    def frames_per_guest(self) -> float:
        return (self.pages - self.saved_total) / self.guests

    def guests_per_gib(self, page_size: int = 4096) -> float:
        """Guests that fit in 1 GiB of host RAM at this saving (guest RAM only)."""
        return 2**30 / (self.frames_per_guest * page_size)


class Host:
    """A machine with ``guests`` guest RAM mappings laid out as ``image`` and ``mix``."""

    def __init__(self, guests: int, mix: str = "identical", image: GuestImage = GuestImage(),
                 *, knobs: dict | None = None, kernel: str = "6.18", page_size: int = 4096):
        if mix not in MIXES:
            raise ValueError(f"mix must be one of {sorted(MIXES)}, not {mix!r}")
        if not isinstance(guests, int) or isinstance(guests, bool) or not 1 <= guests <= 64:
            raise ValueError(f"guests must be an int in 1..64, not {guests!r}")
        self.mix, self.image, self.n = mix, image, guests
        self.machine = m = Machine(kernel, page_size=page_size, events=False)
        for name, value in ({"pages_to_scan": 1000, **(knobs or {})}).items():
            m.sysfs.write(f"{KSM_SYSFS}/{name}", str(value))
        distros, kaslr = MIXES[mix]["distros"], MIXES[mix]["kaslr"]
        ps = page_size
        self.guests = []          # (process, base address)
        self.ranges = {}          # kind -> (first page, count)
        first = 0
        for kind in KINDS:
            self.ranges[kind] = (first, getattr(image, kind))
            first += getattr(image, kind)
        for g in range(guests):
            p = m.spawn(f"qemu-guest{g + 1}")
            addr = p.mmap(image.pages * ps)
            distro = g % distros
            data = bytearray()
            for j in range(image.kernel):
                tag = b"distro %d kernel page %d" % (distro, j)
                if kaslr:
                    tag += b" relocated for guest %d" % g
                data += page_of(ps, tag + b" ")
            for j in range(image.libs):
                data += page_of(ps, b"distro %d library page %d " % (distro, j))
            data += bytes(image.zero * ps)
            for j in range(image.private):
                data += page_of(ps, b"guest %d private page %d " % (g, j))
            p.write(addr, bytes(data))
            p.madvise(addr, image.pages * ps, MADV_MERGEABLE)
            self.guests.append((p, addr))
        m.sysfs.write(f"{KSM_SYSFS}/run", "1")

    def merge(self, max_scans: int = 8) -> int:
        """Full scans until a scan merges nothing more (at least 3: merging needs two)."""
        m = self.machine
        last = None
        for _ in range(max_scans):
            m.ksmd.run_full_scans(1)
            now = m.ksm.stats()
            key = (now["pages_sharing"], now["ksm_zero_pages"], now["pages_shared"])
            if key == last and now["full_scans"] >= 3:
                break
            last = key
        return m.ksm.stats()["full_scans"]

    def saved_by_kind(self) -> dict:
        """Frames saved per kind: mappings of the kind minus the distinct frames behind them."""
        m = self.machine
        out = {}
        for kind, (first, count) in self.ranges.items():
            frames, mappings = set(), 0
            for p, base in self.guests:
                pt = p.mm.pagetables
                for j in range(first, first + count):
                    pte = pt.get_pte(base + j * m.page_size)
                    if pte_present(pte):
                        frames.add(pte_pfn(pte))
                        mappings += 1
            out[kind] = mappings - len(frames)
        return out

    def diverge(self, fraction: float, *, kinds=("zero", "libs")) -> int:
        """Every guest writes a byte of its own into ``fraction`` of its pages of ``kinds``
        (free memory put to use, libraries updated): copy-on-write breaks those merges."""
        if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction!r}")
        m = self.machine
        written = 0
        for g, (p, base) in enumerate(self.guests):
            for kind in kinds:
                first, count = self.ranges[kind]
                for j in range(first, first + round(count * fraction)):
                    p.write(base + j * m.page_size + 64, b"guest %d uses page %d" % (g, j))
                    written += 1
        return written

    def measurement(self) -> Measurement:
        m = self.machine
        c = m.ksm.stats()
        return Measurement(self.mix, self.n, self.image, self.n * self.image.pages,
                           self.saved_by_kind(), c["full_scans"], m.ksm.ksmd_cpu_ns / 1e6, c)


def measure(guests: int, mix: str = "identical", image: GuestImage = GuestImage(),
            *, knobs: dict | None = None) -> Measurement:
    """Build the host, merge until nothing more merges, measure."""
    host = Host(guests, mix, image, knobs=knobs)
    host.merge()
    return host.measurement()


GUEST_COUNTS = (1, 2, 4, 8, 16)


def density_sweep(counts=GUEST_COUNTS, mixes=tuple(MIXES), image: GuestImage = GuestImage()):
    """{mix: [Measurement per guest count]}"""
    return {mix: [measure(n, mix, image) for n in counts] for mix in mixes}


def divergence_sweep(guests: int = 8, fractions=(0.0, 0.25, 0.5, 0.75, 1.0),
                     mix: str = "identical", image: GuestImage = GuestImage()):
    """The same host, measured after the guests have diverged by each fraction in turn."""
    out = []
    host = Host(guests, mix, image)
    host.merge()
    done = 0.0
    for f in fractions:
        if f < done:
            raise ValueError("fractions must not decrease: a guest cannot un-write a page")
        host.diverge(f)
        done = f
        host.merge()
        out.append((f, host.measurement()))
    return out


def density_table(sweep: dict) -> str:
    """The text twin of the density figure, at most 76 characters a line (the mix
    column as wide as its longest name), so that it does not wrap at 800 px."""
    mix_w = max([len(mix) for mix in sweep] + [3])
    lines = [f"{'mix':<{mix_w}} {'guests':>6} {'saved %':>7} {'kernel':>6} {'libs':>5} "
             f"{'zero':>5} {'guests/GiB':>10} {'ksmd CPU ms':>11}"]
    for mix, rows in sweep.items():
        for r in rows:
            s = r.saved
            lines.append(f"{mix:<{mix_w}} {r.guests:>6} {r.saved_percent:>7.1f} "
                         f"{s['kernel']:>6} {s['libs']:>5} {s['zero']:>5} "
                         f"{r.guests_per_gib():>10.0f} {r.ksmd_cpu_ms:>11.1f}")
    return "\n".join(lines)
