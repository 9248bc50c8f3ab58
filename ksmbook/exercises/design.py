"""The design-a-scenario kind: the student writes ``def scenario(s):`` against a Scene
(a simulated Machine with named processes); the checker sets the knobs, runs it, lets
ksmd (ksm_do_scan(), mm/ksm.c) do full scans and compares the counters in
/sys/kernel/mm/ksm with the targets, explaining what happened either way.

The sample answer is code too, and it is run in the simulator like the student's."""
from __future__ import annotations

from ..labs.scenes import Scene
from .base import Exercise, Feedback

SHOWN = ("pages_shared", "pages_sharing", "pages_unshared", "ksm_zero_pages",
         "stable_node_chains", "stable_node_dups")


def layout_code(groups=(), unique: int = 0, zero: int = 0, proc: str = "vm1") -> str:
    """Sample code: one process with ``groups`` [(count, byte)] of identical pages,
    ``zero`` zero-filled pages and ``unique`` pages of their own."""
    n = sum(c for c, _ in groups) + unique + zero
    lines = ["def scenario(s):", f"    s.spawn({proc!r})", f"    s.mmap({proc!r}, 'mem', {n})"]
    at = 0
    for count, byte in groups:
        lines.append(f"    s.fill({proc!r}, {at}, {count}, {byte:#04x})")
        at += count
    if zero:
        lines.append(f"    s.fill({proc!r}, {at}, {zero}, 0)")
        at += zero
    if unique:
        lines.append(f"    for i in range({unique}):")
        lines.append(f"        s.write({proc!r}, {at} + i, bytes([0x80 + i, 1]))")
    lines.append(f"    s.madvise({proc!r})")
    return "\n".join(lines)


def as_scenario(answer):
    """A function, or code that defines ``scenario`` (the key's sample)."""
    if isinstance(answer, str) and "def scenario" in answer:
        ns: dict = {}
        exec(answer, ns)
        answer = ns["scenario"]
    if not callable(answer):
        raise TypeError("a function: def scenario(s): ... then pass scenario (no brackets)")
    return answer


class ScenarioDesign(Exercise):
    """Subclasses give ``knobs()``, ``targets()`` (stat -> value), ``params['budget']``
    (pages), ``params['scans']`` and ``sample_code()``."""
    kind = "design"
    answer_format = "a function scenario(s)"

    def knobs(self) -> dict:
        return {}

    def targets(self) -> dict:
        raise NotImplementedError

    def sample_code(self) -> str:
        raise NotImplementedError

    def run(self, fn) -> Scene:
        s = Scene()
        for k, v in self.knobs().items():
            s.knob(k, v)
        fn(s)
        s.knob("run", 1)
        s.machine.ksmd.run_full_scans(self.p["scans"])
        return s

    def simulate(self):
        code = self.sample_code()
        s = self.run(as_scenario(code))
        got = {k: s.stat(k) for k in SHOWN}
        assert all(got[k] == v for k, v in self.targets().items()), (self.name, got)
        return {"answer": code, "pages": sum(r.pages for r in s.regions.values()), **got}

    def explain(self, f):
        reached = ", ".join(f"{k}={f[k]}" for k in self.targets())
        return (f"For example ({f['pages']} pages):\n{f['answer']}\nreaches {reached} in the "
                f"simulator. Other designs are accepted when the simulator agrees.")

    def normalise(self, answer):
        return as_scenario(answer)

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            fn = self.normalise(answer)
        except TypeError as exc:
            return Feedback(False, f"Could not use {answer!r}: {exc}")
        try:
            s = self.run(fn)
        except Exception as exc:                 # the student's code: report, don't crash
            return Feedback(False, f"Your scenario raised {type(exc).__name__}: {exc}")
        used = sum(r.pages for r in s.regions.values())
        c = {k: s.stat(k) for k in SHOWN}
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs().items()) or "default knobs"
        saw = (f"The simulator ran it with {knobs}: {used} pages mapped in {len(s.procs)} "
               f"process(es); after {self.p['scans']} full scans "
               + ", ".join(f"{k}={v}" for k, v in c.items()) + ".")
        budget = self.p["budget"]
        if used > budget:
            return Feedback(False, f"Not quite: {used} pages is more than the {budget} allowed. "
                                   + saw)
        off = {k: v for k, v in self.targets().items() if c[k] != v}
        if not off:
            return Feedback(True, "Correct. " + saw + self.comment(c))
        if c["pages_shared"] == 0 and c["ksm_zero_pages"] == 0 and c["pages_unshared"] == 0:
            why = "Nothing reached KSM: did you s.madvise() the pages?"
        elif c["pages_shared"] == 0 and c["ksm_zero_pages"] == 0:
            why = "Nothing merged: give several pages the same bytes."
        else:
            why = "; ".join(f"{k} is {c[k]}, you need {v}" for k, v in off.items()) + "."
        return Feedback(False, f"Not quite. {why} " + saw + " Try `hint()`.")

    def comment(self, c) -> str:
        return ""
