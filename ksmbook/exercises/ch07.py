"""Chapter 07 exercises: MMU notifiers and KVM through the eras."""
from __future__ import annotations

from ..kernel.events import KvmEvent, NotifierCall
from ..kernel.versions import KNOWN_ERAS, parse_version
from ..labs.eras import STEPS, EraStory, measure_era, untouched_read
from ..viz.kvm import state_table_figure
from .base import Exercise, Feedback, FigureExercise, as_callback, as_int, as_ints, eras

READS_THEN_WRITE = (STEPS[0], STEPS[1], ("read", "the guest reads gfn 0"),
                    ("read gfn 1", "the guest reads gfn 1"),
                    ("write gfn 1", "the guest writes gfn 1"))
CANDIDATE_KERNELS = ("2.6.32", "3.6", "3.7", "4.13", "6.10")
#: the guest's accesses a seed strings together, after "fault in" and "merge"
ACCESSES = {"read": ("read", "the guest reads gfn 0"),
            "read gfn 1": ("read gfn 1", "the guest reads gfn 1"),
            "write": ("write", "the guest writes gfn 0"),
            "write gfn 1": ("write gfn 1", "the guest writes gfn 1"),
            "merge": ("merge", "ksmd runs two full scans")}
WORDS = {"read": "reads gfn 0", "read gfn 1": "reads gfn 1", "write": "writes gfn 0",
         "write gfn 1": "writes gfn 1", "merge": "ksmd runs two more full scans"}


def _sequence_text(names) -> str:
    return ", then ".join(("the guest " + WORDS[n]) if n != "merge" else WORDS[n] for n in names)


def _steps(names) -> tuple:
    return (STEPS[0], STEPS[1]) + tuple(ACCESSES[n] for n in names)


class ExitsForSequence(Exercise):
    name = "exits_for_sequence"
    answer_format = "a tuple of numbers, one per access"
    template = ("Linux {kernel}. After ksmd merged gfn 0 and gfn 1 (which the guest had "
                "written), {sequence}. How many EPT-violation exits does each of these accesses "
                "take? Answer a tuple, one number per access, in order.")
    params = {"kernel": "3.7", "names": ("read", "read gfn 1", "write gfn 1")}
    hints = ("Which notifier does the merge send in this era: change_pte remapping the spte "
             "in place (2.6.32-3.6), or invalidate_range_start zapping it (3.7 on)?",
             "A read of a KSM page maps it read-only (one exit). A write to a read-only spte "
             "copies the page in the host, and that copy's invalidation makes KVM's own fault "
             "retry.")

    def _set_question(self):
        self.p["sequence"] = _sequence_text(self.p["names"])
        super()._set_question()

    def vary(self, rng):
        names = tuple(rng.choice(("read", "read gfn 1", "write", "write gfn 1"))
                      for _ in range(rng.randint(2, 6)))
        return {"kernel": rng.choice(KNOWN_ERAS), "names": names}

    def simulate(self):
        steps = _steps(self.p["names"])
        recs = EraStory(self.p["kernel"], steps=steps).run_all()
        per = [(r.name, r.exits) for r in recs[2:]]
        other = "2.6.32" if parse_version(self.p["kernel"]) >= (3, 7) else "3.7"
        return {"answer": tuple(e for _n, e in per), "per": per, "other": other,
                "other_exits": tuple(r.exits for r in EraStory(other, steps=steps).run_all()[2:])}

    def normalise(self, answer):
        return as_ints(answer, len(self.p["names"]))

    def explain(self, f):
        parts = ", ".join(f"{n}: {e}" for n, e in f["per"])
        return (f"{parts}. In Linux {self.p['kernel']} the merge "
                + ("remapped both sptes in place (change_pte), so a first read is free"
                   if parse_version(self.p["kernel"]) < (3, 7) else
                   "zapped both sptes (invalidate_range_start), so a first access exits")
                + "; a write to a read-only spte exits, its copy-on-write invalidates the page "
                  "during the exit, so KVM retries and exits once more; an access through a "
                  f"writable spte is free. In {f['other']} the same accesses take "
                  f"{f['other_exits']} exits.")

    def why_not(self, answer, f):
        if answer == f["other_exits"] and answer != f["answer"]:
            return f"That is {f['other']}'s count: what does this era's merge do to the sptes?"
        return ""


def _version_key(v: str):
    return parse_version(v)


class FreeReadEras(Exercise):
    name = "free_read_eras"
    template = ("Which of these kernels let the guest read a page that ksmd has just merged "
                "without any exit: {listed}? Answer with a tuple of version strings, e.g. "
                "('4.13', '6.10').")
    params = {"kernels": CANDIDATE_KERNELS, "listed": ", ".join(CANDIDATE_KERNELS)}

    def vary(self, rng):
        picked = tuple(sorted(rng.sample(KNOWN_ERAS, 5), key=parse_version))
        return {"kernels": picked, "listed": ", ".join(picked)}
    answer_format = "a tuple of version strings"
    hints = ("The read is free only if change_pte could remap the spte in place.",
             "Look up when 6bdb913f0a70 ('mm: wrap calls to set_pte_at_notify with "
             "invalidate_range_start and invalidate_range_end') was merged: its date is "
             "2012-10-09.")

    def simulate(self):
        rows = {k: measure_era(k) for k in self.p["kernels"]}
        free = tuple(k for k, r in rows.items() if r.read == 0)
        return {"answer": free, "rows": rows}

    def normalise(self, answer):
        if isinstance(answer, str):
            answer = (answer,)
        if not hasattr(answer, "__iter__"):
            raise TypeError("a tuple of version strings, e.g. ('2.6.32',)")
        out = []
        for a in answer:
            a = str(a).strip()
            parse_version(a)
            out.append(a)
        return tuple(sorted(set(out), key=_version_key))

    def explain(self, f):
        rows = "; ".join(f"{k}: {r.read} exit{'s' if r.read != 1 else ''} ({r.merge_action})"
                         for k, r in f["rows"].items())
        return (f"{rows}. 6bdb913f0a70 is dated 2012-10-09, after v3.6 shipped (2012-09-30): "
                f"it went into 3.7, so 3.6 still remaps in place. From 3.7 range_start zaps "
                f"the spte before change_pte arrives, and 6.10 deleted change_pte altogether.")

    def why_not(self, answer, f):
        if "3.6" in self.p["kernels"] and "3.6" not in answer and "2.6.32" in answer:
            return ("3.6 is often given as the bracket's release, but the commit went into "
                    "3.7.")
        late = [k for k in answer if parse_version(k) >= (3, 7)]
        if late:
            return (f"In {late[0]} the merge's invalidate_range_start zaps the spte before "
                    f"change_pte could remap it.")
        return ""


class UntouchedRead(Exercise):
    name = "untouched_read"
    few_answers_because = ("the seed picks the era; the read breaks the merge or not, with "
                           "the exits that go with each: two answers")
    params = {"kernel": "2.6.32"}
    template = ("Linux {kernel}. QEMU itself wrote 'A'×4096 into gfn 0 and gfn 1 (the guest "
                "never touched them), ksmd merged them, and then the guest reads gfn 0 for the "
                "first time. How many exits does that read take, and is gfn 0 still backed by "
                "the KSM page afterwards? Answer (exits, True or False).")
    answer_format = "a pair (exits, True/False)"
    hints = ("The guest never touched the pages, so there was no spte for change_pte to "
             "remap: the read exits.",
             "Before 2.6.38 hva_to_pfn() asked get_user_pages() for a writable page on every "
             "fault, reads included.")

    def vary(self, rng):
        return {"kernel": rng.choice(KNOWN_ERAS)}

    def simulate(self):
        mine = untouched_read(self.p["kernel"])
        other = "2.6.38" if parse_version(self.p["kernel"]) < (2, 6, 38) else "2.6.32"
        them = untouched_read(other)
        return {"answer": (mine["exits"], mine["stays_merged"]), "other": other,
                "later": (them["exits"], them["stays_merged"])}

    def normalise(self, answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
            raise TypeError("a pair such as (1, True)")
        answer = tuple(answer)
        if len(answer) != 2 or not isinstance(answer[1], bool):
            raise ValueError("two items: a number of exits and True or False")
        return (as_int(answer[0]), answer[1])

    def explain(self, f):
        exits, merged = f["answer"]
        oe, om = f["later"]
        seed = parse_version(self.p["kernel"]) < (2, 6, 38)
        how = ("the read's writable get_user_pages() ran do_wp_page(), which copied the KSM "
               "page; that copy's notifier bumped the sequence, so KVM retried and exited "
               "again" if seed else
               "from 2.6.38 a read fault asks get_user_pages() for a read-only page and maps "
               "the KSM page read-only")
        return (f"{exits} exit{'s' if exits != 1 else ''} and the merge is "
                f"{'kept' if merged else 'broken'}: {how}. In {f['other']}: {oe} exit"
                f"{'s' if oe != 1 else ''}, merge {'kept' if om else 'broken'}. This is why "
                f"change_pte mattered so much in the seed era: only pages whose spte it "
                f"remapped could be read without undoing the merge.")

    def why_not(self, answer, f):
        if answer == f["later"]:
            return (f"That is what {f['other']} does. What did hva_to_pfn() ask for in "
                    f"{self.p['kernel']}?")
        return ""


class MergeNotifier(Exercise):
    """Name the kernel function: the KVM notifier callback (virt/kvm/kvm_main.c) that the
    merge's write_protect_page()/replace_page() reaches first, per era."""
    name = "merge_notifier"
    kind = "function"
    parse = staticmethod(as_callback)
    few_answers_because = ("the seed picks the era; the answer is one of two callbacks, "
                           "change_pte before 3.7 and invalidate_range_start from 3.7")
    template = ("Linux {kernel}. The guest wrote gfn 0 and gfn 1, so KVM has an spte for each; "
                "then ksmd merges them. Which mmu notifier callback of KVM is the first to "
                "change or remove gfn 0's spte during the merge?")
    params = {"kernel": "6.18"}
    answer_format = "a callback name in quotes, e.g. 'invalidate_page'"
    hints = ("Before 3.7 set_pte_at_notify() called change_pte on its own; from 3.7 "
             "(6bdb913f0a70) it is bracketed by invalidate_range_start/end.",
             "A bracketed change_pte finds the spte already gone.")

    def vary(self, rng):
        return {"kernel": rng.choice(KNOWN_ERAS)}

    def simulate(self):
        rec = EraStory(self.p["kernel"]).run_all()[1]
        last_call, first = None, None
        for e in rec.events:
            if isinstance(e, NotifierCall):
                last_call = e.op
            elif isinstance(e, KvmEvent) and e.action in ("spte_zap", "spte_remap"):
                first = (last_call, e.action)
                break
        assert first is not None, "the merge must touch an spte"
        calls = [e.op for e in rec.events if isinstance(e, NotifierCall)]
        return {"answer": first[0], "action": first[1], "calls": calls}

    def explain(self, f):
        what = "remapped it in place" if f["action"] == "spte_remap" else "zapped it"
        return (f"kvm_mmu_notifier_{f['answer']}() {what}. The merge's notifier calls, in "
                f"order: {', '.join(f['calls'][:6])}{' ...' if len(f['calls']) > 6 else ''}.")

    def why_not(self, answer, f):
        if answer == "change_pte":
            return ("From 3.7 change_pte still comes, but inside the bracket: "
                    "invalidate_range_start has already zapped the spte (change_pte_miss).")
        if answer == "invalidate_range_start":
            return "Before 3.7 nothing brackets set_pte_at_notify(): its own callback comes alone."
        if answer == "invalidate_page":
            return ("invalidate_page was the fallback for notifiers without change_pte; KVM "
                    "has one.")
        if answer == "invalidate_range_end":
            return "range_end comes after the change; something removed the spte before."
        return ""


class SpteFigure(FigureExercise):
    """Read the state table (viz.kvm.state_table_figure): KVM's sptes per step."""
    name = "spte_table"
    template = ("Linux {kernel}. The guest writes gfn 0 and gfn 1, ksmd merges them, then "
                "{sequence}. Draw `ch07.spte_table.figure()` and read its last column: which "
                "host pfn does the spte of gfn 0 map, and which the spte of gfn 1? Answer "
                "(pfn, pfn), e.g. (0x1c, 0x1f), with None for a gfn that has no spte.")
    params = {"kernel": "3.7", "names": ("read", "write gfn 1", "write")}
    answer_format = "a pair of pfns (numbers or None)"
    hints = ("The rows 'spte gfn 0' and 'spte gfn 1' show RO/RW and the pfn, or 'none'.",
             "A write to the KSM page gives the guest frame a copy with a new pfn; a read maps "
             "the KSM page itself.")

    def _set_question(self):
        self.p["sequence"] = _sequence_text(self.p["names"])
        super()._set_question()

    def vary(self, rng):
        names = tuple(rng.choice(tuple(ACCESSES)) for _ in range(rng.randint(1, 5)))
        return {"kernel": rng.choice(KNOWN_ERAS), "names": names}

    def simulate(self):
        steps = _steps(self.p["names"])
        recs = EraStory(self.p["kernel"], steps=steps).run_all()
        last = recs[-1].state
        return {"answer": tuple(st.spte_pfn for st in last), "records": recs, "steps": steps,
                "writable": tuple(st.spte_writable for st in last),
                "ksm": tuple(st.host_ksm for st in last)}

    def draw(self, f):
        return state_table_figure(f["records"], f["steps"],
                                  title=f"Host PTE and KVM spte after each step (Linux "
                                        f"{self.p['kernel']})")

    def normalise(self, answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
            raise TypeError("a pair such as (0x1c, None)")
        answer = tuple(answer)
        if len(answer) != 2:
            raise ValueError("two items: the pfn behind gfn 0's spte and gfn 1's")
        return tuple(None if a is None or (isinstance(a, str) and a.strip().lower() == "none")
                     else as_int(a) for a in answer)

    def explain(self, f):
        parts = []
        for g, (pfn, rw, ksm) in enumerate(zip(f["answer"], f["writable"], f["ksm"])):
            parts.append(f"gfn {g}: " + ("no spte" if pfn is None else
                                          f"{'RW' if rw else 'RO'} {pfn:#x}"
                                          + (" (the KSM page)" if ksm and not rw else "")))
        return ("; ".join(parts) + ". The guest's first writes install sptes; the merge "
                + ("remaps them to the KSM page in place (change_pte, before 3.7)"
                   if parse_version(self.p["kernel"]) < (3, 7) else
                   "zaps them (invalidate_range_start, 3.7 on)")
                + "; a read maps the KSM page read-only, a write gets the guest a copy of its "
                  "own with a new pfn.")


class ExitsDesign(Exercise):
    """Design the guest's accesses: the checker replays them on the chosen era's KVM
    (EraStory: kvm_mmu_page_fault() exits, mmu notifier invalidations, retries)."""
    name = "exits_design"
    kind = "design"
    template = ("Linux {kernel}. After ksmd merged gfn 0 and gfn 1 (which the guest had "
                "written), choose at most {budget} guest accesses that take exactly {exits} "
                "EPT-violation exits in all. Answer a tuple of accesses, each one of 'read', "
                "'read gfn 1', 'write', 'write gfn 1' ('read'/'write' are gfn 0).")
    params = {"kernel": "6.18", "exits": 3, "budget": 3, "sample": ("read", "write gfn 1")}
    answer_format = "a tuple of access names, e.g. ('read', 'write gfn 1')"
    hints = ("After a zapping merge (3.7 on) a first read exits once; before 3.7 it is free.",
             "A write to a read-only spte exits, copies the page and retries: two exits. An "
             "access through a writable spte is free.")
    NAMES = ("read", "read gfn 1", "write", "write gfn 1")

    def vary(self, rng):
        # the target is what a random sequence takes in the simulator, so it is reachable
        kernel = rng.choice(KNOWN_ERAS)
        sample = tuple(rng.choice(self.NAMES) for _ in range(rng.randint(1, 4)))
        total = sum(self._exits(kernel, sample))
        return {"kernel": kernel, "sample": sample, "exits": total,
                "budget": len(sample) + rng.randint(0, 1)}

    def normalise(self, answer):
        if isinstance(answer, str):
            answer = (answer,)
        if not hasattr(answer, "__iter__"):
            raise TypeError("a tuple of access names, e.g. ('read', 'write gfn 1')")
        out = tuple(str(a).strip().lower() for a in answer)
        bad = [a for a in out if a not in self.NAMES]
        if bad:
            raise ValueError(f"not an access: {', '.join(bad)} (they are: {', '.join(self.NAMES)})")
        return out

    @staticmethod
    def _exits(kernel, names) -> tuple:
        return tuple(r.exits for r in EraStory(kernel, steps=_steps(names)).run_all()[2:])

    def exits(self, names) -> tuple:
        return self._exits(self.p["kernel"], names)

    def simulate(self):
        per = self.exits(self.p["sample"])
        assert sum(per) == self.p["exits"], (self.p, per)
        return {"answer": self.p["sample"], "per": per}

    def explain(self, f):
        return (f"For example {f['answer']}: {', '.join(map(str, f['per']))} exits. Other "
                f"sequences are accepted when the simulator agrees.")

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            names = self.normalise(answer)
        except (TypeError, ValueError) as exc:
            return Feedback(False, f"Could not read {answer!r} as {self.answer_format}: {exc}")
        if not names or len(names) > self.p["budget"]:
            return Feedback(False, f"Not quite: use 1 to {self.p['budget']} accesses, not "
                                   f"{len(names)}.")
        per = self.exits(names)
        saw = (f"The simulator replayed {', '.join(names)} on Linux {self.p['kernel']}: "
               f"{', '.join(f'{n}: {e}' for n, e in zip(names, per))} exits, {sum(per)} in all.")
        if sum(per) == self.p["exits"]:
            return Feedback(True, "Correct. " + saw)
        return Feedback(False, f"Not quite. {saw} You need {self.p['exits']}. Try `hint()`.")


exits_for_sequence = ExitsForSequence()
free_read_eras = FreeReadEras()
untouched_read_exercise = UntouchedRead()
merge_notifier = MergeNotifier()
spte_table = SpteFigure()
exits_design = ExitsDesign()
EXERCISES = (exits_for_sequence, free_read_eras, untouched_read_exercise, merge_notifier,
             spte_table, exits_design)
