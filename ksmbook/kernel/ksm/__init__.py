"""KSM, kernel samepage merging, as mm/ksm.c of the modelled kernel does it.

DOC: Overview (after mm/ksm.c's own).  A page is a merge candidate only in a
VM_MERGEABLE area (madvise(MADV_MERGEABLE), or every area once
prctl(PR_SET_MEMORY_MERGE) sets MMF_VM_MERGE_ANY).  ksmd walks those areas page by
page with one ksm_rmap_item per page.  A page whose checksum did not change since
the last visit is first looked up in the **stable tree** (KSM pages, write
protected, keyed by content); failing that, in the **unstable tree** (candidates
seen this full scan, rebuilt every full scan because their content may change
under it).  Two equal pages found there are merged into a new KSM page that
moves to the stable tree; a write to a KSM page breaks the sharing by
copy-on-write.  Too many mappers of one page turn its stable node into a chain of
dups (max_page_sharing).

Here ``Ksm`` holds ksm.c's file-static state (trees, cursor, counters, tunables);
its methods carry the kernel's function names, one mixin per part of ksm.c:
scan.py (scan_get_next_rmap_item, cmp_and_merge_page), stable_tree.py,
unstable_tree.py (including remove_rmap_item_from_tree), merge.py
(write_protect_page, replace_page, break_ksm), control.py (madvise, prctl, fork,
exit, run) and advisor.py.  ``Ksmd`` (ksmd.py) drives it in time.  What
ksmbook remembers to go faster than looking everything up again, and the hooks
that make it forget, are in fastpath.py (``Machine(fastpath=False)`` turns it
off; tests/unit/test_fastpath.py holds it equal to the kernel's way).  Functions
whose kernel names start with ``__`` (``__ksm_enter``, ``__stable_node_chain``
...) are callable under those names too: ``m.ksm.__ksm_enter(mm)``.
"""
from __future__ import annotations

from ..mm import MMF_VM_MERGE_ANY, MMF_VM_MERGEABLE
from .advisor import AdvisorMixin
from .control import ControlMixin
from .merge import MergeMixin
from .rbtree import RbRoot
from .scan import ScanMixin
from .stable_tree import StableTreeMixin
from .structs import (SIZEOF_KSM_RMAP_ITEM, STABLE_FLAG, UNSTABLE_FLAG, KsmMmSlot,
                      KsmRmapItem, KsmScan)
from .unstable_tree import UnstableTreeMixin
from ...uapi import TUNABLE_DEFAULTS

DEFAULTS = dict(run=0, **{k: int(TUNABLE_DEFAULTS[k]) for k in (
    "pages_to_scan", "sleep_millisecs", "merge_across_nodes", "use_zero_pages",
    "max_page_sharing", "stable_node_chains_prune_millisecs", "smart_scan")})


class Ksm(ScanMixin, StableTreeMixin, UnstableTreeMixin, MergeMixin, ControlMixin,
          AdvisorMixin):
    """The state of mm/ksm.c."""
    MMF_VM_MERGEABLE = MMF_VM_MERGEABLE
    MMF_VM_MERGE_ANY = MMF_VM_MERGE_ANY

    def __init__(self, machine):
        self.machine = machine
        # ksmbook's shortcuts (fastpath.py): all their state and invalidation hooks
        self.fp = machine.fp
        self.fp.ksm = self
        self.memory = machine.memory
        self.profile = machine.profile
        self.page_size = machine.page_size
        # tunables
        self.run = DEFAULTS["run"]
        self.pages_to_scan = DEFAULTS["pages_to_scan"]
        self.sleep_millisecs = DEFAULTS["sleep_millisecs"]
        self.merge_across_nodes = DEFAULTS["merge_across_nodes"]
        self.use_zero_pages = DEFAULTS["use_zero_pages"]
        self.max_page_sharing = DEFAULTS["max_page_sharing"] if \
            self.profile.ksm_stable_node_chains else 1 << 62
        self.stable_node_chains_prune_millisecs = DEFAULTS["stable_node_chains_prune_millisecs"]
        self.smart_scan = DEFAULTS["smart_scan"] if self.profile.ksm_smart_scan else 0
        # counters
        self.ksm_pages_shared = 0
        self.ksm_pages_sharing = 0
        self.ksm_pages_unshared = 0
        self.ksm_rmap_items = 0
        self.stable_node_chains = 0
        self.stable_node_dups = 0
        self.ksm_pages_scanned = 0
        self.ksm_pages_skipped = 0
        self.ksm_zero_pages = 0
        # trees, list, cursor
        self.root_stable_tree = [RbRoot()]
        self.ksm_mm_head = KsmMmSlot(None)
        self.mm_slots: dict = {}
        self.ksm_scan = KsmScan(self.ksm_mm_head)
        self.init_unstable_tree()
        self._stable_node_ids = 0
        self.zero_checksum = self.calc_checksum(self.memory.zero_page)
        self.init_advisor()

    @property
    def fastpath(self) -> bool:
        """``Machine(fastpath=...)``: False, the kernel's own lookups everywhere."""
        return self.fp.enabled

    @property
    def check_fastpath(self) -> bool:
        """``Machine(check_fastpath=...)``: every shortcut asserts the kernel agrees."""
        return self.fp.check

    # --- helpers ---
    def jiffies_ms(self) -> int:
        return self.machine.clock_ns // 1_000_000

    def get_kpfn_nid(self, kpfn: int) -> int:
        return 0 if self.merge_across_nodes else self.memory.pfn_to_nid(kpfn)

    def set_merge_across_nodes(self, value: int) -> None:
        if value == self.merge_across_nodes:
            return
        self.check_empty_stable_tree("merge_across_nodes")
        self.merge_across_nodes = value
        self.fp.stable_tree_changed()
        # merge_across_nodes_store() allocates the per-node roots on the first switch,
        # copies root 0 of the unstable tree over and keeps every root afterwards: items
        # inserted earlier in this scan stay in the tree their nid names
        n = self.machine.numa_nodes
        self.root_stable_tree += [RbRoot() for _ in range(n - len(self.root_stable_tree))]
        self.root_unstable_tree += [RbRoot() for _ in range(n - len(self.root_unstable_tree))]

    def set_max_page_sharing(self, value: int) -> None:
        if value == self.max_page_sharing:
            return
        self.check_empty_stable_tree("max_page_sharing")
        self.max_page_sharing = value
        self.fp.max_page_sharing_changed()

    def _emit(self, function, action, pid, address, pfn, outcome=None, checksum=None,
              other_pid=None, other_address=None, other_pfn=None, node=None, info=None):
        """Record a KsmEvent: ``action`` done by mm/ksm.c's ``function`` (fields only:
        viz/events.py words them).  The page-visit sites build theirs inline (hot)."""
        ev = self.machine.events
        if ev.enabled:
            ev.put(("KsmEvent", self.machine.clock_ns, function, action, pid, address, pfn,
                    outcome, checksum, other_pid, other_address, other_pfn, node, info))

    def _visit(self) -> tuple[int, int]:
        """(pid, address) of the rmap_item ksmd is visiting: cmp_and_merge_page() runs
        with ksm_scan.rmap_list on it, as get_next_rmap_item() left the cursor."""
        link = self.ksm_scan.rmap_list
        if isinstance(link, KsmRmapItem):
            return link.mm.owner_pid, link.address
        return 0, 0

    # --- derived counters, as the sysfs show functions compute them ---
    @property
    def pages_volatile(self) -> int:
        v = self.ksm_rmap_items - self.ksm_pages_shared - self.ksm_pages_sharing \
            - self.ksm_pages_unshared
        return max(v, 0)

    @property
    def general_profit(self) -> int:
        zero = self.ksm_zero_pages if self.profile.ksm_zero_pages_counter else 0
        return (self.ksm_pages_sharing + zero) * self.page_size - \
            self.ksm_rmap_items * SIZEOF_KSM_RMAP_ITEM

    def process_profit(self, mm) -> int:
        return (mm.ksm_merging_pages + mm.ksm_zero_pages) * self.page_size - \
            mm.ksm_rmap_items * SIZEOF_KSM_RMAP_ITEM

    def stats(self) -> dict:
        """Every counter of /sys/kernel/mm/ksm, as ints."""
        return {
            "full_scans": self.ksm_scan.seqnr,
            "pages_scanned": self.ksm_pages_scanned,
            "pages_shared": self.ksm_pages_shared,
            "pages_sharing": self.ksm_pages_sharing,
            "pages_unshared": self.ksm_pages_unshared,
            "pages_volatile": self.pages_volatile,
            "pages_skipped": self.ksm_pages_skipped,
            "stable_node_chains": self.stable_node_chains,
            "stable_node_dups": self.stable_node_dups,
            "ksm_zero_pages": self.ksm_zero_pages,
            "general_profit": self.general_profit,
        }

    # --- inspection (for the book and the tests) ---
    def scan_in_progress(self) -> bool:
        """True while ksmd's cursor is inside a full scan: scan_get_next_rmap_item()
        puts ksm_scan.mm_slot back on &ksm_mm_head only when it finishes one."""
        return self.ksm_scan.mm_slot is not self.ksm_mm_head

    def rmap_items(self):
        for slot in self.slots():
            yield from slot.items()

    def stable_nodes(self):
        """Every regular node and dup (not chains), in tree order."""
        for root in self.root_stable_tree:
            for node in root:
                if node.is_chain:
                    yield from node.hlist
                else:
                    yield node

    def recount(self) -> dict:
        """Counters recomputed from scratch over rmap_items and trees (test oracle)."""
        items = list(self.rmap_items())
        stable = [n for n in self.stable_nodes()]
        chains = sum(1 for root in self.root_stable_tree for n in root if n.is_chain)
        return {
            "rmap_items": len(items),
            "pages_shared": sum(1 for n in stable if n.hlist),
            "pages_sharing": sum(len(n.hlist) - 1 for n in stable if n.hlist),
            "pages_unshared": sum(1 for i in items if i.flags & UNSTABLE_FLAG),
            "stable_items": sum(1 for i in items if i.flags & STABLE_FLAG),
            "stable_node_chains": chains,
            "stable_node_dups": sum(len(n.hlist) for root in self.root_stable_tree
                                    for n in root if n.is_chain),
        }


def _kernel_names(cls) -> None:
    """Make ``obj.__name`` work for methods defined as ``def __name``.

    Python mangles ``__ksm_enter`` inside a class body to ``_ControlMixin__ksm_enter``;
    the kernel's name is the one a reader of mm/ksm.c types, so it is added as is.
    """
    for base in cls.__mro__:
        prefix = f"_{base.__name__}__"
        for name, value in list(vars(base).items()):
            if name.startswith(prefix) and callable(value):
                setattr(cls, "__" + name[len(prefix):], value)


_kernel_names(Ksm)
