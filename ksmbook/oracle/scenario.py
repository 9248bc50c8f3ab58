"""Scenarios: one script of process and KSM actions, run on two kernels.

A :class:`Scenario` is a list of small, frozen steps (``spawn``, ``mmap``,
``fill``, ``madvise``, ``scans`` ...).  The same scenario runs

* in the simulator, with :func:`run_in_simulator` (pure Python, no root), and
* on the real Linux kernel, with :func:`ksmbook.oracle.live.run_live` (root + KSM),

and both return the same thing: one :data:`Snapshot` after every step, holding
the global ``/sys/kernel/mm/ksm`` counters and every live process's
``/proc/<pid>/ksm_stat``.  :func:`diff_snapshots` and :func:`diff_traces` list
every field on which two runs disagree: that list is the fidelity measure of
the whole project.

The simulator itself is imported only inside :func:`run_in_simulator`; the one
thing shared at module level is the kernel's ksm_stat parser (kernel/sysfs.py),
so the simulator's /proc and the real one are read by the same code.

Step names and arguments are a contract shared with the tests and notebooks:

=================================================  ==============================================
``spawn(proc)``                                    a new, independent process (not a fork)
``mmap(proc, region, pages, shared=False)``        anonymous mapping, MAP_PRIVATE or MAP_SHARED
``fill(proc, region, page, count, byte)``          memset pages [page, page+count) to ``byte``
``unique(proc, region, page, count, tag)``         distinct content per page (see :class:`Unique`)
``poke(proc, region, page, offset, byte)``         write one byte
``touch_read(proc, region, page, count)``          read one byte per page (maps the zero page)
``madvise(proc, region, page, count, advice)``     MADV_MERGEABLE / MADV_UNMERGEABLE / MADV_DONTNEED
``mprotect(proc, region, page, count, prot)``      "none", "r" or "rw"
``munmap(proc, region, page, count)``              unmap pages
``prctl_merge(proc, value)``                       prctl(PR_SET_MEMORY_MERGE, value)
``fork(proc, child)``                              fork; the child inherits the regions by name
``exit(proc)``                                     the process exits
``knob(name, value)``                              write /sys/kernel/mm/ksm/<name>
``scans(n)``                                       exactly n more full scans, then ksmd stopped
``run(value)``                                     write ``run`` (0, or 2 = unmerge all, full_scans=0)
``hugepage(proc, region, page, count, on=True)``   MADV_HUGEPAGE (``on=False``: MADV_NOHUGEPAGE)
``dontneed(proc, region, page, count)``            MADV_DONTNEED
``batch(pages)``                                   one ksmd batch, possibly mid-scan
``sleep(ms)``                                      time passes, ksmd stopped
``thp_stat()``                                     observe THPs: every process's smaps_rollup
                                                   AnonHugePages and the thp_* vmstat deltas
=================================================  ==============================================

Every region is mapped with MADV_NOHUGEPAGE right after mmap, on both kernels (the
live worker does it so that no THP appears unasked): a region holds THPs only after
a ``hugepage`` step, in the host's ``madvise`` mode.

Adding a step: declare its frozen dataclass here with ``@step`` and its
lower-case contract name, then give it ``_Checker.on_<op>`` (what it needs and
changes, checked before anything runs), ``_SimRunner.do_<op>`` and
``LiveRun.do_<op>`` in live.py (plus a command in ``_worker.c`` when it needs a
syscall the worker cannot make yet).  Each of the three tables is built from
:data:`STEP_TYPES` at import, so a missing handler fails at once, and
tests/unit/test_steps_registry.py names it.
"""
from __future__ import annotations

import copy
import dataclasses
import errno as _errno
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, NamedTuple, TypedDict

from ..kernel.errors import SegmentationFault
from ..kernel.sysfs import parse_ksm_stat
from ..uapi import (KSM_COUNTERS, KSM_STAT_FIELDS, KSM_SYSFS, KSM_TUNABLES, MADV_BY_NAME,
                    NEVER_RESET_COUNTERS, PROT_BY_NAME)

__all__ = [
    # every step class and its lower-case contract name join at the end of the module
    "Step", "STEP_TYPES", "step", "step_from_dict",
    "Scenario", "ScenarioError", "Snapshot", "FieldDiff", "SCENARIOS", "register",
    "COUNTERS", "SNAPSHOT_COUNTERS", "DELTA_COUNTERS", "KSM_STAT_FIELDS", "WRITABLE_KNOBS",
    "parse_ksm_stat", "make_snapshot", "diff_snapshots", "diff_traces",
    "run_in_simulator", "unique_page_bytes",
]

#: Every global counter a snapshot records (all of /sys/kernel/mm/ksm's, in its order).
SNAPSHOT_COUNTERS = KSM_COUNTERS
COUNTERS = SNAPSHOT_COUNTERS        # the name tests and notebooks import
#: Counters the kernel never resets (not even run=2): snapshots hold them as
#: deltas since the scenario started, so two runs can be compared.
DELTA_COUNTERS = NEVER_RESET_COUNTERS
#: Tunables a ``knob`` step may write (``run`` has its own steps).
WRITABLE_KNOBS = KSM_TUNABLES

ADVICES = tuple(MADV_BY_NAME)   # THP advice: the hugepage step
PROTS = tuple(PROT_BY_NAME)
#: The /proc/vmstat THP events a ``thp_stat`` snapshot holds, as deltas since the
#: scenario started (kernel/huge_memory.THP_VMSTAT without thp_zero_page_alloc, which
#: counts once per boot and so depends on what ran before on the host).
THP_TRACE_VMSTAT = ("thp_fault_alloc", "thp_fault_fallback", "thp_collapse_alloc",
                    "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page",
                    "thp_split_pmd")


class ScenarioError(ValueError):
    """A scenario that cannot run as written (unknown process, page out of range...)."""


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Step:
    """One action of a scenario.  Subclasses set ``op`` to their contract name."""

    op: ClassVar[str] = ""

    def describe(self) -> str:
        """A one-line call-like text, e.g. ``fill('vm1', 'buf', 0, 2, 42)``.

        Both runners put it in the snapshot's ``op`` field, so traces from
        the simulator and the kernel line up step by step.
        """
        args = ", ".join(_fmt(getattr(self, f.name)) for f in dataclasses.fields(self))
        return f"{self.op}({args})"

    def to_dict(self) -> dict:
        return {"op": self.op, **dataclasses.asdict(self)}

    def _check_byte(self, value: int, what: str = "byte") -> None:
        if not (isinstance(value, int) and 0 <= value <= 255):
            raise ScenarioError(f"{self.describe()}: {what} must be an int 0..255")


@dataclass(frozen=True)
class RangeStep(Step):
    """A step on pages [page, page+count) of one process's region: the fields every
    such step starts with, and their check.  Subclasses add their own fields after
    these (the order the contract's call-like text and dicts use)."""
    proc: str
    region: str
    page: int
    count: int

    def __post_init__(self) -> None:
        if self.page < 0 or self.count < 1:
            raise ScenarioError(f"{self.describe()}: need page >= 0 and count >= 1")


#: Every step type by its ``op`` name, filled by :func:`step` in declaration order.
STEP_TYPES: dict[str, type[Step]] = {}


def step(cls: type[Step]) -> type[Step]:
    """Declare a step type: the one place a new step is named.

    Registers ``cls`` in :data:`STEP_TYPES` under ``cls.op``.  The static
    checker (``_Checker.on_<op>``), the simulator runner (``_SimRunner.do_<op>``)
    and the live runner (``LiveRun.do_<op>`` in live.py) each build their
    dispatch table from :data:`STEP_TYPES` with :func:`handlers`, which fails
    at import time when one of them lacks the handler, so a step cannot be
    declared without being runnable on both kernels.
    """
    if not cls.op or cls.op in STEP_TYPES:
        raise TypeError(f"step {cls.__name__}: op {cls.op!r} is empty or already declared")
    STEP_TYPES[cls.op] = cls
    return cls


def handlers(owner: type, prefix: str) -> dict[str, str]:
    """``{op: method name}`` for every declared step; raises if ``owner`` lacks one."""
    missing = [op for op in STEP_TYPES if not callable(getattr(owner, prefix + op, None))]
    if missing:
        raise TypeError(f"{owner.__name__} has no {prefix}<op> handler for steps {missing}")
    return {op: prefix + op for op in STEP_TYPES}


@step
@dataclass(frozen=True)
class Spawn(Step):
    """A new, independent process with an empty address space (for KSM)."""
    op: ClassVar[str] = "spawn"
    proc: str


@step
@dataclass(frozen=True)
class Mmap(Step):
    """``mmap(NULL, pages*PAGE_SIZE, RW, MAP_ANONYMOUS|MAP_PRIVATE or MAP_SHARED)``."""
    op: ClassVar[str] = "mmap"
    proc: str
    region: str
    pages: int
    shared: bool = False

    def __post_init__(self) -> None:
        if self.pages < 1:
            raise ScenarioError(f"{self.describe()}: pages must be >= 1")


@step
@dataclass(frozen=True)
class Fill(RangeStep):
    """memset pages [page, page+count) of the region to ``byte``."""
    op: ClassVar[str] = "fill"
    byte: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_byte(self.byte)


@step
@dataclass(frozen=True)
class Unique(RangeStep):
    """Give every page distinct content: memset 0, then the 8-byte little-endian
    value ``tag << 32 | page_index`` at offset 0 (``page_index`` counts from the
    region's start).  ``tag`` must be >= 1: with tag 0, page 0 would be an
    all-zero page and would merge with every other zero page."""
    op: ClassVar[str] = "unique"
    tag: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.tag, int) and 1 <= self.tag < 2**32):
            raise ScenarioError(f"{self.describe()}: tag must be an int in 1..2**32-1")


@step
@dataclass(frozen=True)
class Poke(Step):
    """Write one byte at ``offset`` inside one page."""
    op: ClassVar[str] = "poke"
    proc: str
    region: str
    page: int
    offset: int
    byte: int

    def __post_init__(self) -> None:
        self._check_byte(self.byte)
        if self.page < 0 or self.offset < 0:
            raise ScenarioError(f"{self.describe()}: page and offset must be >= 0")


@step
@dataclass(frozen=True)
class TouchRead(RangeStep):
    """Read one byte of each page: a read fault maps the shared zero page."""
    op: ClassVar[str] = "touch_read"


@step
@dataclass(frozen=True)
class Madvise(RangeStep):
    """madvise() with one of MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_DONTNEED."""
    op: ClassVar[str] = "madvise"
    advice: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.advice not in ADVICES:
            raise ScenarioError(f"{self.describe()}: advice must be one of {ADVICES}")


@step
@dataclass(frozen=True)
class Mprotect(RangeStep):
    """mprotect() to "none", "r" or "rw"."""
    op: ClassVar[str] = "mprotect"
    prot: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prot not in PROTS:
            raise ScenarioError(f"{self.describe()}: prot must be one of {PROTS}")


@step
@dataclass(frozen=True)
class Munmap(RangeStep):
    """munmap() pages of a region (the rest of the region stays mapped)."""
    op: ClassVar[str] = "munmap"


@step
@dataclass(frozen=True)
class PrctlMerge(Step):
    """prctl(PR_SET_MEMORY_MERGE, value): 1 makes every compatible VMA mergeable."""
    op: ClassVar[str] = "prctl_merge"
    proc: str
    value: int


@step
@dataclass(frozen=True)
class Fork(Step):
    """fork(): ``child`` inherits ``proc``'s regions (by name) and their pages."""
    op: ClassVar[str] = "fork"
    proc: str
    child: str


@step
@dataclass(frozen=True)
class Exit(Step):
    """The process exits; its address space is torn down at once."""
    op: ClassVar[str] = "exit"
    proc: str


@step
@dataclass(frozen=True)
class Knob(Step):
    """Write ``value`` to /sys/kernel/mm/ksm/<name>."""
    op: ClassVar[str] = "knob"
    name: str
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", str(self.value))
        if self.name not in WRITABLE_KNOBS:
            hint = " (use run() or scans())" if self.name == "run" else ""
            raise ScenarioError(f"{self.describe()}: not a writable tunable{hint}")


@step
@dataclass(frozen=True)
class Scans(Step):
    """Exactly ``n`` more full scans of ksmd, then ksmd stopped (run=0) at a
    full-scan boundary.  If ksmd's mm list becomes empty it cannot scan and
    fewer scans happen, as on the kernel (``full_scans`` shows it)."""
    op: ClassVar[str] = "scans"
    n: int

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and self.n >= 1):
            raise ScenarioError(f"{self.describe()}: n must be an int >= 1")


@step
@dataclass(frozen=True)
class Run(Step):
    """Write ``run``: 0 stops ksmd, 2 stops it and unmerges everything (and
    resets full_scans to 0).  ``run=1`` is not a step: ksmd runs only inside
    ``scans(n)``, so that counters are always read at full-scan boundaries."""
    op: ClassVar[str] = "run"
    value: int

    def __post_init__(self) -> None:
        if self.value not in (0, 2):
            raise ScenarioError(f"{self.describe()}: value must be 0 or 2 (use scans(n) to run ksmd)")


@step
@dataclass(frozen=True)
class Batch(Step):
    """One ksmd batch of ``pages`` pages (ksm_do_scan with pages_to_scan=pages), then
    ksmd stopped (run=0) wherever the cursor is: a full scan may be left half done,
    so that writes, COW, fork and faults can be placed *inside* a full scan (after
    its lru_add_drain_all()).  The next ``scans(n)`` finishes that scan first."""
    op: ClassVar[str] = "batch"
    pages: int

    def __post_init__(self) -> None:
        if not (isinstance(self.pages, int) and self.pages >= 1):
            raise ScenarioError(f"{self.describe()}: pages must be an int >= 1")


@step
@dataclass(frozen=True)
class Hugepage(RangeStep):
    """madvise(MADV_HUGEPAGE), or MADV_NOHUGEPAGE with ``on=False``, as QEMU does
    on guest RAM: VM_HUGEPAGE on the VMA.  In ``madvise`` mode the next fault in an
    aligned 2 MiB block of the region maps a THP (a region of 512 pages is aligned:
    the kernel places anonymous mappings of a 2 MiB multiple on a 2 MiB boundary)."""
    op: ClassVar[str] = "hugepage"
    on: bool = True


@step
@dataclass(frozen=True)
class Dontneed(RangeStep):
    """madvise(MADV_DONTNEED): zap the pages; the next touch faults them anew."""
    op: ClassVar[str] = "dontneed"


@step
@dataclass(frozen=True)
class ThpStat(Step):
    """Observe THPs: the snapshot gets ``thp`` = {"AnonHugePages": {proc: kB} from
    /proc/<pid>/smaps_rollup, "vmstat": {event: delta since the start}} for the
    events of :data:`THP_TRACE_VMSTAT`.  vmstat is global: the live runner checks
    that nothing else on the host faulted or split a THP meanwhile only by the
    trace matching."""
    op: ClassVar[str] = "thp_stat"


@step
@dataclass(frozen=True)
class Sleep(Step):
    """Wall-clock (live) or simulated time passes with ksmd stopped (run=0)."""
    op: ClassVar[str] = "sleep"
    ms: int

    def __post_init__(self) -> None:
        if not (isinstance(self.ms, int) and 0 <= self.ms <= 60_000):
            raise ScenarioError(f"{self.describe()}: ms must be an int in 0..60000")


# The contract names: lower-case constructors, e.g. ``fill("vm1", "buf", 0, 2, 0x2a)``.
spawn = Spawn
mmap = Mmap
fill = Fill
unique = Unique
poke = Poke
touch_read = TouchRead
madvise = Madvise
mprotect = Mprotect
munmap = Munmap
prctl_merge = PrctlMerge
fork = Fork
exit = Exit  # noqa: A001 - the contract name
knob = Knob
scans = Scans
batch = Batch
hugepage = Hugepage
dontneed = Dontneed
sleep = Sleep
thp_stat = ThpStat
run = Run

def step_from_dict(d: dict) -> Step:
    d = dict(d)
    return STEP_TYPES[d.pop("op")](**d)


def unique_page_bytes(tag: int, index: int, page_size: int = 4096) -> bytes:
    """The content :class:`Unique` writes into page ``index``."""
    return ((tag << 32) | index).to_bytes(8, "little") + bytes(page_size - 8)


# --------------------------------------------------------------------------
# Scenario and its static check
# --------------------------------------------------------------------------

@dataclass
class _RegionModel:
    """What the static check knows about one region: per-page mapped/prot."""
    pages: int
    shared: bool
    prot: list = field(default_factory=list)   # None = unmapped, else "none"/"r"/"rw"


class _Checker:
    """Walks the steps with a tiny model of processes and regions, so that a
    mistyped name or an out-of-range page fails before anything runs, and
    neither runner ever half-applies a step that would SIGSEGV."""

    def __init__(self, scenario: Scenario):
        self.sc = scenario
        self.alive: dict[str, dict[str, _RegionModel]] = {}
        self.used_names: set[str] = set()
        self.max_present = 0

    def fail(self, i: int, step: Step, msg: str) -> None:
        raise ScenarioError(f"{self.sc.name}: step {i} {step.describe()}: {msg}")

    def proc(self, i, step, name) -> dict[str, _RegionModel]:
        if name not in self.alive:
            self.fail(i, step, f"no live process {name!r}")
        return self.alive[name]

    def region(self, i, step) -> _RegionModel:
        regions = self.proc(i, step, step.proc)
        if step.region not in regions:
            self.fail(i, step, f"process {step.proc!r} has no region {step.region!r}")
        r = regions[step.region]
        last = step.page + getattr(step, "count", 1)
        if last > r.pages:
            self.fail(i, step, f"pages up to {last - 1} are outside the {r.pages}-page region")
        return r

    def need_prot(self, i, step, r: _RegionModel, allowed: tuple, what: str) -> None:
        for pg in range(step.page, step.page + getattr(step, "count", 1)):
            if r.prot[pg] is None:
                self.fail(i, step, f"page {pg} is not mapped")
            if r.prot[pg] not in allowed:
                self.fail(i, step, f"page {pg} is PROT {r.prot[pg]!r}: {what} would SIGSEGV")

    def new_name(self, i, step, name) -> None:
        if name in self.used_names:
            self.fail(i, step, f"process name {name!r} is already used")
        self.used_names.add(name)

    def check(self) -> None:
        for i, step in enumerate(self.sc.steps):
            getattr(self, self.ON[step.op])(i, step)
            present = sum(r.pages for regs in self.alive.values() for r in regs.values())
            self.max_present = max(self.max_present, present)

    # one handler per op
    def on_spawn(self, i, s):
        self.new_name(i, s, s.proc)
        self.alive[s.proc] = {}

    def on_mmap(self, i, s):
        regions = self.proc(i, s, s.proc)
        if s.region in regions:
            self.fail(i, s, f"region {s.region!r} already exists in {s.proc!r}")
        regions[s.region] = _RegionModel(s.pages, s.shared, ["rw"] * s.pages)

    def on_fill(self, i, s):
        self.need_prot(i, s, self.region(i, s), ("rw",), "a write")

    on_unique = on_fill

    def on_poke(self, i, s):
        if s.offset >= self.sc.page_size:
            self.fail(i, s, "offset is beyond the page")
        self.need_prot(i, s, self.region(i, s), ("rw",), "a write")

    def on_touch_read(self, i, s):
        self.need_prot(i, s, self.region(i, s), ("r", "rw"), "a read")

    def on_madvise(self, i, s):
        self.need_prot(i, s, self.region(i, s), PROTS, "")

    def on_mprotect(self, i, s):
        r = self.region(i, s)
        self.need_prot(i, s, r, PROTS, "")
        for pg in range(s.page, s.page + s.count):
            r.prot[pg] = s.prot

    def on_munmap(self, i, s):
        r = self.region(i, s)
        for pg in range(s.page, s.page + s.count):
            r.prot[pg] = None

    def on_prctl_merge(self, i, s):
        self.proc(i, s, s.proc)

    def on_fork(self, i, s):
        parent = self.proc(i, s, s.proc)
        self.new_name(i, s, s.child)
        self.alive[s.child] = copy.deepcopy(parent)

    def on_exit(self, i, s):
        self.proc(i, s, s.proc)
        del self.alive[s.proc]

    def on_knob(self, i, s):
        pass

    def on_scans(self, i, s):
        pass

    def on_run(self, i, s):
        pass

    def on_batch(self, i, s):
        pass

    def on_hugepage(self, i, s):
        self.need_prot(i, s, self.region(i, s), PROTS, "")

    def on_thp_stat(self, i, s):
        pass

    def on_dontneed(self, i, s):
        self.need_prot(i, s, self.region(i, s), PROTS, "")

    def on_sleep(self, i, s):
        pass


#: The checker's handler per step (import fails if a declared step has none).
_Checker.ON = handlers(_Checker, "on_")


@dataclass(frozen=True)
class Scenario:
    """A named, checked sequence of steps; ``page_size`` must match the kernel's."""

    name: str
    description: str
    steps: tuple
    page_size: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        for s in self.steps:
            if not isinstance(s, Step):
                raise ScenarioError(f"{self.name}: {s!r} is not a Step")
        self.check()

    def check(self) -> None:
        """Raise :class:`ScenarioError` if any step cannot run as written."""
        _Checker(self).check()

    @property
    def max_pages(self) -> int:
        """An upper bound on the pages mapped at one time by all processes;
        the live runner sizes ``pages_to_scan`` from it."""
        c = _Checker(self)
        c.check()
        return c.max_present

    def processes(self) -> list[str]:
        """Every process name, in order of appearance."""
        names = []
        for s in self.steps:
            for n in (getattr(s, "proc", None), getattr(s, "child", None)):
                if n and n not in names:
                    names.append(n)
        return names

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description,
                "page_size": self.page_size, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        return cls(d["name"], d["description"], tuple(step_from_dict(s) for s in d["steps"]),
                   d.get("page_size", 4096))


class _Registry(dict):
    """Scenarios by name.  The built-ins (ksmbook.oracle.workloads) are loaded on
    the first read, so no module has to import workloads for its side effect."""

    _loaded = False

    def _load(self) -> None:
        if not _Registry._loaded:
            _Registry._loaded = True
            from . import workloads  # noqa: F401  (calls register() for each built-in)


def _loading(name: str):
    """dict.<name>, after loading the built-ins."""
    def method(self, *args):
        self._load()
        return getattr(dict, name)(self, *args)
    method.__name__ = name
    return method


for _name in ("__getitem__", "__contains__", "__iter__", "__len__", "__repr__",
              "get", "keys", "values", "items"):
    setattr(_Registry, _name, _loading(_name))


#: Built-in scenarios by name (loaded on first access), plus any :func:`register` adds.
SCENARIOS: dict[str, Scenario] = _Registry()


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to :data:`SCENARIOS` (the name must be new)."""
    if scenario.name in SCENARIOS and SCENARIOS[scenario.name] is not scenario:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    dict.__setitem__(SCENARIOS, scenario.name, scenario)
    return scenario


# --------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------

class Snapshot(TypedDict):
    """The observable state after one step (the same shape for both runners).

    ``error`` is None, an errno name such as ``"EBUSY"`` when the step's
    syscall or sysfs write failed as the kernel fails it, or ``"SIGSEGV"``.
    A ``thp_stat`` step's snapshot also has ``thp`` (see :class:`ThpStat`).
    """
    step: int
    op: str
    error: str | None
    counters: dict[str, int]
    ksm_stat: dict[str, dict[str, int | str]]


def error_name(exc: BaseException) -> str:
    """``"EBUSY"`` for an OSError, ``"SIGSEGV"`` for a segmentation fault."""
    if isinstance(exc, OSError) and exc.errno:
        return _errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(exc, SegmentationFault):
        return "SIGSEGV"
    raise exc


def make_snapshot(index: int, step: Step, error: str | None,
                  read_sysfs: Callable[[str], str],
                  read_proc: Callable[[int, str], str],
                  procs: Iterable[tuple[str, int]],
                  baseline: dict[str, int],
                  read_vmstat: Callable[[], str] | None = None) -> Snapshot:
    """Build a :data:`Snapshot` from readers shared by both runners.

    ``read_sysfs(name)`` returns the text of /sys/kernel/mm/ksm/<name>,
    ``read_proc(pid, file)`` that of /proc/<pid>/<file>; ``procs`` lists the
    live (name, pid) pairs; ``baseline`` holds the :data:`DELTA_COUNTERS`
    values read when the scenario started.
    """
    counters = {}
    for name in COUNTERS:
        counters[name] = int(read_sysfs(name).strip()) - baseline.get(name, 0)
    stats = {}
    for name, pid in procs:
        st = parse_ksm_stat(read_proc(pid, "ksm_stat"))
        st["merging_pages_file"] = int(read_proc(pid, "ksm_merging_pages").strip())
        stats[name] = st
    snap = Snapshot(step=index, op=step.describe(), error=error,
                    counters=counters, ksm_stat=stats)
    if isinstance(step, ThpStat):
        vm = parse_vmstat(read_vmstat())
        snap["thp"] = {
            "AnonHugePages": {name: anon_huge_pages_kb(read_proc(pid, "smaps_rollup"))
                              for name, pid in procs},
            "vmstat": {n: vm.get(n, 0) - baseline.get(n, 0) for n in THP_TRACE_VMSTAT}}
    return snap


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: ``name value`` lines."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def anon_huge_pages_kb(smaps_rollup: str) -> int:
    """The ``AnonHugePages:`` field of /proc/<pid>/smaps_rollup, in kB."""
    for line in smaps_rollup.splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise ValueError("no AnonHugePages line in smaps_rollup")


class FieldDiff(NamedTuple):
    """One field on which two snapshots disagree; ``path`` is dotted,
    e.g. ``counters.pages_sharing`` or ``ksm_stat.vm1.ksm_rmap_items``."""
    path: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return f"{self.path}: {self.a!r} != {self.b!r}"


_ABSENT = "<absent>"


def _diff_dicts(prefix: str, a: dict, b: dict, out: list) -> None:
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if isinstance(va, dict) and isinstance(vb, dict):
            _diff_dicts(f"{prefix}{key}.", va, vb, out)
        elif va != vb:
            out.append(FieldDiff(f"{prefix}{key}", va, vb))


def diff_snapshots(a: Snapshot, b: Snapshot) -> list[FieldDiff]:
    """Every field that differs between two snapshots (empty list: equal)."""
    out: list[FieldDiff] = []
    _diff_dicts("", dict(a), dict(b), out)
    return out


def diff_traces(a: list[Snapshot], b: list[Snapshot]) -> list[FieldDiff]:
    """:func:`diff_snapshots` over two whole runs, paths prefixed ``[i]``."""
    out: list[FieldDiff] = []
    if len(a) != len(b):
        out.append(FieldDiff("len", len(a), len(b)))
    for i, (sa, sb) in enumerate(zip(a, b)):
        out.extend(FieldDiff(f"[{i}].{d.path}", d.a, d.b) for d in diff_snapshots(sa, sb))
    return out


# --------------------------------------------------------------------------
# Running in the simulator
# --------------------------------------------------------------------------

class _SimRunner:
    """Applies steps to a ``ksmbook.Machine`` through its public API only."""

    def __init__(self, scenario: Scenario, kernel: str, progress: Progress | None = None):
        import ksmbook  # late: the simulator is optional for this module
        self.k = ksmbook
        self.sc = scenario
        self.progress = progress
        self.index = 0
        # the live host's THP mode (madvise), whatever Machine's default becomes
        self.m = ksmbook.Machine(kernel=kernel, page_size=scenario.page_size,
                                 thp="madvise" if self.m_has_thp(kernel) else None)
        self.procs: dict[str, Any] = {}                     # name -> process
        self.regions: dict[tuple[str, str], int] = {}       # (proc, region) -> address
        self.baseline = {n: int(self.read_sysfs(n)) for n in DELTA_COUNTERS}
        vm = parse_vmstat(self.read_vmstat())
        self.baseline.update({n: vm.get(n, 0) for n in THP_TRACE_VMSTAT})

    @staticmethod
    def m_has_thp(kernel: str) -> bool:
        from ..kernel.versions import profile
        return profile(kernel).thp

    def read_vmstat(self) -> str:
        return self.m.procfs.read("/proc/vmstat")

    # readers for make_snapshot
    def read_sysfs(self, name: str) -> str:
        return self.m.sysfs.read(f"{KSM_SYSFS}/{name}")

    def read_proc(self, pid: int, file: str) -> str:
        return self.m.procfs.read(f"/proc/{pid}/{file}")

    def addr(self, s: Step, page: int = None) -> int:
        return self.regions[(s.proc, s.region)] + (s.page if page is None else page) * self.sc.page_size

    def length(self, s: Step) -> int:
        return s.count * self.sc.page_size

    def write_sysfs(self, name: str, value) -> None:
        self.m.sysfs.write(f"{KSM_SYSFS}/{name}", str(value))

    # one method per op
    def do_spawn(self, s):
        self.procs[s.proc] = self.m.spawn(s.proc)

    def do_mmap(self, s):
        p = self.procs[s.proc]
        addr = p.mmap(s.pages * self.sc.page_size, shared=s.shared)
        p.madvise(addr, s.pages * self.sc.page_size, self.k.MADV_NOHUGEPAGE)   # as the worker
        self.regions[(s.proc, s.region)] = addr

    def write_pages(self, s, page_bytes) -> None:
        """Write whole pages in address order, one page at a time, as the worker's
        loops do: a SIGSEGV at page k leaves pages before k written.  One page at a
        time also keeps the peak at the pages themselves: a 100 MiB fill never
        builds a 100 MiB buffer beside them.  ``page_bytes(pg)`` gives page pg's bytes."""
        p = self.procs[s.proc]
        for pg in range(s.page, s.page + s.count):
            p.write(self.addr(s, pg), page_bytes(pg))

    def do_fill(self, s):
        page = bytes([s.byte]) * self.sc.page_size
        self.write_pages(s, lambda pg: page)

    def do_unique(self, s):
        self.write_pages(s, lambda pg: unique_page_bytes(s.tag, pg, self.sc.page_size))

    def do_poke(self, s):
        self.procs[s.proc].write(self.addr(s) + s.offset, bytes([s.byte]))

    def do_touch_read(self, s):
        p = self.procs[s.proc]
        for pg in range(s.page, s.page + s.count):
            p.read(self.addr(s, pg), 1)

    def do_madvise(self, s):
        self.procs[s.proc].madvise(self.addr(s), self.length(s), getattr(self.k, s.advice))

    def do_mprotect(self, s):
        k = self.k
        prot = {"none": k.PROT_NONE, "r": k.PROT_READ, "rw": k.PROT_READ | k.PROT_WRITE}[s.prot]
        self.procs[s.proc].mprotect(self.addr(s), self.length(s), prot)

    def do_munmap(self, s):
        self.procs[s.proc].munmap(self.addr(s), self.length(s))

    def do_prctl_merge(self, s):
        self.procs[s.proc].prctl(self.k.PR_SET_MEMORY_MERGE, s.value)

    def do_fork(self, s):
        self.procs[s.child] = self.procs[s.proc].fork(s.child)
        for (proc, region), addr in list(self.regions.items()):
            if proc == s.proc:
                self.regions[(s.child, region)] = addr

    def do_exit(self, s):
        self.procs.pop(s.proc).exit()

    def do_knob(self, s):
        self.write_sysfs(s.name, s.value)

    def do_scans(self, s):
        self.write_sysfs("run", 1)
        try:
            report = None
            if self.progress is not None:
                def report(done, n, i=self.index):
                    self.progress(i, s, done, n)
            self.m.ksmd.run_full_scans(s.n, progress=report)
        finally:
            self.write_sysfs("run", 0)

    def do_run(self, s):
        self.write_sysfs("run", s.value)

    def do_hugepage(self, s):
        k = self.k
        self.procs[s.proc].madvise(self.addr(s), self.length(s),
                                   k.MADV_HUGEPAGE if s.on else k.MADV_NOHUGEPAGE)

    def do_dontneed(self, s):
        self.procs[s.proc].madvise(self.addr(s), self.length(s), self.k.MADV_DONTNEED)

    def do_sleep(self, s):
        self.m.advance(s.ms)

    def do_thp_stat(self, s):
        pass                        # an observation: make_snapshot reads it

    def do_batch(self, s):
        ksm = self.m.ksm
        saved = ksm.pages_to_scan
        self.write_sysfs("run", 1)
        try:
            ksm.pages_to_scan = s.pages
            if self.m.ksmd.should_run():
                self.m.ksmd._batch(s.pages)     # ksm_scan_thread(): one ksm_do_scan()
        finally:
            ksm.pages_to_scan = saved
            self.write_sysfs("run", 0)

    def run(self) -> list[Snapshot]:
        snaps = []
        for i, step in enumerate(self.sc.steps):
            error = None
            self.index = i
            if self.progress is not None:
                self.progress(i, step, 0, step.n if isinstance(step, Scans) else 0)
            try:
                getattr(self, self.DO[step.op])(step)
            except Exception as exc:  # kernel-shaped failures only
                error = error_name(exc)
            live = [(name, p.pid) for name, p in self.procs.items()]
            snaps.append(make_snapshot(i, step, error, self.read_sysfs, self.read_proc,
                                       live, self.baseline, self.read_vmstat))
        return snaps


#: The simulator's handler per step (import fails if a declared step has none).
_SimRunner.DO = handlers(_SimRunner, "do_")


#: ``progress(step_index, step, full_scans_done, full_scans_in_step)``: called before
#: every step (done 0) and after each full scan of a ``scans`` step.
Progress = Callable[[int, Step, int, int], None]


def run_in_simulator(scenario: Scenario, kernel: str = "6.18",
                     progress: Progress | None = None) -> list[Snapshot]:
    """Run ``scenario`` on a fresh simulated machine; one snapshot per step.

    ``progress`` (optional) hears where the run is, for progress bars.
    """
    return _SimRunner(scenario, kernel, progress).run()


__all__ += [cls.__name__ for cls in STEP_TYPES.values()] + list(STEP_TYPES)
