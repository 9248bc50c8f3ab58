"""Chapter 09 exercises: the simulator beside a real kernel, and the full-scan protocol."""
from __future__ import annotations

import ksmbook

from ..oracle import sidebyside as sb
from ..oracle.scenario import COUNTERS, unique_page_bytes
from ..viz.compare import timeline_figure
from .base import Exercise, FigureExercise, as_int, as_ints, as_name, eras
from .design import ScenarioDesign
from ..uapi import KSM_SYSFS

#: recorded traces (Linux 6.18) that a seed may pick for the figure: quick to simulate,
#: and their page counters move
FIGURE_TRACES = ("cow_after_merge", "cow_same_content_mid_scan", "exit_two_processes",
                 "fork_after_merge", "fork_cow_mid_scan", "late_joiners",
                 "lru_batch_fills_at_31", "max_page_sharing_2_of_10", "max_page_sharing_3_of_10",
                 "max_page_sharing_4_of_40", "max_page_sharing_5_of_23",
                 "max_page_sharing_chain_collapse", "run2_unmerges_everything",
                 "smart_scan_after_cow", "ten_identical_pages", "unmerge_and_dontneed",
                 "zero_and_read_faulted_pages", "zero_fault_mid_scan")
FIGURE_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


class FirstSharing(Exercise):
    name = "first_sharing"
    fixed_because = ("the question is about one recorded Linux 6.18 trace, and a seed cannot "
                     "re-record the kernel (trace_reading reads a seeded trace instead)")
    question = ("In ten_identical_pages, after which step does pages_sharing first become "
                "non-zero? Give the step number of the trace.")
    hints = ("Steps 0-3 only set the process up; ksmd runs only inside scans(n).",
             "cmp_and_merge_page() goes no further than the checksum while a page's checksum "
             "differs from the one recorded on its previous visit, and a first visit has "
             "none recorded.")

    def simulate(self):
        sim = sb.simulate("ten_identical_pages")
        rec = sb.recorded("ten_identical_pages")
        sharing = sim.counter("pages_sharing")
        step = next(i for i, v in enumerate(sharing) if v)
        return {"answer": step, "op": sim.snapshots[step]["op"], "sharing": sharing[step],
                "before": sim.snapshots[step - 1]["counters"],
                "kernel_sharing": rec.counter("pages_sharing")[step],
                "kernel_agrees": rec.counter("pages_sharing") == sharing}

    def normalise(self, answer):
        return as_int(answer)

    def explain(self, f):
        b = f["before"]
        return (f"After step {f['answer'] - 1}, the first full scan, all "
                f"{b['pages_volatile']} pages are volatile: that visit only recorded each "
                f"page's checksum. Step {f['answer']} ({f['op']}) is the second visit: the "
                f"checksum held still, the first page went into the unstable tree, the second "
                f"merged with it into a KSM page, and the other {f['sharing'] - 1} found that "
                f"page in the stable tree: pages_sharing {f['sharing']}. Linux 6.18 recorded "
                f"{f['kernel_sharing']} at the same step"
                + (", and the same value after every step." if f["kernel_agrees"] else "."))

    def why_not(self, answer, f):
        if answer == f["answer"] - 1:
            return "After that step every page is volatile: the first visit only records checksums."
        if answer < f["answer"] - 1:
            return "madvise() only marks the VMA; nothing is scanned before scans(n)."
        return ""


class LateJoinerCounters(Exercise):
    name = "late_joiner_counters"
    fixed_because = ("the 6.10-versus-6.11 difference shows in one recorded trace, "
                     "late_joiners; a seed cannot re-record the kernel")
    question = ("Compare the simulator modelling Linux 6.10 with the recorded Linux 6.18 trace "
                "of late_joiners. Which global counters (files of /sys/kernel/mm/ksm) differ? "
                "Answer with their names, e.g. ('pages_shared', 'full_scans').")
    answer_format = "a tuple of counter names"
    hints = ("RecordedCompare('late_joiners', kernel='6.10') shows it; the grid boxes them.",
             "b and c make their pages mergeable after a's pages are already a KSM page. "
             "What does cmp_and_merge_page() do first with a page it visits for the first "
             "time: search the stable tree, or compare checksums? It changed in 6.11.")

    def simulate(self):
        cmp = sb.Comparison(sb.simulate("late_joiners", "6.10"), sb.recorded("late_joiners"))
        first = cmp.first_step
        diffs = {d.path.split(".", 1)[1]: (d.a, d.b) for d in cmp.at(first)
                 if d.path.startswith("counters.")}
        return {"answer": tuple(cmp.counters_that_differ()), "first": first,
                "op": cmp.left.snapshots[first]["op"], "diffs": diffs,
                "steps": tuple(cmp.differing_steps()), "missing": cmp.missing_fields()}

    def normalise(self, answer):
        if isinstance(answer, str):
            answer = (answer,)
        if not hasattr(answer, "__iter__"):
            raise TypeError("a tuple of counter names")
        names = {str(a).strip().rsplit("/", 1)[-1] for a in answer}
        unknown = sorted(names - set(COUNTERS))
        if unknown:
            raise ValueError(f"not a global counter: {', '.join(unknown)} "
                             f"(they are: {', '.join(COUNTERS)})")
        return tuple(c for c in COUNTERS if c in names)

    def explain(self, f):
        d = f["diffs"]
        pairs = ", ".join(f"{c} {a} vs {b}" for c, (a, b) in d.items())
        steps = " and ".join(str(s) for s in f["steps"])
        return (f"They differ after steps {steps}, the first scans after b and then c opt in "
                f"(after step {f['first']}: 6.10 model vs 6.18 kernel: {pairs}). Up to 6.10, "
                "cmp_and_merge_page() searched the stable tree before looking at the checksum, "
                "so b's pages, identical to a's KSM page, joined it on their very first visit. "
                "6.11 (d58a361b0350) tests the checksum first: a first visit has no recorded "
                "checksum to match, so the page returns as volatile and merges one scan later. "
                "general_profit follows pages_sharing. (The ksm_stat lines ksm_merge_any and "
                "ksm_mergeable differ too, but only because 6.10 does not print them.)")

    def why_not(self, answer, f):
        want = set(f["answer"])
        if set(answer) < want:
            n = len(want - set(answer))
            return f"Right so far, but {n} more counter{'s differ' if n > 1 else ' differs'}."
        if set(answer) > want:
            return "Some of these are equal on both sides after every step."
        return ""


class BatchBoundary(Exercise):
    name = "batch_boundary"
    template = ("pages_to_scan={pages_to_scan} and one process with {pages} mergeable pages, all different. "
                "ksmd starts and runs batch after batch. Which batch is the first after which "
                "full_scans reads 1, and how many pages did that batch process? Answer "
                "(batch, pages).")
    answer_format = "a tuple of two numbers"
    hints = ("ksm_do_scan() returns as soon as scan_get_next_rmap_item() returns NULL, and "
             "that happens exactly once per full scan, when the cursor runs off the end of "
             "the mm list.",
             "A batch that uses up pages_to_scan on the last page has not asked for one more "
             "page yet.")
    params = {"pages_to_scan": 100, "pages": 300, "kernel": "6.18"}
    template = "Linux {kernel}. " + template

    def vary(self, rng):
        pts = rng.choice((50, 64, 100, 128, 200))
        pages = pts * rng.randint(1, 4) if rng.random() < 0.4 else rng.randint(pts // 2, 4 * pts)
        return {"pages_to_scan": pts, "pages": pages,
                "kernel": rng.choice(eras("ksm_pages_scanned"))}

    def simulate(self):
        m = ksmbook.Machine(self.p["kernel"])
        p = m.spawn("a")
        n = self.p["pages"]
        addr = p.mmap(n * m.page_size)
        p.write(addr, b"".join(unique_page_bytes(1, i, m.page_size) for i in range(n)))
        p.madvise(addr, n * m.page_size, ksmbook.MADV_MERGEABLE)
        m.sysfs.write(f"{KSM_SYSFS}/pages_to_scan", str(self.p["pages_to_scan"]))
        m.sysfs.write(f"{KSM_SYSFS}/run", "1")
        batches = []
        while not batches or batches[-1][1] == 0:
            before = m.ksm.stats()["pages_scanned"]
            m.ksmd.scan()
            s = m.ksm.stats()
            batches.append((s["pages_scanned"] - before, s["full_scans"]))
        return {"answer": (len(batches), batches[-1][0]), "batches": batches}

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        rows = ", ".join(f"batch {i + 1}: {n} pages" for i, (n, _) in enumerate(f["batches"]))
        if f["batches"][-1][0] == 0:
            why = ("The batch that scans the last page ends because pages_to_scan is used up, "
                   "before scan_get_next_rmap_item() is asked for another page; the next one "
                   "asks, gets NULL (end of the list: ksm_scan.seqnr++, full_scans 1) and "
                   "returns at once.")
        else:
            why = ("The last batch asked for one more page than there were and got NULL (end "
                   "of the list: ksm_scan.seqnr++, full_scans 1) with pages_to_scan left over.")
        return (f"{rows}. {why} A "
                "batch never crosses a full-scan boundary, which is why the live runner sets "
                "pages_to_scan far above any scenario's page count: then every wake-up is "
                "exactly one full scan.")

    def why_not(self, answer, f):
        if answer == (3, 100):
            return ("After the third batch all 300 pages are processed, but the scan has not "
                    "ended yet: nobody has asked for the next page.")
        return ""


class ScanEnds(Exercise):
    """Name the kernel function: scan_get_next_rmap_item() (mm/ksm.c, all eras)."""
    name = "scan_ends"
    kind = "function"
    parse = staticmethod(as_name)
    fixed_because = "one function of mm/ksm.c does this, in every era the book models"
    question = ("Which function of mm/ksm.c, when the cursor runs off the end of the list of "
                "mergeable mms, increments ksm_scan.seqnr (what full_scans shows) and returns "
                "NULL, so that ksm_do_scan() ends its batch early?")
    answer_format = "a function name in quotes, e.g. 'ksm_do_scan'"
    hints = ("ksm_do_scan() asks it for one page at a time.",
             "Its name says what it returns: the next rmap_item.")
    WHY_NOT = {
        "ksm_do_scan": "ksm_do_scan() is the batch loop; it stops because its callee returned "
                       "NULL.",
        "ksm_scan_thread": "ksm_scan_thread() is ksmd's main loop: it sleeps between batches.",
        "cmp_and_merge_page": "cmp_and_merge_page() handles one page the cursor returned.",
        "full_scans_show": "That only prints ksm_scan.seqnr for sysfs.",
    }

    def simulate(self):
        m = ksmbook.Machine()
        p = m.spawn("a")
        addr = p.mmap(3 * m.page_size)
        p.write(addr, b"".join(unique_page_bytes(1, i, m.page_size) for i in range(3)))
        p.madvise(addr, 3 * m.page_size, ksmbook.MADV_MERGEABLE)
        m.sysfs.write(f"{KSM_SYSFS}/run", "1")
        m.ksmd.scan()
        first = m.ksm.stats()
        m.ksmd.scan()
        second = m.ksm.stats()
        return {"answer": "scan_get_next_rmap_item", "first": first["pages_scanned"],
                "full_scans": (first["full_scans"], second["full_scans"])}

    def explain(self, f):
        a, b = f["full_scans"]
        return (f"scan_get_next_rmap_item(): after the last rmap_item of the last mm it "
                f"moves the cursor back to ksm_mm_head, does ksm_scan.seqnr++ and returns NULL. "
                f"Here the first batch processed {f['first']} pages (full_scans {a}), and the "
                f"next ended the scan at once (full_scans {b}).")

    def why_not(self, answer, f):
        return self.WHY_NOT.get(answer, "")


class TraceFigure(FigureExercise):
    """Read the side-by-side timeline (viz.compare.timeline_figure): a recorded Linux 6.18
    trace beside the simulator."""
    name = "trace_reading"
    template = ("Draw `ch09.trace_reading.figure()`: the scenario {scenario}, the simulator "
                "modelling Linux {kernel} (lines) beside the recorded Linux 6.18 trace (open "
                "markers). What did the recorded kernel's counters read after step {step}? "
                "Answer (pages_shared, pages_sharing, pages_unshared, pages_volatile).")
    params = {"scenario": "ten_identical_pages", "kernel": "6.18", "step": 5}
    answer_format = "a tuple of four numbers"
    hints = ("The open markers are the recorded kernel; hover over one for its exact value.",
             "Steps are numbered from 0 along the x axis; grey bands are the steps in which "
             "ksmd ran.")

    def vary(self, rng):
        name = rng.choice(FIGURE_TRACES)
        rec = sb.recorded(name)
        busy = [i for i in range(1, len(rec.snapshots))
                if any(rec.counter(c)[i] for c in FIGURE_COUNTERS)]
        return {"scenario": name, "kernel": rng.choice(eras(since="6.8")),
                "step": rng.choice(busy or range(1, len(rec.snapshots)))}

    def simulate(self):
        rec = sb.recorded(self.p["scenario"])
        cmp = sb.Comparison(sb.simulate(self.p["scenario"], self.p["kernel"]), rec)
        step = self.p["step"]
        return {"answer": tuple(rec.counter(c)[step] for c in FIGURE_COUNTERS), "cmp": cmp,
                "op": rec.snapshots[step]["op"],
                "sim": tuple(cmp.left.counter(c)[step] for c in FIGURE_COUNTERS)}

    def draw(self, f):
        return timeline_figure(f["cmp"], FIGURE_COUNTERS)

    def normalise(self, answer):
        return as_ints(answer, 4)

    def explain(self, f):
        got = ", ".join(f"{c}={v}" for c, v in zip(FIGURE_COUNTERS, f["answer"]))
        same = ("the same" if f["sim"] == f["answer"] else
                f"{f['sim']}, differences the figure marks with a cross")
        return (f"After step {self.p['step']} ({f['op']}) Linux 6.18 recorded {got}; the "
                f"simulator modelling {self.p['kernel']} gives {same}.")


class BoundaryDesign(ScenarioDesign):
    """Design a scenario against ksm_do_scan()'s batches (mm/ksm.c): a batch that uses up
    pages_to_scan on the last page leaves finding the end of the list to the next one."""
    name = "boundary_design"
    unit = "pages"
    shown = ("batch", "pages_in_batch")
    template = ("Linux {kernel}, pages_to_scan={pages_to_scan}. Make the first full scan end "
                "in batch {batch} (the first batch after which full_scans reads 1), with that "
                "batch processing {last} pages, using at most {budget} pages. Write "
                "`def scenario(s):` with calls on the Scene `s` (s.spawn, s.mmap, s.write, "
                "s.madvise); the checker starts ksmd and runs batch after batch.")
    params = {"kernel": "6.18", "pages_to_scan": 100, "batch": 4, "last": 0, "budget": 300}
    hints = ("Only MADV_MERGEABLE pages are scanned; give every page bytes of its own.",
             "n pages at pages_to_scan p: full batches of p, then one that runs off the end "
             "of the list: with n a multiple of p, that last batch processes nothing.")

    def vary(self, rng):
        pts = rng.choice((32, 50, 64, 100, 128))
        batch = rng.randint(1, 5)
        last = 0 if batch > 1 and rng.random() < 0.5 else rng.randint(1, pts - 1)
        pages = (batch - 1) * pts + last
        return {"kernel": rng.choice(eras("ksm_pages_scanned")), "pages_to_scan": pts,
                "batch": batch, "last": last, "budget": pages + rng.randint(0, 3)}

    def scene(self):
        from ..labs.scenes import Scene
        return Scene(kernel=self.p["kernel"])

    def knobs(self):
        return {"pages_to_scan": self.p["pages_to_scan"]}

    def settle(self, s):
        s.knob("run", 1)
        batches = []
        while (not batches or s.stat("full_scans") == 0) and len(batches) < 1000:
            before = s.stat("pages_scanned")
            s.machine.ksmd.scan()
            batches.append(s.stat("pages_scanned") - before)
        s.batches = batches

    def measure(self, s):
        return {"batch": len(s.batches), "pages_in_batch": s.batches[-1] if s.batches else 0}

    def targets(self):
        return {"batch": self.p["batch"], "pages_in_batch": self.p["last"]}

    def setting(self):
        return f"Linux {self.p['kernel']}, pages_to_scan={self.p['pages_to_scan']}"

    def ran(self, s, used, c):
        return (f"The simulator ran it on {self.setting()}: {used} pages; batches "
                f"{', '.join(map(str, s.batches[:12]))}{' ...' if len(s.batches) > 12 else ''}"
                f" pages; full_scans first read 1 after batch {c['batch']}.")

    def diagnose(self, c, off):
        if c["batch"] == 1 and c["pages_in_batch"] == 0:
            return "Nothing was scanned: did you s.madvise() the pages?"
        return "; ".join(f"{k} is {c[k]}, you need {v}" for k, v in off.items()) + "."

    def sample_code(self):
        n = (self.p["batch"] - 1) * self.p["pages_to_scan"] + self.p["last"]
        return "\n".join(["def scenario(s):", "    s.spawn('a')", f"    s.mmap('a', 'mem', {n})",
                          f"    for i in range({n}):",
                          "        s.write('a', i, i.to_bytes(4, 'little'))",
                          "    s.madvise('a')"])


first_sharing = FirstSharing()
late_joiner_counters = LateJoinerCounters()
batch_boundary = BatchBoundary()
scan_ends = ScanEnds()
trace_reading = TraceFigure()
boundary_design = BoundaryDesign()
EXERCISES = (first_sharing, late_joiner_counters, batch_boundary, scan_ends, trace_reading,
             boundary_design)
