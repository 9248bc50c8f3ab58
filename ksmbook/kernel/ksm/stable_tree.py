"""The stable tree: KSM pages keyed by content, with chains of dups (4.13+).

Mirrors ksm_get_folio, remove_node_from_stable_tree, stable_node_dup,
__stable_node_chain, stable_tree_search, stable_tree_insert and stable_tree_append
of mm/ksm.c (6.11+ text).  Nodes hold no page reference: ksm_get_folio() peeps at
the page's ``mapping`` to see whether it still points back at the node, and a
stale node is removed on the spot.

Every page whose checksum held still visits the stable tree once per scan, so
ksmbook takes two shortcuts here, both kept in fastpath.py (shortcuts 3 and 4 of
its overview: a chain's dup memo, and skipping the walk for content no KSM page
has); this module keeps the kernel's walks and tells ``self.fp`` what changed.
"""
from __future__ import annotations

from ..memory import PG_ksm
from .fastpath import NO_TWIN
from .rbtree import rb_erase, rb_insert_color, rb_link_node, rb_replace_node
from .structs import (STABLE_FLAG, STABLE_NODE_CHAIN, STABLE_NODE_DUP_HEAD,
                      KsmStableNode, stable_node_folio)

EBUSY = object()    # ERR_PTR(-EBUSY) stand-in (a folio being migrated; never in ksmbook)


class StableTreeMixin:

    # --- node life cycle ---
    def alloc_stable_node(self) -> KsmStableNode:
        self._stable_node_ids += 1
        return KsmStableNode(self._stable_node_ids)

    def is_page_sharing_candidate(self, node, offset: int = 0) -> bool:
        """__is_page_sharing_candidate(): has a mapping left and room for one more."""
        return node.rmap_hlist_len != 0 and node.rmap_hlist_len + offset < self.max_page_sharing

    def stable_node_chain_add_dup(self, dup, chain) -> None:
        dup.head = STABLE_NODE_DUP_HEAD
        dup.chain = chain
        chain.hlist.insert(0, dup)
        self.stable_node_dups += 1
        self.fp.chain_changed(chain)
        if self.machine.events.enabled:
            pid, address = self._visit()
            self._emit("stable_node_chain_add_dup", "dup_created", pid, address,
                       dup.kpfn or 0, "added", node=dup.id,
                       info={"chain": chain.id, "dups": len(chain.hlist)})

    def __stable_node_dup_del(self, dup) -> None:
        chain = dup.chain
        chain.hlist.remove(dup)
        dup.chain = None
        self.stable_node_dups -= 1
        self.fp.chain_changed(chain)

    def stable_node_dup_del(self, dup) -> None:
        """Unlink a regular node or a dup from wherever it hangs."""
        if dup.is_dup:
            self.__stable_node_dup_del(dup)
        else:
            rb_erase(dup, self.root_stable_tree[dup.nid])
        dup.head = None

    def alloc_stable_node_chain(self, dup, root) -> KsmStableNode:
        """Put a chain where ``dup`` was in the rbtree; ``dup`` becomes its first dup."""
        chain = self.alloc_stable_node()
        chain.chain_prune_time = self.jiffies_ms()
        chain.rmap_hlist_len = STABLE_NODE_CHAIN
        chain.nid = dup.nid
        self.stable_node_chains += 1
        rb_replace_node(dup, chain, root)
        if self.machine.events.enabled:
            pid, address = self._visit()
            self._emit("alloc_stable_node_chain", "chain_created", pid, address,
                       dup.kpfn or 0, "created", node=dup.id,
                       info={"chain": chain.id, "max_page_sharing": self.max_page_sharing})
        self.stable_node_chain_add_dup(dup, chain)
        return chain

    def free_stable_node_chain(self, chain, root) -> None:
        rb_erase(chain, root)
        self.stable_node_chains -= 1
        self.fp.chain_changed(chain)

    def unaccount_stable_item(self, node, item, sharing: bool) -> None:
        """The accounting both removal paths of mm/ksm.c share: an item that still had
        company on the hlist was one of the 'sharing', the last one the 'shared'."""
        if sharing:
            self.ksm_pages_sharing -= 1
        else:
            self.ksm_pages_shared -= 1
        item.mm.ksm_merging_pages -= 1
        node.rmap_hlist_len -= 1
        item.anon_vma = None
        item.head = None
        item.flags = 0

    def remove_node_from_stable_tree(self, node) -> None:
        """A stale node goes: every item on it turns volatile, counters fall at once."""
        n = len(node.hlist)
        for i, item in enumerate(node.hlist):
            self.unaccount_stable_item(node, item, sharing=i < n - 1)   # hlist.next != NULL
        node.hlist = []
        self.fp.stable_tree_changed()
        self.stable_node_dup_del(node)
        if self.machine.events.enabled:
            self._emit("remove_node_from_stable_tree", "stale_pruned", 0, 0, node.kpfn or 0,
                       "stale", node=node.id, info={"items": n})

    def ksm_get_folio(self, node):
        """ksm_get_folio(): the KSM page if it still holds the key, else prune the node."""
        page = stable_node_folio(self.memory.pages, node)
        if page is not None:
            return page
        self.remove_node_from_stable_tree(node)
        return None

    # --- chains ---
    def stable_node_dup(self, chain, root, prune: bool):
        """stable_node_dup(): pick the best dup of a chain, pruning and collapsing.

        Returns (folio, found_dup, node) where ``node`` is the chain, or the dup that
        replaced it when the chain collapsed to a single entry.
        """
        now = self.machine.clock_ns // 1_000_000          # jiffies_ms()
        if not prune or now < chain.chain_prune_time + self.stable_node_chains_prune_millisecs:
            prune = False
            fp = self.fp
            memo = fp.dup_memo.get(chain) if fp.enabled else None
            if memo is not None:                         # fastpath.py, shortcut 3
                if fp.check:
                    fp.check_dup_memo(chain, memo)
                return memo[0], memo[1], chain
        else:
            chain.chain_prune_time = now
        found = tree_folio = None
        found_len = 0
        for dup in list(chain.hlist):
            folio = self.ksm_get_folio(dup)
            if folio is None:
                continue
            if found is None or (self.is_page_sharing_candidate(dup) and (
                    not self.is_page_sharing_candidate(found) or dup.rmap_hlist_len > found_len)):
                found, found_len, tree_folio = dup, dup.rmap_hlist_len, folio
                if not prune and self.is_page_sharing_candidate(found):
                    break
        if found is not None:
            if len(chain.hlist) == 1:
                # the last dup standing replaces the chain in the rbtree
                chain.hlist.clear()
                found.chain = None
                found.head = None
                rb_replace_node(chain, found, root)
                self.stable_node_chains -= 1
                self.stable_node_dups -= 1
                self.fp.chain_changed(chain)
                if self.machine.events.enabled:
                    pid, address = self._visit()
                    self._emit("stable_node_dup", "chain_collapsed", pid, address, found.kpfn,
                               "collapsed", node=found.id, info={"chain": chain.id})
                return tree_folio, found, found
            if chain.hlist[0] is not found and self.is_page_sharing_candidate(found, 1):
                chain.hlist.remove(found)
                chain.hlist.insert(0, found)
                self.fp.stable_tree_changed()
            if not prune:       # a second call now would give this answer and change nothing
                self.fp.dup_memo[chain] = (tree_folio, found)
        else:
            self.free_stable_node_chain(chain, root)
        return tree_folio, found, chain

    def __stable_node_chain(self, node, root, prune: bool):
        """__stable_node_chain(): (folio, dup, node) of a regular node, or of a chain's
        best dup (stable_tree_search() has this inlined: it runs for every page)."""
        if node.rmap_hlist_len != STABLE_NODE_CHAIN:
            return self.ksm_get_folio(node), node, node
        return self.stable_node_dup(node, root, prune)

    # --- search / insert / append ---
    def stable_tree_search(self, page, checksum: int | None = None):
        """stable_tree_search(): a KSM page with the same content that can take one more.

        ``checksum`` (ksmbook): the page's calc_checksum(), when the caller has just
        computed it (6.11+ order), for shortcut 2.
        """
        page_node = page.mapping if page.flags & PG_ksm else None
        if page_node is not None:
            return page                  # ksm page forked (no migrate_nodes in ksmbook)
        nid = 0 if self.merge_across_nodes else self.memory.pfn_to_nid(page.pfn)  # get_kpfn_nid
        fp = self.fp
        # fastpath.py, shortcut 4: no twin at all, or the top node the walk would end at
        start = fp.stable_search_start(page, nid, checksum) \
            if checksum is not None and fp.enabled else None
        if start is NO_TWIN:
            return None
        root = self.root_stable_tree[nid]
        data = page.data
        while True:                      # again:
            new = root.rb_node if start is None else start
            start = None
            restart = False
            while new is not None:
                if new.rmap_hlist_len == STABLE_NODE_CHAIN:      # __stable_node_chain()
                    tree_folio, dup, node = self.stable_node_dup(new, root, True)
                else:
                    tree_folio = self.ksm_get_folio(new)
                    dup = node = new
                if tree_folio is None:
                    restart = True       # walked over a stale node: the tree may have changed
                    break
                tdata = tree_folio.data
                if data < tdata:
                    new = node.rb_left
                elif data > tdata:
                    new = node.rb_right
                else:
                    if not self.is_page_sharing_candidate(dup):
                        if self.machine.events.enabled:
                            pid, address = self._visit()
                            self._emit("stable_tree_search", "stable_full", pid, address,
                                       page.pfn, "all_dups_full", other_pfn=tree_folio.pfn,
                                       node=dup.id,
                                       info={"max_page_sharing": self.max_page_sharing})
                        return None
                    tree_folio = self.ksm_get_folio(dup)
                    if tree_folio is None:
                        restart = True
                        break
                    return tree_folio
            if not restart:
                return None

    def stable_tree_insert(self, kfolio):
        """stable_tree_insert(): a node for a new KSM page; a chain if the content exists."""
        fp = self.fp
        keys_held = fp.stable_keys_hold()     # then the descent below changes nothing
        nid = self.get_kpfn_nid(kfolio.pfn)
        root = self.root_stable_tree[nid]
        data = kfolio.data
        while True:
            parent, left, new, need_chain, restart = None, False, root.rb_node, False, False
            while new is not None:
                tree_folio, dup, node = self.__stable_node_chain(new, root, False)
                if tree_folio is None:
                    restart = True
                    break
                tdata = tree_folio.data
                parent = node
                if data < tdata:
                    new, left = node.rb_left, True
                elif data > tdata:
                    new, left = node.rb_right, False
                else:
                    need_chain = True
                    break
            if not restart:
                break
        dup = self.alloc_stable_node()
        dup.kpfn = kfolio.pfn
        dup.nid = nid
        if not need_chain:
            rb_link_node(dup, parent, left, root)
            rb_insert_color(dup, root)
        else:
            chain = node if node.is_chain else self.alloc_stable_node_chain(node, root)
            self.stable_node_chain_add_dup(dup, chain)
        kfolio.mapping = dup             # folio_set_stable_node()
        fp.stable_tree_changed()
        if keys_held:
            if need_chain:                       # ``chain`` took ``node``'s place, or is it
                fp.stable_index_carry(chain, fp.stable_key(kfolio, nid), node)
            else:
                fp.stable_index_carry(dup, fp.stable_key(kfolio, nid))
        return dup

    def stable_tree_append(self, item, node, bypass: bool) -> None:
        """stable_tree_append(): the first item on a node is 'shared', later ones 'sharing'."""
        fp = self.fp
        keys_held = fp.stable_keys_hold()
        node.rmap_hlist_len += 1
        item.head = node
        item.flags |= STABLE_FLAG
        node.hlist.insert(0, item)
        fp.mapping_appended(node)
        if keys_held:
            fp.stable_index_carry(node.chain if node.head == STABLE_NODE_DUP_HEAD else node)
        if len(node.hlist) > 1:
            self.ksm_pages_sharing += 1
        else:
            self.ksm_pages_shared += 1
        item.mm.ksm_merging_pages += 1
        if bypass and node.rmap_hlist_len > self.max_page_sharing:
            if self.machine.events.enabled:
                self._emit("stable_tree_append", "sharing_bypass", item.mm.owner_pid,
                           item.address, node.kpfn, "bypassed", node=node.id,
                           info={"sharers": node.rmap_hlist_len,
                                 "max_page_sharing": self.max_page_sharing})

    # --- teardown (run=2, knob changes) ---
    def remove_stable_node(self, node) -> bool:
        """True (EBUSY) if the node's page is still mapped."""
        folio = self.ksm_get_folio(node)
        if folio is None:
            return False
        if folio.mapcount == 0:
            folio.mapping = None
            self.fp.stable_tree_changed()
            self.remove_node_from_stable_tree(node)
            return False
        return True

    def remove_stable_node_chain(self, node, root) -> bool:
        if not node.is_chain:
            return self.remove_stable_node(node)
        for dup in list(node.hlist):
            if self.remove_stable_node(dup):
                return True
        self.free_stable_node_chain(node, root)
        return False

    def remove_all_stable_nodes(self) -> bool:
        """remove_all_stable_nodes(): True (EBUSY) if some KSM page is still mapped."""
        busy = False
        for root in self.root_stable_tree:
            while root.rb_node is not None:
                if self.remove_stable_node_chain(root.rb_node, root):
                    busy = True
                    break
        return busy
