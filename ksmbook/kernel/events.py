"""Structured event records.  Every layer reports what it did through one EventLog.

An event is data, never prose: the kernel function that emitted it, the pid and
address of the page it is about, frames, the other page of a merge, an outcome
code and the numbers the story needs.  The book's sentences are built from these
fields in ``ksmbook.viz.events`` (``describe_event``, ``explain``), on demand; the
kernel writes no text, and nothing parses text back.

Events are plain ``__slots__`` classes built with positional arguments, because
ksmd emits one or two per page visit: a record costs one small object and one
``deque.append``.  Emitting sites check ``log.enabled`` first, so a run with events
off pays one attribute test.  Two records are equal when their type and fields
are (the fast path is tested to emit exactly the kernel path's events).
"""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager


class Event:
    """Base of every record: ``time_ns`` (the machine's clock) and the fields of
    ``FIELDS``, in constructor order."""
    __slots__ = ("time_ns",)
    FIELDS: tuple = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        own = tuple(s for s in cls.__dict__.get("__slots__", ()) if s != "time_ns")
        cls.FIELDS = cls.FIELDS + own

    @property
    def kind(self) -> str:
        return type(self).__name__

    def _values(self) -> tuple:
        return (self.time_ns,) + tuple(getattr(self, k) for k in self.FIELDS)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash((type(self),) + tuple(tuple(sorted(v.items())) if isinstance(v, dict)
                                          else v for v in self._values()))

    def __reduce__(self):
        return type(self), self._values()

    def _fields(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def describe(self) -> str:
        """The record's fields, ``Kind(name=value, ...)`` (no prose: viz builds that)."""
        body = ", ".join(f"{k}={_fmt(v)}" for k, v in self._fields().items())
        return f"{self.kind}({body})"

    __repr__ = describe


def _fmt(v):
    if isinstance(v, int) and not isinstance(v, bool) and v > 0xFFFF:
        return hex(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return repr(v) if isinstance(v, str) else str(v)


# --- memory and page tables ---
class PageAlloc(Event):
    """alloc_pages(): frame ``pfn`` on node ``nid`` for ``purpose`` (anon, ksm, table ...)."""
    __slots__ = ("pfn", "nid", "purpose")
    function = "alloc_pages"

    def __init__(self, time_ns, pfn, nid, purpose):
        self.time_ns = time_ns
        self.pfn = pfn
        self.nid = nid
        self.purpose = purpose


class PageFree(Event):
    """free_pages(): frame ``pfn`` back to the allocator."""
    __slots__ = ("pfn",)
    function = "free_pages"

    def __init__(self, time_ns, pfn):
        self.time_ns = time_ns
        self.pfn = pfn


class Fault(Event):
    """A page fault of ``pid`` at ``address``; ``handler`` is the mm/memory.c function
    that resolved it (e.g. ``do_anonymous_page``)."""
    __slots__ = ("pid", "address", "access", "handler", "outcome")

    def __init__(self, time_ns, pid, address, access, handler, outcome=None):
        self.time_ns = time_ns
        self.pid = pid
        self.address = address
        self.access = access        # "read" | "write" | "unshare"
        self.handler = handler
        self.outcome = outcome      # "zero_page": mapped the shared zero page; else None

    @property
    def function(self) -> str:
        return self.handler


class PteChange(Event):
    """A PTE of ``pid`` at ``address`` went from ``old`` to ``new`` (raw x86-64 values);
    ``site`` is the kernel function that set it."""
    __slots__ = ("pid", "address", "old", "new", "site")

    def __init__(self, time_ns, pid, address, old, new, site):
        self.time_ns = time_ns
        self.pid = pid
        self.address = address
        self.old = old
        self.new = new
        self.site = site

    @property
    def function(self) -> str:
        return self.site


# --- mmu notifiers ---
class NotifierCall(Event):
    """One call of notifier op ``op`` over [start, end) of ``pid``'s mm, from kernel call
    site ``site``; ``rule`` names the era rule that made the call happen (a key of
    ``ksmbook.kernel.mmu_notifier.RULES``, which viz words)."""
    __slots__ = ("pid", "op", "start", "end", "site", "rule")

    def __init__(self, time_ns, pid, op, start, end, site, rule):
        self.time_ns = time_ns
        self.pid = pid
        self.op = op                # "change_pte", "invalidate_range_start", ...
        self.start = start
        self.end = end
        self.site = site
        self.rule = rule

    @property
    def function(self) -> str:
        return self.site


# --- KVM secondary MMU ---
class KvmEvent(Event):
    """What KVM did in VM ``vm``: ``action`` (exit, retry, spte_install, spte_zap,
    spte_remap, tlb_flush, invalidate_begin, invalidate_end, change_pte_miss,
    change_pte_skip) in ``function``, about guest frame ``gfn`` (-1: none) and host
    frame ``pfn`` (-1: none); ``reason`` is a code for why, ``info`` the numbers."""
    __slots__ = ("vm", "function", "action", "gfn", "pfn", "reason", "info")

    def __init__(self, time_ns, vm, function, action, gfn, pfn, reason=None, info=None):
        self.time_ns = time_ns
        self.vm = vm
        self.function = function
        self.action = action
        self.gfn = gfn
        self.pfn = pfn
        self.reason = reason
        self.info = info

    def __getattr__(self, name):
        return _info_field(self, name)


# --- KSM ---
class KsmEvent(Event):
    """What mm/ksm.c did: ``action`` done by kernel function ``function``.

    ``pid``/``address``/``pfn``: the page it is about (for visits, the rmap_item ksmd
    is visiting; 0 for events about no page).  ``outcome``: a code for the result
    (``first_visit``, ``changed``, ``unchanged`` for checksums; ``pinned`` ...).
    ``checksum``: the page's calc_checksum() when it was computed.  ``other_*``: the
    other page (the unstable-tree page merged with, the KSM page merged into).
    ``node``: the stable_node's id.  ``info``: the rest (``sharers``, ``chain``,
    ``dups``, ``max_page_sharing``, ``seqnr`` ...), also readable as attributes.
    """
    __slots__ = ("function", "action", "pid", "address", "pfn", "outcome", "checksum",
                 "other_pid", "other_address", "other_pfn", "node", "info")

    def __init__(self, time_ns, function, action, pid, address, pfn, outcome=None,
                 checksum=None, other_pid=None, other_address=None, other_pfn=None,
                 node=None, info=None):
        self.time_ns = time_ns
        self.function = function
        self.action = action
        self.pid = pid
        self.address = address
        self.pfn = pfn
        self.outcome = outcome
        self.checksum = checksum
        self.other_pid = other_pid
        self.other_address = other_address
        self.other_pfn = other_pfn
        self.node = node
        self.info = info

    def __getattr__(self, name):
        return _info_field(self, name)


def _info_field(event, name):
    """``event.info[name]`` for names that are not slots (never for dunders, and not
    while the record is being unpickled, when ``info`` is not set yet)."""
    if not name.startswith("__") and name != "info":
        info = event.info
        if info and name in info:
            return info[name]
    raise AttributeError(f"{type(event).__name__} has no field {name!r}")


class EventLog:
    """The machine's event stream: bounded history plus live subscribers.

    ``history`` is a ring of the newest ``maxlen`` events (None: unbounded, the
    caller's choice); subscribers and captures see every event.  ``emit`` is the
    ring's own ``append`` while nobody else listens, so one event costs one C call.
    """

    def __init__(self, enabled: bool = True, maxlen: int | None = 100_000, history=()):
        self.enabled = enabled
        self.maxlen = maxlen
        self._subscribers: list = []
        self._captures: list = []
        self.history = deque(history, maxlen=maxlen)

    @property
    def history(self) -> deque:
        return self._history

    @history.setter
    def history(self, ring) -> None:
        self._history = ring
        self._rewire()

    def _rewire(self) -> None:
        if self._subscribers or self._captures:
            self.emit = self._emit_all
        else:
            self.emit = self._history.append

    def _emit_all(self, event: Event) -> None:
        self._history.append(event)
        for cap in self._captures:
            cap.append(event)
        for fn in self._subscribers:
            fn(event)

    def subscribe(self, fn) -> None:
        self._subscribers.append(fn)
        self._rewire()

    def unsubscribe(self, fn) -> None:
        self._subscribers.remove(fn)
        self._rewire()

    @contextmanager
    def capture(self, enable: bool = True):
        """Collect the events emitted inside the block into a list (turning events on)."""
        saved, bucket = self.enabled, []
        self.enabled = self.enabled or enable
        self._captures.append(bucket)
        self._rewire()
        try:
            yield bucket
        finally:
            self._captures.remove(bucket)
            self._rewire()
            self.enabled = saved

    def of(self, kind) -> list:
        return [e for e in self._history if isinstance(e, kind)]

    def clear(self) -> None:
        self._history.clear()
