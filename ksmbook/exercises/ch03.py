"""Chapter 03 exercises: ksmd, checksums and the unstable tree."""
from __future__ import annotations

from .. import viz
from ..kernel.pagetable import pte_pfn
from ..labs.scenes import Scene, identical_pages
from .design import ScenarioDesign, layout_code
from .base import Exercise, FigureExercise, as_int, as_ints, as_name, eras
from .layouts import describe_layout, layout_scene, random_layout

#: the scan, the checksum and the unstable tree work alike in every era the book models
ALL_ERAS = eras()
class MergeScan(Exercise):
    name = "merge_scan"
    fixed_because = ("KSM always merges in the second full scan (the checksum must hold for one "
                     "scan); page counts and contents cannot move that")
    parse = staticmethod(as_int)
    question = ("Four identical, freshly written pages are made MADV_MERGEABLE and run=1. "
                "After which full scan (1, 2, 3, ...) is pages_sharing first above 0?")
    hints = ("What does an rmap_item's oldchecksum hold when KSM meets the page the first time?",
             "cmp_and_merge_page() only goes on to the trees when the checksum equals the one "
             "recorded at the previous visit.")

    def simulate(self):
        s = identical_pages(4)
        history = []
        while s.stat("pages_sharing") == 0 and len(history) < 10:
            s.machine.ksmd.run_full_scans(1)
            history.append((s.stat("full_scans"), s.stat("pages_volatile"), s.stat("pages_sharing")))
        return {"answer": history[-1][0], "history": history}

    def explain(self, f):
        per = "; ".join(f"after scan {n}: volatile {v}, sharing {sh}" for n, v, sh in f["history"])
        return (f"{per}. In the first full scan every rmap_item is new (oldchecksum 0), so "
                f"cmp_and_merge_page() records the checksum and stops: the page must hold still "
                f"for a whole scan before KSM trusts it.")

    def why_not(self, answer, f):
        if answer == 1:
            return ("In scan 1 KSM sees each page for the first time: the checksum it computes "
                    "cannot match oldchecksum (0), so nothing reaches the trees.")
        return ""


class SurvivingFrame(Exercise):
    name = "surviving_frame"
    parse = staticmethod(as_name)
    template = ("Linux {kernel}. {layout}; every other page has bytes of its own. All are "
                "made MADV_MERGEABLE{order} and ksmd runs two full scans. When the "
                "two merge, whose original frame becomes the KSM page? Answer with a page "
                "name, e.g. 'vm1[3]'.")
    params = {"kernel": "6.18", "sizes": {"vm1": 2}, "where": {("vm1", 0): 0x2A, ("vm1", 1): 0x2A}}
    answer_format = "a page name in quotes, e.g. 'vm1[3]'"
    hints = ("ksmd visits the mms in the order they were made mergeable, each from its lowest "
             "address up. In the second scan, the first of the two goes into the unstable tree.",
             "try_to_merge_two_pages() first turns the page being scanned into the KSM page, "
             "then points the tree page's PTE at it.")

    def _set_question(self):
        self.p["layout"] = describe_layout(self.p["sizes"], self.p["where"])
        procs = list(self.p["sizes"])
        self.p["order"] = f" in the order {', '.join(procs)}" if len(procs) > 1 else ""
        super()._set_question()

    def vary(self, rng):
        sizes, where = random_layout(rng, [(2, 0x2A)])
        return {"kernel": rng.choice(ALL_ERAS), "sizes": sizes, "where": where}

    def simulate(self):
        s = layout_scene(self.p["sizes"], self.p["where"], self.p["kernel"])
        pair = sorted(self.p["where"])
        before = {f"{p}[{i}]": _pfn(s, p, i) for p, i in pair}
        s.machine.ksmd.run_full_scans(2)
        kpfn = _pfn(s, *pair[0])
        assert kpfn == _pfn(s, *pair[1]), "the two pages must have merged"
        owner = next(k for k, v in before.items() if v == kpfn)
        order = [f"{p}[{i}]" for p in self.p["sizes"] for i in range(self.p["sizes"][p])
                 if (p, i) in self.p["where"]]
        return {"answer": owner.lower(), "before": before, "kpfn": kpfn, "order": order}

    def explain(self, f):
        b = ", ".join(f"{k} had pfn {v:#x}" for k, v in f["before"].items())
        first, second = f["order"]
        return (f"Before: {b}. After the merge both map pfn {f['kpfn']:#x}. In scan order "
                f"{first} comes first and waits in the unstable tree; when ksmd reaches "
                f"{second}, try_to_merge_two_pages() makes the page being scanned "
                f"({f['answer']}) the KSM page and replace_page() points {first}'s PTE at it, "
                f"freeing {first}'s frame.")

    def why_not(self, answer, f):
        if answer == f["order"][0]:
            return ("The first-seen page waits in the unstable tree; it is the one that gets "
                    "replaced by replace_page().")
        return "Name one of the two pages that hold the same bytes."


def _pfn(s, proc, page):
    return pte_pfn(s.procs[proc].mm.pagetables.get_pte(s.addr(proc, page)))


class BatchSize(Exercise):
    name = "batch_size"
    parse = staticmethod(as_int)
    template = ("pages_to_scan is {pages_to_scan} and the only mergeable mm has {pages} pages "
                "({twins} identical, the rest different). How many pages does the first batch, "
                "m.ksmd.scan(), process?")
    params = {"pages_to_scan": 100, "pages": 6, "twins": 3, "kernel": "6.18"}
    template = "Linux {kernel}. " + template

    def vary(self, rng):
        pages = rng.randint(4, 60)
        return {"pages": pages, "twins": rng.randint(2, pages),
                "pages_to_scan": rng.choice((100, 200, 500, 1000)),
                "kernel": rng.choice(eras("ksm_pages_scanned"))}
    hints = ("ksm_do_scan() stops when scan_get_next_rmap_item() returns NULL.",)

    def simulate(self):
        s = identical_pages(self.p["twins"], unique=self.p["pages"] - self.p["twins"],
                            knobs={"pages_to_scan": self.p["pages_to_scan"]},
                            kernel=self.p["kernel"])
        before = s.stat("pages_scanned")
        s.machine.ksmd.scan()
        after = s.stat("pages_scanned")
        s.machine.ksmd.scan()
        return {"answer": after - before, "pages_to_scan": s.stat("pages_to_scan"),
                "full_scans": s.stat("full_scans"), "second": s.stat("pages_scanned") - after}

    def explain(self, f):
        return (f"pages_scanned grew by {f['answer']}, not {f['pages_to_scan']}: the batch ended "
                f"at the end of the full scan (full_scans is now {f['full_scans']}). A batch never "
                f"crosses a full-scan boundary; the next batch starts a new scan "
                f"({f['second']} pages).")

    def why_not(self, answer, f):
        if answer == f["pages_to_scan"]:
            return "There are not that many pages, and the scanner does not wrap around in one batch."
        return ""


class UnstableDesign(ScenarioDesign):
    """Design a scenario for the unstable tree (unstable_tree_search_insert(), mm/ksm.c):
    pages that find no twin stay there and count in pages_unshared."""
    name = "unstable_design"
    template = ("Linux {kernel}. Make the counters read exactly pages_sharing={sharing} and "
                "pages_unshared={unshared} after {scans} full scans, using at most {budget} pages. "
                "Write `def scenario(s):` with calls on the Scene `s` (s.spawn, s.mmap, s.fill, "
                "s.write, s.madvise, s.fork).")
    params = {"sharing": 3, "unshared": 2, "budget": 6, "scans": 3, "kernel": "6.18"}
    hints = ("n identical pages make 1 pages_shared and n-1 pages_sharing.",
             "A page with content of its own waits in the unstable tree: it counts in "
             "pages_unshared.",
             "s.write(name, page, bytes([i])) gives page its own first byte.")

    def vary(self, rng):
        sharing, unshared = rng.randint(1, 12), rng.randint(0, 8)
        return {"sharing": sharing, "unshared": unshared, "kernel": rng.choice(ALL_ERAS),
                "budget": sharing + 1 + unshared + rng.randint(0, 2)}

    def targets(self):
        return {"pages_sharing": self.p["sharing"], "pages_unshared": self.p["unshared"]}

    def sample_code(self):
        return layout_code([(self.p["sharing"] + 1, 0x2A)], unique=self.p["unshared"])


class InsertsUnstable(Exercise):
    """Name the kernel function: unstable_tree_search_insert() (mm/ksm.c, all eras)."""
    name = "inserts_unstable"
    kind = "function"
    parse = staticmethod(as_name)
    fixed_because = "one function of mm/ksm.c does this, in every era the book models"
    question = ("A page's checksum held still for a whole scan, and the stable tree has no page "
                "like it. Which function of mm/ksm.c looks for a twin among the pages seen so "
                "far in this scan and, finding none, inserts the page there?")
    answer_format = "a function name in quotes, e.g. 'stable_tree_search'"
    hints = ("cmp_and_merge_page() tries the stable tree first, then the other tree.",
             "Its name says it does both: search, and insert.")
    WHY_NOT = {
        "cmp_and_merge_page": "Close: cmp_and_merge_page() calls it; name the function that "
                              "walks the tree.",
        "stable_tree_search": "stable_tree_search() looks among KSM pages; a page that found "
                              "nothing there goes on to the other tree.",
        "stable_tree_insert": "stable_tree_insert() adds a new KSM page after a merge, not a "
                              "waiting page.",
        "try_to_merge_two_pages": "That merges a page with the twin it found; here there is no "
                                  "twin yet.",
        "calc_checksum": "calc_checksum() only computes the checksum that had to hold still.",
    }

    def simulate(self):
        s = identical_pages(0, unique=2)
        with s.machine.events.capture() as ev:
            s.machine.ksmd.run_full_scans(2)
        inserts = [e for e in ev if getattr(e, "action", "") == "unstable_insert"]
        return {"answer": "unstable_tree_search_insert", "inserts": len(inserts),
                "unshared": s.stat("pages_unshared")}

    def explain(self, f):
        return (f"unstable_tree_search_insert() walks the unstable tree with memcmp_pages(); "
                f"finding no twin it links the page's rmap_item into the tree. In the "
                f"simulator two lone pages were inserted {f['inserts']} times over two scans "
                f"(the tree is rebuilt every scan) and count in pages_unshared "
                f"({f['unshared']}).")

    def why_not(self, answer, f):
        return self.WHY_NOT.get(answer, "")


class TreesFigure(FigureExercise):
    """Read the trees figure (viz.trees_figure): stable_tree_insert() and
    unstable_tree_search_insert() (mm/ksm.c) after two full scans."""
    name = "tree_nodes"
    template = ("Linux {kernel}. {layout}; every other page has bytes of its own. All are "
                "mergeable and ksmd runs two full scans. Draw `ch03.tree_nodes.figure()` and "
                "read it: how many nodes does the stable tree have, and how many the unstable "
                "tree? Answer (stable, unstable).")
    params = {"kernel": "6.18", "sizes": {"vm1": 6},
              "where": {("vm1", 0): 0x2A, ("vm1", 1): 0x2A, ("vm1", 2): 0x2A,
                        ("vm1", 3): 0x3B, ("vm1", 4): 0x3B}}
    answer_format = "a tuple of two numbers"
    hints = ("Each group of identical pages becomes one KSM page: one stable node.",
             "A page with no twin waits in the unstable tree until the next scan starts over.")

    def _set_question(self):
        self.p["layout"] = describe_layout(self.p["sizes"], self.p["where"])
        super()._set_question()

    def vary(self, rng):
        groups = [(rng.randint(2, 4), 0x20 + 0x11 * g) for g in range(rng.randint(0, 3))]
        sizes, where = random_layout(rng, groups)
        return {"kernel": rng.choice(ALL_ERAS), "sizes": sizes, "where": where}

    def simulate(self):
        s = layout_scene(self.p["sizes"], self.p["where"], self.p["kernel"])
        s.machine.ksmd.run_full_scans(2)
        snap = viz.snapshot(s)
        return {"answer": (len(snap.stable_tree), len(snap.unstable_tree)), "snap": snap,
                "shared": s.stat("pages_shared"), "unshared": s.stat("pages_unshared")}

    def draw(self, f):
        # no counts in the captions: they are the answer
        return viz.trees_figure(f["snap"], title=f"KSM's trees after two full scans "
                                                 f"(Linux {self.p['kernel']})", counts=False)

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        stable, unstable = f["answer"]
        return (f"{stable} stable node(s), one per KSM page (pages_shared={f['shared']}), and "
                f"{unstable} unstable node(s), one per page still waiting for a twin "
                f"(pages_unshared={f['unshared']}). The unstable tree is only emptied when the "
                f"next full scan begins.")


merge_scan = MergeScan()
surviving_frame = SurvivingFrame()
batch_size = BatchSize()
unstable_design = UnstableDesign()
inserts_unstable = InsertsUnstable()
tree_nodes = TreesFigure()
EXERCISES = (merge_scan, surviving_frame, batch_size, inserts_unstable, tree_nodes,
             unstable_design)
