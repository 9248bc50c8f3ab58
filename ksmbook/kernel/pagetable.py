"""x86-64 four-level page tables: PGD -> PUD -> PMD -> PTE, 9 index bits per level.

PTEs are ints in the hardware layout (pfn in bits 12..51, flag bits below), so a raw
value printed by the book reads like one from a kernel dump.  Tables are allocated on
demand from physical memory and freed when munmap or exit leaves them empty.

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
_PAGE_PROTNONE = 1 << 8     # _PAGE_GLOBAL reused: present to Linux, not to the MMU
_PAGE_SPECIAL = 1 << 9        # _PAGE_SOFTW1: pte_special(), set for the zero page
PTE_PFN_SHIFT = 12
PTE_PFN_MASK = ((1 << 52) - 1) & ~((1 << 12) - 1)
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED

PTRS_PER_TABLE = 512
LEVEL_NAMES = {4: "PGD", 3: "PUD", 2: "PMD", 1: "PTE"}
PTE_BIT_NAMES = ((_PAGE_PRESENT, "P"), (_PAGE_RW, "RW"), (_PAGE_USER, "U"),
                 (_PAGE_ACCESSED, "A"), (_PAGE_DIRTY, "D"), (_PAGE_PROTNONE, "PROTNONE"),
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
            return 0
        return t.entries[(address >> self.page_shift) & 511]

    def walk(self, address: int) -> list[WalkStep]:
        """The hardware walk: every level's index and entry, stopping at a hole."""
        steps, table = [], self.pgd
        for level in (4, 3, 2, 1):
            i = self.index(address, level)
            entry = table.entries[i]
            steps.append(WalkStep(LEVEL_NAMES[level], i, entry, table.page.pfn))
            if level == 1 or not entry:
                break
            table = table.children[i]
        return steps

    # --- updates ---
    def set_pte(self, address: int, pte: int) -> int:
        """set_pte_at() without notification: returns the old value."""
        key = address >> (self.page_shift + 9)
        t = self.leaves.get(key)
        if t is None:
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
        table = self.pgd
        for level in (4, 3, 2):
            i = self.index(address, level)
            child = table.children[i]
            if child is None:
                child = self._alloc_table(level - 1)
                table.children[i] = child
                table.entries[i] = (child.page.pfn << PTE_PFN_SHIFT) | _PAGE_TABLE
                table.used += 1
            table = child
        self.leaves[address >> (self.page_shift + 9)] = table
        return table

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
        self.leaves.clear()
        self.pgd = None

    def nr_tables(self) -> int:
        def rec(t):
            return 1 + sum(rec(c) for c in (t.children or ()) if c is not None)
        return rec(self.pgd) if self.pgd else 0
