"""Chapter 10 exercises: the write-timing side channel."""
from __future__ import annotations

import math

from ..labs.sidechannel import NOISY, QUIET, run_experiment, time_to_merge
from .base import Exercise, Feedback, as_int

CANDIDATES = 512
NOISY_CANDIDATES = 1024        # rarer events need a larger sample
VICTIM_PAGES = ATTACKER_PAGES = 500
MAX_FPR, MIN_TPR = 0.01, 0.95
PROBE_THRESHOLD = 500.0


def _as_ns(answer) -> float:
    if isinstance(answer, bool):
        raise TypeError("a number of nanoseconds, not True/False")
    if isinstance(answer, str):
        answer = float(answer.strip().lower().removesuffix("ns").strip())
    if not isinstance(answer, (int, float)) or not math.isfinite(answer) or answer <= 0:
        raise ValueError("a positive number of nanoseconds")
    return float(answer)


class PickThreshold(Exercise):
    name = "pick_threshold"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = (f"No defence, Linux 6.18, write probes, {CANDIDATES} candidates. Pick a "
                f"threshold (ns) that calls fewer than {MAX_FPR:.0%} of the wrong guesses "
                f"merged and still finds at least {MIN_TPR:.0%} of the right ones.")
    answer_format = "a number of nanoseconds"
    hints = ("Look at the histogram: where is the gap between the two humps?",
             "A few wrong guesses land far to the right (outliers: an interrupt during the "
             "probe). No threshold below them can avoid them; there are few enough.")

    def simulate(self):
        exp = run_experiment(candidates=CANDIDATES, noise=QUIET)
        ok = [r.threshold for r in exp.roc() if r.fpr < MAX_FPR and r.tpr >= MIN_TPR]
        # every threshold between two consecutive readings classifies alike: report the
        # open interval of good thresholds from the readings just outside it
        readings = sorted(p.measured_ns for p in exp.probes)
        lo = max((v for v in readings if v < min(ok)), default=0.0)
        return {"answer": (lo, max(ok)), "exp": exp, "best": exp.best()}

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            t = _as_ns(answer)
        except (TypeError, ValueError) as exc:
            return Feedback(False, f"Could not read {answer!r} as {self.answer_format}: {exc}")
        r = self.facts["exp"].rates(t)
        lo, hi = self.facts["answer"]
        if r.fpr < MAX_FPR and r.tpr >= MIN_TPR:
            return Feedback(True, f"Correct: {r}. " + self.explain(self.facts))
        why = ("too many wrong guesses are above it" if r.fpr >= MAX_FPR
               else "too many right guesses are below it")
        return Feedback(False, f"Not quite: {r}; {why}. Try `hint()`.")

    def expected(self):
        lo, hi = self.facts["answer"]
        return math.sqrt(max(lo, 1.0) * hi)        # the geometric middle of the good range

    def explain(self, f):
        lo, hi = f["answer"]
        return (f"Any threshold above {lo:,.0f} ns and up to {hi:,.0f} ns works here: the "
                f"unmerged writes cost ~1 ns in the simulator (a TLB hit, plus the 20 ns "
                f"timer), the merged ones ~4.2 µs (two exits and a COW copy). The few wrong "
                f"guesses above any such threshold are outliers of the noise model, not "
                f"merges. The threshold with the largest TPR − FPR: {f['best']}.")

    def solution(self) -> Feedback:
        return Feedback(None, f"Answer: for example {self.expected():,.0f} ns. "
                              + self.explain(self.facts))


class ProbesNeeded(Exercise):
    name = "probes_needed"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = (f"A noisy host: {NOISY.outlier_rate:.0%} of readings catch an outlier. The "
                f"attacker probes every guess k times (fresh pages each round, since a probe "
                f"unmerges the page) and keeps the smallest reading, threshold "
                f"{PROBE_THRESHOLD:.0f} ns. What is the smallest k that brings the false "
                f"positive rate under {MAX_FPR:.0%}?")
    hints = ("With one probe, a wrong guess is called merged when its one reading is an "
             "outlier.",
             "With the minimum of k readings, it takes k outliers in a row: about "
             f"{NOISY.outlier_rate:.0%} to the power k, if they are independent.")

    def simulate(self):
        fprs = {}
        for k in range(1, 6):
            exp = run_experiment(candidates=NOISY_CANDIDATES, noise=NOISY, repeats=k)
            fprs[k] = exp.rates(PROBE_THRESHOLD)
            if fprs[k].fpr < MAX_FPR:
                return {"answer": k, "rates": fprs}
        raise AssertionError(f"no k <= 5 gets the FPR under {MAX_FPR:.0%}: {fprs}")

    def normalise(self, answer):
        return as_int(answer)

    def explain(self, f):
        rates = "; ".join(f"k={k}: {r}" for k, r in f["rates"].items())
        return (f"{rates}. Taking the minimum keeps a merged page slow (every one of its "
                f"readings is slow) but needs every reading of an unmerged page to be an "
                f"outlier: about {NOISY.outlier_rate:.0%} to the power k. The price: k rounds "
                f"of planting and waiting for ksmd.")


class KsmdWakeups(Exercise):
    name = "ksmd_wakeups"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = (f"{VICTIM_PAGES} victim pages, then {ATTACKER_PAGES} attacker pages, all "
                "mergeable and written before "
                "ksmd starts (pages_to_scan=100, sleep_millisecs=20, smart_scan off). The "
                "victim's last page holds the secret and the attacker's first page is its "
                "copy. How many times must ksmd wake up (batches) until the copy is merged?")
    hints = ("A page merges on ksmd's second visit at the earliest: the first only records "
             "its checksum (chapter 03).",
             "A batch never crosses the end of a full scan, and the batch that finds the end "
             "of the list processes nothing.")

    def simulate(self):
        t = time_to_merge("6.18", victim_pages=VICTIM_PAGES, attacker_pages=ATTACKER_PAGES)
        return {"answer": t["batches"], **t}

    def normalise(self, answer):
        return as_int(answer)

    def explain(self, f):
        per = f["pages_to_scan"]
        first = math.ceil((VICTIM_PAGES + ATTACKER_PAGES) / per)
        victim = math.ceil(VICTIM_PAGES / per)
        return (f"Full scan 1 takes {first} batches of {per} pages, and one more that finds the "
                f"end of the list and only starts scan 2. In scan 2 the victim's "
                f"{VICTIM_PAGES} pages fill batches {first + 2}-{first + 1 + victim} (its secret "
                f"page goes into the unstable tree last), and the attacker's first page, the "
                f"copy, is the first page of batch {f['answer']}: "
                f"it finds its twin in the unstable tree and merges. {f['answer'] - 1} sleeps "
                f"of {f['sleep_millisecs']} ms plus the scanning: {f['ms']:.0f} ms of "
                f"simulated time. A CAIN-style attacker pays this for every round of guesses.")

    def why_not(self, answer, f):
        if answer == f["answer"] - 1:
            return "Close: count the batch that finds the end of the first full scan."
        if answer in (10, 11):
            return "One visit is not enough: the first visit only records the checksum."
        return ""


pick_threshold = PickThreshold()
probes_needed = ProbesNeeded()
ksmd_wakeups = KsmdWakeups()
EXERCISES = (pick_threshold, probes_needed, ksmd_wakeups)
