"""Chapter 10 exercises: the write-timing side channel."""
from __future__ import annotations

import math

from ..kernel.events import KvmEvent, NotifierCall
from ..kernel.versions import KNOWN_ERAS
from ..labs.eras import STEPS, EraStory
from ..labs.sidechannel import NOISY, QUIET, TimerNoise, run_experiment, time_to_merge
from ..viz.sidechannel import latency_figure
from .base import Exercise, Feedback, FigureExercise, as_callback, as_int, as_ints, eras

#: eras a seed picks for 4 KiB-page hosts: 5.0 on (before, the jhash2 checksum makes the
#: simulation minutes slower; the channel is the same)
FAST_ERAS = eras(since="5.0")

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
    fixed_because = ("any threshold in a range is right, and the range comes from one measured "
                     "noise model; latency_reading reads a seeded experiment instead")
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
    fixed_because = ("the answer is a small k set by the noise model's outlier rate, and each "
                     "variant costs several 1,024-candidate experiments")
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
    template = ("Linux {kernel}. {victim} victim pages, then {attacker} attacker pages, all "
                "mergeable and written before ksmd starts (pages_to_scan=100, "
                "sleep_millisecs=20, smart_scan off). The victim's last page holds the secret "
                "and the attacker's first page is its copy. How many times must ksmd wake up "
                "(batches) until the copy is merged?")
    params = {"kernel": "6.18", "victim": VICTIM_PAGES, "attacker": ATTACKER_PAGES}
    hints = ("A page merges on ksmd's second visit at the earliest: the first only records "
             "its checksum (chapter 03).",
             "A batch never crosses the end of a full scan, and a batch that uses up "
             "pages_to_scan on the last page leaves finding the end of the list to the next "
             "one, which processes nothing.")

    def vary(self, rng):
        return {"kernel": rng.choice(FAST_ERAS), "victim": rng.randint(30, 600),
                "attacker": rng.randint(10, 300)}

    def simulate(self):
        t = time_to_merge(self.p["kernel"], victim_pages=self.p["victim"],
                          attacker_pages=self.p["attacker"])
        return {"answer": t["batches"], **t}

    def normalise(self, answer):
        return as_int(answer)

    def explain(self, f):
        per, v, a = f["pages_to_scan"], self.p["victim"], self.p["attacker"]
        return (f"Full scan 1 visits all {v + a} pages only to record their checksums, in "
                f"batches of at most {per} that never cross the end of the scan (and a batch "
                f"that ends exactly on the last page leaves an empty one to find the end). "
                f"Scan 2 visits the victim's {v} pages first, its secret page last, into the "
                f"unstable tree; the attacker's first page, the copy, comes next, finds its "
                f"twin there and merges, in batch {f['answer']}. {f['answer'] - 1} sleeps of "
                f"{f['sleep_millisecs']} ms plus the scanning: {f['ms']:.0f} ms of simulated "
                f"time. A CAIN-style attacker pays this for every round of guesses.")

    def why_not(self, answer, f):
        per, total = f["pages_to_scan"], self.p["victim"] + self.p["attacker"]
        if answer == f["answer"] - 1:
            return "Close: count every wake-up, also one that only finds the end of a full scan."
        if answer in (math.ceil(total / per), math.ceil(total / per) + 1):
            return "One visit is not enough: the first visit only records the checksum."
        return ""


class RetryCallback(Exercise):
    """Name the kernel function: the KVM mmu notifier callback that bumps
    mmu_invalidate_seq during the probe's COW (virt/kvm/kvm_main.c), per era."""
    name = "retry_callback"
    kind = "function"
    parse = staticmethod(as_callback)
    few_answers_because = ("the seed picks the era; the answer is one of two callbacks, "
                           "change_pte before 3.7 and invalidate_range_end from 3.7")
    template = ("Linux {kernel}. The attacker's write probe hits a merged page: the EPT "
                "violation exits, KVM faults the page in writable, and the host's copy-on-write "
                "sends mmu notifications while KVM is still in its fault. KVM then retries the "
                "fault, which is why the probe costs two exits. Which KVM notifier callback, "
                "the last one before the retry, bumped mmu_invalidate_seq?")
    params = {"kernel": "6.18"}
    answer_format = "a callback name in quotes, e.g. 'change_pte'"
    hints = ("KVM's fault snapshots mmu_invalidate_seq before asking for the page, and "
             "mmu_invalidate_retry() compares it afterwards.",
             "From 3.7 the COW's notifications are bracketed: start counts the invalidation "
             "in, the other end bumps the sequence.")

    def vary(self, rng):
        return {"kernel": rng.choice(KNOWN_ERAS)}

    def simulate(self):
        rec = EraStory(self.p["kernel"], steps=(STEPS[0], STEPS[1], STEPS[3])).run_all()[2]
        last, calls = None, []
        for e in rec.events:
            if isinstance(e, NotifierCall):
                last = e.op
                calls.append(e.op)
            elif isinstance(e, KvmEvent) and e.action == "retry":
                break
        assert rec.retries == 1 and last is not None, (self.p["kernel"], rec.events)
        return {"answer": last, "calls": calls, "exits": rec.exits}

    def explain(self, f):
        return (f"kvm_mmu_notifier_{f['answer']}(): the notifier calls during the exit were "
                f"{', '.join(f['calls'])}; the last one bumped mmu_invalidate_seq, so "
                f"mmu_invalidate_retry() saw a new sequence and KVM retried ({f['exits']} exits "
                f"for the probe).")

    def why_not(self, answer, f):
        if answer == "invalidate_range_start":
            return ("range_start counts the invalidation in (mmu_invalidate_in_progress); "
                    "the sequence moves at the other end.")
        if answer == "change_pte" and f["answer"] != "change_pte":
            return "From 3.7 the COW's change_pte is inside a bracket; what closes it?"
        if answer == "invalidate_range_end" and f["answer"] != answer:
            return "Before 3.7 set_pte_at_notify() called one callback alone, with no bracket."
        return ""


class LatencyFigure(FigureExercise):
    """Read the attacker's histogram (viz.sidechannel.latency_figure)."""
    name = "latency_reading"
    template = ("Linux {kernel}, {probe} probes, {candidates} candidates (half right guesses, "
                "half wrong), outlier rate {rate:.1%}. Draw `ch10.latency_reading.figure()`: the "
                "dotted line is a threshold of {threshold} ns. Read it: how many right guesses "
                "and how many wrong guesses does that threshold call merged? Answer (right, "
                "wrong).")
    params = {"kernel": "6.18", "probe": "write", "candidates": 256, "rate": 0.005,
              "threshold": 1000, "seed": 0}
    answer_format = "a tuple of two numbers"
    hints = ("The box by the threshold line gives TPR and FPR.",
             "TPR is the share of the right guesses called merged, FPR the share of the wrong "
             "ones; each class has half the candidates.")

    def vary(self, rng):
        return {"kernel": rng.choice(FAST_ERAS), "probe": rng.choice(("write", "read")),
                "candidates": rng.choice((64, 128, 200, 256)),
                "rate": rng.choice((0.005, 0.02, 0.05, 0.1)),
                "threshold": rng.choice((30, 100, 300, 1000, 3000)), "seed": rng.randrange(1000)}

    def simulate(self):
        exp = run_experiment(self.p["kernel"], candidates=self.p["candidates"],
                             probe=self.p["probe"], noise=TimerNoise(outlier_rate=self.p["rate"]),
                             seed=self.p["seed"])
        r = exp.rates(self.p["threshold"])
        return {"answer": (r.tp, r.fp), "exp": exp, "rates": r}

    def draw(self, f):
        return latency_figure(f["exp"], self.p["threshold"])

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        r = f["rates"]
        slow = ("exits twice and copies the page" if self.p["probe"] == "write" else
                "exits once, to map the KSM page whose spte the merge zapped")
        return (f"{r}. Right guesses are merged pages: the {self.p['probe']} probe {slow}, so "
                f"they land to the right; wrong guesses are fast except for the timer's "
                f"outliers ({self.p['rate']:.1%} of readings).")


pick_threshold = PickThreshold()
probes_needed = ProbesNeeded()
ksmd_wakeups = KsmdWakeups()
retry_callback = RetryCallback()
latency_reading = LatencyFigure()
EXERCISES = (pick_threshold, probes_needed, ksmd_wakeups, retry_callback, latency_reading)
