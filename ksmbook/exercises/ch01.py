"""Chapter 01 exercises: page tables and faults (4 KiB pages, as on x86-64)."""
from __future__ import annotations

from .. import viz
from ..kernel.events import Fault
from ..kernel.memory import PG_table
from ..kernel.pagetable import pte_pfn
from ..labs.scenes import Scene
from ..viz.events import fault_handler_text
from .base import Exercise, FigureExercise, as_int, as_name, eras
from .design import ScenarioDesign, as_scenario

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
PAGE = 4096
LEVELS = ("PGD", "PUD", "PMD", "PTE")
#: page tables and faults work alike in every era the book models
ALL_ERAS = eras()


def _size(n: int) -> str:
    """'2 GiB', '1 TiB + 4 MiB'."""
    parts = []
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB"), (1, "bytes")):
        if n >= unit:
            parts.append(f"{n // unit} {name}")
            n %= unit
    return " + ".join(parts) or "0 bytes"


def _data_frames(machine) -> int:
    """Frames that hold data (mapped, not page tables; the zero page is not counted)."""
    return sum(1 for p in machine.memory.pages.values()
               if p.mapcount > 0 and not p.flags & PG_table)


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
    parse = staticmethod(as_int)
    template = ("Linux {kernel}, 4 KiB pages. A process{first} maps {span} (nothing is allocated yet) and writes one byte at the "
                "start of that mapping and one byte {where}. How many page-table frames does "
                "it hold now?")
    params = {"kernel": "6.18", "spacer": 0, "offsets": (GiB,), "span": "2 GiB",
              "where": "1 GiB further", "first": ""}
    hints = ("1 GiB is exactly the span of one PUD entry with 4 KiB pages: 512 × 512 × 4 KiB; "
             "2 MiB is the span of one PMD entry, 512 GiB of one PGD entry.",
             "Two addresses share the tables down to the first level where their indices "
             "differ; below it each needs its own tables.")
    CHOICES = (2 * MiB, 6 * MiB, 1 * GiB, GiB + 2 * MiB, 3 * GiB, 512 * GiB, 513 * GiB,
               TiB + 4 * MiB, 2 * TiB)

    def vary(self, rng):
        offsets = tuple(sorted(rng.sample(self.CHOICES, rng.randint(1, 4))))
        words = [f"{_size(o)} further" for o in offsets]
        where = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        where = where.replace(" further,", ",").replace(" further and", " and")
        spacer = rng.choice((0, 1, 7, 300, 513))
        return {"kernel": rng.choice(ALL_ERAS), "spacer": spacer,
                "first": f" first maps {spacer} pages it never touches, then" if spacer else "",
                "offsets": offsets, "span": _size(2 * offsets[-1]),
                "where": "at each of " + where if len(offsets) > 1 else where}

    def simulate(self):
        s = Scene(kernel=self.p["kernel"], page_size=PAGE)
        p = s.spawn("p")
        if self.p["spacer"]:
            s.mmap("p", "spacer", self.p["spacer"])
        a = s.mmap("p", "big", (2 * self.p["offsets"][-1]) // PAGE)
        p.write(a, b"x")
        pt = p.mm.pagetables
        differ = []
        for off in self.p["offsets"]:
            p.write(a + off, b"y")
            differ.append(next(lv for lv, level in zip(LEVELS, (4, 3, 2, 1))
                               if pt.index(a, level) != pt.index(a + off, level)))
        return {"answer": _table_frames(s.machine), "differ": differ, "start": a}

    def explain(self, f):
        firsts = ", ".join(f"+{_size(o)}: {lv}" for o, lv in zip(self.p["offsets"], f["differ"]))
        return (f"The mapping starts at {f['start']:#x}. The first level where each far address's "
                f"index differs from the start's: {firsts}. Below that level each needs its own "
                f"tables: {f['answer']} frames (PGD included) for "
                f"{1 + len(self.p['offsets'])} written 4 KiB pages, while the mapping itself "
                f"cost nothing.")

    def why_not(self, answer, f):
        if answer == 4:
            return "Four tables map addresses within one 2 MiB PTE-table span; these are further apart."
        if answer == 4 * (1 + len(self.p["offsets"])):
            return "The PGD (and maybe more) is shared by all the addresses."
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


class WalkFigure(FigureExercise):
    """Read the page-walk figure (viz.pagewalk_figure): where the x86-64 walk of
    ``pt.walk()`` (the hardware walk, arch/x86/mm) stops at the first empty entry."""
    name = "walk_stops"
    parse = None
    template = ("Linux {kernel}, 4 KiB pages. The process maps {pages} pages and writes to "
                "{written} of them. Draw the walk of page {target} of the mapping with "
                "`ch01.walk_stops.figure()` and read it: at which level does the walk stop, "
                "and which index did it use there? Answer (level, index), e.g. ('PUD', 3).")
    params = {"kernel": "6.18", "pages": 1024, "written": "page 0", "written_pages": (0,),
              "target": 700}
    answer_format = "a pair (level, index), e.g. ('PMD', 12)"
    hints = ("The walk goes PGD → PUD → PMD → PTE and stops at the first entry that is 0.",
             "A table exists only where a written page needed it: pages 512 apart use "
             "different PTE tables.")

    def vary(self, rng):
        pages = rng.choice((600, 1500, 4096, 300_000, 600_000))
        written = sorted(rng.sample(range(pages), rng.randint(1, 3)))
        kind = rng.choice(("pte", "pmd", "far"))
        base = rng.choice(written)
        if kind == "pte":
            lo = base - base % 512
            choices = [i for i in range(lo, min(lo + 512, pages)) if i not in written]
        elif kind == "pmd":
            choices = [i for i in range(pages) if all(i // 512 != w // 512 for w in written)]
        else:
            choices = []
        if not choices:
            choices = [i for i in range(pages) if i not in written]
        target = rng.choice(choices)
        return {"kernel": rng.choice(ALL_ERAS), "pages": pages, "written_pages": tuple(written),
                "written": ", ".join(f"page {w}" for w in written), "target": target}

    def scene(self):
        s = Scene(kernel=self.p["kernel"], page_size=PAGE)
        s.spawn("p")
        s.mmap("p", "buf", self.p["pages"])
        for w in self.p["written_pages"]:
            s.write("p", w, b"x")
        return s

    def simulate(self):
        s = self.scene()
        addr = s.addr("p", self.p["target"])
        w = viz.walk(s, "p", addr)
        last = w.steps[-1]
        assert not w.complete, "the target page must be one that was never written"
        return {"answer": (last.level, last.index), "walk": w, "table_pfn": last.table_pfn,
                "levels": [st.level for st in w.steps]}

    def draw(self, f):
        return viz.pagewalk_figure(f["walk"], title=f"The walk of page {self.p['target']} "
                                                    f"(Linux {self.p['kernel']})")

    def normalise(self, answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
            raise TypeError("a pair such as ('PMD', 12)")
        answer = tuple(answer)
        if len(answer) != 2:
            raise ValueError("two items: a level name and an index")
        level = str(answer[0]).strip().upper()
        if level not in LEVELS:
            raise ValueError(f"the level is one of {', '.join(LEVELS)}")
        return (level, as_int(answer[1]))

    def explain(self, f):
        level, index = f["answer"]
        return (f"The walk read {' → '.join(f['levels'])} and found entry {index} of the {level} "
                f"table (pfn {f['table_pfn']:#x}) empty: no write ever needed a table below it, "
                f"so the next access to this page faults and __handle_mm_fault() fills it in.")

    def why_not(self, answer, f):
        if answer[0] != f["answer"][0]:
            return "Look at which level's box is the last one drawn, with an empty entry."
        return "Right level; read that level's index again."


class TablesDesign(ScenarioDesign):
    """Design a mapping whose page tables (__pte_alloc(), __pmd_alloc(), __pud_alloc() in
    mm/memory.c) add up to a target."""
    name = "tables_design"
    unit = "written pages"
    shown = ("page_tables", "processes")
    template = ("Linux {kernel}, 4 KiB pages. With one process, make the machine hold exactly "
                "{tables} page-table frames while writing at most {budget} pages. Write "
                "`def scenario(s):` with calls on the Scene `s` (s.spawn, s.mmap(name, region, "
                "pages), s.write(name, page, b'x')).")
    params = {"kernel": "6.18", "tables": 7, "budget": 2}
    hints = ("A fresh process has one table, its PGD. The first write adds a PUD, a PMD and a "
             "PTE table.",
             "Another write adds 1 table if it lands in a new 2 MiB span, 2 in a new 1 GiB span, "
             "3 in a new 512 GiB span.",
             "s.mmap() of a huge region costs nothing: 512 GiB is 134217728 pages.")

    def vary(self, rng):
        tables = rng.randint(5, 16)
        fewest = 1 + -(-(tables - 4) // 3)
        return {"kernel": rng.choice(ALL_ERAS), "tables": tables,
                "budget": fewest + rng.randint(0, 1)}

    def scene(self):
        return Scene(kernel=self.p["kernel"], page_size=PAGE)

    def settle(self, s):
        pass

    def measure(self, s):
        return {"page_tables": _table_frames(s.machine), "processes": len(s.procs)}

    def used(self, s):
        return _data_frames(s.machine)

    def setting(self):
        return f"Linux {self.p['kernel']}, 4 KiB pages"

    def ran(self, s, used, c):
        return (f"The simulator ran it on {self.setting()}: {used} {self.unit} in "
                f"{c['processes']} process(es), {c['page_tables']} page-table frames.")

    def targets(self):
        return {"page_tables": self.p["tables"], "processes": 1}

    def diagnose(self, c, off):
        if c["processes"] != 1:
            return "Use exactly one process: every process has its own PGD."
        return f"page_tables is {c['page_tables']}, you need {self.p['tables']}."

    def sample_code(self):
        # the simulator, not a formula, picks the writes: the largest step that still fits
        steps = (512 * GiB, GiB, 2 * MiB)
        span = 6 * 512 * GiB
        offsets = [0]
        for _ in range(self.p["budget"] - 1):
            have = self._tables(offsets, span)
            if have == self.p["tables"]:
                break
            for step in steps:
                trial = offsets + [offsets[-1] + step]
                if self._tables(trial, span) <= self.p["tables"]:
                    offsets = trial
                    break
        lines = ["def scenario(s):", "    s.spawn('p')", f"    s.mmap('p', 'big', {span // PAGE})"]
        lines += [f"    s.write('p', {o // PAGE}, b'x')" for o in offsets]
        return "\n".join(lines)

    def _tables(self, offsets, span):
        code = "\n".join(["def scenario(s):", "    s.spawn('p')",
                          f"    s.mmap('p', 'big', {span // PAGE})"]
                         + [f"    s.write('p', {o // PAGE}, b'x')" for o in offsets])
        return self.measure(self.run(as_scenario(code)))["page_tables"]


tables_for_one_page = TablesForOnePage()
tables_for_far_pages = TablesForFarPages()
read_then_write = ReadThenWrite()
walk_stops = WalkFigure()
tables_design = TablesDesign()
EXERCISES = (tables_for_one_page, tables_for_far_pages, read_then_write, walk_stops,
             tables_design)
