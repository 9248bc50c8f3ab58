"""Process layouts for seeded exercises: how many processes, which one holds which copy.

A seed picks the layout (``random_layout``); ``layout_scene`` builds it in the
simulator and ``describe_layout`` says it in the question's words."""
from __future__ import annotations

from ..labs.scenes import Scene

PROCS = ("vm1", "vm2", "vm3")


def random_layout(rng, groups, extra: int = 6):
    """Processes with random page counts, and where each group's copies sit.
    groups: [(count, byte)]; returns ({proc: pages}, {(proc, page): byte})."""
    nprocs = rng.randint(1, 3)
    total = sum(c for c, _ in groups) + rng.randint(0, extra)
    sizes = {p: 1 for p in PROCS[:nprocs]}
    for _ in range(total - nprocs):
        sizes[rng.choice(PROCS[:nprocs])] += 1
    slots = [(p, i) for p, n in sizes.items() for i in range(n)]
    rng.shuffle(slots)
    where = {}
    for count, byte in groups:
        for _ in range(count):
            where[slots.pop()] = byte
    return sizes, where


def layout_scene(sizes: dict, where: dict, kernel: str = "6.18", knobs=None) -> Scene:
    """The processes of ``sizes``; the pages in ``where`` hold their byte, every other page
    bytes of its own; all MADV_MERGEABLE in process order, run=1."""
    s = Scene(kernel=kernel)
    for k, v in (knobs or {}).items():
        s.knob(k, v)
    own = 0
    for proc, n in sizes.items():
        s.spawn(proc)
        s.mmap(proc, "mem", n)
        for i in range(n):
            if (proc, i) in where:
                s.fill(proc, i, 1, where[(proc, i)])
            else:
                own += 1
                s.write(proc, i, bytes([0x80 + own % 100, own // 100 + 1]))
    for proc in sizes:
        s.madvise(proc)
    s.knob("run", 1)
    return s


def describe_layout(sizes: dict, where: dict) -> str:
    """'processes vm1, vm2 map 5, 3 pages; vm2[1] and vm1[4] are identical'."""
    procs = list(sizes)
    text = (f"{procs[0]} maps {sizes[procs[0]]} pages" if len(procs) == 1
            else f"processes {', '.join(procs)} map {', '.join(str(n) for n in sizes.values())} "
                 f"pages")
    groups = {}
    for (p, i), b in sorted(where.items()):
        groups.setdefault(b, []).append(f"{p}[{i}]")
    same = ["{} and {} are identical".format(", ".join(g[:-1]), g[-1])
            for g in groups.values() if len(g) > 1]
    return f"{text}; {'; '.join(same)}" if same else text
