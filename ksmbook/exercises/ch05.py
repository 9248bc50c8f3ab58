"""Chapter 05 exercises: zero pages and smart scan."""
from __future__ import annotations

from .. import viz
from ..labs.scenes import identical_pages
from .design import ScenarioDesign, layout_code
from .base import Exercise, FigureExercise, as_int, as_ints, as_name, eras

#: the ksm_zero_pages counter exists from 6.6; use_zero_pages itself from 4.11
ZERO_ERAS = eras("ksm_zero_pages_counter")
#: smart_scan exists from 6.7
SMART_ERAS = eras("ksm_smart_scan")


class ZeroPages(Exercise):
    name = "zero_pages"
    template = ("Linux {kernel}. use_zero_pages=1, {pages} zero-filled pages{others}, two full "
                "scans. Give (pages_shared, pages_sharing, "
                "ksm_zero_pages).")
    params = {"pages": 8, "twins": 0, "kernel": "6.18"}

    def _set_question(self):
        n = self.p["twins"]
        self.p["others"] = f" and {n} pages of one other content (in vm2)" if n else ""
        super()._set_question()

    def vary(self, rng):
        return {"pages": rng.randint(2, 30), "twins": rng.choice((0, 0, 2, 3, 5)),
                "kernel": rng.choice(ZERO_ERAS)}
    answer_format = "a tuple of three numbers"
    hints = ("try_to_merge_with_zero_page() runs before the trees are searched.",
             "A page merged with the zero page belongs to no stable node.")

    def simulate(self):
        s = identical_pages(self.p["pages"], 0, knobs={"use_zero_pages": 1},
                            kernel=self.p["kernel"])
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
    parse = staticmethod(as_int)
    template = ("Linux {kernel}. use_zero_pages=1 and {pages} zero-filled pages, merged by two "
                "full scans. Then the program writes one byte into {which} of those pages. "
                "What does ksm_zero_pages read right after the writes, before ksmd runs "
                "again?")
    params = {"kernel": "6.18", "pages": 8, "writes": 1}

    def _set_question(self):
        n = self.p["writes"]
        self.p["which"] = "one" if n == 1 else f"each of {n}"
        super()._set_question()
    hints = ("Unlike pages_sharing, ksm_zero_pages is not fixed up by the scanner.",)

    def vary(self, rng):
        pages = rng.randint(3, 30)
        return {"kernel": rng.choice(ZERO_ERAS), "pages": pages,
                "writes": rng.randint(1, pages)}

    def simulate(self):
        s = identical_pages(self.p["pages"], 0, knobs={"use_zero_pages": 1},
                            kernel=self.p["kernel"])
        s.machine.ksmd.run_full_scans(2)
        before = s.stat("ksm_zero_pages")
        for i in range(self.p["writes"]):
            s.write("vm1", i, b"!")
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
    parse = staticmethod(as_int)
    template = ("Linux {kernel}, smart_scan=1. A page that never finds a twin: how many times "
                "does cmp_and_merge_page() process it in the first {scans} full scans?")
    params = {"kernel": "6.18", "scans": 20}
    hints = ("The first four visits are always processed.",
             "After that, should_skip_rmap_item() skips 1, then 2, then 4, then 8 scans "
             "between processed visits (skip_age()), and never more than 8.")

    def vary(self, rng):
        return {"kernel": rng.choice(SMART_ERAS), "scans": rng.randint(5, 120)}

    def simulate(self):
        s = identical_pages(0, unique=1, kernel=self.p["kernel"])
        visits, skipped = [], []
        for n in range(1, self.p["scans"] + 1):
            scanned, skips = s.stat("pages_scanned"), s.stat("pages_skipped")
            s.machine.ksmd.run_full_scans(1)
            if s.stat("pages_scanned") > scanned:
                visits.append(n)
            if s.stat("pages_skipped") > skips:
                skipped.append(n)
        return {"answer": len(visits), "visits": tuple(visits), "skipped": len(skipped)}

    def explain(self, f):
        shown = ", ".join(map(str, f["visits"][:12])) + (" ..." if len(f["visits"]) > 12 else "")
        return (f"It was processed in scans {shown} and skipped {f['skipped']} times: visits "
                f"1-4, then gaps of 1, 2, 4 and 8 skipped scans, and 8 from then on. With "
                f"smart_scan=0 it would cost {self.p['scans']} visits.")

    def why_not(self, answer, f):
        if answer == self.p["scans"]:
            return "That is smart_scan=0. With smart scan, a page that keeps failing is skipped more and more."
        return ""


class ZeroMerger(Exercise):
    """Name the kernel function: try_to_merge_with_zero_page() (mm/ksm.c, 6.18)."""
    name = "zero_merger"
    kind = "function"
    parse = staticmethod(as_name)
    fixed_because = "one function of mm/ksm.c does this in the modelled kernel"
    question = ("Linux 6.18, use_zero_pages=1. Which function of mm/ksm.c, called from "
                "cmp_and_merge_page() before any tree is searched, maps a zero-filled page to "
                "the shared zero page?")
    answer_format = "a function name in quotes, e.g. 'stable_tree_search'"
    hints = ("It runs only when the page's checksum equals the checksum of an all-zero page.",
             "Its name says what it tries, and with what.")
    WHY_NOT = {
        "cmp_and_merge_page": "Close: cmp_and_merge_page() calls it; name the callee.",
        "replace_page": "replace_page() does the PTE swap for it; name the function that "
                        "decides to try the zero page.",
        "try_to_merge_one_page": "try_to_merge_one_page() merges with a KSM page; the zero "
                                 "page has no stable node.",
        "ksm_might_unmap_zero_page": "That one runs when a KSM zero page is unmapped (a "
                                     "write), not at the merge.",
        "use_zero_pages_store": "That is the sysfs handler of the knob; it merges nothing.",
    }

    def simulate(self):
        s = identical_pages(4, 0, knobs={"use_zero_pages": 1})
        with s.machine.events.capture() as ev:
            s.machine.ksmd.run_full_scans(2)
        merges = sum(1 for e in ev if getattr(e, "action", "") == "zero_merge")
        return {"answer": "try_to_merge_with_zero_page", "merges": merges,
                "zero": s.stat("ksm_zero_pages")}

    def explain(self, f):
        return (f"try_to_merge_with_zero_page(): when the page's checksum equals "
                f"zero_checksum it write-protects the page and has replace_page() map the zero "
                f"page with the dirty bit as KSM's mark. Here it merged {f['merges']} pages "
                f"(ksm_zero_pages={f['zero']}), none of them through a tree.")

    def why_not(self, answer, f):
        return self.WHY_NOT.get(answer, "")


class SkippedFigure(FigureExercise):
    """Read the counters figure (viz.counters_figure): should_skip_rmap_item() (mm/ksm.c,
    6.7+) counted in pages_skipped, full scan by full scan."""
    name = "skipped_figure"
    template = ("Linux {kernel}, smart_scan=1, {pages} mergeable pages that never find a twin. "
                "Draw `ch05.skipped_figure.figure()` ({scans} full scans) and read it: what does "
                "pages_skipped read after full scan {at}?")
    params = {"kernel": "6.18", "pages": 8, "scans": 16, "at": 12}
    hints = ("pages_skipped counts every visit should_skip_rmap_item() skipped, since boot.",
             "Read the line of pages_skipped at x = the full scan asked for.")

    def vary(self, rng):
        scans = rng.randint(8, 24)
        return {"kernel": rng.choice(SMART_ERAS), "pages": rng.randint(2, 12), "scans": scans,
                "at": rng.randint(6, scans)}

    def simulate(self):
        s = identical_pages(0, unique=self.p["pages"], kernel=self.p["kernel"])
        history = [s.machine.ksm.stats()]
        for _ in range(self.p["scans"]):
            s.machine.ksmd.run_full_scans(1)
            history.append(s.machine.ksm.stats())
        at = next(h for h in history if h["full_scans"] == self.p["at"])
        return {"answer": at["pages_skipped"], "history": history,
                "scanned": at["pages_scanned"]}

    def draw(self, f):
        return viz.counters_figure(f["history"], ("pages_skipped", "pages_scanned"),
                                   title=f"smart_scan=1: {self.p['pages']} pages that never "
                                         f"merge (Linux {self.p['kernel']})")

    def explain(self, f):
        return (f"After full scan {self.p['at']}: pages_skipped={f['answer']} and "
                f"pages_scanned={f['scanned']}. Each page is processed in scans 1-4, then "
                f"should_skip_rmap_item() skips it for 1, 2, 4, then 8 scans between visits; "
                f"all {self.p['pages']} pages move in step, so the line climbs in stairs of "
                f"{self.p['pages']}.")


class ZeroDesign(ScenarioDesign):
    """Design a scenario for try_to_merge_with_zero_page() (mm/ksm.c, use_zero_pages=1):
    zero-filled pages go to the zero page, not to a stable node."""
    name = "zero_design"
    template = ("Linux {kernel}. With use_zero_pages=1, make ksm_zero_pages={zero} and pages_sharing={sharing} "
                "after {scans} full scans, using at most {budget} pages. Write "
                "`def scenario(s):` with calls on the Scene `s`.")
    params = {"zero": 4, "sharing": 2, "budget": 8, "scans": 3, "kernel": "6.18"}
    hints = ("A zero-filled page (s.fill(name, first, count, 0)) is merged with the zero page "
             "and counts in ksm_zero_pages only.",
             "pages_sharing needs a KSM page: n identical non-zero pages give n-1.")

    def vary(self, rng):
        zero, sharing = rng.randint(1, 12), rng.randint(1, 9)
        return {"zero": zero, "sharing": sharing, "kernel": rng.choice(ZERO_ERAS),
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
zero_merger = ZeroMerger()
skipped_figure = SkippedFigure()
zero_design = ZeroDesign()
EXERCISES = (zero_pages, zero_write, smart_visits, zero_merger, skipped_figure, zero_design)
