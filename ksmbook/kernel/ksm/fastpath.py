"""ksmbook's shortcuts: what the simulated ksmd skips, why that changes nothing, what stops it.

DOC: Overview.  mm/ksm.c looks everything up again at every step: each level of an
unstable-tree descent walks the page tables to find the node's page
(get_mergeable_page()), each visit of a page with no twin walks the stable tree
down to a leaf, each visit of a full chain walks its dups.  In C that is cheap; in
Python it is most of ksmd's time.  ksmbook therefore remembers answers, and forgets
them the moment the state they were computed from changes.  All of that memory
lives here, in one ``FastPath`` object per machine (``machine.fp``, ``ksm.fp``),
but for one slot on each rmap_item (shortcut 1) and one on each page (shortcut
7), and only the named hooks below forget it.  The kernel code in scan.py,
stable_tree.py and unstable_tree.py asks this object; it never keeps a shortcut of
its own.

``Machine(fastpath=False)`` takes no shortcut: every lookup is the kernel's.
``Machine(check_fastpath=True)`` takes them all, and before each use asserts that
the kernel's own lookup gives the same answer (slow; the tests run with it).
tests/unit/test_fastpath.py runs every scenario on the three and compares frames,
page tables, counters, rmap_items, the exact rbtree shapes and the events.

The shortcuts, what each skips, why it is equal, what invalidates it:

1. **Remembered unstable pages** (``item.tree_page``: the page the item
   mapped when it entered the tree; a slot of the rmap_item, like the rb
   links, set only by the insertions and read only by the descents this object
   asks for).  Skips get_mergeable_page() at every level of an unstable descent.
   Equal because get_mergeable_page() would find the same page while no PTE was written, no
   page freed, no VMA lost VM_MERGEABLE and no mm exited:
   ``unstable_valid_seq == mapping_seq``.  Invalidated by the hooks
   ``pte_changed``, ``page_freed``, ``vma_unmergeable`` and ``mm_exited``, which
   bump ``mapping_seq``.  ksmd's own merges remap only the item being scanned and
   the tree item it merges with (which then leaves the tree), so ksm_do_scan()
   carries the validity across them.

2. **The settled-later unstable tree** (``unstable_lazy``, ``unstable_index``,
   ``unstable_log``).  While, in addition, no node's page has been written since
   the full scan began, the tree is a consistent binary search tree whose keys are
   all different, so the kernel's descent meets an equal node exactly when one
   exists.  Skips the descent: a dict keyed by the checksum that
   cmp_and_merge_page() has just computed (equal bytes, equal checksum) answers,
   and insertions and erasures go to a log.  Equal because replaying the log in
   order with the kernel's descent (``unstable_settle``) puts every node exactly
   where the kernel put it; that happens whenever someone reads
   ``root_unstable_tree``.  Invalidated by ``before_page_write`` of a mapped page
   (settle, then the rest of the scan descends) and by shortcut 1 stopping; restarted by
   ``unstable_reset`` at the next full scan.

3. **The chain's dup memo** (``dup_memo``: chain -> (folio, dup)).  Skips
   stable_node_dup()'s walk over a chain's dups when it does not prune.  Equal
   because that walk is a pure function of the dups (their order, pages and
   rmap_hlist_len) and max_page_sharing, and once it has run it changes nothing
   when run again.  Invalidated by ``chain_changed`` / ``node_changed`` (a dup
   list or a dup's rmap_hlist_len changed; ``mapping_appended`` keeps it when the
   chosen dup gains a mapping and stays a candidate), ``ksm_page_gone`` (a KSM page
   freed or reused behind mm/ksm's back: a dup may be stale) and
   ``max_page_sharing_changed``.

4. **The stable walk skip** (``stable_keys``: the checksum of every top node's
   page -> that node).  Skips stable_tree_search()'s walk for a page whose
   content no KSM page has (the kernel walks to a leaf and returns NULL), and
   starts it at the matching top node for one whose content a KSM page has (the
   kernel walks down to that node).  On its way the walk can change the tree only
   by pruning a stale node, collapsing or freeing a chain, moving a chain's best
   dup first, or pruning a chain whose time has come; while none of these can
   happen anywhere (every top node checked by ``stable_index_build``, kept up to
   date by ``stable_index_carry`` after stable_tree_append() and
   stable_tree_insert()), the walk is a pure binary search over distinct contents:
   a checksum not in the keys means it would return NULL having changed nothing,
   and a top node with the same bytes is where it would arrive.  Invalidated by
   every ``stable_tree_changed`` it is not told about (``stable_seq``), by
   ``ksm_page_gone``, and by the first chain whose prune time comes.

5. **The fused batch** (``do_scan``).  With the 6.11+ order, ksm_do_scan()'s
   loop walks the page tables itself (scan_get_next_rmap_item()'s walk, as
   scan_rmap_items() has it, without the generator: the cursor is stored back
   before anything that can look at it is called, at the end of each VMA and of
   the batch, not at every page; a new rmap_item is allocated inline) and runs the
   common outcomes of cmp_and_merge_page() inline: a KSM page already ours, a
   checksum that changed (the page stays volatile), a candidate that shortcuts 4
   and 2 answer with "no twin" (it enters the unstable tree), and the stable hit
   (shortcut 8).  Everything else - a merge of two pages, a stale node, a zero
   page, smart scan - calls the kernel functions.  Equal because each inline
   branch is the kernel function's own code for exactly the case it tests for, in
   the same order, with the same counters and, with events on, the same event
   tuples.

6. **A merge nobody watches** (``merge_one_page``).  try_to_merge_one_page() of a
   page into an existing KSM page, when no secondary MMU is registered on the mm:
   the notifier brackets are empty, set_pte_at_notify() is set_pte_at(), and
   nothing runs between write_protect_page() and replace_page(), so the merge
   comes down to its PTE writes (each a PteChange event, with events on), TLB
   flush counts and page counts, made here in the kernel's order.  The PTE is
   written in its table's entries as PageTables.set_pte() writes it (the count of
   used entries, ``pte_changed`` for each write): an order-0 page is mapped by a
   PTE table.  Skips some twenty helper calls per merge.

7. **A page's checksum** (``page.checksum_memo``: a slot of the page, like
   ``tree_page`` on the rmap_item).  Skips calc_checksum() - xxhash over the whole
   page, most of a visit's time in Python - when the page's bytes have not changed
   since it was last computed: cmp_and_merge_page() recomputes it at every visit,
   and a page that holds still is visited once a full scan.  Equal because the
   checksum is a function of the bytes alone, and the bytes change only through
   ``write_page()``, whose ``before_page_write`` forgets it (a new frame starts with
   none).  The fused batch and _checksum_unchanged() use it (xxhash kernels, 5.0+);
   with ``check_fastpath`` every use is recomputed and compared.

8. **The stable hit** (``stable_hit``, from the fused batch).  A candidate whose
   checksum held still, in no tree, and whose key the stable keys (shortcut 4)
   give to a top node: stable_tree_search() would start there and change nothing
   on the way; its answer is the node's own KSM page, or for a chain the dup that
   the chain's memo (shortcut 3) names (while the keys hold no chain's prune time
   has come, so stable_node_dup() would not prune and returns the memo).  When
   that page has the same bytes and room for one more mapping (else: a checksum
   clash, stable_full), and the page is order-0 in an mm with no MMU notifier
   (else: a THP split, notifier calls), try_to_merge_with_ksm_page() comes down to
   merge_one_page() (shortcut 6) in the VMA being walked, then
   stable_tree_append(), whose bookkeeping for shortcuts 3 and 4 is done in place
   for the one case it can be: the memo stays while its dup stays a candidate,
   the keys stay for a regular node and for a chain whose first dup took the
   mapping and still has room (_stable_top_folio() stops at it), and
   stable_index_carry() decides otherwise.  Skips about twenty-five calls per
   merge.  Invalidated with shortcuts 3 and 4; a chain without a memo, and every
   case above that it does not cover, go to cmp_and_merge_page().

Page bytes change only through ``PhysicalMemory.write_page()``, which calls
``before_page_write``; PTEs only through ``PageTables.set_pte()`` (and shortcut 6,
which writes a PTE table's entries as set_pte() does), which calls
``pte_changed``; frames are freed only by ``PhysicalMemory._free_page()``, which
calls ``page_freed``.  No other caller has to remember anything.
"""
from __future__ import annotations

import gc

from ..memory import NODE_PFN_SPAN, PG_anon, PG_anon_exclusive, PG_ksm, PG_lru_batch, PG_zero
from ..pagetable import (_PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_RW, _PAGE_SPECIAL,
                         PTE_PFN_MASK, PTE_PFN_SHIFT, mk_pte)
from ..swap import folio_ref_count
from .checksum import xxh64
from .scan import pte_tables
from .rbtree import rb_erase, rb_insert_color, rb_link_node
from .structs import (SEQNR_MASK, STABLE_FLAG, STABLE_NODE_CHAIN, STABLE_NODE_DUP_HEAD,
                      UNSTABLE_FLAG, KsmRmapItem, stable_node_folio, tree_key)

#: stable_search_start(): no KSM page has this content
NO_TWIN = object()
_PRESENT_OR_PROTNONE = _PAGE_PRESENT | _PAGE_PROTNONE      # pte_present() on x86


class FastPath:
    """Every piece of state a shortcut keeps, and the hooks that invalidate it."""

    def __init__(self, enabled: bool = True, check: bool = False):
        #: False: the kernel's lookups everywhere (``Machine(fastpath=False)``)
        self.enabled = bool(enabled)
        #: True: each shortcut asserts the kernel's answer first (``check_fastpath``)
        self.check = bool(check)
        self.ksm = None                 # set by Ksm(): the hooks below run before it exists
        # Bumped by every change that can alter what a user address maps to (a PTE
        # write, a freed frame, a VMA losing VM_MERGEABLE, an exit).
        self.mapping_seq = 0
        # Bumped by every change to stable nodes, dups, chains and their hlists, and by
        # a KSM page going away outside mm/ksm.
        self.stable_seq = 0
        self.dup_memo: dict = {}        # shortcut 3: chain -> (folio, dup)
        # shortcut 1 and 2 (the unstable tree)
        self.unstable_valid_seq = -1    # mapping_seq when every tree_page was last known right
        self.unstable_lazy = False      # shortcut 2 on: the index answers, the rbtrees lag
        # pending insertions (an item) and erasures (None, then the item: no tuple to
        # allocate, so no extra work for the cyclic garbage collector)
        self.unstable_log: list = []
        self.unstable_erased: list = []      # the items of those erasures
        self.unstable_index: dict = {}       # tree_key(checksum, nid) -> item
        self.unstable_index_more: dict = {}  # the same key, more items (checksum clashes)
        self.unstable_tree_seqnr = -1   # seqnr & SEQNR_MASK of the scan the tree is for
        # shortcut 4 (the stable tree)
        # tree_key() of every top node's page -> that node (None: two share the key)
        self.stable_keys = None
        self.stable_seen_seq = -1       # the stable_seq they are for
        self.stable_prune_from = 0      # the oldest chain_prune_time among the chains
        self.stable_quiet = 0           # searches since the tree last changed

    # ------------------------------------------------------------------------------
    # invalidation hooks: called by the one place each change happens
    # ------------------------------------------------------------------------------
    def pte_changed(self) -> None:
        """PageTables.set_pte(): an address may map another page (shortcut 1)."""
        self.mapping_seq += 1

    def page_freed(self, page) -> None:
        """PhysicalMemory._free_page(): the frame may come back as another page.
        ``page`` still has its flags: a KSM page going is also ``ksm_page_gone``."""
        self.mapping_seq += 1
        if page.flags & PG_ksm:
            self.ksm_page_gone()

    def vma_unmergeable(self) -> None:
        """A VMA lost VM_MERGEABLE: get_mergeable_page() refuses its pages now."""
        self.mapping_seq += 1

    def mm_exited(self) -> None:
        """mmput(): find_mergeable_vma() refuses every address of the mm now."""
        self.mapping_seq += 1

    def ksm_page_gone(self) -> None:
        """A KSM page was freed or reused (do_wp_page) outside mm/ksm: any stable node
        or dup may be stale now (shortcuts 3 and 4)."""
        self.dup_memo.clear()
        self.stable_seq += 1

    def max_page_sharing_changed(self) -> None:
        """stable_node_dup()'s answer depends on max_page_sharing (shortcut 3)."""
        self.dup_memo.clear()
        self.stable_seq += 1

    def stable_tree_changed(self) -> None:
        """A stable node, dup or chain came, went or moved (shortcut 4)."""
        self.stable_seq += 1

    def chain_changed(self, chain) -> None:
        """A chain's dup list changed, or one of its dups' rmap_hlist_len (shortcuts
        3 and 4); also a chain freed or collapsed (its memo is dropped)."""
        self.dup_memo.pop(chain, None)
        self.stable_seq += 1

    def node_changed(self, node) -> None:
        """``node``'s hlist or rmap_hlist_len changed: its chain's memo, if a dup."""
        if node.head == STABLE_NODE_DUP_HEAD:
            self.dup_memo.pop(node.chain, None)
        self.stable_seq += 1

    def mapping_appended(self, node) -> None:
        """stable_tree_append(): ``node`` has one more rmap_item (rmap_hlist_len + 1).

        A chain's memo names its first dup that is a sharing candidate (or its first
        dup, when none is).  One more mapping on that very dup leaves the answer as
        it was while the dup stays a candidate; any other dup's change may alter it.
        """
        if node.head == STABLE_NODE_DUP_HEAD:
            chain = node.chain
            memo = self.dup_memo.get(chain)
            if memo is not None and (memo[1] is not node or
                                     not self.ksm.is_page_sharing_candidate(node)):
                del self.dup_memo[chain]
        self.stable_seq += 1

    def before_page_write(self, page) -> None:
        """PhysicalMemory.write_page(): ``page``'s bytes are about to change.

        If an unstable node may remember them (the page is mapped: every node's page
        was get_mergeable_page()'s answer), shortcut 2 settles the tree and stops for
        the rest of the full scan: after the write the tree may no longer be ordered
        by its bytes.  A page mapped nowhere is one being filled before it is mapped
        (wp_page_copy()), whose bytes object no node can hold.
        Shortcut 7 forgets the page's checksum.
        """
        page.checksum_memo = -1
        if self.unstable_lazy:
            if page.mapcount:
                self.unstable_stop_lazy()
            elif self.check and any(i.tree_page is page for i in self.ksm.rmap_items()):
                raise AssertionError(f"an unmapped page {page!r} a node remembers is written")

    # ------------------------------------------------------------------------------
    # shortcuts 1 and 2: the unstable tree
    # ------------------------------------------------------------------------------
    def unstable_reset(self, seqnr: int) -> None:
        """The start of a full scan: the (empty) trees are right; shortcut 2 restarts."""
        for item in self.unstable_erased:    # erased, never settled: drop the page
            item.tree_page = None
        self.unstable_erased = []
        self.unstable_log = []
        self.unstable_index = {}
        self.unstable_index_more = {}
        self.unstable_lazy = self.enabled
        self.unstable_tree_seqnr = seqnr & SEQNR_MASK
        self.unstable_valid_seq = self.mapping_seq

    def unstable_remembered_valid(self) -> bool:
        """Shortcut 1 holds: every node's remembered page is get_mergeable_page()'s."""
        return self.enabled and self.unstable_valid_seq == self.mapping_seq

    def unstable_settle(self) -> None:
        """Replay the log into the rbtrees with the kernel's descent, in order.

        Every node's page still has the bytes it was inserted with (before_page_write()
        stops shortcut 2 first), so each insertion goes exactly where the kernel put
        it; erased items let go of their pages here.
        """
        log = self.unstable_log
        if not log:
            return
        self.unstable_log, self.unstable_erased = [], []
        roots = self.ksm._unstable_roots
        entries = iter(log)
        for entry in entries:
            if entry is None:                # an erasure: the item follows
                item = next(entries)
                rb_erase(item, roots[item.nid])
                item.tree_page = None
                continue
            root = roots[entry.nid]
            parent, left, new = self.unstable_descend_remembered(root, entry.tree_page)
            if new is not None or parent is False:
                raise AssertionError(f"unstable tree replay met an equal node for {entry!r}")
            rb_link_node(entry, parent, left, root)
            rb_insert_color(entry, root)

    def unstable_stop_lazy(self) -> None:
        """Settle the tree; the rest of this full scan descends the rbtree."""
        self.unstable_settle()
        self.unstable_lazy = False

    def unstable_lookup(self, key: int, data):
        """Shortcut 2: the node whose bytes equal ``data`` (checksum in ``key``), or None."""
        node = self.unstable_index.get(key)
        if node is None or node.tree_page.data == data:
            return node
        for node in self.unstable_index_more.get(key, ()):
            if node.tree_page.data == data:
                return node
        return None

    def unstable_log_insert(self, item, key: int) -> None:
        """Shortcut 2: ``item`` (already remembered) joins the index and the log."""
        index = self.unstable_index
        if key in index:
            self.unstable_index_more.setdefault(key, []).append(item)
        else:
            index[key] = item
        self.unstable_log.append(item)

    def unstable_log_erase(self, item) -> None:
        """Shortcut 2: ``item`` leaves the index; settling erases it, drops its page."""
        key = tree_key(item.oldchecksum, item.nid)
        index, more = self.unstable_index, self.unstable_index_more
        if index.get(key) is item:
            others = more.get(key)
            if others:
                index[key] = others.pop(0)
                if not others:
                    del more[key]
            else:
                del index[key]
        else:
            others = more.get(key)
            if not others or item not in others:
                return
            others.remove(item)
            if not others:
                del more[key]
        self.unstable_log += (None, item)
        self.unstable_erased.append(item)

    def unstable_forget(self, item, tree_seqnr: int) -> None:
        """``item`` (UNSTABLE_FLAG stamped ``tree_seqnr``) leaves the tree by the
        kernel's rb_erase or is dropped with an old tree: settle a log it is in
        first (the tree that ended with the last full scan, still the one to draw),
        then drop its page."""
        if self.unstable_log and tree_seqnr == self.unstable_tree_seqnr:
            self.unstable_settle()
        item.tree_page = None

    def unstable_descend_remembered(self, root, page):
        """Shortcut 1: the kernel's descent for ``page`` over the remembered pages:
        no node can have vanished.  Returns what
        UnstableTreeMixin._unstable_descend() returns."""
        return self.ksm._unstable_descend(None, page, root, page.data, True)

    def check_unstable_tree_pages(self) -> None:
        """check: every node's remembered page is the page
        get_mergeable_page() finds."""
        ksm = self.ksm
        for root in ksm.root_unstable_tree:
            for node in root:
                found = ksm.get_mergeable_page(node)
                if found is None or found is not node.tree_page:
                    raise AssertionError(f"unstable node {node!r} remembers other bytes "
                                         f"than those of the page it maps, {found!r}")

    def check_unstable_lazy(self, item, page, nid):
        """check: shortcut 2's answer must be the kernel descent's answer, and the
        settling replay must insert where the kernel would.  Returns what
        unstable_tree_search_insert() returns, having inserted as it would."""
        ksm = self.ksm
        data = page.data
        lazy = self.unstable_lookup(tree_key(item.oldchecksum, nid), data)
        root = ksm.root_unstable_tree[nid]                       # settles the log
        self.check_unstable_tree_pages()
        kernel = ksm._unstable_descend(item, page, root, data)
        replay = self.unstable_descend_remembered(root, page)
        if replay != kernel:
            raise AssertionError(f"remembered descent {replay} != the kernel's {kernel}")
        parent, _left, new = kernel
        if parent is False:      # gave up on the same page: the index finds that page
            if lazy is None or lazy.tree_page is not page:
                raise AssertionError(f"index found {lazy!r}, the descent met the page itself")
            return None, None
        if new is not lazy:
            raise AssertionError(f"index found {lazy!r}, the kernel's descent {new!r}")
        if new is None:
            ksm._unstable_insert(item, page, nid, None, False, None)
            return None, None
        tree_page = ksm.get_mergeable_page(new)
        if not ksm.merge_across_nodes and tree_page.nid != nid:
            return None, None
        return new, tree_page

    # ------------------------------------------------------------------------------
    # shortcut 3: a chain's dup memo
    # ------------------------------------------------------------------------------
    def check_dup_memo(self, chain, memo) -> None:
        """check: the remembered stable_node_dup() answer is what the loop would find
        now, without its side effects."""
        tree_folio, found = memo
        ksm = self.ksm
        pages = ksm.memory.pages
        first = None
        for dup in chain.hlist:
            if stable_node_folio(pages, dup) is None:
                raise AssertionError(f"{chain!r}: dup {dup!r} went stale under a memo")
            if first is None:
                first = dup
            if ksm.is_page_sharing_candidate(dup):
                first = dup
                break
        if first is not found or pages.get(found.kpfn) is not tree_folio:
            raise AssertionError(f"{chain!r}: memo says {found!r}, the walk finds {first!r}")

    # ------------------------------------------------------------------------------
    # shortcut 4: content that no KSM page has
    # ------------------------------------------------------------------------------
    def stable_keys_hold(self) -> bool:
        ksm = self.ksm
        return self.stable_keys is not None and self.stable_seen_seq == self.stable_seq \
            and ksm.machine.clock_ns // 1_000_000 < \
            self.stable_prune_from + ksm.stable_node_chains_prune_millisecs

    def _stable_top_folio(self, top, pages):
        """The page a descent compares with at ``top``, if passing ``top`` can change
        nothing: no stale page, and a chain has two or more dups, its best one first."""
        if top.rmap_hlist_len != STABLE_NODE_CHAIN:
            return stable_node_folio(pages, top)
        hlist = top.hlist
        if len(hlist) < 2:
            return None
        candidate = self.ksm.is_page_sharing_candidate
        found = folio = None
        for dup in hlist:                    # stable_node_dup() without pruning
            page = stable_node_folio(pages, dup)
            if page is None:
                return None
            if found is None or candidate(dup):
                found, folio = dup, page
                if candidate(dup):
                    break
        if hlist[0] is not found and candidate(found, 1):
            return None
        return folio

    def stable_key(self, folio, nid: int) -> int:
        return tree_key(self.ksm.calc_checksum(folio), nid)

    def stable_index_build(self) -> None:
        """Check every top node and collect the checksums, or give up."""
        self.stable_quiet = 0
        self.stable_keys = None
        ksm = self.ksm
        pages = ksm.memory.pages
        keys, prune_from = {}, 1 << 62        # jiffies_ms
        for nid, root in enumerate(ksm.root_stable_tree):
            for top in root:
                folio = self._stable_top_folio(top, pages)
                if folio is None:
                    return
                if top.rmap_hlist_len == STABLE_NODE_CHAIN:
                    prune_from = min(prune_from, top.chain_prune_time)
                key = self.stable_key(folio, nid)
                keys[key] = None if key in keys else top       # None: a checksum clash
        self.stable_keys, self.stable_prune_from = keys, prune_from
        self.stable_seen_seq = self.stable_seq

    def stable_index_carry(self, top, key=None, replaces=None) -> None:
        """``top`` just changed through stable_tree_append()/insert() while the keys
        held: keep them if ``top`` is still safe to pass (``key`` its content's key,
        when ``top`` is new or took the place of ``replaces``), else drop them."""
        if self._stable_top_folio(top, self.ksm.memory.pages) is None:
            self.stable_keys = None
            return
        if key is not None:
            keys = self.stable_keys
            was = keys.get(key, NO_TWIN)
            keys[key] = top if was is NO_TWIN or was is replaces or was is top else None
        if top.rmap_hlist_len == STABLE_NODE_CHAIN:
            self.stable_prune_from = min(self.stable_prune_from, top.chain_prune_time)
        self.stable_seen_seq = self.stable_seq

    def stable_search_start(self, page, nid: int, checksum: int):
        """Where stable_tree_search()'s descent may begin.

        NO_TWIN: no KSM page has this content, the walk would return NULL having
        changed nothing.  A top node: the one whose page has these very bytes, which
        the walk from the root would reach having changed nothing on the way (so
        only what the walk does at that node is left to do).  None: the root.
        """
        keys = self.stable_keys
        ksm = self.ksm
        if keys is not None and self.stable_seen_seq == self.stable_seq and \
                ksm.machine.clock_ns // 1_000_000 < self.stable_prune_from + \
                ksm.stable_node_chains_prune_millisecs:                 # stable_keys_hold()
            top = keys.get(tree_key(checksum, nid), NO_TWIN)
            if top is NO_TWIN:
                if self.check:
                    seq = self.stable_seq
                    if ksm.stable_tree_search(page) is not None or self.stable_seq != seq:
                        raise AssertionError("shortcut 4 skipped a stable tree walk that "
                                             "found a page or changed the tree")
                return NO_TWIN
            if top is not None:          # None: two top nodes' pages share the checksum
                pages = ksm.memory.pages
                folio = stable_node_folio(
                    pages, top.hlist[0] if top.rmap_hlist_len == STABLE_NODE_CHAIN else top)
                if folio is not None and folio.data == page.data:   # a chain's dups: alike
                    if self.check:
                        self.check_stable_start(top, page.data, nid)
                    return top
            return None
        self._stable_note_search()
        return None

    def check_stable_start(self, top, data, nid: int) -> None:
        """check: the kernel's descent from the root, made without its side effects,
        passes only nodes where it changes nothing and ends at ``top``."""
        pages = self.ksm.memory.pages
        node = self.ksm.root_stable_tree[nid].rb_node
        while node is not None:
            folio = self._stable_top_folio(node, pages)
            if folio is None:
                raise AssertionError(f"the stable keys vouch for {node!r}, unsafe to pass")
            if data < folio.data:
                node = node.rb_left
            elif data > folio.data:
                node = node.rb_right
            else:
                break
        if node is not top:
            raise AssertionError(f"the stable keys start at {top!r}, the walk ends at {node!r}")

    def _stable_note_search(self) -> None:
        """A search the keys could not answer: rebuild them after enough quiet ones."""
        if self.stable_seen_seq != self.stable_seq:
            self.stable_seen_seq = self.stable_seq
            self.stable_quiet, self.stable_keys = 0, None
            return
        self.stable_quiet += 1
        ksm = self.ksm
        # rebuilding costs about one look per node: only after as many quiet searches
        if self.stable_quiet > 8 + (ksm.stable_node_chains + ksm.ksm_pages_shared) // 4:
            self.stable_index_build()

    # ------------------------------------------------------------------------------
    # shortcut 7: a page's checksum
    # ------------------------------------------------------------------------------
    def check_checksum_memo(self, page) -> None:
        """check: the remembered calc_checksum() of ``page`` is its bytes' now."""
        if page.checksum_memo != xxh64(page.data) & 0xFFFFFFFF:
            raise AssertionError(f"{page!r} remembers checksum {page.checksum_memo:#x}, "
                                 "its bytes have another")

    # ------------------------------------------------------------------------------
    # shortcut 5: the fused batch
    # ------------------------------------------------------------------------------
    def do_scan(self, scan_npages: int) -> int:
        """ksm_do_scan() with the 6.11+ order: the same loop, with the page walk of
        scan_get_next_rmap_item() and the common outcomes of cmp_and_merge_page()
        inline (it inlines remove_rmap_item_from_tree(), calc_checksum(),
        _checksum_unchanged(), _unstable_insert(), stable_tree_search(),
        try_to_merge_with_ksm_page() and stable_tree_append() for those cases).

        The walk is scan_rmap_items()'s, with its helpers (scan_cursor_slot(),
        scan_vmas(), pte_tables(), scan_next_mm()), but for when the cursor
        (ksm_scan.address, rmap_list) is stored back: before anything else can look at
        it (a call of get_next_rmap_item() that frees items, should_skip_rmap_item(),
        cmp_and_merge_page()), at the end of a VMA and at the end of the batch, not
        at every page.

        Each inline branch is cmp_and_merge_page()'s own code for the one case it
        tests, and decides before it changes anything; every other page goes to
        cmp_and_merge_page() (``checked=True`` when the prologue is done here):

        * a KSM page whose stable node is the item's: return at once (no event);
        * remove_rmap_item_from_tree() of an item that is in no tree, or was in the
          last full scan's unstable tree (age 1: that tree was reset when this scan
          began, so no log can name it; no event);
        * the checksum test, inlined as _checksum_unchanged() has it (with shortcut
          7's remembered checksum), with its event;
        * a candidate (checksum held still) that the stable keys (shortcut 4) say
          no KSM page has, whose checksum no unstable node has (shortcut 2's index
          while shortcut 1 holds) and that is not the zero page's content with
          use_zero_pages: it enters the unstable tree as _unstable_insert() does,
          with its event;
        * the stable hit (shortcut 8): a candidate whose key the stable keys give to
          a top node (a regular node, or a chain with a dup memo, shortcut 3) whose
          KSM page has the same bytes and room for one more mapping, the page being
          no THP subpage in an mm with no MMU notifier: merge_one_page()
          (shortcut 6), then stable_tree_append() with its bookkeeping for
          shortcuts 3 and 4, and the stable_hit event.

        With events on, each inline branch hands the log the very tuples the kernel
        functions would (``EventLog.put``), in the same order.
        """
        ksm = self.ksm
        slot = ksm.scan_cursor_slot()
        if slot is None:
            return 0
        machine = ksm.machine
        events = machine.events
        count_scanned = ksm.profile.ksm_pages_scanned
        cmp_and_merge_page = ksm.cmp_and_merge_page
        get_next_rmap_item = ksm.get_next_rmap_item
        stable_hit = self.stable_hit
        scan = ksm.ksm_scan
        pages = ksm.memory.pages
        page_size = ksm.page_size
        page_shift = machine.page_shift
        smart_scan = ksm.smart_scan
        done = 0
        visited = None          # the last item visited inline: the cursor to store back
        # The premises of the inline candidate branches, taken again whenever
        # stable_seq or mapping_seq moved (the walk itself may free items) or a page
        # went to cmp_and_merge_page(); keys None means "call out".
        seen_stable = seen_mapping = -1
        keys = index = log = zero = nid_of = put = None
        seqnr = bits = clock = max_sharing = 0
        # ksmbook: the cyclic garbage collector waits for the end of the batch.  A
        # batch allocates rmap_items and event tuples by the thousand and frees no
        # cycles; every young collection in it would walk them all again.
        collect = gc.isenabled()
        if collect:
            gc.disable()
        try:
            while slot is not None:
                mm = slot.mm
                if not mm.mm_users:
                    scan.address = 0
                    scan.rmap_list = slot
                    slot = ksm.scan_next_mm(slot)
                    continue
                pagetables = mm.pagetables
                for vma in ksm.scan_vmas(mm):
                    link = scan.rmap_list
                    for base, entries, first, stop in pte_tables(pagetables, scan.address,
                                                                 vma.end, page_shift):
                        for i in range(first, stop):
                            pte = entries[i]
                            if not pte & _PRESENT_OR_PROTNONE or pte & _PAGE_SPECIAL:
                                continue
                            page = pages.get((pte & PTE_PFN_MASK) >> PTE_PFN_SHIFT)
                            if page is None or not page.flags & PG_anon:
                                continue
                            address = base + (i << page_shift)
                            item = link.rmap_list   # get_next_rmap_item()'s usual hit
                            if item is None or item.address > address:
                                # get_next_rmap_item() with nothing to pass over: a new
                                # item here (new_rmap_item(), inlined: once per page)
                                ksm.ksm_rmap_items += 1
                                mm.ksm_rmap_items += 1
                                new = KsmRmapItem(mm, address)
                                new.rmap_list = item
                                link.rmap_list = item = new
                            elif item.address != address:
                                if visited is not None:     # it frees items: cursor first
                                    scan.address = visited.address + page_size
                                    scan.rmap_list = visited
                                item = get_next_rmap_item(slot, link, address)
                            link = item
                            if smart_scan:
                                if visited is not None:
                                    scan.address = visited.address + page_size
                                    scan.rmap_list = visited
                                if ksm.should_skip_rmap_item(page, item):
                                    continue
                            visited = item
                            done += 1
                            # --- cmp_and_merge_page(page, item), its common outcomes ---
                            if seen_stable != self.stable_seq or seen_mapping != self.mapping_seq:
                                seen_stable, seen_mapping = self.stable_seq, self.mapping_seq
                                clock = machine.clock_ns
                                keys = self.stable_keys if self.stable_seen_seq == self.stable_seq \
                                    and clock // 1_000_000 < self.stable_prune_from + \
                                    ksm.stable_node_chains_prune_millisecs and \
                                    self.unstable_lazy and \
                                    self.unstable_valid_seq == self.mapping_seq else None
                                index = self.unstable_index
                                log = self.unstable_log
                                zero = ksm.zero_checksum if ksm.use_zero_pages else None
                                seqnr = scan.seqnr
                                bits = UNSTABLE_FLAG | (seqnr & SEQNR_MASK)
                                nid_of = None if ksm.merge_across_nodes else NODE_PFN_SPAN
                                put = events.put if events.enabled else None
                                max_sharing = ksm.max_page_sharing
                            if page.flags & PG_ksm:
                                call = item.head is not page.mapping  # else already ours
                                checked = False
                            elif (flags := item.flags) and (
                                    flags & STABLE_FLAG or
                                    (seqnr - (flags & SEQNR_MASK)) & 0xFF != 1):
                                call = True
                                checked = False
                            else:
                                # remove_rmap_item_from_tree() of an age-1 item:
                                # ksm_pages_unshared falls by one, unless the item goes
                                # back into the tree below
                                if flags:
                                    item.flags = 0
                                    item.tree_page = None
                                data = page.data
                                checksum = page.checksum_memo        # shortcut 7
                                if checksum < 0:
                                    checksum = page.checksum_memo = xxh64(data) & 0xFFFFFFFF
                                call = checked = False
                                old = item.oldchecksum
                                if old != checksum:
                                    item.oldchecksum = checksum  # volatile: first visit or changed
                                    if flags:
                                        ksm.ksm_pages_unshared -= 1
                                    if put is not None:
                                        put(("KsmEvent", clock, "cmp_and_merge_page", "checksum",
                                             mm.owner_pid, address, page.pfn,
                                             "changed" if old else "first_visit", checksum))
                                else:
                                    if put is not None:
                                        put(("KsmEvent", clock, "cmp_and_merge_page", "checksum",
                                             mm.owner_pid, address, page.pfn, "unchanged",
                                             checksum))
                                    nid = 0 if nid_of is None else page.pfn // nid_of
                                    key = checksum | nid << 32                   # tree_key()
                                    # shortcut 4: NO_TWIN, no KSM page has these bytes; a
                                    # top node whose page may have them; None: call out
                                    top = None if keys is None or checksum == zero else \
                                        keys.get(key, NO_TWIN)
                                    if top is NO_TWIN and key not in index:
                                        # _unstable_insert(item, page, nid, None, False, None)
                                        item.flags = bits
                                        item.nid = nid
                                        item.tree_page = page
                                        index[key] = item
                                        log.append(item)
                                        if not flags:
                                            ksm.ksm_pages_unshared += 1
                                        if put is not None:
                                            put(("KsmEvent", clock, "unstable_tree_search_insert",
                                                 "unstable_insert", mm.owner_pid, address,
                                                 page.pfn, "inserted", checksum))
                                    else:
                                        if flags:
                                            ksm.ksm_pages_unshared -= 1
                                        call = checked = top is None or top is NO_TWIN or \
                                            not stable_hit(item, page, vma, top, max_sharing,
                                                           put, clock)
                            if call:                 # everything else: the kernel's function
                                scan.address, scan.rmap_list = address + page_size, item
                                valid = self.unstable_valid_seq == self.mapping_seq
                                splits = ksm.thp_splits
                                cmp_and_merge_page(page, item, checked)
                                # a THP split remaps 512 pages: no carrying over it
                                if valid and ksm.thp_splits == splits:
                                    self.unstable_valid_seq = self.mapping_seq
                                seen_stable = -1
                                link = scan.rmap_list
                            if done == scan_npages:
                                scan.address, scan.rmap_list = address + page_size, link
                                return done
                    scan.address, scan.rmap_list = vma.end, link
                    visited = None
                slot = ksm.scan_next_mm(slot)
            return done
        finally:
            if collect:
                gc.enable()
            if count_scanned:
                ksm.ksm_pages_scanned += done

    def stable_hit(self, item, page, vma, top, max_sharing: int, put, clock: int) -> bool:
        """Shortcut 8: cmp_and_merge_page() of a candidate whose key the stable keys
        give to ``top`` (its checksum held still, it is in no tree, it is not the zero
        page's content with use_zero_pages), from stable_tree_search() to the
        stable_hit event, when ``top``'s KSM page has its bytes and room for one more
        mapping and the merge goes to merge_one_page(); else False, having done
        nothing (the kernel's functions take the page).

        stable_tree_search() starts at ``top`` (shortcut 4: no node on the way
        changes); its best dup is the chain's memo (shortcut 3: while the keys hold
        no chain's prune time has come, so stable_node_dup() does not prune), a
        regular node's KSM page its own (ksm_get_folio(): alive, the keys vouch).
        try_to_merge_with_ksm_page(): find_mergeable_vma() gives the VMA being
        walked; try_to_merge_one_page() goes to merge_one_page() (shortcut 6) for an
        order-0 page in an mm with no MMU notifier.  Then stable_tree_append(item,
        dup, false), with mapping_appended() and stable_index_carry() for this
        case.  Returns True (the page is done) whether or not the merge succeeded.
        """
        if top.rmap_hlist_len == STABLE_NODE_CHAIN:
            memo = self.dup_memo.get(top)
            if memo is None:
                return False
            kfolio, dup = memo
        else:
            dup = top
            kfolio = stable_node_folio(self.ksm.memory.pages, top)
            if kfolio is None:
                return False
        mm = item.mm
        # the same bytes (else a checksum clash: the walk from the root), room for one
        # more mapping (else stable_full), no THP to split, no notifier, no zero page
        if kfolio.data != page.data or not 0 < dup.rmap_hlist_len < max_sharing or \
                page.folio is not None or mm.notifiers.list or kfolio.flags & PG_zero:
            return False
        address = item.address
        if self.merge_one_page(mm, page, kfolio, address):
            # try_to_merge_with_ksm_page(): remove_rmap_item_from_tree() finds it in no tree
            item.anon_vma = vma.anon_vma
            # stable_tree_append(item, dup, false)
            dup.rmap_hlist_len += 1
            item.head = dup
            item.flags |= STABLE_FLAG
            hlist = dup.hlist
            hlist.insert(0, item)
            full = dup.rmap_hlist_len >= max_sharing     # no longer a sharing candidate
            if top is not dup and full:
                self.dup_memo.pop(top, None)     # mapping_appended(): the memo named dup
            self.stable_seq += 1
            # stable_index_carry(top): a regular node is still safe to pass (its page is
            # the one just merged into, alive); so is a chain whose first dup is
            # ``dup``, alive and still a candidate (_stable_top_folio() stops there)
            if top is dup:
                self.stable_seen_seq = self.stable_seq
            elif not full and len(top.hlist) > 1 and top.hlist[0] is dup:
                self.stable_prune_from = min(self.stable_prune_from, top.chain_prune_time)
                self.stable_seen_seq = self.stable_seq
            else:
                self.stable_index_carry(top)
            ksm = self.ksm
            if len(hlist) > 1:
                ksm.ksm_pages_sharing += 1
            else:
                ksm.ksm_pages_shared += 1
            mm.ksm_merging_pages += 1
            if put is not None:
                put(("KsmEvent", clock, "try_to_merge_with_ksm_page", "stable_hit",
                     mm.owner_pid, address, page.pfn, "merged", None, None, None,
                     kfolio.pfn, dup.id, {"sharers": dup.rmap_hlist_len}))
        # ksm_do_scan() carries shortcut 1 across ksmd's own merge (no THP split here)
        self.unstable_valid_seq = self.mapping_seq
        return True

    # ------------------------------------------------------------------------------
    # shortcut 6: a merge nobody watches
    # ------------------------------------------------------------------------------
    def merge_one_page(self, mm, page, kpage, address) -> bool:
        """try_to_merge_one_page(vma, page, kpage, address) for a KSM page ``kpage``
        (not the zero page), with no MMU notifier on ``mm``: what write_protect_page(),
        pages_identical() and replace_page() do then, with the PteChange events of
        their set_pte_at() calls (a notifier-less set_pte_at_notify() and
        ptep_clear_flush() are set_pte_at()) and write_protect_page()'s
        merge_failed event.

        The PTE is written in its table's entries as PageTables.set_pte() writes it
        (the table's count of used entries, ``pte_changed`` for each write): the
        page is an order-0 page (a THP is split before this), so it is mapped, if at
        all, by a PTE table."""
        pt = mm.pagetables
        machine = mm.machine
        events = machine.events
        put = events.put if events.enabled else None
        # write_protect_page()
        table = pt.leaves.get(address >> (pt.page_shift + 9))
        if table is None:            # get_pte() is none, or a huge PMD's: not this page
            return False
        entries = table.entries
        i = (address >> pt.page_shift) & 511
        entry = entries[i]
        if not entry & (_PAGE_PRESENT | _PAGE_PROTNONE) or \
                (entry & PTE_PFN_MASK) >> PTE_PFN_SHIFT != page.pfn:
            return False
        # from here on the PTE is present (non-zero) until cleared: set_pte()'s count
        # of used entries goes down with each clear and up with each set
        if entry & (_PAGE_RW | _PAGE_DIRTY) or page.flags & PG_anon_exclusive:
            entries[i] = 0                               # ptep_clear_flush()
            table.used -= 1
            self.mapping_seq += 1                        # pte_changed()
            if put is not None:
                put(("PteChange", machine.clock_ns, mm.owner_pid, address, entry, 0,
                     "write_protect_page"))
            machine.tlb_flushes += 1
            if page.mapcount != folio_ref_count(page):
                entries[i] = entry                       # set_pte_at(): put back
                table.used += 1
                self.mapping_seq += 1
                if put is not None:
                    put(("PteChange", machine.clock_ns, mm.owner_pid, address, 0, entry,
                         "write_protect_page"))
                    self.ksm._emit("write_protect_page", "merge_failed", mm.owner_pid,
                                   address, page.pfn,
                                   "lru_batch" if page.flags & PG_lru_batch else "pinned",
                                   info={"refcount": folio_ref_count(page),
                                         "mapcount": page.mapcount})
                return False
            page.flags &= ~PG_anon_exclusive             # folio_try_share_anon_rmap_pte()
            new = entry & ~(_PAGE_RW | _PAGE_DIRTY)      # pte_wrprotect(pte_mkclean())
            entries[i] = new                             # set_pte_at_notify()
            table.used += 1
            self.mapping_seq += 1
            if put is not None:
                put(("PteChange", machine.clock_ns, mm.owner_pid, address, 0, new,
                     "write_protect_page"))
            entry = new
        if page.data != kpage.data:                      # pages_identical()
            return False
        # replace_page(): the PTE is still ``entry``, nothing ran in between
        kpage.refcount += 1
        kpage.mapcount += 1
        newpte = mk_pte(kpage.pfn, False)
        if entry & _PAGE_PROTNONE:
            newpte = (newpte & ~1) | _PAGE_PROTNONE
        entries[i] = 0                                   # ptep_clear_flush()
        self.mapping_seq += 1
        if put is not None:
            put(("PteChange", machine.clock_ns, mm.owner_pid, address, entry, 0,
                 "replace_page"))
        machine.tlb_flushes += 1
        entries[i] = newpte                              # set_pte_at_notify()
        self.mapping_seq += 1                            # (used: one out, one in)
        if put is not None:
            put(("PteChange", machine.clock_ns, mm.owner_pid, address, 0, newpte,
                 "replace_page"))
        page.mapcount -= 1
        machine.memory.put_page(page)
        return True
