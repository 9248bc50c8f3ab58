"""Chapter 04 exercises: the stable tree, chains and max_page_sharing."""
from __future__ import annotations

import errno

from ..labs.scenes import identical_pages
from .base import Exercise, as_ints, as_name
from .design import ScenarioDesign, as_scenario, layout_code

COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared")


class PredictCounters(Exercise):
    name = "predict_counters"
    template = ("{pages} identical pages, max_page_sharing={max_sharing}, two full scans. Give "
                "(pages_shared, pages_sharing, pages_unshared).")
    params = {"pages": 9, "max_sharing": 4}
    answer_format = "a tuple of three numbers"
    hints = ("Each KSM page takes at most max_page_sharing mappings: one 'shared' and the "
             "rest 'sharing'.",
             "When every copy is full, stable_tree_search() gives up and the page goes to the "
             "unstable tree to find a partner for a new copy. A last page with no partner stays "
             "there.")

    def __init__(self, pages: int = 9, max_sharing: int = 4):
        super().__init__(pages=pages, max_sharing=max_sharing)

    def vary(self, rng):
        return {"pages": rng.randint(5, 24), "max_sharing": rng.randint(2, 6)}

    def simulate(self):
        s = identical_pages(self.p["pages"], knobs={"max_page_sharing": self.p["max_sharing"]})
        s.machine.ksmd.run_full_scans(2)
        return {"answer": tuple(s.stat(c) for c in COUNTERS),
                "chains": s.stat("stable_node_chains"), "dups": s.stat("stable_node_dups")}

    def normalise(self, answer):
        return as_ints(answer, 3)

    def explain(self, f):
        shared, sharing, unshared = f["answer"]
        return (f"{shared} KSM copies of the same content, in one chain of {f['dups']} dups "
                f"(stable_node_chains={f['chains']}); each copy counts once in pages_shared and "
                f"its other mappers in pages_sharing ({sharing}); {unshared} page found no "
                f"partner and waits in the unstable tree.")

    def why_not(self, answer, f):
        if answer[0] == 1:
            return "One KSM page can take only max_page_sharing mappings; the rest need more copies."
        return ""


class CowLag(Exercise):
    name = "cow_lag"
    fixed_because = ("the lesson is that the write leaves pages_sharing unchanged until the next "
                     "scan; the seed only moves which page is written, not the pair")
    question = ("Four pages merged (pages_shared 1, pages_sharing 3). vm1[2] is written. Give "
                "(pages_sharing right after the write, pages_sharing after one more full scan).")
    answer_format = "a tuple of two numbers"
    hints = ("The write fault (do_wp_page -> wp_page_copy) does not touch KSM's counters.",
             "ksmd fixes the counters when it next visits vm1[2]'s rmap_item.")

    def simulate(self):
        s = identical_pages(4)
        s.machine.ksmd.run_full_scans(2)
        s.write("vm1", 2, b"!")
        right_after = s.stat("pages_sharing")
        s.machine.ksmd.run_full_scans(1)
        return {"answer": (right_after, s.stat("pages_sharing")),
                "volatile": s.stat("pages_volatile")}

    def normalise(self, answer):
        return as_ints(answer, 2)

    def explain(self, f):
        now, later = f["answer"]
        return (f"Right after the write pages_sharing still reads {now}: counters lag after COW. "
                f"The next scan finds vm1[2] no longer a KSM page, remove_rmap_item_from_tree() "
                f"drops it ({later}), and its new checksum makes it volatile "
                f"(pages_volatile={f['volatile']}).")


class WhichErrno(Exercise):
    name = "which_errno"
    fixed_because = "max_page_sharing_store() has one error for this case"
    question = ("While pages are merged, what error does writing 4 to max_page_sharing give? "
                "(the errno name)")
    answer_format = "an errno name in quotes, e.g. 'EINVAL'"
    hints = ("Changing the limit would break the accounting of the existing chains.",)

    def simulate(self):
        s = identical_pages(4)
        s.machine.ksmd.run_full_scans(2)
        try:
            s.knob("max_page_sharing", 4)
            code, text = "no error", ""
        except OSError as exc:
            code = errno.errorcode[exc.errno]
            text = exc.strerror
        s.knob("run", 2)
        s.knob("max_page_sharing", 4)
        return {"answer": code, "text": text, "after": s.stat("max_page_sharing")}

    def normalise(self, answer):
        return as_name(answer).upper()

    def explain(self, f):
        return (f"The kernel refuses while pages_shared > 0: {f['answer']} "
                f"({f['text']}). After `run=2` (unmerge everything) the same write succeeds: "
                f"max_page_sharing={f['after']}.")


class RefusingStore(Exercise):
    """Name the kernel function: the sysfs store handler (mm/ksm.c, Linux 4.13+)."""
    name = "refusing_store"
    kind = "function"
    parse = staticmethod(as_name)
    question = ("Writing to /sys/kernel/mm/ksm/max_page_sharing while pages are merged fails. "
                "Which function of mm/ksm.c refuses the write?")
    answer_format = "a function name in quotes, e.g. 'run_store'"
    hints = ("Every KSM knob has a <knob>_show() and a <knob>_store() in mm/ksm.c.",)
    fixed_because = "one function in mm/ksm.c does this"

    def simulate(self):
        s = identical_pages(4)
        s.machine.ksmd.run_full_scans(2)
        try:
            s.knob("max_page_sharing", 8)
            refused = False
        except OSError:
            refused = True
        return {"answer": "max_page_sharing_store", "refused": refused,
                "shared": s.stat("pages_shared")}

    def explain(self, f):
        return (f"max_page_sharing_store() returns -EBUSY while ksm_pages_shared is non-zero "
                f"(here pages_shared={f['shared']}, refused={f['refused']}): existing chains were "
                f"built for the old limit.")

    def why_not(self, answer, f):
        return {
            "stable_tree_search": "stable_tree_search() reads the limit while merging; it never "
                                  "sees a sysfs write.",
            "run_store": "run_store() handles the run knob (and run=2 is how you empty KSM so the "
                         "write succeeds), not max_page_sharing.",
            "stable_node_dup": "stable_node_dup() picks a dup in a chain during a search; the "
                               "refusal happens in the sysfs handler.",
            "kstrtouint": "kstrtouint() only parses the number; something else decides to refuse.",
        }.get(answer, "")


class ChainDesign(ScenarioDesign):
    """Design a scenario against stable_tree_search()/stable_tree_insert() with chains
    (mm/ksm.c, 4.13+): a full KSM copy starts a new dup."""
    name = "chain_design"
    template = ("With max_page_sharing={max_sharing}, make pages_sharing reach exactly {target} "
                "using at most {budget} pages. Write `def scenario(s):` with calls on the Scene "
                "`s` (s.spawn, s.mmap, s.fill, s.write, s.madvise, s.fork); the checker sets "
                "max_page_sharing, runs your function and {scans} full scans.")
    params = {"max_sharing": 4, "target": 7, "budget": 12, "scans": 3}
    hints = ("One KSM page takes at most max_page_sharing mappers: 1 in pages_shared, the rest "
             "in pages_sharing.",
             "n identical pages with limit k make ceil(n/k) KSM copies; pages_sharing = n - copies "
             "(a single leftover page stays unshared).",
             "Remember s.madvise(name): only MADV_MERGEABLE pages are scanned.")

    def vary(self, rng):
        k = rng.randint(2, 6)
        target = rng.randint(3, 16)
        return {"max_sharing": k, "target": target,
                "budget": self._fewest_pages(k, target) + rng.randint(0, 2)}

    def knobs(self):
        return {"max_page_sharing": self.p["max_sharing"]}

    def targets(self):
        return {"pages_sharing": self.p["target"]}

    def _fewest_pages(self, k, target):
        """The simulator, not a formula, finds the fewest identical pages that reach target."""
        probe = ChainDesign(max_sharing=k, target=target, budget=0, scans=self.p["scans"])
        for n in range(1, 4 * target + 4):
            if probe.run(as_scenario(layout_code([(n, 0x2A)]))).stat("pages_sharing") >= target:
                return n
        raise ValueError("unreachable target")

    def sample_code(self):
        return layout_code([(self._fewest_pages(self.p["max_sharing"], self.p["target"]), 0x2A)])

    def comment(self, c):
        return (" Each KSM copy holds at most max_page_sharing mappers, so a full copy starts a "
                "new dup in the chain." if c["stable_node_dups"] else "")


predict_counters = PredictCounters()
cow_lag = CowLag()
which_errno = WhichErrno()
refusing_store = RefusingStore()
chain_design = ChainDesign()
EXERCISES = (predict_counters, cow_lag, which_errno, refusing_store, chain_design)
