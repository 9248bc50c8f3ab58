"""Chapter 04 exercises: the stable tree, chains and max_page_sharing."""
from __future__ import annotations

import errno

from ..labs.scenes import identical_pages
from .base import Exercise, as_ints, as_name

COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared")


class PredictCounters(Exercise):
    name = "predict_counters"
    question = ("Nine identical pages, max_page_sharing=4, two full scans. Give "
                "(pages_shared, pages_sharing, pages_unshared).")
    answer_format = "a tuple of three numbers"
    hints = ("Each KSM page takes at most max_page_sharing mappings: one 'shared' and the "
             "rest 'sharing'.",
             "When every copy is full, stable_tree_search() gives up and the page goes to the "
             "unstable tree to find a partner for a new copy. A last page with no partner stays "
             "there.")

    def __init__(self, pages: int = 9, max_sharing: int = 4):
        super().__init__()
        self.pages, self.max_sharing = pages, max_sharing

    def simulate(self):
        s = identical_pages(self.pages, knobs={"max_page_sharing": self.max_sharing})
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


predict_counters = PredictCounters()
cow_lag = CowLag()
which_errno = WhichErrno()
EXERCISES = (predict_counters, cow_lag, which_errno)
