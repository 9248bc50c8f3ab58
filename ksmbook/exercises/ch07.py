"""Chapter 07 exercises: MMU notifiers and KVM through the eras."""
from __future__ import annotations

from ..labs.eras import STEPS, EraStory, measure_era, untouched_read
from ..kernel.versions import parse_version
from .base import Exercise, as_int

READS_THEN_WRITE = (STEPS[0], STEPS[1], ("read", "the guest reads gfn 0"),
                    ("read gfn 1", "the guest reads gfn 1"),
                    ("write gfn 1", "the guest writes gfn 1"))
CANDIDATE_KERNELS = ("2.6.32", "3.6", "3.7", "4.13", "6.10")


class ExitsForSequence(Exercise):
    name = "exits_for_sequence"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = ("Linux 3.7. After ksmd merged gfn 0 and gfn 1, the guest reads gfn 0, then "
                "reads gfn 1, then writes gfn 1. How many EPT-violation exits do these three "
                "accesses take in total?")
    hints = ("From 3.7 the merge leaves both gfns without an spte: invalidate_range_start "
             "zapped them.",
             "A read of a KSM page maps it read-only (one exit). A write to a read-only spte "
             "copies the page in the host, and that copy's invalidation makes KVM's own fault "
             "retry.")

    def simulate(self):
        recs = EraStory("3.7", steps=READS_THEN_WRITE).run_all()
        per = [(r.name, r.exits) for r in recs[2:]]
        return {"answer": sum(e for _n, e in per), "per": per,
                "seed": sum(r.exits for r in EraStory("2.6.32", steps=READS_THEN_WRITE)
                            .run_all()[2:])}

    def normalise(self, answer):
        return as_int(answer)

    def explain(self, f):
        parts = ", ".join(f"{n}: {e}" for n, e in f["per"])
        return (f"{parts}. Each read finds no spte (zapped at the merge) and exits once to "
                f"map the KSM page read-only; the write exits on that read-only spte, its "
                f"copy-on-write bumps mmu_invalidate_seq, so KVM retries and exits once more. "
                f"In 2.6.32 the same accesses take {f['seed']} exits: change_pte had already "
                f"remapped both sptes.")

    def why_not(self, answer, f):
        if answer == f["seed"]:
            return "That is the seed era's count: in 3.7 the merge zapped the sptes."
        if answer == 3:
            return "Count the write's retry: a copy-on-write invalidates the page during the exit."
        return ""


def _version_key(v: str):
    return parse_version(v)


class FreeReadEras(Exercise):
    name = "free_read_eras"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = ("Which of these kernels let the guest read a page that ksmd has just merged "
                "without any exit: 2.6.32, 3.6, 3.7, 4.13, 6.10? Answer with a tuple of "
                "version strings, e.g. ('4.13', '6.10').")
    answer_format = "a tuple of version strings"
    hints = ("The read is free only if change_pte could remap the spte in place.",
             "Look up when 6bdb913f0a70 ('mm: wrap calls to set_pte_at_notify with "
             "invalidate_range_start and invalidate_range_end') was merged: its date is "
             "2012-10-09.")

    def simulate(self):
        rows = {k: measure_era(k) for k in CANDIDATE_KERNELS}
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
        if "3.6" not in answer and "2.6.32" in answer:
            return ("3.6 is often given as the bracket's release, but the commit went into "
                    "3.7.")
        if "3.7" in answer:
            return "In 3.7 the merge's invalidate_range_start zaps the spte first."
        return ""


class UntouchedRead(Exercise):
    name = "untouched_read"
    fixed_because = "not yet seeded: the book's scene is used for every student"
    question = ("Linux 2.6.32. QEMU itself wrote 'A'×4096 into gfn 0 and gfn 1 (the guest "
                "never touched them), ksmd merged them, and then the guest reads gfn 0 for the "
                "first time. How many exits does that read take, and is gfn 0 still backed by "
                "the KSM page afterwards? Answer (exits, True or False).")
    answer_format = "a pair (exits, True/False)"
    hints = ("The guest never touched the pages, so there was no spte for change_pte to "
             "remap: the read exits.",
             "Before 2.6.38 hva_to_pfn() asked get_user_pages() for a writable page on every "
             "fault, reads included.")

    def simulate(self):
        seed, later = untouched_read("2.6.32"), untouched_read("2.6.38")
        return {"answer": (seed["exits"], seed["stays_merged"]),
                "later": (later["exits"], later["stays_merged"])}

    def normalise(self, answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
            raise TypeError("a pair such as (1, True)")
        answer = tuple(answer)
        if len(answer) != 2 or not isinstance(answer[1], bool):
            raise ValueError("two items: a number of exits and True or False")
        return (as_int(answer[0]), answer[1])

    def explain(self, f):
        exits, merged = f["answer"]
        return (f"{exits} exits and the merge is {'kept' if merged else 'broken'}: the read's "
                f"writable get_user_pages() ran do_wp_page(), which copied the KSM page; that "
                f"copy's change_pte bumped the sequence, so KVM retried and exited again. From "
                f"2.6.38 a read fault maps the page read-only: "
                f"{f['later'][0]} exit, merge {'kept' if f['later'][1] else 'broken'}. This is "
                f"why change_pte mattered so much in the seed era: only pages whose spte it "
                f"remapped could be read without undoing the merge.")

    def why_not(self, answer, f):
        if answer == f["later"]:
            return "That is what 2.6.38 and later do. What did hva_to_pfn() ask for in 2.6.32?"
        return ""


exits_for_sequence = ExitsForSequence()
free_read_eras = FreeReadEras()
untouched_read_exercise = UntouchedRead()
EXERCISES = (exits_for_sequence, free_read_eras, untouched_read_exercise)
