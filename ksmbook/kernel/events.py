"""Typed event records.  Every layer reports what it did through one EventLog.

Events are plain frozen dataclasses so that a notebook can filter them by type and
print them deterministically.  Emitting sites check ``log.enabled`` before building a
record, so a fast run with events off pays almost nothing.
"""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    time_ns: int

    @property
    def kind(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """One line for the book's text twins."""
        body = ", ".join(f"{k}={_fmt(v)}" for k, v in self._fields().items())
        return f"{self.kind}({body})"

    def _fields(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "time_ns"}


def _fmt(v):
    if isinstance(v, int) and not isinstance(v, bool) and v > 0xFFFF:
        return hex(v)
    return repr(v) if isinstance(v, str) else str(v)


# --- memory and page tables ---
@dataclass(frozen=True, slots=True)
class PageAlloc(Event):
    pfn: int
    nid: int
    purpose: str


@dataclass(frozen=True, slots=True)
class PageFree(Event):
    pfn: int


@dataclass(frozen=True, slots=True)
class Fault(Event):
    pid: int
    address: int
    access: str          # "read" | "write" | "unshare"
    handler: str         # kernel function that resolved it, e.g. "do_anonymous_page"


@dataclass(frozen=True, slots=True)
class PteChange(Event):
    pid: int
    address: int
    old: int             # raw PTE values (x86-64 layout)
    new: int
    site: str            # kernel function that set it


# --- mmu notifiers ---
@dataclass(frozen=True, slots=True)
class NotifierCall(Event):
    pid: int
    op: str              # "change_pte", "invalidate_range_start", ...
    start: int
    end: int
    site: str            # kernel call site, e.g. "replace_page"
    rule: str            # the era rule that made this call happen


# --- KVM secondary MMU ---
@dataclass(frozen=True, slots=True)
class KvmEvent(Event):
    vm: int
    action: str          # exit, retry, spte_install, spte_zap, spte_remap, tlb_flush,
    #                      invalidate_begin, invalidate_end, change_pte_miss, change_pte_skip
    gfn: int             # -1 when the action is not about one guest frame
    pfn: int             # -1 when there is no frame (yet)
    detail: str          # what KVM did and why, in the book's words


# --- KSM ---
@dataclass(frozen=True, slots=True)
class KsmEvent(Event):
    action: str          # "checksum", "unstable_insert", "stable_hit", "merge", ...
    pid: int
    address: int
    pfn: int
    detail: str


@dataclass
class EventLog:
    """The machine's event stream: bounded history plus live subscribers.

    ``history`` is a ring of the newest ``maxlen`` events (None: unbounded, the
    caller's choice); subscribers and captures see every event.
    """
    enabled: bool = True
    maxlen: int | None = 100_000
    history: deque = field(default_factory=deque)
    _subscribers: list = field(default_factory=list)
    _captures: list = field(default_factory=list)

    def __post_init__(self):
        self.history = deque(self.history, maxlen=self.maxlen)

    def emit(self, event: Event) -> None:
        self.history.append(event)
        for cap in self._captures:
            cap.append(event)
        for fn in self._subscribers:
            fn(event)

    def subscribe(self, fn) -> None:
        self._subscribers.append(fn)

    def unsubscribe(self, fn) -> None:
        self._subscribers.remove(fn)

    @contextmanager
    def capture(self, enable: bool = True):
        """Collect the events emitted inside the block into a list (turning events on)."""
        saved, bucket = self.enabled, []
        self.enabled = self.enabled or enable
        self._captures.append(bucket)
        try:
            yield bucket
        finally:
            self._captures.remove(bucket)
            self.enabled = saved

    def of(self, kind) -> list:
        return [e for e in self.history if isinstance(e, kind)]

    def clear(self) -> None:
        self.history.clear()
