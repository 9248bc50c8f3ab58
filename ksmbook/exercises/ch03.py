"""Chapter 03 exercises: ksmd, checksums and the unstable tree."""
from __future__ import annotations

from ..kernel.pagetable import pte_pfn
from ..labs.scenes import identical_pages
from .design import ScenarioDesign, layout_code
from .base import Exercise, as_int, as_name


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
    fixed_because = "the scanned page always survives; the answer is one of two names"
    parse = staticmethod(as_name)
    question = ("vm1[0] and vm1[1] hold the same bytes. When they merge, whose original frame "
                "becomes the KSM page: 'vm1[0]' or 'vm1[1]'?")
    answer_format = "'vm1[0]' or 'vm1[1]'"
    hints = ("The scanner visits vm1[0] first; it goes into the unstable tree.",
             "try_to_merge_two_pages() first turns the page being scanned into the KSM page, "
             "then points the tree page's PTE at it.")

    def simulate(self):
        s = identical_pages(2)
        mm = s.procs["vm1"].mm
        before = {f"vm1[{i}]": pte_pfn(mm.pagetables.get_pte(s.addr("vm1", i))) for i in (0, 1)}
        s.machine.ksmd.run_full_scans(2)
        kpfn = pte_pfn(mm.pagetables.get_pte(s.addr("vm1", 0)))
        owner = next(k for k, v in before.items() if v == kpfn)
        return {"answer": owner.lower(), "before": before, "kpfn": kpfn}

    def explain(self, f):
        b = f["before"]
        return (f"Before: vm1[0] had pfn {b['vm1[0]']:#x}, vm1[1] pfn {b['vm1[1]']:#x}. After the "
                f"merge both map pfn {f['kpfn']:#x}: the page being scanned (vm1[1]) became the "
                f"KSM page and the older unstable-tree page was freed.")

    def why_not(self, answer, f):
        return ("The first-seen page waits in the unstable tree; it is the one that gets "
                "replaced by replace_page().")


class BatchSize(Exercise):
    name = "batch_size"
    parse = staticmethod(as_int)
    template = ("pages_to_scan is {pages_to_scan} and the only mergeable mm has {pages} pages "
                "({twins} identical, the rest different). How many pages does the first batch, "
                "m.ksmd.scan(), process?")
    params = {"pages_to_scan": 100, "pages": 6, "twins": 3}

    def vary(self, rng):
        pages = rng.randint(4, 60)
        return {"pages": pages, "twins": rng.randint(2, pages),
                "pages_to_scan": rng.choice((100, 200, 500, 1000))}
    hints = ("ksm_do_scan() stops when scan_get_next_rmap_item() returns NULL.",)

    def simulate(self):
        s = identical_pages(self.p["twins"], unique=self.p["pages"] - self.p["twins"],
                            knobs={"pages_to_scan": self.p["pages_to_scan"]})
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
    template = ("Make the counters read exactly pages_sharing={sharing} and "
                "pages_unshared={unshared} after {scans} full scans, using at most {budget} pages. "
                "Write `def scenario(s):` with calls on the Scene `s` (s.spawn, s.mmap, s.fill, "
                "s.write, s.madvise, s.fork).")
    params = {"sharing": 3, "unshared": 2, "budget": 6, "scans": 3}
    hints = ("n identical pages make 1 pages_shared and n-1 pages_sharing.",
             "A page with content of its own waits in the unstable tree: it counts in "
             "pages_unshared.",
             "s.write(name, page, bytes([i])) gives page its own first byte.")

    def vary(self, rng):
        sharing, unshared = rng.randint(1, 12), rng.randint(0, 8)
        return {"sharing": sharing, "unshared": unshared,
                "budget": sharing + 1 + unshared + rng.randint(0, 2)}

    def targets(self):
        return {"pages_sharing": self.p["sharing"], "pages_unshared": self.p["unshared"]}

    def sample_code(self):
        return layout_code([(self.p["sharing"] + 1, 0x2A)], unique=self.p["unshared"])


merge_scan = MergeScan()
surviving_frame = SurvivingFrame()
batch_size = BatchSize()
unstable_design = UnstableDesign()
EXERCISES = (merge_scan, surviving_frame, batch_size, unstable_design)
