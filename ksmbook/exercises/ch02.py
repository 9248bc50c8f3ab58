"""Chapter 02 exercises: copy-on-write after fork().

The seed varies the kernel era (fork and COW work alike in every era the book models),
how many children fork, the pages and the order of the writes."""
from __future__ import annotations

from .. import viz
from ..kernel.events import Fault, PageAlloc
from ..kernel.memory import PG_table
from ..kernel.pagetable import pte_pfn
from ..labs.scenes import Scene
from .base import Exercise, FigureExercise, as_int, as_ints, as_name, as_names, eras
from .design import ScenarioDesign

ALL_ERAS = eras()


def _pfn(scene, proc, page):
    return pte_pfn(scene.procs[proc].mm.pagetables.get_pte(scene.addr(proc, page)))


def forked(kernel: str, pages: int, children: int) -> Scene:
    """A parent with ``pages`` written pages (bytes 'A', 'B', ...) that forked
    ``children`` times (child1, child2 ...; 'child' when there is one)."""
    s = Scene(kernel=kernel)
    s.spawn("parent")
    s.mmap("parent", "mem", pages)
    for i in range(pages):
        s.write("parent", i, bytes([ord("A") + i % 26]) * s.page_size)
    for name in _children(children):
        s.fork("parent", name)
    return s


def _children(n: int) -> list[str]:
    return ["child"] if n == 1 else [f"child{i + 1}" for i in range(n)]


def _frames(machine) -> dict:
    """pfn -> mapcount of every data frame (page tables and the zero page left out)."""
    return {p.pfn: p.mapcount for p in machine.memory.pages.values()
            if p.mapcount > 0 and not p.flags & PG_table}


def _writes(seq) -> str:
    return ", then ".join(f"{proc} writes page {page}" for proc, page in seq)


def _random_writes(rng, procs, pages, n):
    return tuple((rng.choice(procs), rng.randrange(pages)) for _ in range(n))


def _fork_variant(rng, *, children, pages, writes) -> dict:
    """A seed's fork scene: era, pages, children and a sequence of writes, each count
    drawn from its (low, high) range."""
    n = rng.randint(*children)
    npages = rng.randint(*pages)
    seq = _random_writes(rng, ["parent"] + _children(n), npages, rng.randint(*writes))
    return {"kernel": rng.choice(ALL_ERAS), "pages": npages, "children": n,
            "children_text": "once" if n == 1 else f"{n} times", "seq": seq,
            "writes": _writes(seq)}


def replay(kernel, pages, children, seq) -> tuple[list, int]:
    """Run the writes of ``seq`` after the fork; (the fault handler of each write, or 'no
    fault'; how many anonymous frames the writes allocated)."""
    s = forked(kernel, pages, children)
    handlers, allocs = [], 0
    for proc, page in seq:
        with s.machine.events.capture() as ev:
            s.write(proc, page, b"!")
        faults = [e.handler for e in ev if isinstance(e, Fault)]
        handlers.append(faults[0] if faults else "no fault")
        allocs += sum(1 for e in ev if isinstance(e, PageAlloc) and e.purpose == "anon")
    return handlers, allocs


class MapcountAfterFork(Exercise):
    name = "mapcount_after_fork"
    parse = None
    template = ("Linux {kernel}. A parent with {pages} written pages forks {children_text}. "
                "{writers_text}give (the mapcount of the frame behind parent[{page}], the "
                "number of data frames in the machine).")
    params = {"kernel": "6.18", "pages": 4, "children": 1, "children_text": "once",
              "page": 2, "writers": (), "writers_text": "Before anyone writes, "}
    answer_format = "a tuple of two numbers"
    hints = ("fork() copies the page tables (copy_page_range), not the pages: every PTE "
             "of a child maps the parent's frame.",
             "A child that writes the page leaves the shared frame (wp_page_copy) with one "
             "mapping less, and brings a frame of its own.")

    def vary(self, rng):
        children = rng.randint(1, 5)
        names = _children(children)
        writers = tuple(sorted(rng.sample(names, rng.randint(0, children))))
        page = rng.randrange(2, 9)
        pages = rng.randint(page + 1, 12)
        return {"kernel": rng.choice(ALL_ERAS), "pages": pages, "children": children,
                "children_text": "once" if children == 1 else f"{children} times",
                "page": page, "writers": writers,
                "writers_text": (f"Then {', '.join(writers)} write{'s' if len(writers) == 1 else ''}"
                                 f" page {page}; now " if writers else "Before anyone writes, ")}

    def simulate(self):
        s = forked(self.p["kernel"], self.p["pages"], self.p["children"])
        for w in self.p["writers"]:
            s.write(w, self.p["page"], b"!")
        page = s.machine.memory.pfn_to_page(_pfn(s, "parent", self.p["page"]))
        frames = _frames(s.machine)
        return {"answer": (page.mapcount, len(frames)), "pfn": page.pfn,
                "sharers": [n for n in s.procs if _pfn(s, n, self.p["page"]) == page.pfn]}

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        mapcount, frames = f["answer"]
        verb = "maps" if len(f["sharers"]) == 1 else "map"
        return (f"{', '.join(f['sharers'])} {verb} pfn {f['pfn']:#x}: copy_present_pte() took one "
                f"more map and reference per PTE at each fork and write-protected both, and "
                f"each child that wrote the page moved to a copy of its own, so the mapcount "
                f"is {mapcount}. The machine holds {self.p['pages']} frames from the parent plus "
                f"one per child write: {frames}.")

    def why_not(self, answer, f):
        if answer[0] == 1 and f["answer"][0] > 1:
            return "That would be true if fork() copied the page; it copies only the PTE."
        if answer[1] == self.p["pages"] * (1 + self.p["children"]):
            return "fork() does not copy the frames: only writes do."
        return ""


class FramesForWrites(Exercise):
    name = "frames_for_writes"
    parse = staticmethod(as_int)
    template = ("Linux {kernel}. A parent with {pages} written pages forks {children_text}. "
                "Then: {writes}. How many new frames do these writes allocate?")
    params = {"kernel": "6.18", "pages": 4, "children": 1, "children_text": "once",
              "seq": (("child", 0), ("parent", 0), ("child", 1))}
    params["writes"] = _writes(params["seq"])
    hints = ("Every write to a shared page hits a read-only PTE and goes to do_wp_page().",
             "do_wp_page() reuses the frame when the faulting process is its only mapper "
             "(wp_can_reuse_anon_folio()); otherwise wp_page_copy() copies it. A second write "
             "to a page a process already owns does not fault at all.")

    def vary(self, rng):
        return _fork_variant(rng, children=(1, 3), pages=(3, 8), writes=(4, 14))

    def simulate(self):
        hs, allocs = replay(self.p["kernel"], self.p["pages"], self.p["children"], self.p["seq"])
        return {"answer": allocs,
                "handlers": [(proc, page, h) for (proc, page), h in zip(self.p["seq"], hs)]}

    def explain(self, f):
        steps = "; ".join(f"{proc}[{page}]: {h}" for proc, page, h in f["handlers"])
        return (f"{steps}. Only wp_page_copy() allocates: a process that is a frame's last "
                f"mapper keeps it (wp_page_reuse), and a page it already owns is writable, so "
                f"its write does not fault: {f['answer']} new frames.")

    def why_not(self, answer, f):
        if answer == len(self.p["seq"]):
            return ("Not every write copies: look for a process that is the last mapper of a "
                    "frame, and for writes to pages already copied.")
        return ""


class WhoKeepsTheOriginal(Exercise):
    name = "who_keeps_the_original"
    parse = staticmethod(as_names)
    template = ("Linux {kernel}. A parent with 4 written pages forks {children_text}. Then "
                "{writers} write{s} page 0{in_order}. Which processes still map the "
                "original frame of page 0? Answer with their names, e.g. ('parent',).")
    params = {"kernel": "6.18", "children": 1, "children_text": "once", "order": ("child",),
              "writers": "the child", "s": "s"}

    def _set_question(self):
        self.p["in_order"] = ", in that order" if len(self.p["order"]) > 1 else ""
        super()._set_question()
    answer_format = "a tuple of process names, e.g. ('parent', 'child2')"
    hints = ("wp_page_copy() gives the *faulting* process a new frame; the others keep the "
             "original.",
             "When only one mapper of the original is left, its write reuses the frame "
             "(wp_can_reuse_anon_folio()).")

    def vary(self, rng):
        children = rng.randint(1, 3)
        procs = ["parent"] + _children(children)
        order = tuple(rng.sample(procs, rng.randint(1, len(procs))))
        return {"kernel": rng.choice(ALL_ERAS), "children": children,
                "children_text": "once" if children == 1 else f"{children} times",
                "order": order, "writers": ", ".join(order), "s": "s" if len(order) == 1 else ""}

    def simulate(self):
        s = forked(self.p["kernel"], 4, self.p["children"])
        before = _pfn(s, "parent", 0)
        for proc in self.p["order"]:
            s.write(proc, 0, b"!")
        keepers = tuple(sorted(n for n in s.procs if _pfn(s, n, 0) == before))
        return {"answer": keepers, "pfn": before,
                "copies": {n: _pfn(s, n, 0) for n in s.procs if n not in keepers}}

    def explain(self, f):
        copies = ", ".join(f"{n} pfn {p:#x}" for n, p in f["copies"].items()) or "nobody"
        return (f"Each writer that was not the last mapper got a copy ({copies}); "
                f"{', '.join(f['answer']) or 'nobody'} still map{'s' if len(f['answer']) == 1 else ''} "
                f"pfn {f['pfn']:#x}. A process that found itself the frame's only mapper "
                f"reused it instead of copying.")

    def why_not(self, answer, f):
        if self.p["order"][-1] in f["answer"] and self.p["order"][-1] not in answer:
            return ("The last writer may have been the original frame's only mapper: then it "
                    "keeps it.")
        return ""


class WhichHandler(Exercise):
    """Name the kernel function: which of do_wp_page()'s two outcomes (mm/memory.c)."""
    name = "which_handler"
    kind = "function"
    parse = staticmethod(as_name)
    few_answers_because = ("do_wp_page() either copies or reuses: the seed varies the writes, "
                           "the answer is one of two functions")
    template = ("Linux {kernel}. A parent with {pages} written pages forks {children_text}. "
                "Then: {writes}. The last write faults: which function of mm/memory.c does "
                "do_wp_page() call for it?")
    params = {"kernel": "6.18", "pages": 4, "children": 1, "children_text": "once",
              "seq": (("child", 0), ("parent", 0))}
    params["writes"] = _writes(params["seq"])
    answer_format = "a function name in quotes, e.g. 'do_anonymous_page'"
    hints = ("do_wp_page() asks wp_can_reuse_anon_folio() whether the faulting process is "
             "the frame's only mapper.",
             "Only mapper: the PTE is made writable in place. Otherwise: the page is copied.")
    WHY_NOT = {
        "do_wp_page": "Close: do_wp_page() handles the fault; name the function it calls.",
        "do_anonymous_page": "do_anonymous_page() fills an empty PTE; this PTE is present, "
                             "read-only.",
        "copy_present_pte": "copy_present_pte() ran at fork(), not at the write.",
        "wp_can_reuse_anon_folio": "That one only answers the question; name the function "
                                   "that acts on the answer.",
    }

    def vary(self, rng):
        children = rng.randint(1, 3)
        pages = rng.randint(2, 6)
        procs = ["parent"] + _children(children)
        for _ in range(100):
            seq = _random_writes(rng, procs, pages, rng.randint(1, 6))
            if self._handlers(rng_kernel := rng.choice(ALL_ERAS), pages, children, seq)[-1] \
                    != "no fault":
                break
        return {"kernel": rng_kernel, "pages": pages, "children": children,
                "children_text": "once" if children == 1 else f"{children} times",
                "seq": seq, "writes": _writes(seq)}

    @staticmethod
    def _handlers(kernel, pages, children, seq):
        return replay(kernel, pages, children, seq)[0]

    def simulate(self):
        hs = self._handlers(self.p["kernel"], self.p["pages"], self.p["children"], self.p["seq"])
        proc, page = self.p["seq"][-1]
        return {"answer": hs[-1], "handlers": hs, "proc": proc, "page": page}

    def explain(self, f):
        why = ("it was the frame's only mapper left, so wp_can_reuse_anon_folio() let it keep "
               "the frame" if f["answer"] == "wp_page_reuse" else
               "other processes still map the frame, so it gets a copy")
        return (f"{f['proc']}[{f['page']}]: {f['answer']}(): {why}. The handlers, write by "
                f"write: {', '.join(f['handlers'])}.")

    def why_not(self, answer, f):
        if answer in ("wp_page_copy", "wp_page_reuse") and answer != f["answer"]:
            return ("Count the mappers of the frame at the moment of the last write: who has "
                    "already written that page?")
        return self.WHY_NOT.get(answer, "")


class SharedFigure(FigureExercise):
    """Read the mappings figure (viz.mappings_figure) after fork() and some writes."""
    name = "shared_lines"
    template = ("Linux {kernel}. A parent with {pages} written pages forks {children_text}, "
                "then: {writes}. Draw `ch02.shared_lines.figure()` and read it: how many "
                "frames have more than one line, and how many lines are solid (writable "
                "PTEs)? Answer (frames, solid lines).")
    params = {"kernel": "6.18", "pages": 4, "children": 1, "children_text": "once",
              "seq": (("child", 0), ("parent", 0), ("child", 1))}
    params["writes"] = _writes(params["seq"])
    answer_format = "a tuple of two numbers"
    hints = ("After fork() every PTE of both processes is read-only (dashed) and every frame "
             "has one line per process.",
             "A copy gives the writer a writable PTE to a new frame; a reuse makes the last "
             "mapper's PTE writable.")

    def vary(self, rng):
        return _fork_variant(rng, children=(1, 2), pages=(3, 6), writes=(1, 6))

    def simulate(self):
        s = forked(self.p["kernel"], self.p["pages"], self.p["children"])
        for proc, page in self.p["seq"]:
            s.write(proc, page, b"!")
        snap = viz.snapshot(s)
        lines = {}
        for m in snap.mappings:
            lines[m.pfn] = lines.get(m.pfn, 0) + 1
        shared = sum(1 for n in lines.values() if n > 1)
        solid = sum(1 for m in snap.mappings if m.writable)
        return {"answer": (shared, solid), "snap": snap, "lines": len(snap.mappings)}

    def draw(self, f):
        return viz.mappings_figure(f["snap"], title=f"Who maps what after the writes "
                                                    f"(Linux {self.p['kernel']})")

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        shared, solid = f["answer"]
        return (f"{f['lines']} PTEs in all: {shared} frames are still mapped by more than one "
                f"process (their lines dashed: read-only, the next write faults), and {solid} "
                f"PTEs are writable: the copies made by wp_page_copy() and the frames reused "
                f"by their last mapper.")


class ForkDesign(ScenarioDesign):
    """Design a fork() scenario: copy_page_range() shares, wp_page_copy() splits."""
    name = "fork_design"
    unit = "pages in the largest address space"
    shown = ("shared_frames", "private_frames")
    template = ("Linux {kernel}. Make exactly {shared} data frames mapped by more than one "
                "process and {private} frames mapped by exactly one, with no process mapping "
                "more than {budget} pages. Write `def scenario(s):` with calls on the Scene `s` "
                "(s.spawn, s.mmap, s.write(name, page, data), s.fork(parent, child)).")
    params = {"kernel": "6.18", "shared": 3, "private": 4, "budget": 5}
    hints = ("Write pages before s.fork(): the child's PTEs then map the parent's frames.",
             "After the fork a write by one process to a shared page makes 2 private frames "
             "out of 1 shared one (its copy, and the original, now mapped once).",
             "A page written for the first time after the fork is private to its writer.")

    def vary(self, rng):
        shared, private = rng.randint(1, 8), rng.randint(0, 8)
        return {"kernel": rng.choice(ALL_ERAS), "shared": shared, "private": private,
                "budget": shared + private // 2 + private % 2 + rng.randint(0, 2)}

    def scene(self):
        return Scene(kernel=self.p["kernel"])

    def settle(self, s):
        pass

    def measure(self, s):
        counts = list(_frames(s.machine).values())
        return {"shared_frames": sum(1 for c in counts if c > 1),
                "private_frames": sum(1 for c in counts if c == 1)}

    def used(self, s):
        per = {}
        for r in s.regions.values():
            per[r.proc] = per.get(r.proc, 0) + r.pages
        return max(per.values(), default=0)

    def setting(self):
        return f"Linux {self.p['kernel']}"

    def ran(self, s, used, c):
        return (f"The simulator ran it on {self.setting()}: {len(s.procs)} process(es), at most "
                f"{used} pages each; shared_frames={c['shared_frames']}, "
                f"private_frames={c['private_frames']}.")

    def targets(self):
        return {"shared_frames": self.p["shared"], "private_frames": self.p["private"]}

    def diagnose(self, c, off):
        if c["shared_frames"] == 0 and self.p["shared"]:
            return "Nothing is shared: write the pages before s.fork()."
        return "; ".join(f"{k} is {c[k]}, you need {v}" for k, v in off.items()) + "."

    def sample_code(self):
        a, b = self.p["shared"], self.p["private"]
        k, r = b // 2, b % 2
        lines = ["def scenario(s):", "    s.spawn('parent')", f"    s.mmap('parent', 'mem', {a + k + r})",
                 f"    for i in range({a + k}):", "        s.write('parent', i, bytes([65 + i]))",
                 "    s.fork('parent', 'child')"]
        if k:
            lines += [f"    for i in range({k}):", "        s.write('child', i, b'!')"]
        if r:
            lines.append(f"    s.write('parent', {a + k}, b'new')")
        return "\n".join(lines)


mapcount_after_fork = MapcountAfterFork()
frames_for_writes = FramesForWrites()
who_keeps_the_original = WhoKeepsTheOriginal()
which_handler = WhichHandler()
shared_lines = SharedFigure()
fork_design = ForkDesign()
EXERCISES = (mapcount_after_fork, frames_for_writes, who_keeps_the_original, which_handler,
             shared_lines, fork_design)
