"""The unstable tree: not-yet-shared pages whose checksum held still for one scan.

Rebuilt from empty at the start of every full scan (the root is simply reset, the
items keep their UNSTABLE_FLAG and old seqnr until revisited).  Its keys are live
page contents, so the tree can be inconsistent; KSM accepts that.

ksmbook takes two shortcuts here, both kept in fastpath.py (shortcuts 1 and 2 of its
overview: remembered pages, and a tree settled later from a log); this module keeps
the kernel's descent and asks ``self.fp`` when it may skip it.
"""
from __future__ import annotations

from .rbtree import RbRoot, rb_erase, rb_insert_color, rb_link_node
from .structs import SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, tree_key


class UnstableTreeMixin:

    def init_unstable_tree(self) -> None:
        self._unstable_roots = [RbRoot()]
        self.thp_splits = 0             # split_huge_page() calls by KSM (see ksm_do_scan)

    # --- the roots, settled before anyone sees them ---
    @property
    def root_unstable_tree(self) -> list:
        """root_unstable_tree[]: one RbRoot per NUMA node (or one), up to date."""
        fp = self.fp
        if fp.unstable_log:
            fp.unstable_settle()
        return self._unstable_roots

    @root_unstable_tree.setter
    def root_unstable_tree(self, roots) -> None:
        self.fp.unstable_stop_lazy()         # the rest of this scan uses the rbtree
        self._unstable_roots = roots

    def unstable_tree_reset(self) -> None:
        """The start of a full scan: each unstable root becomes empty again."""
        roots = self._unstable_roots
        for nid in range(len(roots)):
            roots[nid] = RbRoot()
        self.fp.unstable_reset(self.ksm_scan.seqnr)

    # --- search and insert ---
    def unstable_tree_search_insert(self, item, page):
        """unstable_tree_search_insert(): return (tree_item, tree_page) or insert ``item``."""
        nid = 0 if self.merge_across_nodes else self.memory.pfn_to_nid(page.pfn)  # get_kpfn_nid
        data = page.data
        fp = self.fp
        if fp.enabled and fp.unstable_valid_seq == fp.mapping_seq:     # shortcut 1 holds
            if fp.unstable_lazy:                                        # shortcut 2
                if fp.check:
                    return fp.check_unstable_lazy(item, page, nid)
                new = fp.unstable_lookup(tree_key(item.oldchecksum, nid), data)
                if new is None:
                    self._unstable_insert(item, page, nid, None, False, None)
                    return None, None
                if new.tree_page is page:        # a forked page: don't substitute
                    return None, None
            else:
                root = self._unstable_roots[nid]
                if fp.check:
                    fp.check_unstable_tree_pages()
                parent, left, new = fp.unstable_descend_remembered(root, page)
        else:
            if fp.unstable_lazy:
                fp.unstable_stop_lazy()
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
        """Link ``item`` below ``parent`` (``root`` None: shortcut 2's log)."""
        item.flags |= UNSTABLE_FLAG | (self.ksm_scan.seqnr & SEQNR_MASK)
        item.nid = nid
        fp = self.fp
        item.tree_page = page                # fastpath.py, shortcut 1
        if root is None:
            fp.unstable_log_insert(item, tree_key(item.oldchecksum, nid))
        else:
            rb_link_node(item, parent, left, root)
            rb_insert_color(item, root)
        self.ksm_pages_unshared += 1
        ev = self.machine.events
        if ev.enabled:
            ev.put(("KsmEvent", self.machine.clock_ns, "unstable_tree_search_insert",
                    "unstable_insert", item.mm.owner_pid, item.address, page.pfn,
                    "inserted", item.oldchecksum))

    def _unstable_descend(self, item, page, root, data, remembered: bool = False):
        """The kernel's descent: get_mergeable_page() at every level.

        Returns (parent, left, None) for an insertion point, (None, None, node) for a
        node with equal content, or (False, None, None) to give up.  ``remembered``
        (fastpath.py, shortcut 1): each node's bytes as remembered at insertion
        (``tree_page``) instead of get_mergeable_page(); no node can have vanished
        then, and a write since went to that page's bytes.
        """
        parent, left, new = None, False, root.rb_node
        while new is not None:
            if remembered:
                tree_page = new.tree_page
                if tree_page is page:        # a forked page: don't substitute
                    return False, None, None
                tdata = tree_page.data
            else:
                tree_page = self.get_mergeable_page(new)
                if tree_page is None:
                    self._emit("unstable_tree_search_insert", "unstable_abort",
                               item.mm.owner_pid, item.address, page.pfn, "tree_page_gone",
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

    def remove_rmap_item_from_tree(self, item) -> None:
        """remove_rmap_item_from_tree(): leave the stable or unstable tree, fix counters."""
        flags = item.flags
        if flags & STABLE_FLAG:
            node = item.head
            if self.ksm_get_folio(node) is None:
                return                       # the stale node took the item with it
            node.hlist.remove(item)
            self.fp.node_changed(node)
            self.unaccount_stable_item(node, item, sharing=bool(node.hlist))
        elif flags & UNSTABLE_FLAG:
            age = (self.ksm_scan.seqnr - (flags & SEQNR_MASK)) & 0xFF
            if age > 1:
                raise AssertionError(f"unstable item {item!r} survived {age} scans")
            fp = self.fp
            if age == 0 and fp.unstable_lazy:
                fp.unstable_log_erase(item)  # settling erases it, drops its bytes
            else:
                fp.unstable_forget(item, flags & SEQNR_MASK)
                if age == 0:
                    roots = self._unstable_roots
                    root = roots[item.nid] if item.nid < len(roots) else None
                    # a merge_across_nodes switch replaces the roots: erase only from
                    # the tree the item is really in
                    if root is not None and _in_tree(item, root):
                        rb_erase(item, root)
            self.ksm_pages_unshared -= 1
            item.flags = 0


def _in_tree(node, root) -> bool:
    while node.rb_parent is not None:
        node = node.rb_parent
    return root.rb_node is node
