"""The design-a-scenario kind: the student writes ``def scenario(s):`` against a Scene
(a simulated Machine with named processes); the checker sets the knobs, runs it, lets
ksmd (ksm_do_scan(), mm/ksm.c) do full scans and compares the counters in
/sys/kernel/mm/ksm with the targets, explaining what happened either way.

The sample answer is code too, and it is run in the simulator like the student's."""
from __future__ import annotations

from ..labs.scenes import Scene
from ..uapi import KSM_SYSFS
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


def as_function(answer, name: str = "scenario", args: str = "s"):
    """A function, or code that defines ``name`` (the key's sample)."""
    if isinstance(answer, str) and f"def {name}" in answer:
        ns: dict = {}
        exec(answer, ns)
        answer = ns[name]
    if not callable(answer):
        raise TypeError(f"a function: def {name}({args}): ... then pass {name} (no brackets)")
    return answer


def as_scenario(answer):
    """A function, or code that defines ``scenario`` (the key's sample)."""
    return as_function(answer, "scenario", "s")


def as_probe(answer):
    """A function, or code that defines ``probe`` (chapter 10's design)."""
    return as_function(answer, "probe", "g, page")


class CodeDesign(Exercise):
    """The design kind whose answer is the student's code: ``check`` reads it
    (``normalise``), runs it in the simulator (``run``), reports an exception in it as
    the student's, and lets ``judge`` compare what the simulator saw with the targets.
    ``what`` names the code in messages ("scenario", "probe")."""
    kind = "design"
    what = "scenario"
    #: the function the student writes, as the student notebook stubs it
    function, args, stub = "scenario", "s", "your calls on the Scene s"

    def run(self, fn):
        raise NotImplementedError

    def judge(self, result) -> Feedback:
        raise NotImplementedError

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            fn = self.normalise(answer)
        except TypeError as exc:
            return Feedback(False, f"Could not use {answer!r}: {exc}")
        try:
            result = self.run(fn)
        except Exception as exc:                 # the student's code: report, don't crash
            return Feedback(False, f"Your {self.what} raised {type(exc).__name__}: {exc}")
        return self.judge(result)


class ScenarioDesign(CodeDesign):
    """Subclasses give ``knobs()``, ``targets()`` (stat -> value), ``params['budget']``
    (pages), ``params['scans']`` and ``sample_code()``; ``params['kernel']`` (an era)
    picks the simulated kernel.  Other designs (page tables, fork) override the hooks
    ``scene()``, ``settle()``, ``measure()``, ``used()`` and ``diagnose()``."""
    answer_format = "a function scenario(s)"
    #: what the checker reads after the run and reports
    shown = SHOWN
    #: what the budget counts
    unit = "pages"

    def knobs(self) -> dict:
        return {}

    def targets(self) -> dict:
        raise NotImplementedError

    def sample_code(self) -> str:
        raise NotImplementedError

    # --- hooks ---
    def scene(self) -> Scene:
        return Scene(kernel=self.p.get("kernel", "6.18"))

    def settle(self, s: Scene) -> None:
        """What happens after the student's calls: ksmd runs ``scans`` full scans."""
        s.knob("run", 1)
        s.machine.ksmd.run_full_scans(self.p["scans"])

    def measure(self, s: Scene) -> dict:
        """The counters of ``shown`` that this era's /sys/kernel/mm/ksm has (an older
        kernel has no ksm_zero_pages file, say); missing ones read as 0."""
        have = set(s.machine.sysfs.listdir(KSM_SYSFS))
        return {k: s.stat(k) if k in have else 0 for k in self.shown}

    def used(self, s: Scene) -> int:
        return sum(r.pages for r in s.regions.values())

    def setting(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs().items()) or "default knobs"
        return f"Linux {self.p.get('kernel', '6.18')}, {knobs}"

    def ran(self, s: Scene, used: int, c: dict) -> str:
        return (f"The simulator ran it with {self.setting()}: {used} {self.unit} in "
                f"{len(s.procs)} process(es); after {self.p['scans']} full scans "
                + ", ".join(f"{k}={v}" for k, v in c.items()) + ".")

    def diagnose(self, c: dict, off: dict) -> str:
        if c["pages_shared"] == 0 and c["ksm_zero_pages"] == 0 and c["pages_unshared"] == 0:
            return "Nothing reached KSM: did you s.madvise() the pages?"
        if c["pages_shared"] == 0 and c["ksm_zero_pages"] == 0:
            return "Nothing merged: give several pages the same bytes."
        return "; ".join(f"{k} is {c[k]}, you need {v}" for k, v in off.items()) + "."

    def run(self, fn) -> Scene:
        s = self.scene()
        for k, v in self.knobs().items():
            s.knob(k, v)
        fn(s)
        self.settle(s)
        return s

    def simulate(self):
        code = self.sample_code()
        s = self.run(as_scenario(code))
        got = self.measure(s)
        assert all(got[k] == v for k, v in self.targets().items()), (self.name, got)
        return {"answer": code, "pages": self.used(s), **got}

    def explain(self, f):
        reached = ", ".join(f"{k}={f[k]}" for k in self.targets())
        return (f"For example ({f['pages']} {self.unit}):\n{f['answer']}\nreaches {reached} in "
                f"the simulator. Other designs are accepted when the simulator agrees.")

    def normalise(self, answer):
        return as_scenario(answer)

    def judge(self, s: Scene) -> Feedback:
        used = self.used(s)
        c = self.measure(s)
        saw = self.ran(s, used, c)
        budget = self.p["budget"]
        if used > budget:
            return Feedback(False, f"Not quite: {used} {self.unit} is more than the {budget} "
                                   f"allowed. " + saw)
        off = {k: v for k, v in self.targets().items() if c[k] != v}
        if not off:
            return Feedback(True, "Correct. " + saw + self.comment(c))
        return Feedback(False, f"Not quite. {self.diagnose(c, off)} " + saw + " Try `hint()`.")

    def comment(self, c) -> str:
        return ""
