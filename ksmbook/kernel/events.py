"""Structured event records.  Every layer reports what it did through one EventLog.

An event is data, never prose: the kernel function that emitted it, the pid and
address of the page it is about, frames, the other page of a merge, an outcome
code and the numbers the story needs.  The book's sentences are built from these
fields in ``ksmbook.viz.events`` (``describe_event``, ``explain``), on demand; the
kernel writes no text, and nothing parses text back.

Events are plain ``__slots__`` classes built with positional arguments.  ksmd emits
one or two per page visit, so its emitters - and those of faults, PTE writes, page
frees, MMU notifier calls and KVM - hand the log a ``("KsmEvent", *fields)``
tuple instead (``EventLog.put``): the ring keeps that, and the record object is
built only when someone reads it or listens.  A tuple of numbers and strings costs a
tenth of a record to make, and the garbage collector stops tracking it at its first
pass, so a full ring of them costs later collections nothing.  Emitting sites check
``log.enabled`` first, so a run with events off pays one attribute test.  Two records are equal when their type and fields
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


#: record class by name, for ``EventLog.put``'s tuples
RECORDS = {cls.__name__: cls for cls in (PageAlloc, PageFree, Fault, PteChange, NotifierCall,
                                         KvmEvent, KsmEvent)}


def _info_field(event, name):
    """``event.info[name]`` for names that are not slots (never for dunders, and not
    while the record is being unpickled, when ``info`` is not set yet)."""
    if not name.startswith("__") and name != "info":
        info = event.info
        if info and name in info:
            return info[name]
    raise AttributeError(f"{type(event).__name__} has no field {name!r}")


def _record(entry):
    """A ring entry as a record: ``(class name, *fields)`` tuples are built here, on read."""
    return RECORDS[entry[0]](*entry[1:]) if type(entry) is tuple else entry


class EventRing:
    """The newest ``maxlen`` events (None: all), oldest first, read as records.

    ksmd's per-page emitters store a plain ``(class name, *fields)`` tuple
    (``EventLog.put``):
    building the record object is what costs, and most events of a long run fall off
    the ring unread.  Iterating, indexing and slicing give records, built on demand
    (equal records each time: they compare by value).
    """
    __slots__ = ("_ring",)

    def __init__(self, events=(), maxlen: int | None = None):
        self._ring = deque(events, maxlen=maxlen)

    @property
    def maxlen(self) -> int | None:
        return self._ring.maxlen

    def append(self, event: Event) -> None:
        self._ring.append(event)

    def clear(self) -> None:
        self._ring.clear()

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self):
        return map(_record, self._ring)

    def __reversed__(self):
        return map(_record, reversed(self._ring))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_record(e) for e in list(self._ring)[index]]
        return _record(self._ring[index])

    def __eq__(self, other):
        if isinstance(other, EventRing):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"EventRing({len(self)} events, maxlen={self.maxlen})"


class EventLog:
    """The machine's event stream: bounded history plus live subscribers.

    ``history`` is a ring of the newest ``maxlen`` events (None: unbounded, the
    caller's choice); subscribers and captures see every event, as records.
    ``emit(record)`` and ``put(("KsmEvent", *fields))`` (the hot emitters' form: no
    object is built unless someone listens; the name is a key of ``RECORDS``) are the ring's own ``deque.append`` while
    nobody else listens, so one event costs one C call.
    """

    def __init__(self, enabled: bool = True, maxlen: int | None = 100_000, history=()):
        self.enabled = enabled
        self.maxlen = maxlen
        self._subscribers: list = []
        self._captures: list = []
        self.history = EventRing(history, maxlen)

    @property
    def history(self) -> EventRing:
        return self._history

    @history.setter
    def history(self, ring) -> None:
        if not isinstance(ring, EventRing):
            ring = EventRing(ring, getattr(ring, "maxlen", self.maxlen))
        self._history = ring
        self._rewire()

    def _rewire(self) -> None:
        if self._subscribers or self._captures:
            self.emit = self._emit_all
            self.put = self._put_all
        else:
            self.emit = self.put = self._history._ring.append

    def _emit_all(self, event: Event) -> None:
        self._history.append(event)
        for cap in self._captures:
            cap.append(event)
        for fn in self._subscribers:
            fn(event)

    def _put_all(self, fields: tuple) -> None:
        self._emit_all(RECORDS[fields[0]](*fields[1:]))

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
