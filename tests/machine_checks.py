"""Test oracles for the simulated kernel: a full state fingerprint and invariant checks.

``fingerprint(m)`` captures everything a failing call could have changed (frames with
their bytes and counts, the allocator's free lists, every page-table entry of every
level, VMAs, per-mm and global counters, KSM's lists and trees, the sysfs snapshot),
so ``assert fingerprint(m) == before`` proves that an error left no trace.

``check_page_counts`` and ``check_ksm`` recompute the kernel's counters from scratch
and compare them with the incremental ones; the property tests call them after every
step and the unit tests after interesting ones.
"""
from __future__ import annotations

from collections import Counter

from ksmbook.kernel.fault import is_ksm_zero_pte
from ksmbook.kernel.ksm.rbtree import rb_check
from ksmbook.kernel.ksm.structs import SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG
from ksmbook.kernel.memory import PG_ksm
from ksmbook.kernel.pagetable import pte_pfn, pte_present, pte_special, pte_write


# --- fingerprint -----------------------------------------------------------------------

def _mapping_key(mapping):
    if mapping is None:
        return None
    return (type(mapping).__name__, getattr(mapping, "id", None))


def _table_dump(table, level, out, prefix=()):
    for i, entry in enumerate(table.entries):
        if entry:
            out.append((level, prefix + (i,), entry, table.page.pfn))
    if table.children is not None:
        for i, child in enumerate(table.children):
            if child is not None:
                _table_dump(child, level - 1, out, prefix + (i,))


def _mm_fingerprint(mm):
    tables = []
    if mm.pagetables.pgd is not None:
        _table_dump(mm.pagetables.pgd, 4, tables)
    vmas = [(v.start, v.end, v.flags, v.anon_vma.id if v.anon_vma else None,
             None if v.shmem is None else (v.shmem.users,
                                           tuple(sorted((o, p.pfn) for o, p in v.shmem.pages.items()))),
             v.pgoff, v.nid) for v in mm.vmas]
    return dict(flags=mm.flags, users=mm.mm_users, vmas=vmas, tables=tables,
                nr_leaves=len(mm.pagetables.leaves), ksm=(mm.ksm_merging_pages, mm.ksm_rmap_items,
                                                        mm.ksm_zero_pages), nid=mm.nid,
                notifiers=len(mm.notifiers.list))


def _item_key(item):
    return (item.mm.owner_pid, item.address)


def _node_fingerprint(node):
    if node.is_chain:
        return ("chain", node.id, node.chain_prune_time, node.nid,
                tuple(_node_fingerprint(d) for d in node.hlist))
    return ("node", node.id, node.kpfn, node.rmap_hlist_len, node.nid, node.is_dup,
            tuple(_item_key(i) for i in node.hlist))


def ksm_fingerprint(k) -> dict:
    slots = []
    for slot in k.slots():
        items = [(i.address, i.flags, i.oldchecksum, i.age, i.remaining_skips, i.nid,
                  None if i.head is None else i.head.id,
                  None if i.anon_vma is None else i.anon_vma.id) for i in slot.items()]
        slots.append((slot.mm.owner_pid, tuple(items)))
    scan = k.ksm_scan
    cur = scan.mm_slot
    rl = scan.rmap_list
    cursor = (None if cur.mm is None else cur.mm.owner_pid, scan.address, scan.seqnr,
              ("slot", None if rl.mm is None else rl.mm.owner_pid)
              if not hasattr(rl, "oldchecksum") else ("item", _item_key(rl)))
    counters = {name: getattr(k, name) for name in (
        "ksm_pages_shared", "ksm_pages_sharing", "ksm_pages_unshared", "ksm_rmap_items",
        "stable_node_chains", "stable_node_dups", "ksm_pages_scanned", "ksm_pages_skipped",
        "ksm_zero_pages", "run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes",
        "use_zero_pages", "max_page_sharing", "stable_node_chains_prune_millisecs",
        "smart_scan", "advisor_mode")}
    return dict(
        slots=slots, cursor=cursor, counters=counters,
        stable=[tuple(_node_fingerprint(n) for n in root) for root in k.root_stable_tree],
        unstable=[tuple(_item_key(i) for i in root) for root in k.root_unstable_tree],
        advisor=dict(k.advisor_ctx))


def fingerprint(m) -> dict:
    """Everything observable about machine ``m``, as plain comparable values."""
    mem = m.memory
    frames = {pfn: (None if p.data is None else bytes(p.data), p.refcount, p.mapcount,
                    p.flags, p.nid, _mapping_key(p.mapping))
              for pfn, p in mem.pages.items()}
    procs = {pid: (p.name, p.alive, _mm_fingerprint(p.mm) if p.alive else None)
             for pid, p in m.processes.items()}
    return dict(
        frames=frames, free=[list(f) for f in mem._free], next=list(mem._next),
        zero=(bytes(mem.zero_page.data), mem.zero_page.refcount, mem.zero_page.mapcount),
        procs=procs, next_pid=m._next_pid, clock=m.clock_ns, tlb=m.tlb_flushes,
        vmstat=dict(m.vmstat), ksm=ksm_fingerprint(m.ksm), sysfs=m.sysfs.snapshot())


# --- invariants --------------------------------------------------------------------------

def check_page_counts(m) -> None:
    """Every frame's refcount and mapcount equal a recount from the page tables, and
    the allocator holds exactly the frames that something refers to."""
    recount = m.recount_page_counts()
    pages = m.memory.pages
    missing = sorted(set(pages) - set(recount))
    assert not missing, f"allocated frames nobody refers to (leak): {[pages[p] for p in missing]}"
    extra = sorted(set(recount) - set(pages))
    assert not extra, f"page tables refer to freed frames: {extra}"
    for pfn, page in pages.items():
        assert (page.refcount, page.mapcount) == recount[pfn], \
            f"{page!r}: recount says (ref, map) = {recount[pfn]}"
    zp = m.memory.zero_page
    assert zp.refcount == 1 and zp.mapcount == 0 and not any(zp.data), "zero page disturbed"


def ksm_zero_ptes(m) -> Counter:
    """KSM-placed zero-page PTEs per live pid (is_ksm_zero_pte)."""
    out = Counter()
    for p in m.live_processes():
        for v in p.mm.vmas:
            for _a, pte in p.mm.pagetables.present(v.start, v.end):
                if is_ksm_zero_pte(pte):
                    out[p.pid] += 1
    return out


def check_ksm(m) -> None:
    """Every KSM counter equals a recount from scratch; trees are valid red-black trees
    in memcmp order; stable nodes and KSM pages point at each other."""
    k = m.ksm
    stats = k.stats()
    rc = k.recount()
    assert rc["rmap_items"] == k.ksm_rmap_items, (rc, k.ksm_rmap_items)
    for name in ("pages_shared", "pages_sharing", "pages_unshared", "stable_node_chains",
                 "stable_node_dups"):
        assert stats[name] == rc[name], f"{name}: counter {stats[name]} != recount {rc[name]}"
    assert rc["stable_items"] == stats["pages_shared"] + stats["pages_sharing"]
    assert stats["pages_volatile"] == rc["rmap_items"] - rc["pages_shared"] \
        - rc["pages_sharing"] - rc["pages_unshared"] >= 0
    # per-mm counters
    per_mm_items, per_mm_stable = Counter(), Counter()
    for item in k.rmap_items():
        per_mm_items[item.mm] += 1
        if item.flags & STABLE_FLAG:
            per_mm_stable[item.mm] += 1
    mms = {s.mm for s in k.slots()} | {p.mm for p in m.live_processes()}
    # before the late-2025 fix (6.18) fork copied the parent's per-mm counters into the
    # child, which owns none of those rmap_items, and never added the child's KSM zero
    # pages to the global count: the kernel's own drift, modelled, so not checked there
    exact_mm = m.profile.ksm_fork_resets_counters
    for mm in mms if exact_mm else ():
        assert mm.ksm_rmap_items == per_mm_items[mm], (mm.owner_pid, mm.ksm_rmap_items,
                                                       per_mm_items[mm])
        assert mm.ksm_merging_pages == per_mm_stable[mm], (mm.owner_pid, mm.ksm_merging_pages,
                                                           per_mm_stable[mm])
    # zero pages
    zeros = ksm_zero_ptes(m)
    if m.profile.ksm_zero_pages_counter and exact_mm:
        assert k.ksm_zero_pages == sum(zeros.values()), (k.ksm_zero_pages, zeros)
        for p in m.live_processes():
            assert p.mm.ksm_zero_pages == zeros[p.pid], (p.pid, p.mm.ksm_zero_pages, zeros)
    # the mm list and the slot hash agree
    slots = k.slots()
    assert len({id(s) for s in slots}) == len(slots)
    assert {s.mm for s in slots} == set(k.mm_slots), "ksm_mm_head list != mm_slots hash"
    for s in slots:
        assert s.mm.flags & k.MMF_VM_MERGEABLE
        addrs = [i.address for i in s.items()]
        assert addrs == sorted(set(addrs)), f"rmap_list of pid {s.mm.owner_pid} not sorted"
    # trees.  The unstable tree is reset when a full scan starts, so in the middle of a
    # scan it holds exactly the items inserted during this scan (seqnr age 0), while
    # items not yet revisited keep the flag from the previous scan (age 1); between
    # scans the tree is dead (it may still link items freed since) and every
    # UNSTABLE_FLAG item dates from the scan that just ended (age 1)
    mid_scan = k.ksm_scan.mm_slot is not k.ksm_mm_head
    items = list(k.rmap_items())
    live = {id(i) for i in items}

    def age(item):
        return (k.ksm_scan.seqnr - (item.flags & SEQNR_MASK)) & 0xFF
    in_tree = set()
    for root in k.root_unstable_tree:
        rb_check(root)
        if mid_scan:
            for item in root:
                assert id(item) in live and item.flags & UNSTABLE_FLAG and age(item) == 0, item
                in_tree.add(id(item))
    for item in items:
        if item.flags & UNSTABLE_FLAG:
            assert not item.flags & STABLE_FLAG
            assert age(item) in ((0, 1) if mid_scan else (1,)), item
            if mid_scan and age(item) == 0:
                assert id(item) in in_tree, f"{item} is flagged unstable but not in the tree"
        if item.flags & STABLE_FLAG:
            assert item.head is not None and item in item.head.hlist, item
        else:
            assert item.head is None, item
    mem = m.memory.pages
    node_of_pfn = {}
    for nid, root in enumerate(k.root_stable_tree):
        rb_check(root)
        last = None
        for top in root:
            nodes = list(top.hlist) if top.is_chain else [top]
            if top.is_chain:
                # an empty chain is legal: remove_node_from_stable_tree() unlinks a stale
                # dup from its chain and leaves the chain for the next lookup to free
                assert all(d.is_dup and d.chain is top for d in nodes), top
            contents = set()
            for node in nodes:
                assert node.rmap_hlist_len == len(node.hlist), node
                for item in node.hlist:
                    assert item.head is node and item.flags & STABLE_FLAG, (node, item)
                page = mem.get(node.kpfn)
                live = page is not None and page.mapping is node and page.flags & PG_ksm
                if live:
                    node_of_pfn[node.kpfn] = node
                    contents.add(bytes(page.data))
                else:
                    # a stale node (page freed or reused) is allowed until a lookup prunes it
                    assert page is None or page.mapping is not node
            assert len(contents) <= 1, f"dups of one chain differ in content: {top}"
            if contents:
                key = contents.pop()
                assert last is None or last < key, "stable tree out of memcmp order"
                last = key
    # every KSM page is the page of a live stable node, and is never mapped writable
    for pfn, page in mem.items():
        if page.flags & PG_ksm:
            assert node_of_pfn.get(pfn) is page.mapping, f"KSM page {page!r} has no stable node"
    for p in m.live_processes():
        for v in p.mm.vmas:
            for addr, pte in p.mm.pagetables.present(v.start, v.end):
                if pte_special(pte) or not pte_present(pte):
                    continue
                page = mem.get(pte_pfn(pte))
                if page is not None and page.flags & PG_ksm:
                    assert not pte_write(pte), f"writable PTE on KSM page at {addr:#x}"
