"""Chapter 04 exercises: the stable tree, chains and max_page_sharing."""
from __future__ import annotations

import errno

from .. import viz
from ..labs.scenes import identical_pages
from .base import Exercise, FigureExercise, as_ints, as_name, eras
from .design import ScenarioDesign, as_scenario, layout_code
from .layouts import describe_layout, layout_scene, random_layout

COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared")
#: max_page_sharing and stable node chains exist from 4.13 (2c653d0ee2ae)
CHAIN_ERAS = eras("ksm_stable_node_chains")


def _copies_scene(p: dict):
    """``p['pages']`` identical pages with max_page_sharing=``p['max_sharing']``: in one
    process (the book), or in the seed's layout ``p['sizes']``/``p['where']``."""
    knobs = {"max_page_sharing": p["max_sharing"]}
    if p["sizes"]:
        return layout_scene(p["sizes"], p["where"], p["kernel"], knobs)
    return identical_pages(p["pages"], knobs=knobs, kernel=p["kernel"])


class PredictCounters(Exercise):
    name = "predict_counters"
    template = ("Linux {kernel}. {layout}, max_page_sharing={max_sharing}, two full scans. Give "
                "(pages_shared, pages_sharing, pages_unshared).")
    params = {"pages": 9, "max_sharing": 4, "kernel": "6.18", "layout": "9 identical pages",
              "sizes": None, "where": None}
    answer_format = "a tuple of three numbers"
    hints = ("Each KSM page takes at most max_page_sharing mappings: one 'shared' and the "
             "rest 'sharing'.",
             "When every copy is full, stable_tree_search() gives up and the page goes to the "
             "unstable tree to find a partner for a new copy. A last page with no partner stays "
             "there.")

    def __init__(self, pages: int = 9, max_sharing: int = 4):
        super().__init__(pages=pages, max_sharing=max_sharing,
                         layout=f"{pages} identical pages in one process")

    def vary(self, rng):
        pages = rng.randint(5, 24)
        sizes, where = random_layout(rng, [(pages, 0x2A)], extra=0)
        layout = (f"{pages} identical pages spread over " + ", ".join(
            f"{p} ({sum(1 for (q, _i) in where if q == p)})" for p in sizes)
            if len(sizes) > 1 else f"{pages} identical pages in one process")
        return {"pages": pages, "max_sharing": rng.randint(2, 6), "sizes": sizes,
                "where": where, "layout": layout, "kernel": rng.choice(CHAIN_ERAS)}

    def simulate(self):
        s = _copies_scene(self.p)
        s.machine.ksmd.run_full_scans(2)
        return {"answer": tuple(s.stat(c) for c in COUNTERS),
                "chains": s.stat("stable_node_chains"), "dups": s.stat("stable_node_dups")}

    def normalise(self, answer):
        return as_ints(answer, 3)

    def explain(self, f):
        shared, sharing, unshared = f["answer"]
        return (f"{shared} KSM copies of the same content, in one chain of {f['dups']} dups "
                f"(stable_node_chains={f['chains']}); each copy counts once in pages_shared and "
                f"its other mappers in pages_sharing ({sharing}); {unshared} page found no "
                f"partner and waits in the unstable tree.")

    def why_not(self, answer, f):
        if answer[0] == 1:
            return "One KSM page can take only max_page_sharing mappings; the rest need more copies."
        return ""


class CowLag(Exercise):
    name = "cow_lag"
    template = ("Linux {kernel}. {pages} identical pages merged (pages_shared 1, pages_sharing "
                "{sharing}). Then {written} written. Give (pages_sharing right after the "
                "writes, pages_sharing after one more full scan).")
    params = {"kernel": "6.18", "pages": 4, "sharing": 3, "targets": (2,), "written": "vm1[2] is"}
    answer_format = "a tuple of two numbers"
    hints = ("The write fault (do_wp_page -> wp_page_copy) does not touch KSM's counters.",
             "ksmd fixes the counters when it next visits each written page's rmap_item. "
             "How many mappers does the KSM page keep?")

    def vary(self, rng):
        pages = rng.randint(3, 14)
        targets = tuple(sorted(rng.sample(range(pages), rng.randint(1, pages))))
        names = [f"vm1[{t}]" for t in targets]
        written = (names[0] + " is" if len(names) == 1
                   else ", ".join(names[:-1]) + " and " + names[-1] + " are")
        return {"kernel": rng.choice(eras()), "pages": pages, "sharing": pages - 1,
                "targets": targets, "written": written}

    def simulate(self):
        s = identical_pages(self.p["pages"], kernel=self.p["kernel"])
        s.machine.ksmd.run_full_scans(2)
        assert s.stat("pages_sharing") == self.p["pages"] - 1
        for t in self.p["targets"]:
            s.write("vm1", t, b"!")
        right_after = s.stat("pages_sharing")
        s.machine.ksmd.run_full_scans(1)
        return {"answer": (right_after, s.stat("pages_sharing")),
                "shared": s.stat("pages_shared"), "volatile": s.stat("pages_volatile")}

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        now, later = f["answer"]
        return (f"Right after the writes pages_sharing still reads {now}: counters lag after "
                f"COW. The next scan finds the written pages no longer mapping the KSM page, "
                f"remove_rmap_item_from_tree() drops them, and pages_sharing reads {later} "
                f"(pages_shared {f['shared']}: a KSM page left with no mapper is freed, and "
                f"one left with a single mapper still counts as shared); their new checksums "
                f"make them volatile (pages_volatile={f['volatile']}).")


class WhichErrno(Exercise):
    name = "which_errno"
    fixed_because = "max_page_sharing_store() has one error for this case"
    question = ("While pages are merged, what error does writing 4 to max_page_sharing give? "
                "(the errno name)")
    answer_format = "an errno name in quotes, e.g. 'EINVAL'"
    hints = ("Changing the limit would break the accounting of the existing chains.",)

    def simulate(self):
        s = identical_pages(4)
        s.machine.ksmd.run_full_scans(2)
        try:
            s.knob("max_page_sharing", 4)
            code, text = "no error", ""
        except OSError as exc:
            code = errno.errorcode[exc.errno]
            text = exc.strerror
        s.knob("run", 2)
        s.knob("max_page_sharing", 4)
        return {"answer": code, "text": text, "after": s.stat("max_page_sharing")}

    def normalise(self, answer):
        return as_name(answer).upper()

    def explain(self, f):
        return (f"The kernel refuses while pages_shared > 0: {f['answer']} "
                f"({f['text']}). After `run=2` (unmerge everything) the same write succeeds: "
                f"max_page_sharing={f['after']}.")


class RefusingStore(Exercise):
    """Name the kernel function: the sysfs store handler (mm/ksm.c, Linux 4.13+)."""
    name = "refusing_store"
    kind = "function"
    parse = staticmethod(as_name)
    question = ("Writing to /sys/kernel/mm/ksm/max_page_sharing while pages are merged fails. "
                "Which function of mm/ksm.c refuses the write?")
    answer_format = "a function name in quotes, e.g. 'run_store'"
    hints = ("Every KSM knob has a <knob>_show() and a <knob>_store() in mm/ksm.c.",)
    fixed_because = "one function in mm/ksm.c does this"

    def simulate(self):
        s = identical_pages(4)
        s.machine.ksmd.run_full_scans(2)
        try:
            s.knob("max_page_sharing", 8)
            refused = False
        except OSError:
            refused = True
        return {"answer": "max_page_sharing_store", "refused": refused,
                "shared": s.stat("pages_shared")}

    def explain(self, f):
        return (f"max_page_sharing_store() returns -EBUSY while ksm_pages_shared is non-zero "
                f"(here pages_shared={f['shared']}, refused={f['refused']}): existing chains were "
                f"built for the old limit.")

    def why_not(self, answer, f):
        return {
            "stable_tree_search": "stable_tree_search() reads the limit while merging; it never "
                                  "sees a sysfs write.",
            "run_store": "run_store() handles the run knob (and run=2 is how you empty KSM so the "
                         "write succeeds), not max_page_sharing.",
            "stable_node_dup": "stable_node_dup() picks a dup in a chain during a search; the "
                               "refusal happens in the sysfs handler.",
            "kstrtouint": "kstrtouint() only parses the number; something else decides to refuse.",
        }.get(answer, "")


class ChainFigure(FigureExercise):
    """Read the trees figure (viz.trees_figure) of a stable node chain:
    stable_node_dup() and stable_tree_insert() with max_page_sharing (mm/ksm.c, 4.13+)."""
    name = "chain_dups"
    template = ("Linux {kernel}. {layout}, max_page_sharing={max_sharing}, three full scans. "
                "Draw `ch04.chain_dups.figure()` and read the stable tree: how many dups hang on "
                "the chain, and how many mappers has the fullest dup? Answer (dups, mappers).")
    params = {"kernel": "6.18", "pages": 10, "max_sharing": 4,
              "layout": "10 identical pages in one process", "sizes": None, "where": None}
    answer_format = "a tuple of two numbers"
    hints = ("A chain (a square) carries one dup (a KSM page) per max_page_sharing mappers.",
             "The dups are filled one after the other; hover over a dup to see its mappers.")

    def vary(self, rng):
        pages = rng.randint(5, 26)
        sizes, where = random_layout(rng, [(pages, 0x2A)], extra=0)
        return {"kernel": rng.choice(CHAIN_ERAS), "pages": pages,
                "max_sharing": rng.randint(2, 7), "sizes": sizes, "where": where,
                "layout": f"{pages} identical pages in " + (
                    "one process" if len(sizes) == 1 else f"{len(sizes)} processes")}

    def simulate(self):
        s = _copies_scene(self.p)
        s.machine.ksmd.run_full_scans(3)
        snap = viz.snapshot(s)
        dups = [n for n in snap.stable_tree if n.kind == "dup"]
        return {"answer": (len(dups), max((n.sharers for n in dups), default=0)),
                "snap": snap, "shared": s.stat("pages_shared"),
                "sharing": s.stat("pages_sharing"), "chains": s.stat("stable_node_chains")}

    def draw(self, f):
        # no counts in the captions: the number of dups is the answer
        return viz.trees_figure(f["snap"], title=f"The stable tree, max_page_sharing="
                                                 f"{self.p['max_sharing']} (Linux {self.p['kernel']})",
                                counts=False)

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        dups, most = f["answer"]
        return (f"{dups} dup(s) on {f['chains']} chain(s), the fullest with {most} mappers "
                f"(at most max_page_sharing={self.p['max_sharing']}): pages_shared={f['shared']} "
                f"counts the dups, pages_sharing={f['sharing']} their other mappers. A page "
                f"that finds every dup full starts a new dup.")


class ChainDesign(ScenarioDesign):
    """Design a scenario against stable_tree_search()/stable_tree_insert() with chains
    (mm/ksm.c, 4.13+): a full KSM copy starts a new dup."""
    name = "chain_design"
    template = ("Linux {kernel}. With max_page_sharing={max_sharing}, make pages_sharing reach exactly {target} "
                "using at most {budget} pages. Write `def scenario(s):` with calls on the Scene "
                "`s` (s.spawn, s.mmap, s.fill, s.write, s.madvise, s.fork); the checker sets "
                "max_page_sharing, runs your function and {scans} full scans.")
    params = {"max_sharing": 4, "target": 7, "budget": 12, "scans": 3, "kernel": "6.18"}
    hints = ("One KSM page takes at most max_page_sharing mappers: 1 in pages_shared, the rest "
             "in pages_sharing.",
             "n identical pages with limit k make ceil(n/k) KSM copies; pages_sharing = n - copies "
             "(a single leftover page stays unshared).",
             "Remember s.madvise(name): only MADV_MERGEABLE pages are scanned.")

    def vary(self, rng):
        k = rng.randint(2, 6)
        target = rng.randint(3, 16)
        kernel = rng.choice(CHAIN_ERAS)
        return {"max_sharing": k, "target": target, "kernel": kernel,
                "budget": self._fewest_pages(k, target, kernel) + rng.randint(0, 2)}

    def knobs(self):
        return {"max_page_sharing": self.p["max_sharing"]}

    def targets(self):
        return {"pages_sharing": self.p["target"]}

    def _fewest_pages(self, k, target, kernel=None):
        """The simulator, not a formula, finds the fewest identical pages that reach target."""
        probe = ChainDesign(max_sharing=k, target=target, budget=0, scans=self.p["scans"],
                            kernel=kernel or self.p["kernel"])
        for n in range(1, 4 * target + 4):
            if probe.run(as_scenario(layout_code([(n, 0x2A)]))).stat("pages_sharing") >= target:
                return n
        raise ValueError("unreachable target")

    def sample_code(self):
        return layout_code([(self._fewest_pages(self.p["max_sharing"], self.p["target"]), 0x2A)])

    def comment(self, c):
        return (" Each KSM copy holds at most max_page_sharing mappers, so a full copy starts a "
                "new dup in the chain." if c["stable_node_dups"] else "")


predict_counters = PredictCounters()
cow_lag = CowLag()
which_errno = WhichErrno()
refusing_store = RefusingStore()
chain_dups = ChainFigure()
chain_design = ChainDesign()
EXERCISES = (predict_counters, cow_lag, which_errno, refusing_store, chain_dups, chain_design)
