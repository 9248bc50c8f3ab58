"""The data structures of mm/ksm.c: ksm_rmap_item, ksm_stable_node, ksm_mm_slot.

The kernel packs the rmap_item's flags into the low bits of its address; ksmbook
keeps them in a separate ``flags`` field because the book also runs with pages as
small as 64 bytes, whose offset bits cannot hold ten flag bits.  The values are the
kernel's.
"""
from __future__ import annotations

from ..memory import PG_ksm

SEQNR_MASK = 0x0FF        # low bits of ksm_scan.seqnr stamped at unstable insertion
UNSTABLE_FLAG = 0x100     # is, or was during the last scan, a node of the unstable tree
STABLE_FLAG = 0x200       # hangs off a stable node's hlist
STABLE_NODE_CHAIN = -1024  # rmap_hlist_len of a chain
#: sizeof(struct ksm_rmap_item) on x86-64, used by general_profit and ksm_process_profit
SIZEOF_KSM_RMAP_ITEM = 64
STABLE_NODE_DUP_HEAD = "dup"      # stable_node->head of a dup inside a chain


def stable_node_folio(pages, node):
    """The KSM page ``node`` still holds the key to, else None.

    The "keyhole" check of ksm_get_folio() (mm/ksm.c, 6.18): the folio at
    ``node->kpfn`` is still this node's only if ``folio->mapping`` is the node
    with PAGE_MAPPING_KSM set; a freed or reused frame fails it, and the caller
    prunes the stale node.  Every reader of a stable node's page asks here.
    """
    page = pages.get(node.kpfn)
    if page is not None and page.mapping is node and page.flags & PG_ksm:
        return page
    return None


def tree_key(checksum: int, nid: int) -> int:
    """The key of the shortcut indexes over a tree's pages: checksum and NUMA node.

    With merge_across_nodes=0 each node has its own trees (root_stable_tree[nid],
    root_unstable_tree[nid]), so equal content on two nodes must not meet: the
    node id goes above the 32-bit checksum (calc_checksum() returns u32).
    """
    return checksum | nid << 32


class KsmRmapItem:
    """struct ksm_rmap_item: KSM's record of one scanned virtual page.

    While unstable it is itself the rb node of the unstable tree (``rb_*`` links);
    while stable it sits on ``head.hlist``.
    """
    __slots__ = ("rmap_list", "mm", "address", "flags", "oldchecksum", "age",
                 "remaining_skips", "nid", "anon_vma", "head",
                 "rb_parent", "rb_left", "rb_right", "rb_red", "tree_page")

    def __init__(self, mm, address: int):
        self.mm = mm
        self.address = address
        # kmem_cache_zalloc(): all zero, so the first visit's checksum never matches
        self.flags = self.oldchecksum = self.age = self.remaining_skips = self.nid = 0
        # rmap_list: the next item in the mm_slot's address-sorted list; head: the
        # stable node while STABLE_FLAG is set; rb_*: the unstable tree's links
        self.rmap_list = self.anon_vma = self.head = self.rb_parent = self.rb_left = \
            self.rb_right = None
        self.rb_red = False
        # ksmbook only, kept by kernel/ksm/fastpath.py (shortcut 1): the page this
        # item mapped when it entered the unstable tree
        self.tree_page = None

    @property
    def state(self) -> str:
        if self.flags & STABLE_FLAG:
            return "stable"
        if self.flags & UNSTABLE_FLAG:
            return "unstable"
        return "volatile"

    def __repr__(self):
        return (f"rmap_item(pid={self.mm.owner_pid}, addr={self.address:#x}, {self.state}, "
                f"oldchecksum={self.oldchecksum:#010x}, age={self.age})")


class KsmStableNode:
    """struct ksm_stable_node: a KSM page in the stable tree, a dup, or a chain."""
    __slots__ = ("hlist", "kpfn", "chain_prune_time", "rmap_hlist_len", "nid", "head",
                 "chain", "rb_parent", "rb_left", "rb_right", "rb_red", "id")

    def __init__(self, ident: int):
        self.id = ident
        self.hlist: list = []       # rmap_items (node/dup) or dups (chain); head first
        self.kpfn = None
        self.chain_prune_time = 0
        self.rmap_hlist_len = 0
        self.nid = 0
        self.head = None            # STABLE_NODE_DUP_HEAD for a dup, else None
        self.chain = None           # the chain holding this dup
        self.rb_parent = self.rb_left = self.rb_right = None
        self.rb_red = False

    @property
    def is_chain(self) -> bool:
        return self.rmap_hlist_len == STABLE_NODE_CHAIN

    @property
    def is_dup(self) -> bool:
        return self.head == STABLE_NODE_DUP_HEAD

    def __repr__(self):
        if self.is_chain:
            return f"stable_node#{self.id}(chain of {len(self.hlist)} dups)"
        kind = "dup" if self.is_dup else "node"
        return f"stable_node#{self.id}({kind}, kpfn={self.kpfn:#x}, len={self.rmap_hlist_len})"


class KsmMmSlot:
    """struct ksm_mm_slot: one mm on ksmd's circular list."""
    __slots__ = ("mm", "rmap_list", "prev", "next")

    def __init__(self, mm):
        self.mm = mm
        self.rmap_list = None       # first rmap_item, sorted by address
        self.prev = self.next = self

    def items(self):
        item = self.rmap_list
        while item is not None:
            yield item
            item = item.rmap_list

    def __repr__(self):
        return "ksm_mm_head" if self.mm is None else f"mm_slot(pid={self.mm.owner_pid})"


class KsmScan:
    """struct ksm_scan: the one cursor of ksmd."""
    __slots__ = ("mm_slot", "address", "rmap_list", "seqnr")

    def __init__(self, head: KsmMmSlot):
        self.mm_slot = head
        self.address = 0
        self.rmap_list = head       # the object whose .rmap_list is the next link
        self.seqnr = 0
