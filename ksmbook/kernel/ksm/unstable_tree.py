"""The unstable tree: not-yet-shared pages whose checksum held still for one scan.

Rebuilt from empty at the start of every full scan (the root is simply reset, the
items keep their UNSTABLE_FLAG and old seqnr until revisited).  Its keys are live
page contents, so the tree can be inconsistent; KSM accepts that.
"""
from __future__ import annotations

from .rbtree import rb_erase, rb_insert_color, rb_link_node
from .structs import SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG


class UnstableTreeMixin:

    def unstable_tree_search_insert(self, item, page):
        """unstable_tree_search_insert(): return (tree_item, tree_page) or insert ``item``."""
        nid = self.get_kpfn_nid(page.pfn)
        root = self.root_unstable_tree[nid]
        data = page.data
        parent, left, new = None, False, root.rb_node
        get_mergeable_page = self.get_mergeable_page
        while new is not None:
            tree_page = get_mergeable_page(new)
            if tree_page is None:
                self._emit("unstable_abort", page, item.address, page.pfn,
                           "a tree page vanished: give up, item stays volatile")
                return None, None
            if tree_page is page:
                # don't substitute a ksm page for a forked page
                return None, None
            tdata = tree_page.data
            parent = new
            if data < tdata:
                new, left = new.rb_left, True
            elif data > tdata:
                new, left = new.rb_right, False
            elif not self.merge_across_nodes and tree_page.nid != nid:
                return None, None
            else:
                return new, tree_page
        item.flags |= UNSTABLE_FLAG | (self.ksm_scan.seqnr & SEQNR_MASK)
        item.nid = nid
        rb_link_node(item, parent, left, root)
        rb_insert_color(item, root)
        self.ksm_pages_unshared += 1
        self._emit("unstable_insert", page, item.address, page.pfn,
                   f"checksum unchanged since last scan; no twin yet (unstable tree now "
                   f"holds this page)")
        return None, None

    def remove_rmap_item_from_tree(self, item) -> None:
        """remove_rmap_item_from_tree(): leave the stable or unstable tree, fix counters."""
        flags = item.flags
        if flags & STABLE_FLAG:
            node = item.head
            if self.ksm_get_folio(node) is None:
                return                       # the stale node took the item with it
            node.hlist.remove(item)
            if node.hlist:
                self.ksm_pages_sharing -= 1
            else:
                self.ksm_pages_shared -= 1
            item.mm.ksm_merging_pages -= 1
            node.rmap_hlist_len -= 1
            item.anon_vma = None
            item.head = None
            item.flags = 0
        elif flags & UNSTABLE_FLAG:
            age = (self.ksm_scan.seqnr - (flags & SEQNR_MASK)) & 0xFF
            if age > 1:
                raise AssertionError(f"unstable item {item!r} survived {age} scans")
            if age == 0:
                root = self.root_unstable_tree[item.nid] if item.nid < len(
                    self.root_unstable_tree) else None
                # a merge_across_nodes switch replaces the roots: erase only from the
                # tree the item is really in
                if root is not None and _in_tree(item, root):
                    rb_erase(item, root)
            self.ksm_pages_unshared -= 1
            item.flags = 0


def _in_tree(node, root) -> bool:
    while node.rb_parent is not None:
        node = node.rb_parent
    return root.rb_node is node
