"""ksmd's fast paths against the kernel's own lookups: same counters, same merges, same trees.

Every scenario runs on three machines fed the same calls: ``Machine(fastpath=False)``
(every lookup as mm/ksm.c does it), the default fast paths, and
``Machine(check_fastpath=True)`` (each shortcut asserts, before it is used, that the
kernel's way would give the same answer).  After the checkpoints of each scenario the three must
agree on everything observable: frames and their bytes, page tables, every KSM counter
and rmap_item, the exact shape of the stable and unstable rbtrees (parent, side and
colour of every node), the events, and the error of every call that failed.
Every test runs twice: with events on, and with events off.  In both the fast machine
runs ksm_do_scan() as fastpath.py's fused batch (shortcut 5) and the checked one
does not, so the fused batch is compared with the kernel's loop; with events on,
record by record (kind, time and every field) against the events of the kernel's
functions.

The random scenarios mix ksmd batches of every size with what breaks the shortcuts'
premises: writes (plain and from a KVM guest), COW, munmap, MADV_DONTNEED and
UNMERGEABLE, mprotect, fork, exit, knob changes, chains (small max_page_sharing) with
pruning after simulated time, use_zero_pages, smart_scan, two NUMA nodes.
"""
from __future__ import annotations

import random
import sys

import pytest

from ksmbook import (MADV_DONTNEED, MADV_HUGEPAGE, MADV_MERGEABLE, MADV_UNMERGEABLE, PROT_NONE,
                     PROT_READ, PROT_WRITE, Machine)
from ksmbook.kernel.pagetable import pte_pfn

from machine_checks import check_ksm, check_page_counts, fingerprint

PS = 256
KSM = "/sys/kernel/mm/ksm"


# --- what "the same" means --------------------------------------------------------------

def _shape(root):
    """Every node of an rbtree as (key, parent key, side, colour), in order."""
    def key(n):
        if n is None:
            return None
        if hasattr(n, "oldchecksum"):                      # an rmap_item
            return ("item", n.mm.owner_pid, n.address)
        return ("node", n.id)
    out = []
    for n in root:
        p = n.rb_parent
        side = None if p is None else ("L" if p.rb_left is n else "R")
        out.append((key(n), key(p), side, n.rb_red))
    return out


def state(m) -> dict:
    k = m.ksm
    return dict(fp=fingerprint(m),
                unstable=[_shape(r) for r in k.root_unstable_tree],
                stable=[_shape(r) for r in k.root_stable_tree],
                events=[(e.kind, e._values()) for e in m.events.history],
                pfn_sharing=_sharing(m), tables=_tables(m))


def _tables(m):
    """Every live process's last-level page tables and their counts of used entries
    (fastpath.py's merge_one_page() keeps the counts as PageTables.set_pte() does)."""
    return {p.pid: sorted((key, t.used) for key, t in p.mm.pagetables.leaves.items())
            for p in m.live_processes()}


def _sharing(m):
    """Which (pid, address) map which frame, for every live process."""
    out = {}
    for p in m.live_processes():
        for v in p.mm.vmas:
            for addr, pte in p.mm.pagetables.present(v.start, v.end):
                out[(p.pid, addr)] = pte
    return out


EVENTS = True      # set by the _events fixture: every test runs with events on and off


@pytest.fixture(autouse=True, params=[True, False], ids=["events-on", "events-off"])
def _events(request, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "EVENTS", request.param)


def trio(**kw):
    """(kernel's way, fast, fast+checked) machines built alike."""
    kw.setdefault("events", EVENTS)
    ms = [Machine(page_size=PS, fastpath=False, **kw), Machine(page_size=PS, **kw),
          Machine(page_size=PS, check_fastpath=True, **kw)]
    assert [(m.ksm.fastpath, m.ksm.check_fastpath) for m in ms] == \
        [(False, False), (True, False), (True, True)]
    return ms


def same(ms, where=""):
    ref = state(ms[0])
    for m in ms[1:]:
        got = state(m)
        for key in ref:
            assert got[key] == ref[key], f"{where}: {key} differs (fastpath={m.ksm.fastpath}, " \
                                         f"check={m.ksm.check_fastpath})"
    for m in ms:
        check_page_counts(m)
        check_ksm(m)


def on_all(ms, fn):
    """Call fn(m) on each machine; the outcome (value or error) must be the same."""
    results = []
    for m in ms:
        try:
            results.append(("ok", fn(m)))
        except Exception as exc:                     # noqa: BLE001 - compared below
            results.append(("err", type(exc).__name__, getattr(exc, "errno", None)))
    assert all(r == results[0] for r in results), results
    return results[0]


# --- hand-written scenarios ---------------------------------------------------------------

def _fill(b):
    return bytes([b]) * PS


def _build(m, contents, name="p", node=0):
    p = m.spawn(name, node=node) if m.numa_nodes > 1 else m.spawn(name)
    a = p.mmap(len(contents) * PS)
    for i, c in enumerate(contents):
        p.write(a + i * PS, _fill(c) if isinstance(c, int) else c)
    p.madvise(a, len(contents) * PS, MADV_MERGEABLE)
    return p, a


def _uniq(i):
    return i.to_bytes(4, "little") * (PS // 4)


def test_the_benchmark_shape_merges_alike():
    """Every 4th page a copy of one of 4 templates, the rest unique; chains at 3."""
    ms = trio()
    contents = [(i // 4) % 4 + 1 if i % 4 == 0 else _uniq(1000 + i) for i in range(160)]
    for m in ms:
        _build(m, contents)
        m.sysfs.write(f"{KSM}/max_page_sharing", "3")
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        m.sysfs.write(f"{KSM}/run", "1")
    for scan in range(4):
        for m in ms:
            m.ksmd.run_full_scans(1)
        same(ms, f"after scan {scan + 1}")
    assert ms[1].ksm.stats()["pages_sharing"] > 0 and ms[1].ksm.stats()["stable_node_chains"] > 0


def test_nothing_looks_between_batches_until_the_end():
    """Long stretches of lazily kept unstable tree, compared only at the very end."""
    ms = trio()
    rng = random.Random(7)
    contents = [rng.choice([1, 2, 3]) if rng.random() < 0.3 else _uniq(i) for i in range(300)]
    for m in ms:
        _build(m, contents)
        m.sysfs.write(f"{KSM}/run", "1")
        for n in (1, 7, 50, 3, 100, 200, 1, 1, 400, 13):
            m.ksmd.scan(n)
    same(ms, "end")


def test_writes_between_batches_settle_the_tree_first():
    ms = trio()
    for m in ms:
        p, a = _build(m, [_uniq(i) for i in range(64)] + [5] * 8)
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(1)
        m.ksmd.scan(40)                       # half of the second scan: nodes in the tree
        # rewrite pages that are in the unstable tree: the tree goes out of order
        for i in range(0, 40, 3):
            p.write(a + i * PS, _uniq(10_000 - i))
        p.write(a + 50 * PS, _uniq(7))        # equal to page 7, which is in the tree
        m.ksmd.scan(100)
        m.ksmd.run_full_scans(2)
    same(ms, "after writes")


def test_a_merge_into_a_ksm_page_refused_for_the_lru_batch_reference():
    """A KSM page's COW copy rewritten with the same bytes mid-scan: its stable hit
    reaches write_protect_page(), which refuses (the copy's LRU-add batch reference),
    puts the PTE back and says why; after the next scan's drain it merges."""
    ms = trio()
    for m in ms:
        p, a = _build(m, [1, 1, 1] + [_uniq(i) for i in range(8)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
        m.ksmd.scan(1)                        # the scan began: lru_add_drain_all() ran
        p.write(a + 2 * PS, _fill(1))         # COW: a private copy, still in the batch
        m.ksmd.scan(4)
    same(ms, "refused")
    if EVENTS:
        refused = [e for e in ms[1].events.history
                   if getattr(e, "action", None) == "merge_failed"]
        assert [e.outcome for e in refused] == ["lru_batch"]
    for m in ms:
        m.ksmd.run_full_scans(2)              # the rest of this scan, then the next
    same(ms, "merged")
    assert ms[1].ksm.stats()["pages_sharing"] == 2


def test_fork_unmap_and_exit_mid_scan():
    ms = trio()
    for m in ms:
        p, a = _build(m, [_uniq(i % 20) for i in range(60)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(1)
        m.ksmd.scan(30)
        c = p.fork("child")                   # same pages twice: 'don't substitute'
        m.ksmd.scan(45)
        p.munmap(a + 10 * PS, 5 * PS)
        m.ksmd.scan(20)
        c.write(a, _uniq(3))                  # COW in the child
        m.ksmd.scan(70)
        p.exit()
        m.ksmd.run_full_scans(2)
    same(ms, "fork/unmap/exit")


def test_chains_are_pruned_after_their_time():
    ms = trio()
    for m in ms:
        p, a = _build(m, [9] * 12 + [_uniq(i) for i in range(30)])
        m.sysfs.write(f"{KSM}/max_page_sharing", "2")
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
        p.madvise(a, 3 * PS, MADV_DONTNEED)   # some dups lose their pages: stale
        m.advance(2500)                       # past stable_node_chains_prune_millisecs
        m.ksmd.run_full_scans(2)
    same(ms, "chains")


def test_two_numa_nodes_without_merging_across():
    ms = trio(numa_nodes=2)
    for m in ms:
        m.sysfs.write(f"{KSM}/merge_across_nodes", "0")
        _build(m, [1, 2, 3, 1, 2, 3] + [_uniq(i) for i in range(10)], "a", node=0)
        _build(m, [1, 2, 3, 1] + [_uniq(i) for i in range(5, 15)], "b", node=1)
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
    same(ms, "numa")


def test_events_step_by_step_are_identical():
    ms = trio()
    for m in ms:
        _build(m, [1, 2, 1, 2, 3] + [_uniq(i) for i in range(11)])
        m.sysfs.write(f"{KSM}/run", "1")
    for step in range(3 * 16 + 2):
        evs = [[(e.kind, e._values()) for e in m.ksmd.scan(1)] for m in ms]
        assert evs[0] == evs[1] == evs[2], f"step {step}"
    same(ms, "events")


def test_kvm_guest_writes_settle_the_tree_first():
    ms = trio()
    for m in ms:
        p, a = _build(m, [_uniq(i) for i in range(32)])
        vm = m.kvm.create_vm(p, a, 32 * PS)
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(1)
        for g in range(0, 32, 2):
            vm.guest_read(g * PS, 4)
        m.ksmd.scan(20)
        vm.guest_write(3 * PS, _uniq(4))     # a page in the tree gets page 4's bytes
        m.ksmd.run_full_scans(2)
    same(ms, "kvm")


# --- random scenarios ------------------------------------------------------------------------

def _random_ops(rng, n_ops):
    ops = []
    for _ in range(n_ops):
        r = rng.random()
        if r < 0.30:
            ops.append(("scan", rng.choice([1, 1, 2, 5, 17, 64, 300])))
        elif r < 0.38:
            ops.append(("full", rng.choice([1, 2])))
        elif r < 0.55:
            ops.append(("write", rng.randrange(3), rng.randrange(24), rng.choice(
                [0, 1, 2, 3, 7, None, None])))
        elif r < 0.60:
            ops.append(("read", rng.randrange(3), rng.randrange(24)))
        elif r < 0.64:
            ops.append(("dontneed", rng.randrange(3), rng.randrange(24), rng.randrange(1, 5)))
        elif r < 0.67:
            ops.append(("unmergeable", rng.randrange(3), rng.randrange(24), rng.randrange(1, 8)))
        elif r < 0.71:
            ops.append(("mergeable", rng.randrange(3), rng.randrange(24), rng.randrange(1, 24)))
        elif r < 0.74:
            ops.append(("mprotect", rng.randrange(3), rng.randrange(24), rng.randrange(1, 4),
                        rng.choice([PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE])))
        elif r < 0.76:
            ops.append(("munmap", rng.randrange(3), rng.randrange(24), rng.randrange(1, 4)))
        elif r < 0.79:
            ops.append(("fork", rng.randrange(3)))
        elif r < 0.81:
            ops.append(("exit", rng.randrange(3)))
        elif r < 0.84:
            ops.append(("advance", rng.choice([5, 50, 2500])))
        elif r < 0.88:
            ops.append(("guest_write", rng.randrange(24), rng.choice([1, 2, None])))
        elif r < 0.96:
            knob, values = rng.choice([("max_page_sharing", ["2", "3", "256"]),
                                       ("use_zero_pages", ["0", "1"]),
                                       ("smart_scan", ["0", "1"]),
                                       ("run", ["1", "1", "1", "2", "0"]),
                                       ("pages_to_scan", ["1", "10", "100"]),
                                       ("stable_node_chains_prune_millisecs",
                                        ["0", "20", "2000"])])
            ops.append(("knob", knob, rng.choice(values)))
        else:
            ops.append(("look",))
    return ops


class _World:
    """One machine and the handles the random program refers to."""

    def __init__(self, m, seed):
        self.m = m
        self.procs = []
        self.vm = None
        rng = random.Random(seed)
        for i in range(2):
            contents = [rng.choice([0, 1, 2, 3]) if rng.random() < 0.5 else _uniq(i * 100 + j)
                        for j in range(24)]
            p, a = _build(m, contents, f"p{i}")
            self.procs.append((p, a))
        p, a = self.procs[0]
        self.vm = m.kvm.create_vm(p, a, 24 * PS)
        m.sysfs.write(f"{KSM}/run", "1")

    def proc(self, i):
        live = [(p, a) for p, a in self.procs if p.alive]
        if not live:
            raise LookupError("no live process")
        return live[i % len(live)]

    def do(self, op, look):
        m, kind = self.m, op[0]
        if kind == "scan":
            return len(m.ksmd.scan(op[1]))
        if kind == "full":
            return m.ksmd.run_full_scans(op[1])
        if kind == "advance":
            return m.advance(op[1])
        if kind == "knob":
            return m.sysfs.write(f"{KSM}/{op[1]}", op[2])
        if kind == "look":
            return look(m)
        if kind == "guest_write":
            data = _uniq(op[1] + 50) if op[2] is None else _fill(op[2])
            return self.vm.guest_write(op[1] * PS, data)
        p, a = self.proc(op[1])
        if kind == "fork":
            c = p.fork()
            self.procs.append((c, a))
            return c.pid
        if kind == "exit":
            return p.exit()
        addr = a + op[2] * PS
        if kind == "write":
            return p.write(addr, _uniq(op[2] + 7 * op[1]) if op[3] is None else _fill(op[3]))
        if kind == "read":
            return p.read(addr, 8)
        n = min(op[3], 24 - op[2]) * PS
        if kind == "dontneed":
            return p.madvise(addr, n, MADV_DONTNEED)
        if kind == "unmergeable":
            return p.madvise(addr, n, MADV_UNMERGEABLE)
        if kind == "mergeable":
            return p.madvise(addr, n, MADV_MERGEABLE)
        if kind == "mprotect":
            return p.mprotect(addr, n, op[4])
        if kind == "munmap":
            return p.munmap(addr, n)
        raise AssertionError(op)


@pytest.mark.parametrize("seed", range(40))
def test_random_programs(seed):
    rng = random.Random(seed)
    ops = _random_ops(rng, 70)
    ms = trio()
    worlds = [_World(m, seed) for m in ms]

    def look(m):                 # someone draws the trees mid-scan
        return [len(r) for r in m.ksm.root_unstable_tree]
    for i, op in enumerate(ops):
        on_all(worlds, lambda w, op=op: w.do(op, look))
        if i % 10 == 9:
            same(ms, f"seed {seed}, op {i} {op}")
    same(ms, f"seed {seed}, end")


def test_a_shorter_prune_time_is_honoured_at_once():
    """The stable shortcut must not skip a walk that would now prune a chain."""
    ms = trio()
    for m in ms:
        _build(m, [7] * 5 + [_uniq(i) for i in range(60)])
        m.sysfs.write(f"{KSM}/max_page_sharing", "2")
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)             # a chain, and many quiet stable searches
        m.sysfs.write(f"{KSM}/stable_node_chains_prune_millisecs", "0")
        m.sysfs.write(f"{KSM}/pages_to_scan", "5")
        m.advance(400)                       # every walk past the chain prunes it now,
    same(ms, "prune time")                   # at the time of its batch


def test_the_fused_batch_runs_unchecked_with_events_on_and_off():
    """The runs above compare fastpath.py's fused batch with the kernel's loop only if
    the fast machine really takes it, with events on and off, and the checked one
    does not; with events on its ring holds the kernel loop's events."""
    used, rings = {}, {}
    for name, kw in (("fast", {}), ("checked", {"check_fastpath": True}),
                     ("kernel", {"fastpath": False}), ("events", {"events": True}),
                     ("events-kernel", {"events": True, "fastpath": False})):
        m = Machine(page_size=PS, **{"events": False, **kw})
        calls = []
        fused = m.fp.do_scan
        m.fp.do_scan = lambda n, fused=fused, calls=calls: calls.append(n) or fused(n)
        _build(m, [1, 2, 1, 2] + [_uniq(i) for i in range(12)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
        used[name] = bool(calls)
        rings[name] = [(e.kind, e._values()) for e in m.events.history]
        assert m.ksm.stats()["pages_sharing"] == 2, name
    assert used == {"fast": True, "checked": False, "kernel": False, "events": True,
                    "events-kernel": False}
    assert len(rings["events"]) > 3 * 16 and rings["events"] == rings["events-kernel"]


def test_stable_hits_inline_and_where_they_fall_back():
    """Pages whose content a KSM page already has: the fused batch merges them itself
    (fastpath.py shortcut 8) into a regular node and into chains (max_page_sharing 5:
    a dup with room left, one that fills, a chain whose first dup is full), and leaves
    to cmp_and_merge_page() a chain with no dup memo, a full chain, a THP subpage (split
    first, the next test), a guest's memory (KVM's MMU notifier on the mm, the next
    test); the walk meets page tables that are not there (a VMA wider than one
    table, touched at both ends)."""
    ms = trio()
    wide = 3 * 512                            # three page tables' span
    for m in ms:
        m.sysfs.write(f"{KSM}/max_page_sharing", "5")
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        p, a = _build(m, [1] * 4 + [_uniq(i) for i in range(20)] + [2, 2])
        w = m.spawn("wide")
        b = w.mmap(wide * PS)
        w.write(b, _fill(1))
        w.write(b + (wide - 1) * PS, _fill(2))          # the middle table is never made
        w.madvise(b, wide * PS, MADV_MERGEABLE)
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
        for i in range(4, 20):                # content 1 now: stable hits two scans on
            p.write(a + i * PS, _fill(1))
        for i in range(20, 23):
            p.write(a + i * PS, _fill(2))
        m.ksmd.run_full_scans(1)
        for n in (3, 5, 7, 100):              # batches that end between stable hits
            m.ksmd.scan(n)
        m.ksmd.run_full_scans(2)
    same(ms, "stable hits")
    assert ms[1].ksm.stats()["stable_node_chains"] >= 1


def test_stable_hits_of_a_thp_subpage_and_of_a_guest_are_the_kernel_functions():
    """The fused batch's stable hit (shortcut 8) leaves a THP subpage (split first)
    and a page of a KVM guest's memory (an MMU notifier on the mm) to
    cmp_and_merge_page()."""
    ms = trio()
    for m in ms:
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        _build(m, [1, 1, 2, 2] + [_uniq(i) for i in range(20)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
    for m in ms:
        t = m.spawn("thp")                    # a THP, one subpage with content 2
        ta = t.mmap(1024 * PS)
        ta = (ta + 512 * PS - 1) // (512 * PS) * (512 * PS)
        t.madvise(ta, 512 * PS, MADV_HUGEPAGE)
        t.write(ta, b"".join(_uniq(700 + i) for i in range(512)))
        t.write(ta + 9 * PS, _fill(2))
        t.madvise(ta, 512 * PS, MADV_MERGEABLE)
        m.ksmd.run_full_scans(3)
    same(ms, "a THP")
    assert [m.ksm.thp_splits for m in ms] == [1, 1, 1]
    assert ms[1].ksm.stats()["pages_sharing"] == 3
    for m in ms:
        g = m.spawn("guest")                  # a KVM guest's memory: notifiers on the mm
        ga = g.mmap(4 * PS)
        for i in range(4):
            g.write(ga + i * PS, _fill(1))
        g.madvise(ga, 4 * PS, MADV_MERGEABLE)
        m.kvm.create_vm(g, ga, 4 * PS)
        m.ksmd.run_full_scans(3)
    same(ms, "a guest")


def test_a_stable_hit_that_fills_a_dup_goes_on_to_an_older_dup_with_room():
    """max_page_sharing 4: a chain of dups B (newest, 2 mappings) and A (full, then two
    mappings lost); new copies fill B by stable hits (shortcut 8).  Then the memo
    (shortcut 3) naming B must go, and the stable keys (shortcut 4) too: the next
    walk through the chain moves A, the first dup with room, to the front (a unique
    page's walk, compared page by page), and the copy after merges into A."""
    ms = trio()
    for m in ms:
        m.sysfs.write(f"{KSM}/max_page_sharing", "4")
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        p, a = _build(m, [1] * 6 + [_uniq(i) for i in range(10)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)              # A: pages 0-3 (full), B: pages 4-5
        p.write(a, _uniq(98))                 # A loses pages 0 and 1 at their next visit
        p.write(a + PS, _uniq(99))
        m.ksmd.run_full_scans(1)
        for i in (10, 11, 13):                # page 12 stays unique
            p.write(a + i * PS, _fill(1))
        m.ksmd.run_full_scans(1)
    for step in range(16):
        for m in ms:
            m.ksmd.scan(1)
        same(ms, f"page {step}")
    k = ms[1].ksm
    assert (k.stats()["pages_sharing"], k.stable_node_dups) == (5, 2)
    for m in ms:
        m.ksmd.run_full_scans(2)
    same(ms, "end")


def test_a_stable_hit_on_a_pinned_page_is_refused_then_merges():
    """merge_one_page() (shortcut 6) refusing a page someone else holds a reference to
    (its refcount one above its mappings, as a GUP pin leaves it) from the fused
    batch's stable hit (shortcut 8) and from cmp_and_merge_page(): the PTE is put
    back, the page stays; once the pin is gone the next scan merges it."""
    ms = trio()
    pinned = []
    for m in ms:
        p, a = _build(m, [1, 1, 1] + [_uniq(i) for i in range(8)])
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(3)
        for i in (5, 7):
            p.write(a + i * PS, _fill(1))
        m.ksmd.run_full_scans(1)              # first visits of the new content
        pages = [m.memory.pages[pte_pfn(p.mm.pagetables.get_pte(a + i * PS))] for i in (5, 7)]
        for page in pages:
            page.refcount += 1                # a pin nobody models
        pinned.append(pages)
        m.ksmd.run_full_scans(1)
        assert m.ksm.stats()["pages_sharing"] == 2
    for m, pages in zip(ms, pinned):
        for page in pages:
            page.refcount -= 1
    same(ms, "refused")
    if EVENTS:
        refused = [e for e in ms[1].events.history
                   if getattr(e, "action", None) == "merge_failed"]
        assert [e.outcome for e in refused] == ["pinned", "pinned"]
    for m in ms:
        m.ksmd.run_full_scans(1)
    same(ms, "merged")
    assert ms[1].ksm.stats()["pages_sharing"] == 4
