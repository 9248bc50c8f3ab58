"""x86-64 four-level page tables: PTE layout, walks, on-demand allocation and freeing."""
import pytest

from ksmbook import Machine
from ksmbook.kernel.pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE,
                                      _PAGE_RW, _PAGE_SPECIAL, _PAGE_USER, PageTables, WalkStep,
                                      mk_pte, pte_dirty, pte_flags_text, pte_pfn, pte_present,
                                      pte_special, pte_write, pte_wrprotect)

from machine_checks import check_page_counts


def test_pte_bits_are_the_hardware_layout():
    # arch/x86/include/asm/pgtable_types.h: P=bit0, RW=bit1, USER=bit2, ACCESSED=bit5,
    # DIRTY=bit6; the pfn sits from bit 12 up
    assert (_PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY) == \
        (0x1, 0x2, 0x4, 0x20, 0x40)
    pte = mk_pte(5, True, dirty=True)
    assert pte == (5 << 12) | 0x1 | 0x2 | 0x4 | 0x20 | 0x40 == 0x5067
    assert pte_pfn(pte) == 5 and pte_write(pte) and pte_dirty(pte) and pte_present(pte)
    ro = pte_wrprotect(pte)
    assert ro == 0x5065 and not pte_write(ro) and pte_pfn(ro) == 5
    assert mk_pte(7, False, accessed=False) == (7 << 12) | 0x5
    zero = mk_pte(0, False, special=True)
    assert pte_special(zero) and pte_pfn(zero) == 0 and zero & _PAGE_SPECIAL
    big = mk_pte((1 << 40) - 1, False)
    assert pte_pfn(big) == (1 << 40) - 1, "pfns up to bit 51 survive the round trip"
    assert pte_flags_text(0x5067) == "P|RW|U|A|D" and pte_flags_text(0) == "none"


def test_protnone_ptes_count_as_present_to_linux():
    protnone = (9 << 12) | _PAGE_PROTNONE | _PAGE_USER
    assert pte_present(protnone), "pte_present() is true for PROT_NONE on x86"
    assert not pte_present(9 << 12)


def expected_indices(addr, page_shift):
    """Each level takes 9 bits above the page offset: PTE, PMD, PUD, PGD from the bottom."""
    return [(addr >> (page_shift + 9 * lvl)) & 511 for lvl in (3, 2, 1, 0)]


@pytest.mark.parametrize("page_size", [4096, 256, 64])
def test_walk_reports_every_level_index_and_entry(page_size):
    m = Machine(page_size=page_size)
    p = m.spawn("p")
    a = p.mmap(page_size * 4)
    target = a + 2 * page_size
    p.write(target + 1, b"hello")
    steps = p.mm.pagetables.walk(target + 1)
    assert [s.level for s in steps] == ["PGD", "PUD", "PMD", "PTE"]
    assert [s.index for s in steps] == expected_indices(target, m.page_shift)
    assert all(isinstance(s, WalkStep) for s in steps)
    # each upper entry points at the table holding the next level: P|RW|U|A
    assert steps[0].table_pfn == p.mm.pagetables.pgd.page.pfn
    for upper, lower in zip(steps, steps[1:]):
        assert upper.entry & 0xFFF == _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
        assert pte_pfn(upper.entry) == lower.table_pfn
        assert m.memory.pages[lower.table_pfn].data is None, "table frames hold no user data"
    leaf = steps[-1].entry
    assert leaf == p.mm.pagetables.get_pte(target)
    page = m.memory.pages[pte_pfn(leaf)]
    assert bytes(page.data[1:6]) == b"hello"
    assert pte_write(leaf) and pte_dirty(leaf) and leaf & _PAGE_ACCESSED and leaf & _PAGE_USER
    assert "PTE[" in str(steps[-1]) and "P|RW|U|A|D" in str(steps[-1])


def test_walk_stops_at_the_first_hole():
    m = Machine()
    p = m.spawn("p")
    a = p.mmap(4096)
    steps = p.mm.pagetables.walk(a)
    assert len(steps) == 1 and steps[0].level == "PGD" and steps[0].entry == 0


def test_address_space_has_48_bits_with_4k_pages():
    m = Machine()
    p = m.spawn("p")
    assert p.mm.pagetables.address_bits() == 48
    assert m.task_size == 1 << 47, "the user half of a 48-bit space"
    assert Machine(page_size=256).spawn("q").mm.pagetables.address_bits() == 8 + 36


def nr_tables(p):
    return p.mm.pagetables.nr_tables()


def test_tables_are_allocated_on_demand():
    m = Machine()
    pt = PageTables(m.memory, 12)
    assert pt.nr_tables() == 1 and len(m.memory.pages) == 1, "just the PGD"
    pt.set_pte(0, mk_pte(100, True))
    assert pt.nr_tables() == 4, "PGD + PUD + PMD + PTE table for the first entry"
    pt.set_pte(4096, mk_pte(101, True))
    assert pt.nr_tables() == 4, "same leaf table"
    pt.set_pte(1 << 21, mk_pte(102, True))
    assert pt.nr_tables() == 5, "next 2 MiB: one more PTE table under the same PMD"
    pt.set_pte(1 << 30, mk_pte(103, True))
    assert pt.nr_tables() == 7, "next 1 GiB: a PMD table and a PTE table"
    pt.set_pte(1 << 39, mk_pte(104, True))
    assert pt.nr_tables() == 10, "next 512 GiB: PUD, PMD and PTE tables"
    assert len(m.memory.pages) == 10, "every table is a frame"
    assert [a for a, _ in pt.present(0, 1 << 40)] == [0, 4096, 1 << 21, 1 << 30, 1 << 39]
    # clearing a PTE in a missing table allocates nothing
    pt.set_pte(5 << 39, 0)
    assert pt.nr_tables() == 10
    for a in (0, 4096, 1 << 21, 1 << 30, 1 << 39):
        pt.set_pte(a, 0)
    pt.free_empty_tables(lambda s, e: False)
    assert pt.nr_tables() == 1 and len(m.memory.pages) == 1, "back to the bare PGD"
    pt.free_all()
    assert len(m.memory.pages) == 0


def test_empty_tables_covered_by_a_vma_are_kept():
    m = Machine()
    pt = PageTables(m.memory, 12)
    pt.set_pte(0, mk_pte(100, True))
    pt.set_pte(0, 0)
    pt.free_empty_tables(lambda s, e: True)
    assert pt.nr_tables() == 4


def test_munmap_frees_tables_and_exit_frees_the_pgd():
    m = Machine()
    p = m.spawn("p")
    base = len(m.memory.pages)
    assert base == 1 and nr_tables(p) == 1
    a = p.mmap(4096 * 2)
    assert nr_tables(p) == 1, "mmap alone allocates no table"
    p.write(a, b"x" * 8192)
    # 3 upper tables + 1 leaf (two adjacent pages share a leaf unless they straddle 2 MiB)
    leaves = len({x >> 21 for x in (a, a + 4096)})
    assert nr_tables(p) == 3 + leaves
    assert len(m.memory.pages) == 1 + (2 + leaves) + 2
    check_page_counts(m)
    p.munmap(a, 8192)
    assert nr_tables(p) == 1 and len(m.memory.pages) == 1
    check_page_counts(m)
    p.exit()
    assert len(m.memory.pages) == 0


def test_read_fault_maps_the_zero_page_but_allocates_tables():
    m = Machine()
    p = m.spawn("p")
    a = p.mmap(4096)
    assert p.read(a, 4) == bytes(4)
    pte = p.mm.pagetables.get_pte(a)
    assert pte_pfn(pte) == 0 and not pte_write(pte) and pte_special(pte)
    assert nr_tables(p) == 4 and len(m.memory.pages) == 4, "tables only, no data frame"


def test_leaves_index_matches_the_tree():
    m = Machine(page_size=256)
    p = m.spawn("p")
    a = p.mmap(256 * 600)            # 600 pages of 256 B straddle at least one leaf table
    for i in range(0, 600, 7):
        p.write(a + i * 256, bytes([i % 251 + 1]))
    pt = p.mm.pagetables
    for i in range(600):
        addr = a + i * 256
        walked = pt.walk(addr)
        entry = walked[-1].entry if len(walked) == 4 else 0
        assert pt.get_pte(addr) == entry
