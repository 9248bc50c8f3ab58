"""Chapter 05 exercises: zero pages and smart scan."""
from __future__ import annotations

from ..labs.scenes import identical_pages
from .design import ScenarioDesign, layout_code
from .base import Exercise, as_int, as_ints


class ZeroPages(Exercise):
    name = "zero_pages"
    template = ("use_zero_pages=1, {pages} zero-filled pages and {twins} pages of one other "
                "content, two full scans. Give (pages_shared, pages_sharing, ksm_zero_pages).")
    params = {"pages": 8, "twins": 0}

    def vary(self, rng):
        return {"pages": rng.randint(2, 30), "twins": rng.choice((0, 0, 2, 3, 5))}
    answer_format = "a tuple of three numbers"
    hints = ("try_to_merge_with_zero_page() runs before the trees are searched.",
             "A page merged with the zero page belongs to no stable node.")

    def simulate(self):
        s = identical_pages(self.p["pages"], 0, knobs={"use_zero_pages": 1})
        if self.p["twins"]:
            s.spawn("vm2")
            s.mmap("vm2", "mem", self.p["twins"])
            s.fill("vm2", 0, self.p["twins"], 0x2A)
            s.madvise("vm2")
        s.machine.ksmd.run_full_scans(2)
        return {"answer": (s.stat("pages_shared"), s.stat("pages_sharing"),
                           s.stat("ksm_zero_pages")),
                "profit": s.stat("general_profit")}

    def normalise(self, answer):
        return as_ints(answer, 3)

    def explain(self, f):
        shared, sharing, zero = f["answer"]
        others = (f" The {self.p['twins']} pages of other content merge the usual way, into "
                  f"one KSM page." if self.p["twins"] else " No KSM page exists.")
        return (f"Every zero-filled PTE now maps the shared zero page, placed by replace_page() "
                f"with the dirty bit as KSM's mark: ksm_zero_pages={zero}; those pages are in no "
                f"stable node, so they count in neither pages_shared ({shared}) nor pages_sharing "
                f"({sharing}).{others} general_profit counts them anyway ({f['profit']} bytes).")

    def why_not(self, answer, f):
        if answer[:2] == (1, 7):
            return "That is what happens with use_zero_pages=0. Here the knob is 1."
        return ""


class ZeroWrite(Exercise):
    name = "zero_write"
    fixed_because = "one write always breaks exactly one zero-page mapping; not yet seeded"
    parse = staticmethod(as_int)
    question = ("Then the program writes one byte into one of those pages. What does "
                "ksm_zero_pages read right after the write, before ksmd runs again?")
    hints = ("Unlike pages_sharing, ksm_zero_pages is not fixed up by the scanner.",)

    def simulate(self):
        s = identical_pages(8, 0, knobs={"use_zero_pages": 1})
        s.machine.ksmd.run_full_scans(2)
        before = s.stat("ksm_zero_pages")
        s.write("vm1", 3, b"!")
        return {"answer": s.stat("ksm_zero_pages"), "before": before}

    def explain(self, f):
        return (f"{f['before']} -> {f['answer']} at once: wp_page_copy() calls "
                f"ksm_might_unmap_zero_page() when the PTE it replaces is a KSM zero page, so this "
                f"counter, unlike pages_sharing, never lags.")

    def why_not(self, answer, f):
        if answer == f["before"]:
            return "That would be a lagging counter, like pages_sharing after a COW; this one is exact."
        return ""


class SmartVisits(Exercise):
    name = "smart_visits"
    fixed_because = "fixed by the smart_scan skip rule of the modelled kernel; not yet seeded"
    parse = staticmethod(as_int)
    question = ("smart_scan=1. A page that never finds a twin: how many times does "
                "cmp_and_merge_page() process it in the first 20 full scans?")
    hints = ("The first four visits are always processed.",
             "After that, should_skip_rmap_item() skips 1, then 2, then 4, then 8 scans "
             "between processed visits (skip_age()).")

    def simulate(self):
        s = identical_pages(0, unique=1)
        visits, skipped = [], []
        for n in range(1, 21):
            scanned, skips = s.stat("pages_scanned"), s.stat("pages_skipped")
            s.machine.ksmd.run_full_scans(1)
            if s.stat("pages_scanned") > scanned:
                visits.append(n)
            if s.stat("pages_skipped") > skips:
                skipped.append(n)
        return {"answer": len(visits), "visits": tuple(visits), "skipped": len(skipped)}

    def explain(self, f):
        return (f"It was processed in scans {', '.join(map(str, f['visits']))} and skipped "
                f"{f['skipped']} times: visits 1-4, then gaps of 1, 2, 4 and 8 skipped scans. "
                f"With smart_scan=0 it would cost 20 visits.")

    def why_not(self, answer, f):
        if answer == 20:
            return "That is smart_scan=0. With smart scan, a page that keeps failing is skipped more and more."
        return ""


class ZeroDesign(ScenarioDesign):
    """Design a scenario for try_to_merge_with_zero_page() (mm/ksm.c, use_zero_pages=1):
    zero-filled pages go to the zero page, not to a stable node."""
    name = "zero_design"
    template = ("With use_zero_pages=1, make ksm_zero_pages={zero} and pages_sharing={sharing} "
                "after {scans} full scans, using at most {budget} pages. Write "
                "`def scenario(s):` with calls on the Scene `s`.")
    params = {"zero": 4, "sharing": 2, "budget": 8, "scans": 3}
    hints = ("A zero-filled page (s.fill(name, first, count, 0)) is merged with the zero page "
             "and counts in ksm_zero_pages only.",
             "pages_sharing needs a KSM page: n identical non-zero pages give n-1.")

    def vary(self, rng):
        zero, sharing = rng.randint(1, 12), rng.randint(1, 9)
        return {"zero": zero, "sharing": sharing,
                "budget": zero + sharing + 1 + rng.randint(0, 2)}

    def knobs(self):
        return {"use_zero_pages": 1}

    def targets(self):
        return {"ksm_zero_pages": self.p["zero"], "pages_sharing": self.p["sharing"]}

    def sample_code(self):
        return layout_code([(self.p["sharing"] + 1, 0x2A)], zero=self.p["zero"])


zero_pages = ZeroPages()
zero_write = ZeroWrite()
smart_visits = SmartVisits()
zero_design = ZeroDesign()
EXERCISES = (zero_pages, zero_write, smart_visits, zero_design)
