"""Small named scenes for the book: a Machine plus names for its processes and regions.

A chapter builds its machine through a :class:`Scene` so that every picture and
every line of text can call a page by a name a reader remembers ("vm1[2]", page 2
of vm1's region) instead of by a 44-bit address.  A scene is only bookkeeping on
top of the public ``ksmbook.Machine`` API: it never reaches into the kernel.

The builders at the end (``identical_pages``, ``forked_pages`` ...) are the
scenes the chapters and the exercises share; each returns a fresh Scene, so a
widget's Reset button can rebuild it from scratch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernel.machine import Machine
from ..kernel.mm import MADV_MERGEABLE
from ..uapi import KSM_SYSFS



@dataclass(frozen=True)
class Region:
    proc: str
    name: str
    addr: int
    pages: int


class Scene:
    """A Machine whose processes and regions have names.

    ``page_size`` defaults to 256 bytes: small pages keep the book's pictures and
    printed contents readable; the kernel logic does not depend on the size.
    """

    def __init__(self, *, kernel: str = "6.18", page_size: int = 256, **machine_kw):
        self.machine = Machine(kernel, page_size=page_size, **machine_kw)
        self.page_size = page_size
        self.procs: dict = {}                       # name -> Process
        self.regions: dict[tuple[str, str], Region] = {}

    def __repr__(self):
        regs = ", ".join(f"{r.proc}.{r.name}:{r.pages}p" for r in self.regions.values())
        return f"Scene(page_size={self.page_size}, regions=[{regs}])"

    # --- building ---
    def spawn(self, name: str):
        p = self.machine.spawn(name)
        self.procs[name] = p
        return p

    def mmap(self, proc: str, region: str, pages: int, **kw) -> int:
        addr = self.procs[proc].mmap(pages * self.page_size, **kw)
        self.regions[(proc, region)] = Region(proc, region, addr, pages)
        return addr

    def region(self, proc: str, region: str | None = None) -> Region:
        if region is None:
            mine = [r for r in self.regions.values() if r.proc == proc]
            if len(mine) != 1:
                raise KeyError(f"{proc} has {len(mine)} regions: name one")
            return mine[0]
        return self.regions[(proc, region)]

    def addr(self, proc: str, page: int = 0, region: str | None = None) -> int:
        return self.region(proc, region).addr + page * self.page_size

    def fill(self, proc: str, page: int, count: int, byte: int, region: str | None = None):
        """memset() pages [page, page+count) of the region to ``byte``."""
        self.procs[proc].write(self.addr(proc, page, region), bytes([byte]) * (count * self.page_size))

    def write(self, proc: str, page: int, data: bytes, offset: int = 0, region: str | None = None):
        self.procs[proc].write(self.addr(proc, page, region) + offset, data)

    def read(self, proc: str, page: int, n: int = 1, region: str | None = None) -> bytes:
        return self.procs[proc].read(self.addr(proc, page, region), n)

    def madvise(self, proc: str, advice: int = MADV_MERGEABLE, page: int = 0,
                count: int | None = None, region: str | None = None):
        r = self.region(proc, region)
        count = r.pages - page if count is None else count
        self.procs[proc].madvise(r.addr + page * self.page_size, count * self.page_size, advice)

    def fork(self, proc: str, child: str):
        c = self.procs[proc].fork(child)
        self.procs[child] = c
        for (owner, name), r in list(self.regions.items()):
            if owner == proc:
                self.regions[(child, name)] = Region(child, name, r.addr, r.pages)
        return c

    def knob(self, name: str, value) -> None:
        self.machine.sysfs.write(f"{KSM_SYSFS}/{name}", str(int(value) if isinstance(value, bool) else value))

    def stat(self, name: str) -> int:
        return self.machine.sysfs.read_int(f"{KSM_SYSFS}/{name}")

    # --- names ---
    def label(self, pid: int, address: int) -> str | None:
        """'vm1[2]' (or 'vm1.heap[2]' when vm1 has several regions) for a page address."""
        name = next((n for n, p in self.procs.items() if p.pid == pid), None)
        if name is None:
            return None
        mine = [r for r in self.regions.values() if r.proc == name]
        for r in mine:
            if r.addr <= address < r.addr + r.pages * self.page_size:
                i = (address - r.addr) // self.page_size
                return f"{name}[{i}]" if len(mine) == 1 else f"{name}.{r.name}[{i}]"
        return None


# --- the book's scenes -------------------------------------------------------------

def identical_pages(n: int = 4, byte: int = 0x2A, *, unique: int = 0, page_size: int = 256,
                    procs: int = 1, knobs: dict | None = None, run: int = 1,
                    kernel: str = "6.18") -> Scene:
    """``procs`` processes, each with ``n`` pages of ``byte`` plus ``unique`` pages whose
    first byte is their index (so they never match), all MADV_MERGEABLE, run=1, on the
    simulated ``kernel``."""
    s = Scene(kernel=kernel, page_size=page_size)
    for k, value in (knobs or {}).items():
        s.knob(k, value)
    for i in range(procs):
        name = f"vm{i + 1}"
        s.spawn(name)
        s.mmap(name, "mem", n + unique)
        if n:
            s.fill(name, 0, n, byte)
        for u in range(unique):
            s.write(name, n + u, bytes([0x80 + 16 * i + u]) + bytes(page_size - 1))
        s.madvise(name)
    s.knob("run", run)
    return s


def forked_pages(n: int = 4, *, page_size: int = 256) -> Scene:
    """A parent with ``n`` written pages (bytes 'A', 'B', ...) that has forked once."""
    s = Scene(page_size=page_size)
    s.spawn("parent")
    s.mmap("parent", "mem", n)
    for i in range(n):
        s.write("parent", i, bytes([ord("A") + i]) * page_size)
    s.fork("parent", "child")
    return s
