"""Chapter 02 exercises: copy-on-write after fork()."""
from __future__ import annotations

from ..kernel.events import Fault, PageAlloc
from ..kernel.pagetable import pte_pfn
from ..labs.scenes import forked_pages
from .base import Exercise, as_int, as_name


def _pfn(scene, proc, page):
    return pte_pfn(scene.procs[proc].mm.pagetables.get_pte(scene.addr(proc, page)))


class MapcountAfterFork(Exercise):
    name = "mapcount_after_fork"
    fixed_because = "one fork() always gives mapcount 2"
    parse = staticmethod(as_int)
    question = ("A parent with 4 written pages forks. Before anyone writes, what is the "
                "mapcount of the frame behind parent[2]?")
    hints = ("fork() copies the page tables (copy_page_range), not the pages.",)

    def simulate(self):
        s = forked_pages(4)
        page = s.machine.memory.pfn_to_page(_pfn(s, "parent", 2))
        return {"answer": page.mapcount, "pfn": page.pfn,
                "same": _pfn(s, "child", 2) == page.pfn}

    def explain(self, f):
        return (f"parent[2] and child[2] both map pfn {f['pfn']:#x} "
                f"({'the same frame' if f['same'] else 'different frames'}); copy_present_pte() "
                f"took one more map and reference per PTE and write-protected both, so the "
                f"mapcount is {f['answer']}.")

    def why_not(self, answer, f):
        if answer == 1:
            return "That would be true if fork() copied the page; it copies only the PTE."
        return ""


class FramesForWrites(Exercise):
    name = "frames_for_writes"
    fixed_because = "the COW reuse rule gives one sequence; not yet seeded"
    parse = staticmethod(as_int)
    question = ("After that fork: the child writes page 0, then the parent writes page 0, then "
                "the child writes page 1. How many new frames do these three writes allocate?")
    hints = ("Every write hits a read-only PTE and goes to do_wp_page().",
             "do_wp_page() reuses the frame when the faulting process is its only mapper "
             "(wp_can_reuse_anon_folio()); otherwise wp_page_copy() copies it.")

    def simulate(self):
        s = forked_pages(4)
        handlers, allocs = [], 0
        for proc, page in (("child", 0), ("parent", 0), ("child", 1)):
            with s.machine.events.capture() as ev:
                s.write(proc, page, b"!")
            handlers.append((proc, page, [e.handler for e in ev if isinstance(e, Fault)][0]))
            allocs += sum(1 for e in ev if isinstance(e, PageAlloc) and e.purpose == "anon")
        return {"answer": allocs, "handlers": handlers}

    def explain(self, f):
        steps = "; ".join(f"{proc}[{page}]: {h}" for proc, page, h in f["handlers"])
        return (f"{steps}. The parent's write came after the child had copied page 0 away, so "
                f"the parent was the frame's only mapper and kept it: {f['answer']} new frames.")

    def why_not(self, answer, f):
        if answer == 3:
            return ("Not every write copies: look at the parent's write, after the child already "
                    "left that frame.")
        return ""


class WhoKeepsTheOriginal(Exercise):
    name = "who_keeps_the_original"
    fixed_because = "the answer is one of two process names"
    parse = staticmethod(as_name)
    question = ("After the child writes page 0, which process still maps the original frame: "
                "'parent' or 'child'?")
    answer_format = "'parent' or 'child'"
    hints = ("wp_page_copy() gives the *faulting* process a new frame.",)

    def simulate(self):
        s = forked_pages(4)
        before = _pfn(s, "parent", 0)
        s.write("child", 0, b"!")
        keeper = "parent" if _pfn(s, "parent", 0) == before else "child"
        return {"answer": keeper, "pfn": before, "child_pfn": _pfn(s, "child", 0)}

    def explain(self, f):
        return (f"The child faulted, so the child got the copy (pfn {f['child_pfn']:#x}); "
                f"the {f['answer']} still maps pfn {f['pfn']:#x}, now with mapcount 1, its PTE "
                f"still read-only until it writes too.")


mapcount_after_fork = MapcountAfterFork()
frames_for_writes = FramesForWrites()
who_keeps_the_original = WhoKeepsTheOriginal()
EXERCISES = (mapcount_after_fork, frames_for_writes, who_keeps_the_original)
