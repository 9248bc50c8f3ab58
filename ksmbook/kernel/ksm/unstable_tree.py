"""The unstable tree: not-yet-shared pages whose checksum held still for one scan.

Rebuilt from empty at the start of every full scan (the root is simply reset, the
items keep their UNSTABLE_FLAG and old seqnr until revisited).  Its keys are live
page contents, so the tree can be inconsistent; KSM accepts that.

Two shortcuts make ksmbook's ksmd fast without changing what it does (both off
with ``Machine(fastpath=False)``; ``Machine(check_fastpath=True)`` makes every use
assert that it agrees with the kernel's way):

1. Remembered pages.  The kernel looks each node's page up again
   (get_mergeable_page) at every level of every descent.  ksmbook remembers the
   page's bytes in ``item.tree_data`` at insertion and trusts them while
   ``Ksm.unstable_valid_seq == Machine.mapping_seq``: no PTE was written, no page
   freed, no VMA lost VM_MERGEABLE and no mm exited since, so get_mergeable_page()
   would find the very same pages.  ksmd's own merges only remap the item being
   scanned and the tree item it merges with, which then leaves the tree, so
   ksm_do_scan() carries the validity across them.  The descent then makes the
   kernel's comparisons, in the kernel's order, without the page-table walks.

2. A settled-later tree.  While, in addition, no page's bytes have been written
   since the full scan began, every node still holds the bytes it was inserted
   with, so the tree is a consistent binary search tree whose keys are all
   different (an insertion happens only when no equal node was met).  Then the
   kernel's descent meets an equal node exactly when one exists, and nothing but
   the bytes decides where a new node goes.  So the search asks an index keyed
   by the page's checksum (computed just before by cmp_and_merge_page(), equal
   bytes have equal checksums) and appends insertions and erasures to a log;
   the rbtree is brought up to date by replaying that log, in order, with the
   kernel's descent, whenever someone looks at ``root_unstable_tree``, before any
   page is written (``page_write_barrier()``), or when shortcut 1 stops holding.
   Most full scans end without anyone looking, and the log is simply dropped
   with the tree.

Any other remapping or write sends the rest of the full scan back to the
kernel's own descent.
"""
from __future__ import annotations

from .rbtree import RbRoot, rb_erase, rb_insert_color, rb_link_node
from .structs import SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, tree_key


class UnstableTreeMixin:
    _unstable_log: list = ()    # (until init_unstable_tree(): the roots setter reads it)

    def init_unstable_tree(self) -> None:
        self._unstable_lazy = False     # shortcut 2 on: the index answers, the rbtrees lag
        # pending insertions (an item) and erasures (None, then the item: no tuple to
        # allocate, so no extra work for the cyclic garbage collector)
        self._unstable_log = []
        self._unstable_erased = []      # the items of those erasures
        self._unstable_index = {}       # checksum (| nid << 32 off node 0) -> item
        self._unstable_index_more = {}  # the same key, more items (checksum clashes)
        self._unstable_tree_seqnr = -1  # seqnr & SEQNR_MASK of the scan the tree is for
        # machine.mapping_seq when every unstable node's tree_data was last known right
        self.unstable_valid_seq = -1
        self.root_unstable_tree = [RbRoot()]

    # --- the roots, settled before anyone sees them ---
    @property
    def root_unstable_tree(self) -> list:
        """root_unstable_tree[]: one RbRoot per NUMA node (or one), up to date."""
        if self._unstable_log:
            self._unstable_settle()
        return self._unstable_roots

    @root_unstable_tree.setter
    def root_unstable_tree(self, roots) -> None:
        if self._unstable_log:
            self._unstable_settle()
        self._unstable_lazy = False          # the rest of this scan uses the rbtree
        self._unstable_roots = roots

    def unstable_tree_reset(self) -> None:
        """The start of a full scan: each unstable root becomes empty again."""
        for item in self._unstable_erased:   # erased, never settled: drop the bytes
            item.tree_data = None
        roots = self._unstable_roots
        for nid in range(len(roots)):
            roots[nid] = RbRoot()
        self._unstable_log = []
        self._unstable_erased = []
        self._unstable_index = {}            # checksum (| nid << 32 off node 0) -> item
        self._unstable_index_more = {}       # the same key, more items (checksum clashes)
        self._unstable_lazy = self.fastpath
        self._unstable_tree_seqnr = self.ksm_scan.seqnr & SEQNR_MASK
        self.unstable_valid_seq = self.machine.mapping_seq     # empty trees are right

    def page_write_barrier(self) -> None:
        """Page bytes are about to change: settle the unstable tree first (shortcut 2).

        Every writer of page contents calls this before writing (Process.write, KVM's
        guest writes): after a write the tree may no longer be ordered by its bytes.
        """
        if self._unstable_lazy:
            self.root_unstable_tree = self._unstable_roots

    # --- search and insert ---
    def unstable_tree_search_insert(self, item, page):
        """unstable_tree_search_insert(): return (tree_item, tree_page) or insert ``item``."""
        nid = 0 if self.merge_across_nodes else self.memory.pfn_to_nid(page.pfn)  # get_kpfn_nid
        data = page.data
        if self.fastpath and self.unstable_valid_seq == self.machine.mapping_seq:
            if self._unstable_lazy:
                if self.check_fastpath:
                    return self._unstable_check_lazy(item, page, nid)
                new = self._unstable_index.get(tree_key(item.oldchecksum, nid))
                if new is not None and new.tree_data != data:       # a checksum clash
                    new = self._unstable_lookup(item, nid, data)
                if new is None:
                    self._unstable_insert(item, page, nid, None, False, None)
                    return None, None
                if new.tree_data is data:    # a forked page: don't substitute
                    return None, None
            else:
                root = self.root_unstable_tree[nid]
                if self.check_fastpath:
                    self.check_unstable_tree_pages()
                parent, left, new = self._unstable_descend_remembered(root, data)
        else:
            if self._unstable_lazy:
                self.root_unstable_tree = self._unstable_roots      # settle, stop shortcut 2
            root = self._unstable_roots[nid]
            parent, left, new = self._unstable_descend(item, page, root, data)
        if new is not None:                  # a node with the same bytes
            tree_page = self.get_mergeable_page(new)
            if not self.merge_across_nodes and tree_page.nid != nid:
                return None, None
            return new, tree_page
        if parent is False:                  # gave up
            return None, None
        self._unstable_insert(item, page, nid, parent, left, root)
        return None, None

    def _unstable_insert(self, item, page, nid, parent, left, root) -> None:
        """Link ``item`` below ``parent`` (``root`` None: log it for shortcut 2)."""
        item.flags |= UNSTABLE_FLAG | (self.ksm_scan.seqnr & SEQNR_MASK)
        item.nid = nid
        item.tree_data = page.data
        if root is None:
            key = tree_key(item.oldchecksum, nid)
            index = self._unstable_index
            if key in index:
                self._unstable_index_more.setdefault(key, []).append(item)
            else:
                index[key] = item
            self._unstable_log.append(item)
        else:
            rb_link_node(item, parent, left, root)
            rb_insert_color(item, root)
        self.ksm_pages_unshared += 1
        ev = self.machine.events
        if ev.enabled:
            ev.put(("KsmEvent", self.machine.clock_ns, "unstable_tree_search_insert",
                    "unstable_insert", item.mm.owner_pid, item.address, page.pfn,
                    "inserted", item.oldchecksum))

    def _unstable_lookup(self, item, nid, data):
        """Shortcut 2: the node whose bytes equal ``data``, or None.  The item's
        oldchecksum is the checksum of ``data`` (cmp_and_merge_page just checked)."""
        key = tree_key(item.oldchecksum, nid)
        node = self._unstable_index.get(key)
        if node is None or node.tree_data == data:
            return node
        for node in self._unstable_index_more.get(key, ()):
            if node.tree_data == data:
                return node
        return None

    def _unstable_unindex(self, item) -> bool:
        """Take ``item`` out of shortcut 2's index; False if it was not there."""
        key = tree_key(item.oldchecksum, item.nid)
        index, more = self._unstable_index, self._unstable_index_more
        if index.get(key) is item:
            others = more.get(key)
            if others:
                index[key] = others.pop(0)
                if not others:
                    del more[key]
            else:
                del index[key]
            return True
        others = more.get(key)
        if others and item in others:
            others.remove(item)
            if not others:
                del more[key]
            return True
        return False

    def _unstable_settle(self) -> None:
        """Replay the log into the rbtrees with the kernel's descent, in order.

        Every node still holds the bytes it was inserted with (writers call
        page_write_barrier() first), so each insertion goes exactly where the kernel
        put it; erased items let go of their bytes here.
        """
        log = self._unstable_log
        self._unstable_log, self._unstable_erased = [], []
        roots = self._unstable_roots
        entries = iter(log)
        for entry in entries:
            if entry is None:                # an erasure: the item follows
                item = next(entries)
                rb_erase(item, roots[item.nid])
                item.tree_data = None
                continue
            root = roots[entry.nid]
            parent, left, new = self._unstable_descend_remembered(root, entry.tree_data)
            if new is not None or parent is False:
                raise AssertionError(f"unstable tree replay met an equal node for {entry!r}")
            rb_link_node(entry, parent, left, root)
            rb_insert_color(entry, root)

    def _unstable_check_lazy(self, item, page, nid):
        """check_fastpath: shortcut 2's answer must be the kernel descent's answer, and
        the settling replay (the descent over remembered bytes) must insert where the
        kernel would."""
        data = page.data
        lazy = self._unstable_lookup(item, nid, data)
        root = self.root_unstable_tree[nid]                      # settles the log
        self.check_unstable_tree_pages()
        kernel = self._unstable_descend(item, page, root, data)
        replay = self._unstable_descend_remembered(root, data)
        if replay != kernel:
            raise AssertionError(f"remembered descent {replay} != the kernel's {kernel}")
        parent, _left, new = kernel
        if parent is False:      # gave up on the same page: the index finds that page
            if lazy is None or lazy.tree_data is not data:
                raise AssertionError(f"index found {lazy!r}, the descent met the page itself")
            return None, None
        if new is not lazy:
            raise AssertionError(f"index found {lazy!r}, the kernel's descent {new!r}")
        if new is None:
            self._unstable_insert(item, page, nid, None, False, None)
            return None, None
        tree_page = self.get_mergeable_page(new)
        if not self.merge_across_nodes and tree_page.nid != nid:
            return None, None
        return new, tree_page

    def _unstable_descend(self, item, page, root, data):
        """The kernel's descent: get_mergeable_page() at every level.

        Returns (parent, left, None) for an insertion point, (None, None, node) for a
        node with equal content, or (False, None, None) to give up.
        """
        parent, left, new = None, False, root.rb_node
        while new is not None:
            tree_page = self.get_mergeable_page(new)
            if tree_page is None:
                self._emit("unstable_tree_search_insert", "unstable_abort", item.mm.owner_pid,
                           item.address, page.pfn, "tree_page_gone",
                           other_pid=new.mm.owner_pid, other_address=new.address)
                return False, None, None
            if tree_page is page:
                # don't substitute a ksm page for a forked page
                return False, None, None
            tdata = tree_page.data
            parent = new
            if data < tdata:
                new, left = new.rb_left, True
            elif data > tdata:
                new, left = new.rb_right, False
            else:
                return None, None, new
        return parent, left, None

    @staticmethod
    def _unstable_descend_remembered(root, data):
        """The same descent over the bytes remembered at insertion (the fast path):
        no node can have vanished, and the same page has the same bytes object."""
        parent, left, new = None, False, root.rb_node
        while new is not None:
            tdata = new.tree_data
            if tdata is data:                # a forked page: don't substitute
                return False, None, None
            parent = new
            if data < tdata:
                new, left = new.rb_left, True
            elif data > tdata:
                new, left = new.rb_right, False
            else:
                return None, None, new
        return parent, left, None

    def remove_rmap_item_from_tree(self, item) -> None:
        """remove_rmap_item_from_tree(): leave the stable or unstable tree, fix counters."""
        flags = item.flags
        if flags & STABLE_FLAG:
            node = item.head
            if self.ksm_get_folio(node) is None:
                return                       # the stale node took the item with it
            node.hlist.remove(item)
            self.stable_seq += 1                 # see stable_tree.py: the shortcuts
            self._chain_changed(node)
            self.unaccount_stable_item(node, item, sharing=bool(node.hlist))
        elif flags & UNSTABLE_FLAG:
            age = (self.ksm_scan.seqnr - (flags & SEQNR_MASK)) & 0xFF
            if age > 1:
                raise AssertionError(f"unstable item {item!r} survived {age} scans")
            if age == 0 and self._unstable_lazy:
                if self._unstable_unindex(item):
                    self._unstable_log += (None, item)  # settling erases it, drops its bytes
                    self._unstable_erased.append(item)
            else:
                if self._unstable_log and flags & SEQNR_MASK == self._unstable_tree_seqnr:
                    # a node of the tree that ended with the last full scan, still the
                    # one to draw: settle it before its bytes are dropped
                    self._unstable_settle()
                if age == 0:
                    roots = self.root_unstable_tree
                    root = roots[item.nid] if item.nid < len(roots) else None
                    # a merge_across_nodes switch replaces the roots: erase only from
                    # the tree the item is really in
                    if root is not None and _in_tree(item, root):
                        rb_erase(item, root)
                item.tree_data = None
            self.ksm_pages_unshared -= 1
            item.flags = 0

    def check_unstable_tree_pages(self) -> None:
        """Assert the fast path's premise: every node's remembered bytes belong to the
        page get_mergeable_page() finds (tests switch this on with ``check_fastpath``)."""
        for root in self.root_unstable_tree:
            for node in root:
                found = self.get_mergeable_page(node)
                if found is None or found.data is not node.tree_data:
                    raise AssertionError(f"unstable node {node!r} remembers other bytes "
                                         f"than those of the page it maps, {found!r}")


def _in_tree(node, root) -> bool:
    while node.rb_parent is not None:
        node = node.rb_parent
    return root.rb_node is node
