"""One scenario, two kernels: the simulator beside a recorded or a live Linux run.

    sim = simulate("ten_identical_pages")            # the simulator, Linux 6.18 model
    rec = recorded("ten_identical_pages")            # what Linux 6.18 did (tests/data)
    cmp = Comparison(sim, rec)
    cmp.diffs, cmp.first_step, cmp.counters_that_differ()

A :class:`Trace` is a scenario, where it ran, and one snapshot per step (see
:mod:`ksmbook.oracle.scenario`); a :class:`Comparison` lines two traces up step by step
with :func:`~ksmbook.oracle.scenario.diff_traces`.  Chapter 09's figures, widgets and
exercises are built on these two types; nothing here draws or touches widgets.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .scenario import _ABSENT as ABSENT          # what diff_traces writes for a missing field
from .scenario import (COUNTERS, SCENARIOS, FieldDiff, Scenario, diff_traces, fill, knob,
                       madvise, mmap, run_in_simulator, scans, spawn)

__all__ = ["ABSENT", "Trace", "Comparison", "simulate", "recorded", "recorded_names",
           "traces_dir", "live_trace", "this_kernel_model", "scenario_named", "scenario_names",
           "MODEL_KERNELS",
           "chain_prune_scenario"]

#: Kernels the simulator can model for these scenarios: every snapshot reads
#: pages_skipped, which appeared in 6.7.
MODEL_KERNELS = ("6.18", "6.12", "6.11", "6.10", "6.8", "6.7")

_TRACES = Path("tests") / "data" / "kernel_traces"


@dataclass(frozen=True)
class Trace:
    """A scenario's snapshots from one runner.

    ``kind`` is "simulator", "recorded" or "live"; ``kernel`` the modelled
    version or the real kernel's release; ``label`` says both for a reader.
    """
    scenario: Scenario
    kind: str
    kernel: str
    snapshots: tuple = field(repr=False)

    @property
    def label(self) -> str:
        if self.kind == "simulator":
            return f"simulator (Linux {self.kernel} model)"
        if self.kind == "recorded":
            return f"Linux {self.kernel} (recorded)"
        return f"this machine's Linux {self.kernel} (live)"

    @property
    def side(self) -> str:
        """The short name a table uses for this side: 'sim' or 'kernel'."""
        return "sim" if self.kind == "simulator" else "kernel"

    def counter(self, name: str) -> list[int]:
        """One global counter after every step."""
        return [s["counters"][name] for s in self.snapshots]


class Comparison:
    """Two traces of the same scenario, lined up step by step.

    ``right`` may be None (nothing to compare with yet): then there are no diffs.
    ``sides`` names the two sides in tables (default: each trace's ``side``).
    """

    def __init__(self, left: Trace, right: Trace | None = None, sides: tuple | None = None):
        self.left, self.right = left, right
        self.sides = sides or (left.side, right.side if right is not None else "")
        self.diffs: tuple[FieldDiff, ...] = (
            tuple(diff_traces(list(left.snapshots), list(right.snapshots)))
            if right is not None else ())
        self._by_step: dict[int, list[FieldDiff]] = {}
        for d in self.diffs:
            if d.path.startswith("["):
                index, _, path = d.path[1:].partition("].")
                self._by_step.setdefault(int(index), []).append(FieldDiff(path, d.a, d.b))

    @property
    def scenario(self) -> Scenario:
        return self.left.scenario

    @property
    def steps(self) -> int:
        return len(self.left.snapshots)

    @staticmethod
    def one_sided(d: FieldDiff) -> bool:
        """A field only one side prints (e.g. ksm_stat's ksm_mergeable line, 6.12+):
        a difference of format, not of behaviour."""
        return ABSENT in (d.a, d.b)

    def at(self, step: int, one_sided: bool = False) -> list[FieldDiff]:
        """The values that differ after ``step`` (paths without the ``[i].``
        prefix); with ``one_sided=True`` also the fields only one side has."""
        return [d for d in self._by_step.get(step, []) if one_sided or not self.one_sided(d)]

    @property
    def value_diffs(self) -> list[FieldDiff]:
        return [d for d in self.diffs if not self.one_sided(d)]

    def missing_fields(self) -> list[str]:
        """'ksm_stat.<proc>.<field>' paths that only one side has, without repeats."""
        out = []
        for d in self.diffs:
            if self.one_sided(d):
                path = d.path.split("].", 1)[-1]
                if path not in out:
                    out.append(path)
        return out

    def differing_steps(self) -> list[int]:
        """Steps after which some value differs (one-sided fields aside)."""
        return [i for i in sorted(self._by_step) if self.at(i)]

    @property
    def first_step(self) -> int | None:
        """The first step after which a value differs (None: all equal)."""
        steps = self.differing_steps()
        return steps[0] if steps else None

    def counters_that_differ(self) -> list[str]:
        """Global counters that differ after some step, in /sys/kernel/mm/ksm order."""
        seen = {d.path.split(".", 1)[1] for i in self.differing_steps() for d in self.at(i)
                if d.path.startswith("counters.")}
        return [c for c in COUNTERS if c in seen]

    def values(self) -> int:
        """How many values (counters and ksm_stat fields) the right side holds."""
        snaps = self.right.snapshots if self.right is not None else self.left.snapshots
        return sum(len(s["counters"]) + sum(len(v) for v in s["ksm_stat"].values())
                   for s in snaps)

    def headline(self) -> str:
        """A few words for a figure title: '0 differences', '12 values differ ...'."""
        if self.right is None:
            return "nothing to compare with"
        n, first = len(self.value_diffs), self.first_step
        text = ("0 values differ" if not n else
                f"{n} value{' differs' if n == 1 else 's differ'}"
                + (f", first after step {first}" if first is not None else ""))
        missing = len(self.diffs) - n
        return text + (f" (+{missing} one-sided fields)" if missing else "")

    def summary(self) -> str:
        """One or two lines: how much differs, and where first."""
        if self.right is None:
            return f"{self.scenario.name}: {self.left.label} only, nothing to compare with"
        if not self.diffs:
            return (f"0 fields differ: all {self.values()} counter and ksm_stat values are "
                    f"equal after every one of the {self.steps} steps")
        lines = []
        n, first = len(self.value_diffs), self.first_step
        if n:
            where = (f"; first after step {first}: {self.left.snapshots[first]['op']}"
                     if first is not None else "")
            lines.append(f"{n} value{' differs' if n == 1 else 's differ'}{where}")
        else:
            lines.append("0 values differ")
        missing = self.missing_fields()
        if missing:
            fields = sorted({m.rsplit(".", 1)[-1] for m in missing})
            k = len(self.diffs) - n
            lines.append(f"{k} more field{'s differ' if k > 1 else ' differs'} only because "
                         f"one side does not print {'them' if k > 1 else 'it'}: "
                         + ", ".join(fields))
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Where traces come from
# --------------------------------------------------------------------------

def scenario_names() -> list[str]:
    """The built-in scenarios, in the order ksmbook.oracle.workloads registers them."""
    return list(SCENARIOS)


def scenario_named(name: str) -> Scenario:
    """A built-in scenario by name."""
    scenario_names()
    return SCENARIOS[name]


@functools.lru_cache(maxsize=128)
def _simulated(scenario: Scenario, kernel: str) -> tuple:
    return tuple(run_in_simulator(scenario, kernel=kernel))


def simulate(scenario: Scenario | str, kernel: str = "6.18") -> Trace:
    """The scenario in the simulator (cached, since the simulator is deterministic:
    the snapshots are shared, treat them as read-only)."""
    sc = scenario_named(scenario) if isinstance(scenario, str) else scenario
    return Trace(sc, "simulator", kernel, _simulated(sc, kernel))


def traces_dir() -> Path:
    """The recorded kernel traces: ``ksmbook/data/kernel_traces`` of an installed
    wheel (the build copies tests/data/kernel_traces there), else
    tests/data/kernel_traces of this checkout: next to the package (a source
    checkout or an editable install), or above the working directory (a
    notebook run from notebooks/ with the package installed elsewhere, as on
    Binder)."""
    from .. import data
    candidates = [data.packaged("kernel_traces"),
                  Path(__file__).resolve().parent.parent.parent / _TRACES,
                  Path.cwd() / _TRACES, Path.cwd().parent / _TRACES]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("no recorded kernel traces: looked in "
                            + ", ".join(str(c) for c in candidates))


def recorded_names() -> list[str]:
    return sorted(p.stem for p in traces_dir().glob("*.json"))


@functools.lru_cache(maxsize=64)
def recorded(name: str) -> Trace:
    """The trace ``python -m ksmbook.oracle.live --record`` wrote for ``name``."""
    doc = json.loads((traces_dir() / f"{name}.json").read_text())
    return Trace(Scenario.from_dict(doc["scenario"]), "recorded", doc["kernel"],
                 tuple(doc["snapshots"]))


def this_kernel_model(release: str | None = None) -> str:
    """The version the simulator should model beside this machine's kernel: its
    major.minor ("6.18.44-fc-v595" -> "6.18"), or the newest modelled version
    for a newer kernel (or a release that does not parse)."""
    from ..kernel.versions import NEWEST, parse_version
    match = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    if match is None:
        return NEWEST
    version = f"{match[1]}.{match[2]}"
    return NEWEST if parse_version(version) > parse_version(NEWEST) else version


def live_trace(scenario: Scenario, timeout: float = 60.0) -> Trace:
    """Run ``scenario`` on this machine's kernel now (root + KSM; see ksmbook.oracle.live).

    Raises what :func:`ksmbook.oracle.live.run_live` raises: LiveUnavailable, KsmBusy,
    ProtocolError.
    """
    from . import live
    snaps = live.run_live(scenario, timeout=timeout)
    return Trace(scenario, "live", os.uname().release, tuple(snaps))


# --------------------------------------------------------------------------
# A scenario of chapter 09: chain pruning, the one place the clock matters
# --------------------------------------------------------------------------

def chain_prune_scenario(prune_ms: int) -> Scenario:
    """A stale dup that only a *pruning* walk of its chain removes in time.

    max_page_sharing=3, five pages of 'a' -> a chain with a full dup (pages
    0-2) and a dup of two (pages 3-4).  Region "s" is mapped later, so it
    lies below "r" and is scanned first.  After MADV_DONTNEED on pages 0-2
    the full dup's KSM page is gone but its node stays in the chain.  The
    next scan's first stable-tree search (page s[0], second visit) walks the
    chain: if stable_node_dup() prunes, it drops the stale dup and, one dup
    left, collapses the chain (chains 1->0, dups 2->0); if not, it stops at
    the first dup with room and the chain survives that scan (dups 2->1 when
    the scan reaches pages 0-2).  Whether it prunes depends on
    ``stable_node_chains_prune_millisecs`` and on how much time has passed.
    """
    m = "MADV_MERGEABLE"
    return Scenario(
        f"chain_prune_{prune_ms}ms",
        f"stable_node_chains_prune_millisecs={prune_ms}: a chain whose full dup went "
        "stale, walked by a search before the scan reaches the stale dup's own pages.",
        [knob("max_page_sharing", 3), knob("stable_node_chains_prune_millisecs", prune_ms),
         spawn("a"), mmap("a", "r", 5), fill("a", "r", 0, 5, 0x61),
         mmap("a", "s", 1), fill("a", "s", 0, 1, 0x62),
         madvise("a", "r", 0, 5, m), scans(2), madvise("a", "s", 0, 1, m), scans(1),
         madvise("a", "r", 0, 3, "MADV_DONTNEED"), scans(1), scans(1)])
