"""Chapter 06 exercises: tuning ksmd (pages_to_scan, sleep_millisecs, smart_scan,
max_page_sharing, general_profit).  Every answer is computed by running the chapter's
lab (``ksmbook.labs.tuning``) in the simulator."""
from __future__ import annotations

from ..kernel.ksm.ksmd import SCAN_COST_NS
from ..kernel.ksm.structs import SIZEOF_KSM_RMAP_ITEM
from ..kernel.versions import profile
from ..labs import tuning
from ..viz.tuning import sharing_limit_figure
from .base import Exercise, Feedback, FigureExercise, as_int, as_ints, as_name, eras, jhash2_era


#: the eras double_the_pages picks: 5.0 and later. Before 5.0 the checksum is jhash2,
#: which the simulator computes word by word in Python (base.jhash2_era); the other
#: exercises draw a smaller scene for those eras, but this one counts full scans of the
#: chapter's 1,024-page workload over seconds, thousands of checksums at any size that
#: keeps its question
FAST_ERAS = eras(since="5.0")
#: max_page_sharing and its stable node chains: 4.13 on
CHAIN_ERAS = eras("ksm_stable_node_chains")


def _smart_off(kernel: str) -> dict:
    """smart_scan=0 where the era has the knob (6.7+); older eras visit every page anyway."""
    return {"smart_scan": 0} if profile(kernel).ksm_smart_scan else {}


class CpuShare(Exercise):
    name = "cpu_share"
    template = ("Linux {kernel}. ksmd with pages_to_scan={pages} and sleep_millisecs={sleep}, "
                "and always more pages to scan than one batch. Using the book's cost model (5.5 µs of ksmd CPU per "
                "processed page), what percentage of one CPU does ksmd use? Round to a whole "
                "number.")
    params = {"kernel": "6.18", "pages": 200, "sleep": 20, "duration": 2000}
    answer_format = "a whole number of percent, e.g. 7"
    parse = staticmethod(as_int)
    hints = ("One batch costs pages_to_scan × 5.5 µs; then ksmd sleeps sleep_millisecs.",
             "CPU share = batch time / (batch time + sleep time).")

    def vary(self, rng):
        kernel = rng.choice(eras())
        if jhash2_era(kernel):
            # fewer pages a batch and four periods: the same share, a tenth of the checksums
            pages, sleep = rng.choice((100, 200)), rng.choice((20, 50, 100, 200))
            batch_ms = pages * SCAN_COST_NS / 1e6
            return {"kernel": kernel, "pages": pages, "sleep": sleep,
                    "duration": int(4 * (sleep + batch_ms))}
        pages = rng.choice((100, 200, 300, 500, 800, 1000, 1500))
        sleep = rng.choice((5, 10, 20, 50, 100, 200))
        batch_ms = pages * SCAN_COST_NS / 1e6
        return {"kernel": kernel, "pages": pages, "sleep": sleep,
                "duration": max(200, int(12 * (sleep + batch_ms)))}

    def simulate(self):
        pages, sleep_ms = self.p["pages"], self.p["sleep"]
        w = tuning.Workload(processes=2, copies=0, zeros=0, unique=max(2000, 2 * pages))
        d = self.p["duration"]
        tl = tuning.run_timeline({"pages_to_scan": pages, "sleep_millisecs": sleep_ms,
                                  **_smart_off(self.p["kernel"])}, w, duration_ms=d,
                                 sample_ms=d, kernel=self.p["kernel"])
        batch_ms = pages * SCAN_COST_NS / 1e6
        return {"answer": round(tl.mean_cpu_percent()), "batch_ms": batch_ms,
                "sleep_ms": sleep_ms, "measured": tl.mean_cpu_percent()}

    def explain(self, f):
        return (f"A batch takes {f['batch_ms']:.1f} ms of CPU, then ksmd sleeps "
                f"{f['sleep_ms']} ms: {f['batch_ms']:.1f} / ({f['batch_ms']:.1f} + "
                f"{f['sleep_ms']}) = {f['measured']:.1f}% (the simulator's run over "
                f"{self.p['duration'] / 1000:g} s agrees).")

    def why_not(self, answer, f):
        naive = round(100 * f["batch_ms"] / f["sleep_ms"])
        if answer == naive and naive != f["answer"]:
            return "That divides by the sleep alone; ksmd's period is the batch plus the sleep."
        return ""


class DoubleThePages(Exercise):
    name = "double_the_pages"
    template = ("Linux {kernel}. A workload of {pages:,} mergeable pages ({procs} processes × "
                "{per}). You raise pages_to_scan from {lo} to {hi} (sleep_millisecs=20). How "
                "many full scans does ksmd complete in {seconds} s of simulated time with {hi}?")
    params = {"kernel": "6.18", "procs": 4, "per": 256, "pages": 1024, "lo": 100, "hi": 400,
              "seconds": 4}
    parse = staticmethod(as_int)
    hints = ("One full scan needs about pages / pages_to_scan batches, rounded up, and a batch "
             "never crosses the end of a scan.",
             "Each batch is followed by a 20 ms sleep; the batch itself takes "
             "pages_to_scan × 5.5 µs. Smart scan (6.7 on, on by default) skips some pages "
             "later on.")

    def vary(self, rng):
        procs = rng.randint(2, 6)
        lo = rng.choice((50, 100, 200))
        w = tuning.Workload(processes=procs)
        return {"kernel": rng.choice(FAST_ERAS), "procs": procs,
                "per": w.pages // procs, "pages": w.pages, "lo": lo,
                "hi": lo * rng.choice((2, 3, 4, 8)), "seconds": rng.choice((1, 2))}

    def simulate(self):
        w = tuning.Workload(processes=self.p["procs"])
        runs = {v: tuning.run_timeline({"pages_to_scan": v}, w, kernel=self.p["kernel"],
                                       duration_ms=1000 * self.p["seconds"],
                                       sample_ms=1000 * self.p["seconds"])
                for v in (self.p["lo"], self.p["hi"])}
        return {"answer": runs[self.p["hi"]].final.full_scans,
                "at_lo": runs[self.p["lo"]].final.full_scans, "pages": w.pages}

    def explain(self, f):
        lo, hi, n = self.p["lo"], self.p["hi"], f["pages"]
        return (f"{f['answer']} full scans with {hi} against {f['at_lo']} with {lo}: a scan of "
                f"{n} pages takes {-(-n // hi)} batches instead of {-(-n // lo)} (a batch never "
                f"crosses the end of a scan, and one that ends on the last page leaves an empty "
                f"one), and from 6.7 smart_scan (default 1) lets later scans skip unique pages, "
                f"so scans get cheaper still.")

    def why_not(self, answer, f):
        ratio = self.p["hi"] // self.p["lo"]
        if answer == ratio * f["at_lo"]:
            return (f"{ratio} times the pages per batch is not {ratio} times the scans: "
                    "a scan needs a whole number of batches, and smart scan changes the count.")
        return ""


class WhoSkips(Exercise):
    name = "who_skips"
    kind = "function"
    fixed_because = "one function of mm/ksm.c makes this decision (6.7 and later)"
    question = ("With smart_scan=1, which function of mm/ksm.c decides that ksmd skips a page "
                "that has not merged for a while?")
    answer_format = "a function name in quotes, e.g. 'ksm_do_scan'"
    parse = staticmethod(as_name)
    hints = ("It is called from scan_get_next_rmap_item() for every rmap_item it walks.",
             "Its name says what it decides about an rmap_item.")
    WHY_NOT = {
        "cmp_and_merge_page": "cmp_and_merge_page() runs only for pages that were *not* skipped.",
        "skip_age": "skip_age() computes how long to skip; it does not make the decision.",
        "scan_get_next_rmap_item": "Close: it calls the function that decides, for each item.",
        "ksm_do_scan": "ksm_do_scan() loops over batches; the per-item decision is elsewhere.",
    }

    def simulate(self):
        w = tuning.Workload(copies=0, zeros=0, unique=64)
        tl = tuning.run_timeline({"pages_to_scan": 400, "smart_scan": 1}, w, duration_ms=2000)
        return {"answer": "should_skip_rmap_item", "skipped": tl.final.pages_skipped}

    def explain(self, f):
        return (f"should_skip_rmap_item() keeps a per-item age and skip count (skip_age()) and "
                f"returns true while the item is being skipped; in 2 s of the chapter's unique "
                f"workload it skipped {f['skipped']} page visits (pages_skipped).")

    def why_not(self, answer, f):
        return self.WHY_NOT.get(answer, "")


class MaxSharing(Exercise):
    name = "max_sharing"
    template = ("Linux {kernel}. {total:,} copies of one page ({procs} processes × {copies}), "
                "max_page_sharing={limit}. After KSM has merged everything it can, how many KSM "
                "pages exist (pages_shared)?")
    params = {"kernel": "6.18", "total": 1024, "procs": 4, "copies": 256, "limit": 4,
              "pts": 400, "duration": 3000}
    parse = staticmethod(as_int)
    hints = ("Each KSM page may be mapped by at most max_page_sharing PTEs.",
             "Divide the mappings by the limit, and round the way the kernel must.")

    def vary(self, rng):
        kernel = rng.choice(CHAIN_ERAS)
        if jhash2_era(kernel):        # fewer copies: the same rounding, fewer checksums
            procs, copies = rng.randint(2, 4), rng.choice((16, 24, 32, 48, 50, 64))
        else:
            procs, copies = rng.randint(2, 6), rng.choice((50, 64, 100, 128, 200, 256))
        return {"kernel": kernel, "procs": procs,
                "copies": copies, "total": procs * copies, "limit": rng.randint(2, 9),
                "pts": 2000, "duration": 1000}

    def simulate(self):
        w = tuning.Workload(processes=self.p["procs"], copies=self.p["copies"], templates=1,
                            zeros=0, unique=0)
        tl = tuning.run_timeline({"pages_to_scan": self.p["pts"],
                                  "max_page_sharing": self.p["limit"]}, w,
                                 duration_ms=self.p["duration"], sample_ms=self.p["duration"],
                                 kernel=self.p["kernel"])
        return {"answer": tl.final.pages_shared, "sharing": tl.final.pages_sharing,
                "saved_mib": tl.final.saved_bytes / 2**20}

    def explain(self, f):
        return (f"{f['answer']} KSM pages, each a dup of one stable node chain, with "
                f"pages_sharing={f['sharing']}: {f['saved_mib']:.2f} MiB saved, where "
                f"max_page_sharing=256 would need far fewer KSM pages. The limit trades memory "
                f"for shorter rmap walks.")

    def why_not(self, answer, f):
        if answer == 1:
            return (f"That ignores the limit: one KSM page may have at most {self.p['limit']} "
                    f"mappers here.")
        if answer == -(-self.p["total"] // 256):
            return "That is the default limit (256), not the one asked for."
        return ""


class NegativeProfit(Exercise):
    name = "negative_profit"
    template = ("Linux {kernel}. {procs} process{es} with {unique} unique pages each (nothing "
                "ever merges){smart}. After ksmd has visited every page, what does "
                "general_profit read, in bytes?")
    params = {"kernel": "6.18", "procs": 4, "unique": 256, "smart": " and smart_scan=0",
              "es": "es"}
    parse = staticmethod(as_int)
    answer_format = "a whole number of bytes (it may be negative)"
    hints = ("general_profit = (pages_sharing + ksm_zero_pages) × PAGE_SIZE − "
             "rmap_items × sizeof(struct ksm_rmap_item).",
             f"sizeof(struct ksm_rmap_item) is {SIZEOF_KSM_RMAP_ITEM} bytes on x86-64; "
             "every scanned page has one.")

    def vary(self, rng):
        kernel = rng.choice(eras("ksm_general_profit"))
        procs = rng.randint(1, 6)
        return {"kernel": kernel, "procs": procs, "es": "es" if procs > 1 else "",
                "unique": rng.choice((32, 64, 100, 128, 200, 256, 300)),
                "smart": " and smart_scan=0" if profile(kernel).ksm_smart_scan else ""}

    def simulate(self):
        w = tuning.Workload(processes=self.p["procs"], copies=0, zeros=0,
                            unique=self.p["unique"])
        tl = tuning.run_timeline({"pages_to_scan": 400, **_smart_off(self.p["kernel"])}, w,
                                 duration_ms=1000, sample_ms=1000, kernel=self.p["kernel"])
        return {"answer": tl.final.general_profit, "items": w.pages}

    def explain(self, f):
        return (f"{f['answer']} bytes: {f['items']} rmap_items × {SIZEOF_KSM_RMAP_ITEM} bytes, and "
                "no page saved. A workload with nothing to share makes KSM cost memory as well "
                "as CPU.")

    def why_not(self, answer, f):
        if answer == 0:
            return "Nothing was saved, but something was spent: every scanned page has an rmap_item."
        if answer == -f["answer"]:
            return "Right size, wrong sign: the rmap_items are a cost, so the profit is below zero."
        return ""


class KnobDesign(Exercise):
    """Design the knobs: the checker runs the chapter's lab with the reader's setting."""
    name = "knob_design"
    kind = "design"
    few_answers_because = ("any setting that meets the limits is right; the sample answer is "
                           "the first of a short search that the simulator accepts")
    template = ("Linux {kernel}. Choose (pages_to_scan, sleep_millisecs) so that the chapter's workload "
                "(1,024 pages) reaches 90% of its saving within {within_ms} ms of simulated "
                "time while ksmd's mean CPU over {duration_ms} ms stays below {max_cpu}%. "
                "smart_scan stays at its default (1).")
    params = {"within_ms": 300, "max_cpu": 10, "duration_ms": 4000, "kernel": "6.18"}
    answer_format = "a tuple (pages_to_scan, sleep_millisecs)"

    def vary(self, rng):
        return {"kernel": rng.choice(eras("ksm_smart_scan")),
                "within_ms": rng.choice((200, 250, 300, 400, 500, 600)),
                "max_cpu": rng.choice((8, 10, 12, 15, 20, 25)), "duration_ms": 2000}
    hints = ("The defaults (100, 20) are cheap but need about 450 ms: the first merges take two "
             "full scans, and a full scan of 1,024 pages is 11 batches at 100 pages.",
             "CPU share is about pages_to_scan × 5.5 µs / (that + sleep_millisecs); a few "
             "hundred pages per 20 ms wake-up does both.")

    def normalise(self, answer):
        pages, sleep_ms = as_ints(answer, 2)
        if pages < 1 or sleep_ms < 0:
            raise ValueError("pages_to_scan must be >= 1 and sleep_millisecs >= 0")
        return pages, sleep_ms

    def measure(self, pages: int, sleep_ms: int) -> tuning.Timeline:
        return tuning.run_timeline({"pages_to_scan": pages, "sleep_millisecs": sleep_ms},
                                   tuning.Workload(), duration_ms=self.p["duration_ms"],
                                   sample_ms=50, kernel=self.p["kernel"])

    def verdict(self, tl) -> tuple[bool, str]:
        t90, cpu = tl.time_to_save(), tl.mean_cpu_percent()
        ok = t90 is not None and t90 <= self.p["within_ms"] and cpu < self.p["max_cpu"]
        said = (f"90% of the saving after {t90:.0f} ms" if t90 is not None else
                "90% of the saving never reached") + f", mean ksmd CPU {cpu:.1f}%"
        return ok, said

    def simulate(self):
        # the simulator, not a formula, finds a setting that works: the book's solution
        for pages, sleep_ms in ((200, 20), (300, 20), (400, 20), (600, 20), (800, 20),
                                (400, 50), (1000, 50), (800, 100)):
            tl = self.measure(pages, sleep_ms)
            ok, said = self.verdict(tl)
            if ok:
                return {"answer": (pages, sleep_ms), "said": said}
        raise ValueError("no setting in the search meets the limits")

    def explain(self, f):
        return (f"For example {f['answer']}: {f['said']}. Other settings are accepted when "
                f"the simulator agrees.")

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            pages, sleep_ms = self.normalise(answer)
        except (TypeError, ValueError) as exc:
            return Feedback(False, f"Could not read {answer!r} as {self.answer_format}: {exc}")
        if pages > 100000 or sleep_ms > 10000:
            return Feedback(False, "Not quite: keep pages_to_scan <= 100000 and "
                                   "sleep_millisecs <= 10000 (one simulated run each).")
        ok, said = self.verdict(self.measure(pages, sleep_ms))
        saw = f"The simulator ran pages_to_scan={pages}, sleep_millisecs={sleep_ms}: {said}."
        if ok:
            return Feedback(True, "Correct. " + saw)
        return Feedback(False, f"Not quite. {saw} You need at most {self.p['within_ms']} ms "
                               f"and under {self.p['max_cpu']}% CPU. Try `hint()`.")


class SharingBars(FigureExercise):
    """Read the max_page_sharing bars (viz.tuning.sharing_limit_figure): stable node
    chains (mm/ksm.c, 4.13+) keep one KSM page per max_page_sharing mappers."""
    name = "sharing_bars"
    template = ("Linux {kernel}. {procs} processes, each with {copies} copies of {templates} "
                "template page(s). Draw `ch06.sharing_bars.figure()`: one bar per "
                "max_page_sharing value. Read the bar of max_page_sharing={limit}: how many KSM "
                "pages (pages_shared) and how many frames saved (pages_sharing)? Answer "
                "(pages_shared, pages_sharing); a reading within 3% (or 1) of each is accepted.")
    params = {"kernel": "6.18", "procs": 4, "copies": 64, "templates": 2, "limit": 4}
    answer_format = "a tuple of two numbers"
    hints = ("The lower (hatched) part of a bar is pages_shared, the upper part pages_sharing; "
             "hover for the exact values.",
             "The whole bar is every copy that merged: procs × copies.")

    def vary(self, rng):
        kernel = rng.choice(CHAIN_ERAS)
        small = jhash2_era(kernel)    # fewer pages where the checksum is jhash2
        return {"kernel": kernel, "procs": rng.randint(2, 4 if small else 6),
                "copies": rng.choice((16, 24, 32) if small else (16, 32, 48, 64, 96)),
                "templates": rng.randint(1, 4), "limit": rng.randint(2, 12)}

    def simulate(self):
        w = tuning.Workload(processes=self.p["procs"], copies=self.p["copies"],
                            templates=self.p["templates"], zeros=0, unique=0)
        runs = [tuning.run_timeline({"pages_to_scan": 2000, "max_page_sharing": k}, w,
                                    duration_ms=1000, sample_ms=1000, kernel=self.p["kernel"],
                                    label=f"max_page_sharing={k}")
                for k in sorted({self.p["limit"], 256})]
        mine = next(tl for tl in runs if tl.knobs["max_page_sharing"] == self.p["limit"])
        return {"answer": (mine.final.pages_shared, mine.final.pages_sharing), "runs": runs}

    def draw(self, f):
        return sharing_limit_figure(f["runs"], title=f"max_page_sharing: KSM pages against the "
                                                     f"frames saved (Linux {self.p['kernel']})")

    def normalise(self, answer):
        return as_ints(answer, 2)

    def check(self, answer=None) -> Feedback:
        fb = super().check(answer)
        if fb.correct is not False or not isinstance(answer, (tuple, list)):
            return fb
        try:
            given = self.normalise(answer)
        except (TypeError, ValueError):
            return fb
        want = self.facts["answer"]
        if all(abs(g - w) <= max(1, 0.03 * w) for g, w in zip(given, want)):
            return Feedback(True, f"Correct (close enough; exactly {want}). "
                                  + self.explain(self.facts))
        return fb

    def explain(self, f):
        shared, sharing = f["answer"]
        per = self.p["procs"] * self.p["copies"] // self.p["templates"]
        return (f"With max_page_sharing={self.p['limit']}: {shared} KSM pages keep frames and "
                f"{sharing} frames are saved, {shared + sharing} mappings in all. Each template "
                f"has {per} mappers, and each KSM page (a dup of the template's chain) takes at "
                f"most {self.p['limit']} of them.")


cpu_share = CpuShare()
double_the_pages = DoubleThePages()
who_skips = WhoSkips()
max_sharing = MaxSharing()
negative_profit = NegativeProfit()
sharing_bars = SharingBars()
knob_design = KnobDesign()
EXERCISES = (cpu_share, double_the_pages, who_skips, max_sharing, negative_profit,
             sharing_bars, knob_design)
