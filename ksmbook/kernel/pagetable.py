"""x86-64 four-level page tables: PGD -> PUD -> PMD -> PTE, 9 index bits per level.

PTEs are ints in the hardware layout (pfn in bits 12..51, flag bits below), so a raw
value printed by the book reads like one from a kernel dump.  Tables are allocated on
demand from physical memory and freed when munmap or exit leaves them empty.

A huge PMD (a transparent huge page, kernel/huge_memory.py) is a PMD entry with
``_PAGE_PSE`` set that maps 2 MiB directly: it has no PTE table under it.  The
page table that a later split will need is deposited beside it
(pgtable_trans_huge_deposit()), as x86 does, and ``huge`` indexes the huge PMDs
by the same key as ``leaves``.  :meth:`PageTables.get_pte` answers for an address
under a huge PMD with the PTE that maps its subpage (what follow_page() and a
TLB hit see); code that changes mappings asks :meth:`PageTables.huge_pmd` first.

``leaves`` indexes the last-level tables by ``address >> (page_shift + 9)``: it is the
same data as the tree, kept so that the hot KSM loop finds a PTE with one dict lookup
instead of four (the kernel has the hardware walker for that).
"""
from __future__ import annotations

from dataclasses import dataclass

from .memory import PG_table

# arch/x86/include/asm/pgtable_types.h
_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7          # a huge (2 MiB) PMD: pmd_trans_huge()
_PAGE_PROTNONE = 1 << 8     # _PAGE_GLOBAL reused: present to Linux, not to the MMU
_PAGE_SPECIAL = 1 << 9        # _PAGE_SOFTW1: pte_special(), set for the zero page
PTE_PFN_SHIFT = 12
PTE_PFN_MASK = ((1 << 52) - 1) & ~((1 << 12) - 1)
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED

PTRS_PER_TABLE = 512
LEVEL_NAMES = {4: "PGD", 3: "PUD", 2: "PMD", 1: "PTE"}
PTE_BIT_NAMES = ((_PAGE_PRESENT, "P"), (_PAGE_RW, "RW"), (_PAGE_USER, "U"),
                 (_PAGE_ACCESSED, "A"), (_PAGE_DIRTY, "D"), (_PAGE_PSE, "PSE"),
                 (_PAGE_PROTNONE, "PROTNONE"),
                 (_PAGE_SPECIAL, "S"))


def mk_pte(pfn: int, writable: bool, *, dirty: bool = False, special: bool = False,
           accessed: bool = True) -> int:
    """mk_pte(): a present user PTE for ``pfn``."""
    pte = (pfn << PTE_PFN_SHIFT) | _PAGE_PRESENT | _PAGE_USER
    if writable:
        pte |= _PAGE_RW
    if dirty:
        pte |= _PAGE_DIRTY
    if special:
        pte |= _PAGE_SPECIAL
    if accessed:
        pte |= _PAGE_ACCESSED
    return pte


def pmd_trans_huge(pmd: int) -> bool:
    return bool(pmd & _PAGE_PSE)


def pmd_subpage_pte(pmd: int, index: int) -> int:
    """The PTE a split of ``pmd`` would write for subpage ``index`` (the same bits)."""
    return (pmd & ~(PTE_PFN_MASK | _PAGE_PSE)) | ((pte_pfn(pmd) + index) << PTE_PFN_SHIFT)


def pte_pfn(pte: int) -> int:
    return (pte & PTE_PFN_MASK) >> PTE_PFN_SHIFT


def pte_present(pte: int) -> bool:
    """pte_present(): true for PROT_NONE PTEs too, as on x86."""
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_write(pte: int) -> bool:
    return bool(pte & _PAGE_RW)


def pte_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_DIRTY)


def pte_special(pte: int) -> bool:
    return bool(pte & _PAGE_SPECIAL)


def pte_wrprotect(pte: int) -> int:
    return pte & ~_PAGE_RW


def pte_mkclean(pte: int) -> int:
    return pte & ~_PAGE_DIRTY


def pte_flags_text(pte: int) -> str:
    if not pte:
        return "none"
    return "|".join(name for bit, name in PTE_BIT_NAMES if pte & bit)


class Table:
    """One page-table page: 512 entries, plus child tables above the last level."""
    __slots__ = ("level", "entries", "children", "page", "used")

    def __init__(self, level: int, page):
        self.level = level
        self.entries = [0] * PTRS_PER_TABLE
        self.children = [None] * PTRS_PER_TABLE if level > 1 else None
        self.page = page            # the frame that holds this table
        self.used = 0               # non-none entries


@dataclass(frozen=True)
class WalkStep:
    """One level of a page walk, as the book's page-table figure draws it."""
    level: str          # "PGD", "PUD", "PMD", "PTE"
    index: int
    entry: int          # raw value; 0 when not present
    table_pfn: int      # the frame of the table that holds this entry

    def __str__(self):
        return (f"{self.level}[{self.index:3d}] @pfn {self.table_pfn:#x} = {self.entry:#018x}"
                f" ({pte_flags_text(self.entry)})")


class PageTables:
    """The page-table tree of one mm (mm->pgd)."""

    def __init__(self, memory, page_shift: int):
        self.memory = memory
        self.fp = memory.machine.fp         # set_pte() tells KSM's shortcuts (fastpath.py)
        self.page_shift = page_shift
        self.pgd = self._alloc_table(4)
        self.leaves: dict[int, Table] = {}
        self.huge: dict[int, int] = {}          # key -> huge PMD entry
        self.deposited: dict[int, Table] = {}   # key -> the page table kept for a split

    # --- allocation ---
    def _alloc_table(self, level: int) -> Table:
        page = self.memory.alloc_page(0, purpose="table")
        page.flags |= PG_table
        return Table(level, page)

    def _free_table(self, table: Table) -> None:
        self.memory.put_page(table.page)

    def index(self, address: int, level: int) -> int:
        return (address >> (self.page_shift + 9 * (level - 1))) & (PTRS_PER_TABLE - 1)

    def address_bits(self) -> int:
        return self.page_shift + 9 * 4

    # --- lookups ---
    def leaf(self, address: int) -> Table | None:
        return self.leaves.get(address >> (self.page_shift + 9))

    def get_pte(self, address: int) -> int:
        t = self.leaves.get(address >> (self.page_shift + 9))
        if t is None:
            if self.huge:
                pmd = self.huge.get(address >> (self.page_shift + 9))
                if pmd:
                    return pmd_subpage_pte(pmd, (address >> self.page_shift) & 511)
            return 0
        return t.entries[(address >> self.page_shift) & 511]

    # --- huge PMDs ---
    def huge_pmd(self, address: int) -> int:
        """The huge PMD entry that maps ``address``, or 0 (none, or a PTE table)."""
        return self.huge.get(address >> (self.page_shift + 9), 0) if self.huge else 0

    def pmd_none(self, address: int) -> bool:
        """pmd_none(): no PTE table and no huge PMD covers ``address``."""
        key = address >> (self.page_shift + 9)
        return key not in self.leaves and key not in self.huge

    def _pmd_table(self, address: int) -> Table:
        """The PMD-level table for ``address``, creating the upper levels."""
        table = self.pgd
        for level in (4, 3):
            i = self.index(address, level)
            child = table.children[i]
            if child is None:
                child = self._alloc_table(level - 1)
                table.children[i] = child
                table.entries[i] = (child.page.pfn << PTE_PFN_SHIFT) | _PAGE_TABLE
                table.used += 1
            table = child
        return table

    def alloc_deposit_table(self) -> Table:
        """pte_alloc_one(): the page table a huge PMD deposits."""
        return self._alloc_table(1)

    def set_pmd(self, address: int, pmd: int, deposit: Table | None = None) -> int:
        """set_pmd_at() of a huge PMD (``pmd`` 0 clears it).  A new huge PMD needs the
        table it deposits; clearing keeps the deposit (withdraw it, or zap frees it)."""
        key = address >> (self.page_shift + 9)
        pmdt = self._pmd_table(address)
        i = self.index(address, 2)
        old = self.huge.get(key, 0)
        if pmdt.children[i] is not None:
            raise AssertionError(f"set_pmd over a PTE table at {address:#x}")
        pmdt.entries[i] = pmd
        pmdt.used += (1 if pmd else 0) - (1 if old else 0)
        if pmd:
            self.huge[key] = pmd
            if deposit is not None:
                self.deposited[key] = deposit
            elif key not in self.deposited:
                raise AssertionError(f"huge PMD at {address:#x} without a deposited table")
        else:
            self.huge.pop(key, None)
        self.fp.pte_changed()
        return old

    def withdraw_as_leaf(self, address: int) -> Table:
        """pgtable_trans_huge_withdraw() + pmd_populate(): the deposited table becomes
        the PTE table of the range (its entries are still all none)."""
        key = address >> (self.page_shift + 9)
        if key in self.huge:
            raise AssertionError("withdraw under a huge PMD: clear it first")
        table = self.deposited.pop(key)
        pmdt = self._pmd_table(address)
        i = self.index(address, 2)
        pmdt.children[i] = table
        pmdt.entries[i] = (table.page.pfn << PTE_PFN_SHIFT) | _PAGE_TABLE
        pmdt.used += 1
        self.leaves[key] = table
        return table

    def free_deposit(self, address: int) -> None:
        """zap_deposited_table(): the huge PMD is gone, so is its spare table."""
        table = self.deposited.pop(address >> (self.page_shift + 9))
        self._free_table(table)

    def present_huge(self, start: int, end: int):
        """Yield (address of the 2 MiB block, huge PMD) for huge PMDs meeting [start, end)."""
        if not self.huge:
            return
        shift = self.page_shift + 9
        for key in sorted(self.huge):
            base = key << shift
            if base < end and base + (1 << shift) > start:
                yield base, self.huge[key]

    def walk(self, address: int) -> list[WalkStep]:
        """The hardware walk: every level's index and entry, stopping at a hole."""
        steps, table = [], self.pgd
        for level in (4, 3, 2, 1):
            i = self.index(address, level)
            entry = table.entries[i]
            steps.append(WalkStep(LEVEL_NAMES[level], i, entry, table.page.pfn))
            if level == 1 or not entry or entry & _PAGE_PSE:
                break
            table = table.children[i]
        return steps

    # --- updates ---
    def set_pte(self, address: int, pte: int) -> int:
        """set_pte_at() without notification: returns the old value."""
        key = address >> (self.page_shift + 9)
        t = self.leaves.get(key)
        if t is None:
            if key in self.huge:
                raise AssertionError(f"set_pte at {address:#x} under a huge PMD: split it first")
            if not pte:
                return 0
            t = self._populate(address)
        i = (address >> self.page_shift) & 511
        old = t.entries[i]
        t.entries[i] = pte
        t.used += (1 if pte else 0) - (1 if old else 0)
        self.fp.pte_changed()
        return old

    def _populate(self, address: int) -> Table:
        """__pte_alloc(): create the missing upper tables and the leaf."""
        table = self._pmd_table(address)
        i = self.index(address, 2)
        leaf = table.children[i]
        if leaf is None:
            leaf = self._alloc_table(1)
            table.children[i] = leaf
            table.entries[i] = (leaf.page.pfn << PTE_PFN_SHIFT) | _PAGE_TABLE
            table.used += 1
        self.leaves[address >> (self.page_shift + 9)] = leaf
        return leaf

    def present(self, start: int, end: int):
        """Yield (address, pte) for every non-none PTE in [start, end), in order."""
        shift = self.page_shift
        span = 1 << (shift + 9)
        key = start >> (shift + 9)
        last = (end - 1) >> (shift + 9)
        while key <= last:
            t = self.leaves.get(key)
            if t is not None and t.used:
                base = key << (shift + 9)
                lo = max(start, base)
                hi = min(end, base + span)
                for i in range((lo >> shift) & 511, ((hi - 1) >> shift & 511) + 1):
                    pte = t.entries[i]
                    if pte:
                        yield base + (i << shift), pte
            key += 1

    def tables_needed(self, addresses, empty: bool = False) -> int:
        """Table frames that mapping every address would allocate (``empty``: in a new
        tree that has only its PGD).  Lets callers fail with ENOMEM before they start."""
        missing = set()
        top = self.page_shift + 9
        for a in addresses:
            if not empty and a >> top in self.leaves:
                continue
            table = None if empty else self.pgd
            for level in (4, 3, 2):
                child = None if table is None else table.children[self.index(a, level)]
                if child is None:
                    missing.add((level, a >> (self.page_shift + 9 * (level - 1))))
                table = child
        return len(missing)

    def free_empty_tables(self, keep) -> None:
        """free_pgtables(): release leaf tables that map nothing and cover no VMA.

        ``keep(start, end)`` says whether a VMA still overlaps a table's span.
        """
        shift = self.page_shift + 9
        for key in sorted(self.leaves):
            t = self.leaves[key]
            start = key << shift
            if t.used == 0 and not keep(start, start + (1 << shift)):
                self._unlink_leaf(start)

    def free_empty_leaf(self, address: int) -> None:
        """try_get_and_clear_pmd() + free_pte() (mm/pt_reclaim.c): drop the PTE table
        at ``address`` if it maps nothing; the upper levels stay."""
        key = address >> (self.page_shift + 9)
        t = self.leaves.get(key)
        if t is None or t.used:
            return
        del self.leaves[key]
        pmdt = self._pmd_table(address)
        i = self.index(address, 2)
        pmdt.children[i] = None
        pmdt.entries[i] = 0
        pmdt.used -= 1
        self._free_table(t)
        self.fp.pte_changed()

    def _unlink_leaf(self, address: int) -> None:
        path = [self.pgd]
        for level in (4, 3, 2):
            path.append(path[-1].children[self.index(address, level)])
        del self.leaves[address >> (self.page_shift + 9)]
        # free upward while tables become empty
        for level, (parent, child) in zip((2, 3, 4), zip(reversed(path[:-1]), reversed(path[1:]))):
            if child.used:
                break
            i = self.index(address, level)
            parent.children[i] = None
            parent.entries[i] = 0
            parent.used -= 1
            self._free_table(child)

    def free_all(self) -> None:
        """Tear the whole tree down (exit_mmap after the PTEs were zapped)."""
        def rec(t: Table):
            if t.children is not None:
                for c in t.children:
                    if c is not None:
                        rec(c)
            self._free_table(t)
        rec(self.pgd)
        for t in self.deposited.values():
            self._free_table(t)
        self.deposited.clear()
        self.huge.clear()
        self.leaves.clear()
        self.pgd = None

    def nr_tables(self) -> int:
        def rec(t):
            return 1 + sum(rec(c) for c in (t.children or ()) if c is not None)
        return (rec(self.pgd) + len(self.deposited)) if self.pgd else 0
