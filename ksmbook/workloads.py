"""Built-in scenarios (registered in :data:`ksmbook.scenario.SCENARIOS`).

Each one is small enough to read in one breath and checks one fact that the
book relies on; ``tests/data/kernel_traces/<name>.json`` holds what Linux 6.18
did with it.
"""
from __future__ import annotations

from .scenario import (SCENARIOS, Scenario, exit, fill, fork, knob, madvise, mmap,
                       mprotect, poke, prctl_merge, register, run, scans, spawn,
                       touch_read, unique)

__all__ = ["SCENARIOS", "two_identical_pages", "ten_identical_pages",
           "max_page_sharing_two", "zero_pages_to_zero_page", "cow_after_merge",
           "fork_after_merge", "fork_one_page", "exit_two_processes",
           "zero_page_lifecycle", "smart_scan_unique", "prctl_regions",
           "unmerge_and_dontneed", "prot_none_and_read_faults"]

M = "MADV_MERGEABLE"


def _identical_pages(name: str, description: str, pages: int, byte: int,
                     setup=(), n_scans: int = 3) -> Scenario:
    """One process, one region of ``pages`` pages all set to ``byte``, made
    mergeable, then scanned one full scan at a time (so the trace shows the
    first-visit checksum rule: nothing merges before the second scan)."""
    steps = [*setup,
             spawn("p"),
             mmap("p", "buf", pages),
             fill("p", "buf", 0, pages, byte),
             madvise("p", "buf", 0, pages, "MADV_MERGEABLE")]
    steps += [scans(1)] * n_scans
    return Scenario(name, description, steps)


two_identical_pages = register(_identical_pages(
    "two_identical_pages",
    "Two pages of 0x2a in one process: they merge in the second full scan "
    "into one KSM page (pages_shared=1, pages_sharing=1).",
    pages=2, byte=0x2A))

ten_identical_pages = register(_identical_pages(
    "ten_identical_pages",
    "ksm_tests -M -p 10: ten pages of '*' merge into one KSM page "
    "(pages_shared=1, pages_sharing=9).",
    pages=10, byte=ord("*")))

max_page_sharing_two = register(_identical_pages(
    "max_page_sharing_two",
    "Five identical pages with max_page_sharing=2: two KSM copies of the same "
    "content in a stable-node chain (shared=2, sharing=2, one page left "
    "unshared, chains=1, dups=2).",
    pages=5, byte=0x5A, setup=[knob("max_page_sharing", 2)]))

zero_pages_to_zero_page = register(_identical_pages(
    "zero_pages_to_zero_page",
    "ksm_tests -Z -z 1: with use_zero_pages=1, ten zero-filled pages are "
    "replaced by the shared zero page: ksm_zero_pages=10, no KSM page "
    "(pages_shared=0, pages_sharing=0).",
    pages=10, byte=0, setup=[knob("use_zero_pages", 1)]))


# ---------------------------------------------------------------------------
# Behaviour probes: each pins one rule of mm/ksm.c that a simulator easily
# gets wrong (research/ksm-kernel.md section 7); all were checked on 6.18.
# ---------------------------------------------------------------------------

cow_after_merge = register(Scenario(
    "cow_after_merge",
    "Four merged pages; a write to page 2 (COW) changes no counter until ksmd "
    "next visits it (sharing 3->2, then volatile, then unshared).  Rewriting "
    "page 3 with its own byte COWs it too, but its kept pre-merge checksum "
    "still matches, so it re-merges in that same visit.  Meanwhile page 2 "
    "hits the smart-scan skip (pages_skipped 1).",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 9), madvise("a", "r", 0, 4, M),
     scans(2), poke("a", "r", 2, 0, 1), scans(1), scans(1), poke("a", "r", 3, 0, 9),
     scans(1), scans(1)]))

fork_after_merge = register(Scenario(
    "fork_after_merge",
    "Fork after four pages merged: the child starts with ksm_rmap_items 0 and "
    "ksm_merging_pages 0; its first scan appends its four mappings to the "
    "same KSM page (sharing 3->7).  A write in the child is seen one scan later.",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 9), madvise("a", "r", 0, 4, M),
     scans(2), fork("a", "b"), scans(1), scans(1), poke("b", "r", 0, 0, 1), scans(1),
     scans(1)]))

fork_one_page = register(Scenario(
    "fork_one_page",
    "One page, forked before any scan: parent and child map the same physical "
    "page, so the unstable-tree search meets itself (page == tree_page) and "
    "never merges: one item unshared, one volatile; the smart-scan skip at the "
    "5th scan takes both out (pages_skipped 2).",
    [spawn("a"), mmap("a", "r", 1), fill("a", "r", 0, 1, 9), madvise("a", "r", 0, 1, M),
     fork("a", "b"), *[scans(1)] * 6]))

exit_two_processes = register(Scenario(
    "exit_two_processes",
    "Two processes with three identical pages each merge into one KSM page "
    "(sharing 5).  After one exits the counters lag until the next scan; after "
    "both exit the next scan empties everything, and with no mm left ksmd "
    "cannot scan at all (full_scans stays 4).",
    [spawn("a"), spawn("b"), mmap("a", "r", 3), mmap("b", "r", 3), fill("a", "r", 0, 3, 7),
     fill("b", "r", 0, 3, 7), madvise("a", "r", 0, 3, M), madvise("b", "r", 0, 3, M),
     scans(2), exit("a"), scans(1), exit("b"), scans(1), scans(1)]))

zero_page_lifecycle = register(Scenario(
    "zero_page_lifecycle",
    "use_zero_pages=1: four zero pages become KSM zero pages in scan 2 (items "
    "volatile), their items vanish in scan 3.  ksm_zero_pages then changes at "
    "once, with no scan: a write (-1), fork (+3 for the child, global too), "
    "MADV_UNMERGEABLE (-1), MADV_DONTNEED (-1), exit (-3), run=2 (-1).",
    [knob("use_zero_pages", 1), spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 0),
     madvise("a", "r", 0, 4, M), scans(1), scans(1), scans(1), poke("a", "r", 0, 0, 0),
     fork("a", "b"), madvise("a", "r", 1, 1, "MADV_UNMERGEABLE"),
     madvise("a", "r", 2, 1, "MADV_DONTNEED"), exit("b"), scans(1), run(2)]))

smart_scan_unique = register(Scenario(
    "smart_scan_unique",
    "Sixteen distinct pages never merge: smart scan visits each in scans "
    "1-4, skips scan 5, visits 6, skips 7-8, visits 9, skips 10-13 "
    "(unshared <-> volatile as they leave the unstable tree).",
    [spawn("a"), mmap("a", "r", 16), unique("a", "r", 0, 16, 1), madvise("a", "r", 0, 16, M),
     *[scans(1)] * 14]))

prctl_regions = register(Scenario(
    "prctl_regions",
    "PR_SET_MEMORY_MERGE 1 before mapping: new private regions are mergeable "
    "at creation, MAP_SHARED ones never.  PR_SET_MEMORY_MERGE 0 unmerges and "
    "the next scan drops every item.",
    [spawn("a"), prctl_merge("a", 1), mmap("a", "r", 8), fill("a", "r", 0, 8, 3),
     mmap("a", "s", 4, shared=True), fill("a", "s", 0, 4, 3), scans(1), scans(1),
     prctl_merge("a", 0), scans(1)]))

unmerge_and_dontneed = register(Scenario(
    "unmerge_and_dontneed",
    "Six merged pages; MADV_UNMERGEABLE two and MADV_DONTNEED two: counters "
    "lag until the next scan.  max_page_sharing cannot change while pages are "
    "shared (EBUSY) but can after run=2, which keeps the mm registered.",
    [spawn("a"), mmap("a", "r", 6), fill("a", "r", 0, 6, 5), madvise("a", "r", 0, 6, M),
     scans(2), madvise("a", "r", 0, 2, "MADV_UNMERGEABLE"), madvise("a", "r", 2, 2, "MADV_DONTNEED"),
     scans(1), knob("max_page_sharing", 3), run(2), knob("max_page_sharing", 3), scans(2)]))

prot_none_and_read_faults = register(Scenario(
    "prot_none_and_read_faults",
    "Read-faulted pages map the shared zero page and are never scanned; "
    "PROT_NONE pages are scanned and merged like any others.",
    [spawn("a"), mmap("a", "r", 4), touch_read("a", "r", 0, 4), mmap("a", "q", 4),
     fill("a", "q", 0, 4, 1), mprotect("a", "q", 0, 4, "none"), madvise("a", "r", 0, 4, M),
     madvise("a", "q", 0, 4, M), scans(2), mprotect("a", "q", 0, 2, "r"), scans(1)]))


# ---------------------------------------------------------------------------
# Random scenarios: differential testing of the simulator against the kernel
# ---------------------------------------------------------------------------

def random_scenario(seed: int, steps: int = 25, max_pages: int = 8) -> Scenario:
    """A valid random scenario, the same for the same ``seed``.

    Contents come from a tiny alphabet (bytes 0-2, two unique tags) so that
    duplicates, zero pages and COW all happen often; every step is kept only
    if the scenario's static check accepts it.  Not registered: use it to
    compare ``run_in_simulator`` with ``live.run_live`` over many seeds.
    """
    import random

    from .scenario import (Exit, Fill, Fork, Knob, Madvise, Mmap, Mprotect, Munmap,
                           Poke, PrctlMerge, Run, Scans, ScenarioError, Spawn,
                           TouchRead, Unique)

    rng = random.Random(seed)
    out: list = []
    procs: list[str] = []
    regions: dict[str, dict[str, int]] = {}
    counter = iter(range(10**6))

    def pick_range(pages):
        page = rng.randrange(pages)
        return page, rng.randint(1, pages - page)

    def propose():
        kind = rng.choices(
            ["spawn", "mmap", "fill", "unique", "poke", "touch", "madvise", "mprotect",
             "munmap", "prctl", "fork", "exit", "knob", "scans", "run"],
            [2, 3, 8, 2, 4, 1, 8, 1, 1, 1, 1, 1, 1, 5, 1])[0]
        if kind == "spawn" or not procs:
            return Spawn(f"p{next(counter)}")
        proc = rng.choice(procs)
        if kind == "fork":
            return Fork(proc, f"p{next(counter)}")
        if kind == "exit":
            return Exit(proc)
        if kind == "prctl":
            return PrctlMerge(proc, rng.choice([1, 1, 0]))
        if kind == "scans":
            return Scans(rng.choice([1, 1, 1, 2, 3]))
        if kind == "run":
            return Run(rng.choice([2, 0]))
        if kind == "knob":
            return rng.choice([Knob("use_zero_pages", rng.choice([0, 1])),
                               Knob("max_page_sharing", rng.choice([2, 3, 256])),
                               Knob("stable_node_chains_prune_millisecs", rng.choice([0, 2000])),
                               Knob("smart_scan", rng.choice([0, 1]))])
        if kind == "mmap" or not regions[proc]:
            return Mmap(proc, f"r{next(counter)}", rng.randint(1, max_pages), shared=rng.random() < 0.1)
        region = rng.choice(sorted(regions[proc]))
        page, count = pick_range(regions[proc][region])
        return {
            "fill": lambda: Fill(proc, region, page, count, rng.choice([0, 1, 1, 2])),
            "unique": lambda: Unique(proc, region, page, count, rng.choice([1, 2])),
            "poke": lambda: Poke(proc, region, page, rng.choice([0, 8, 4095]), rng.choice([0, 1, 2])),
            "touch": lambda: TouchRead(proc, region, page, count),
            "madvise": lambda: Madvise(proc, region, page, count, rng.choice(
                ["MADV_MERGEABLE"] * 4 + ["MADV_UNMERGEABLE", "MADV_DONTNEED"])),
            "mprotect": lambda: Mprotect(proc, region, page, count, rng.choice(["none", "r", "rw"])),
            "munmap": lambda: Munmap(proc, region, page, count),
        }[kind]()

    while len(out) < steps:
        step = propose()
        try:
            Scenario("random", "", out + [step])
        except ScenarioError:
            continue
        out.append(step)
        if isinstance(step, Spawn):
            procs.append(step.proc)
            regions[step.proc] = {}
        elif isinstance(step, Fork):
            procs.append(step.child)
            regions[step.child] = dict(regions[step.proc])
        elif isinstance(step, Exit):
            procs.remove(step.proc)
        elif isinstance(step, Mmap):
            regions[step.proc][step.region] = step.pages
    if not any(isinstance(s, Scans) for s in out[-3:]):
        out.append(Scans(2))
    return Scenario(f"random_{seed}", f"random_scenario({seed}, {steps}, {max_pages})", out)
