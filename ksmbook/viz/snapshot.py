"""Snapshots: the machine's state copied into plain, frozen data for the figures.

The figure builders take a :class:`MachineSnapshot` (or a :class:`WalkSnapshot`)
and nothing else, so a figure is a pure function of data: it cannot change the
model, it can be drawn again from a stored snapshot, and tests can build one by
hand.  ``snapshot()`` only reads the machine (sysfs counters, page tables, the
frames, KSM's trees and rmap_items).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel.fault import is_ksm_zero_pte
from ..kernel.ksm.structs import stable_node_folio
from ..kernel.memory import PG_ksm, PG_shmem, PG_table, PG_zero, ZERO_PFN
from ..kernel.pagetable import (LEVEL_NAMES, PTE_BIT_NAMES, pte_flags_text, pte_pfn,
                                pte_present, pte_special, pte_write)

#: frame roles, in the order the legends list them
ROLES = ("anon", "ksm", "zero", "shmem", "table", "free")
ROLE_NAMES = {"anon": "anonymous", "ksm": "KSM page", "zero": "zero page",
              "shmem": "shmem (MAP_SHARED)", "table": "page table", "free": "free"}
#: the page-counting sysfs counters a timeline or a grid draws (not full_scans,
#: pages_scanned or the chain counters; compare ksmbook.uapi.KSM_COUNTERS, all of them)
PAGE_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "ksm_zero_pages", "pages_skipped")


def content_tag(data) -> str:
    """A short name for a page's bytes: "'*'×256", "00×256", '"hello"…', "07 00 00 00…".

    Uniform pages (the book's usual content) are named by their byte and the page
    size; other pages by their first bytes.
    """
    if data is None:
        return ""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    if not data:
        return ""
    first = data[0]
    if data.count(first) == len(data):
        ch = chr(first)
        shown = f"'{ch}'" if ch.isprintable() and ch.isascii() and ch not in " '" else f"{first:02x}"
        return f"{shown}×{len(data)}"
    text = bytearray()
    for b in data[:6]:
        if not 32 <= b < 127:
            break
        text.append(b)
    if len(text) >= 3:
        return '"' + text.decode() + '"…'
    return " ".join(f"{b:02x}" for b in data[:4]) + "…"


@dataclass(frozen=True)
class FrameSnap:
    pfn: int
    role: str               # one of ROLES
    mapcount: int
    refcount: int
    nid: int
    tag: str                # content_tag of the bytes ("" for tables and free frames)
    owner: str = ""         # for page tables: "PGD of vm1" ...
    ptes: int = 0           # present PTEs that map it (the zero page keeps no mapcount)


@dataclass(frozen=True)
class MappingSnap:
    """One present PTE of one process: a virtual page and the frame it maps."""
    pid: int
    proc: str
    label: str
    address: int
    pte: int
    pfn: int
    writable: bool
    ksm_zero: bool          # a zero-page PTE that KSM placed (dirty + special)
    flags: str              # "P|U|A" ...


@dataclass(frozen=True)
class ProcSnap:
    pid: int
    name: str
    ksm_rmap_items: int
    ksm_merging_pages: int
    ksm_zero_pages: int
    vmas: tuple = ()        # (start, end, "rw-p", mergeable)


@dataclass(frozen=True)
class RmapItemSnap:
    pid: int
    label: str
    address: int
    state: str              # "stable" | "unstable" | "volatile"
    oldchecksum: int
    age: int
    remaining_skips: int = 0    # smart scan: scans this item will still be skipped


@dataclass(frozen=True)
class TreeNodeSnap:
    """A node of a KSM tree, with its place in the tree (parent key and side)."""
    key: str                # unique within its tree, e.g. "s3" or "u:vm1[0]"
    kind: str               # "node" | "chain" | "dup" | "unstable"
    parent: str | None
    side: str               # "root" | "L" | "R" | "dup"
    pfn: int | None
    tag: str
    sharers: int            # rmap_items on the node (dups: their own; chains: total)
    mappers: tuple = ()     # labels of the virtual pages that map it
    red: bool = False
    vpages: tuple = ()      # (pid, address) of the rmap_items on it, as ``mappers``


@dataclass(frozen=True)
class MachineSnapshot:
    kernel: str
    page_size: int
    counters: dict
    knobs: dict
    frames: tuple
    mappings: tuple
    processes: tuple
    rmap_items: tuple
    stable_tree: tuple
    unstable_tree: tuple
    cursor: str | None = None               # label of the next page ksmd looks at
    events: tuple = field(default=())       # (text lines) of the last step, optional

    def frame(self, pfn: int) -> FrameSnap:
        for f in self.frames:
            if f.pfn == pfn:
                return f
        raise KeyError(pfn)


# --- labels -------------------------------------------------------------------------

def default_labeler(machine):
    """'name[i]': page i counted from the lowest mapped address of the process."""
    lowest = {}
    for p in machine.processes.values():
        if p.alive and p.mm.vmas:
            lowest[p.pid] = (p.name, min(v.start for v in p.mm.vmas))

    def label(pid: int, address: int) -> str:
        name, base = lowest.get(pid, (str(pid), 0))
        return f"{name}[{(address - base) // machine.page_size}]"
    return label


def _resolve(obj):
    """(machine, labeler) from a Machine or a Scene."""
    machine = getattr(obj, "machine", obj)
    fallback = default_labeler(machine)
    scene_label = getattr(obj, "label", None) if obj is not machine else None

    names = {}          # one snapshot names each page once (mappings, items, trees)

    def label(pid, address):
        name = names.get((pid, address))
        if name is None:
            name = (scene_label(pid, address) if scene_label else None) or fallback(pid, address)
            names[pid, address] = name
        return name
    return machine, label


# --- the snapshot -------------------------------------------------------------------

def _role(page) -> str:
    if page.flags & PG_zero:
        return "zero"
    if page.flags & PG_table:
        return "table"
    if page.flags & PG_ksm:
        return "ksm"
    if page.flags & PG_shmem:
        return "shmem"
    return "anon"


def _table_owners(machine) -> dict:
    owners = {}
    for p in machine.processes.values():
        if not p.alive or p.mm.pagetables.pgd is None:
            continue
        stack = [p.mm.pagetables.pgd]
        while stack:
            t = stack.pop()
            owners[t.page.pfn] = f"{LEVEL_NAMES[t.level]} of {p.name}"
            stack.extend(c for c in (t.children or ()) if c is not None)
    return owners


def _frames(machine, mappings) -> tuple:
    mem = machine.memory
    owners = _table_owners(machine)
    ptes = {}
    for m in mappings:
        ptes[m.pfn] = ptes.get(m.pfn, 0) + 1
    out = [FrameSnap(ZERO_PFN, "zero", 0, 1, 0, content_tag(mem.zero_page.data),
                     ptes=ptes.get(ZERO_PFN, 0))]
    for pfn in sorted(mem.pages):
        page = mem.pages[pfn]
        role = _role(page)
        out.append(FrameSnap(pfn, role, page.mapcount, page.refcount, page.nid,
                             "" if role == "table" else content_tag(page.data),
                             owners.get(pfn, ""), ptes.get(pfn, 0)))
    out += [FrameSnap(pfn, "free", 0, 0, mem.pfn_to_nid(pfn), "") for pfn in mem.free_pfns()]
    out.sort(key=lambda f: f.pfn)
    return tuple(out)


def _mappings(machine, label) -> tuple:
    return tuple(MappingSnap(p.pid, p.name, label(p.pid, addr), addr, pte, pte_pfn(pte),
                             pte_write(pte), is_ksm_zero_pte(pte), pte_flags_text(pte))
                 for p, addr, pte in machine.present_ptes())


def _page_at(machine, mm, address):
    pte = mm.pagetables.get_pte(address)
    if not pte_present(pte) or pte_special(pte):
        return None
    return machine.memory.pages.get(pte_pfn(pte))


def _rb_nodes(root):
    """Yield (node, parent, side) for an rbtree, pre-order."""
    if root.rb_node is None:
        return
    stack = [(root.rb_node, None, "root")]
    while stack:
        node, parent, side = stack.pop()
        yield node, parent, side
        if node.rb_right is not None:
            stack.append((node.rb_right, node, "R"))
        if node.rb_left is not None:
            stack.append((node.rb_left, node, "L"))


def _stable_tree(machine, label) -> tuple:
    ksm, mem = machine.ksm, machine.memory
    out = []

    def node_snap(n, parent_key, side, kind):
        page = stable_node_folio(mem.pages, n) if n.kpfn is not None else None
        alive = page is not None        # ksm_get_folio()'s keyhole check, PG_ksm included
        mappers = tuple(label(i.mm.owner_pid, i.address) for i in n.hlist)
        return TreeNodeSnap(f"s{n.id}", kind, parent_key, side, n.kpfn,
                            content_tag(page.data) if alive else "(stale)",
                            len(n.hlist), mappers, bool(n.rb_red),
                            tuple((i.mm.owner_pid, i.address) for i in n.hlist))

    for root in ksm.root_stable_tree:
        keys = {}
        for n, parent, side in _rb_nodes(root):
            pkey = keys.get(id(parent)) if parent is not None else None
            keys[id(n)] = f"s{n.id}"
            if n.is_chain:
                dups = list(n.hlist)
                first = next((mem.pages.get(d.kpfn) for d in dups
                              if mem.pages.get(d.kpfn) is not None), None)
                out.append(TreeNodeSnap(f"s{n.id}", "chain", pkey, side, None,
                                        content_tag(first.data) if first is not None else "",
                                        sum(len(d.hlist) for d in dups), (), bool(n.rb_red)))
                for d in dups:
                    out.append(node_snap(d, f"s{n.id}", "dup", "dup"))
            else:
                out.append(node_snap(n, pkey, side, "node"))
    return tuple(out)


def _unstable_tree(machine, label) -> tuple:
    out = []
    for root in machine.ksm.root_unstable_tree:
        keys = {}
        for item, parent, side in _rb_nodes(root):
            key = f"u{item.mm.owner_pid}:{item.address:x}"
            keys[id(item)] = key
            page = _page_at(machine, item.mm, item.address) if item.mm.mm_users else None
            name = label(item.mm.owner_pid, item.address)
            out.append(TreeNodeSnap(key, "unstable", keys.get(id(parent)) if parent else None,
                                    side, page.pfn if page is not None else None,
                                    content_tag(page.data) if page is not None else "(gone)",
                                    1, (name,), bool(item.rb_red),
                                    ((item.mm.owner_pid, item.address),)))
    return tuple(out)


def _cursor(machine, label) -> str | None:
    scan = machine.ksm.ksm_scan
    slot = scan.mm_slot
    if slot.mm is None:
        return None
    return label(slot.mm.owner_pid, scan.address)


KNOBS = ("run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages",
         "smart_scan", "merge_across_nodes")


def snapshot(obj, events=()) -> MachineSnapshot:
    """Copy what the figures need out of a Machine (or a Scene, for page names)."""
    machine, label = _resolve(obj)
    ksm = machine.ksm
    knobs = {}
    files = machine.sysfs.snapshot()
    for k in KNOBS:
        if k in files:
            knobs[k] = files[k]
    procs = tuple(
        ProcSnap(p.pid, p.name, p.mm.ksm_rmap_items, p.mm.ksm_merging_pages,
                 p.mm.ksm_zero_pages,
                 tuple((v.start, v.end, v.prot_text(), bool(v.flags & v.VM_MERGEABLE))
                       for v in p.mm.vmas))
        for p in machine.processes.values() if p.alive)
    mappings = _mappings(machine, label)
    items = tuple(RmapItemSnap(i.mm.owner_pid, label(i.mm.owner_pid, i.address), i.address,
                               i.state, i.oldchecksum, i.age, i.remaining_skips)
                  for i in ksm.rmap_items())
    return MachineSnapshot(
        kernel=machine.kernel, page_size=machine.page_size, counters=ksm.stats(),
        knobs=knobs, frames=_frames(machine, mappings), mappings=mappings,
        processes=procs, rmap_items=items, stable_tree=_stable_tree(machine, label),
        unstable_tree=_unstable_tree(machine, label), cursor=_cursor(machine, label),
        events=tuple(events))


# --- one page walk --------------------------------------------------------------------

@dataclass(frozen=True)
class WalkStepSnap:
    level: str              # "PGD" ...
    index: int
    entry: int
    table_pfn: int
    present: bool
    flags: str


@dataclass(frozen=True)
class WalkSnapshot:
    pid: int
    proc: str
    label: str
    address: int
    page_shift: int
    indices: tuple          # (pgd, pud, pmd, pte) indices computed from the address
    offset: int
    steps: tuple            # WalkStepSnap, stopping at the first hole
    pfn: int | None         # the frame reached, None if the walk hit a hole
    frame_role: str | None
    frame_mapcount: int | None
    frame_tag: str
    pte_bits: tuple         # ((name, set?), ...) of the last-level entry

    @property
    def complete(self) -> bool:
        return self.pfn is not None


def walk(obj, pid_or_name, address: int) -> WalkSnapshot:
    """The hardware walk of ``address`` in one process, as plain data."""
    machine, label = _resolve(obj)
    proc = machine.process(pid_or_name)
    pt = proc.mm.pagetables
    page_address = address - address % machine.page_size
    steps = tuple(WalkStepSnap(s.level, s.index, s.entry, s.table_pfn, bool(s.entry),
                               pte_flags_text(s.entry)) for s in pt.walk(address))
    indices = tuple(pt.index(address, level) for level in (4, 3, 2, 1))
    pfn = role = mapcount = None
    tag = ""
    last = steps[-1]
    if last.level == "PTE" and pte_present(last.entry):
        pfn = pte_pfn(last.entry)
        page = machine.memory.pfn_to_page(pfn)
        role, mapcount, tag = _role(page), page.mapcount, content_tag(page.data)
    bits = tuple((name, bool(last.entry & bit)) for bit, name in PTE_BIT_NAMES) \
        if last.level == "PTE" else tuple((name, False) for _bit, name in PTE_BIT_NAMES)
    return WalkSnapshot(proc.pid, proc.name, label(proc.pid, page_address), address,
                        machine.page_shift, indices, address % machine.page_size, steps, pfn,
                        role, mapcount, tag, bits)
