"""Chapter 01 exercises: page tables and faults (4 KiB pages, as on x86-64)."""
from __future__ import annotations

from ..kernel.events import Fault
from ..kernel.memory import PG_table
from ..kernel.pagetable import pte_pfn
from ..labs.scenes import Scene
from ..viz.events import fault_handler_text
from .base import Exercise, as_int, as_name

GiB = 1 << 30


def _table_frames(machine) -> int:
    return sum(1 for p in machine.memory.pages.values() if p.flags & PG_table)


class TablesForOnePage(Exercise):
    name = "tables_for_one_page"
    fixed_because = "one page always needs one table per level below the PGD"
    parse = staticmethod(as_int)
    question = ("A new process maps 16 KiB and writes one byte at the start. How many "
                "page-table frames does its mm hold now?")
    hints = ("Before the write the process already has a PGD (mm_alloc allocates it).",
             "An x86-64 walk goes through four tables: PGD, PUD, PMD and the PTE table. "
             "__pte_alloc() creates the missing ones on the first fault.")

    def simulate(self):
        s = Scene(page_size=4096)
        s.spawn("p")
        before = _table_frames(s.machine)
        s.mmap("p", "buf", 4)
        after_mmap = _table_frames(s.machine)
        s.write("p", 0, b"x")
        return {"answer": _table_frames(s.machine), "before": before, "after_mmap": after_mmap}

    def explain(self, f):
        return (f"A fresh mm has {f['before']} table frame (its PGD); mmap() adds none "
                f"({f['after_mmap']}), because VMAs are not page tables. The first write faults, "
                f"and the walk fills in the PUD, PMD and PTE tables: {f['answer']} frames.")

    def why_not(self, answer, f):
        if answer == 1:
            return "One table would be the PGD alone; a write needs a PTE to point at the frame."
        if answer == 0:
            return "Even an empty mm has a PGD."
        return "Count the levels of the walk: PGD, PUD, PMD, PTE."


class TablesForFarPages(Exercise):
    name = "tables_for_far_pages"
    fixed_because = "the lesson (a far page needs its own lower tables) has one count per address layout; not yet seeded"
    parse = staticmethod(as_int)
    question = ("The process maps 2 GiB (nothing is allocated yet), writes one byte at the start "
                "and one byte 1 GiB further. How many page-table frames does it hold now?")
    hints = ("1 GiB is exactly the span of one PUD entry with 4 KiB pages: 512 × 512 × 4 KiB.",
             "The two addresses share the PGD entry and the PUD table, but need different "
             "PMD tables, and so different PTE tables.")

    def simulate(self):
        s = Scene(page_size=4096)
        p = s.spawn("p")
        a = s.mmap("p", "big", (2 * GiB) // 4096)
        p.write(a, b"x")
        p.write(a + GiB, b"y")
        pt = p.mm.pagetables
        differ = [lv for lv, level in zip(("PGD", "PUD", "PMD", "PTE"), (4, 3, 2, 1))
                  if pt.index(a, level) != pt.index(a + GiB, level)]
        return {"answer": _table_frames(s.machine), "differ": differ}

    def explain(self, f):
        return (f"The two addresses differ in their {', '.join(f['differ'])} indices, so below "
                f"the first differing level each needs its own tables: {f['answer']} frames "
                f"for two 4 KiB pages, while the 2 GiB mapping itself cost nothing.")

    def why_not(self, answer, f):
        if answer == 4:
            return "Four tables map addresses within one 2 MiB PTE-table span; these are 1 GiB apart."
        if answer == 8:
            return "The PGD (and here the PUD table) is shared by both addresses."
        return ""


class ReadThenWrite(Exercise):
    name = "read_then_write"
    kind = "function"
    fixed_because = "one function in mm/memory.c does this"
    parse = staticmethod(as_name)
    question = ("A process reads an untouched page, then writes to it. Name the kernel "
                "function that gives the page its own frame on the write.")
    answer_format = "a function name in quotes"
    hints = ("The read maps the shared zero page read-only (do_anonymous_page).",
             "A write to a present, read-only PTE goes to do_wp_page(); the zero page is "
             "never reused, so it copies.")

    def simulate(self):
        s = Scene(page_size=4096)
        p = s.spawn("p")
        s.mmap("p", "buf", 1)
        with s.machine.events.capture() as read_ev:
            s.read("p", 0)
        with s.machine.events.capture() as write_ev:
            s.write("p", 0, b"x")
        read = [fault_handler_text(e) for e in read_ev if isinstance(e, Fault)]
        write = [e.handler for e in write_ev if isinstance(e, Fault)]
        return {"answer": write[0], "read": read[0],
                "pfn_after": pte_pfn(p.mm.pagetables.get_pte(s.addr("p")))}

    def explain(self, f):
        return (f"The read fault was handled by {f['read']}; the write fault reached do_wp_page(), "
                f"which cannot reuse the zero page and calls {f['answer']}() to allocate a zeroed "
                f"frame (pfn {f['pfn_after']:#x}) and map it writable.")

    def why_not(self, answer, f):
        if answer == "do_anonymous_page":
            return ("do_anonymous_page() handles faults on a PTE that is empty; after the read "
                    "the PTE is present (it maps the zero page), read-only.")
        if answer == "do_wp_page":
            return "Close: do_wp_page() decides; name the function it calls to copy."
        return ""


tables_for_one_page = TablesForOnePage()
tables_for_far_pages = TablesForFarPages()
read_then_write = ReadThenWrite()
EXERCISES = (tables_for_one_page, tables_for_far_pages, read_then_write)
