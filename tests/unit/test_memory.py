"""Physical memory: frames, their counts and flags, pfn reuse, NUMA nodes, page sizes."""
import errno

import pytest

from ksmbook import Machine
from ksmbook.kernel.events import PageAlloc, PageFree
from ksmbook.kernel.memory import NODE_PFN_SPAN, PG_anon, PG_ksm, PG_zero, ZERO_PFN

from machine_checks import fingerprint


@pytest.mark.parametrize("size", [64, 128, 256, 512, 1024, 4096, 16384, 65536, 1 << 21])
def test_any_power_of_two_from_64_is_a_page_size(size):
    m = Machine(page_size=size)
    assert m.page_size == size
    assert 1 << m.page_shift == size
    p = m.spawn("p")
    a = p.mmap(size * 3)
    assert a % size == 0
    p.write(a + size - 1, b"xy")            # straddles the first page boundary
    assert p.read(a + size - 1, 2) == b"xy"
    assert len(m.memory.zero_page.data) == size


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 96, 100, 4095, 4097, 3 * 4096, -4096])
def test_other_page_sizes_are_refused(size):
    with pytest.raises(ValueError, match="power of two"):
        Machine(page_size=size)


@pytest.mark.parametrize("size", [4096.0, "4096", None, True])
def test_page_sizes_of_the_wrong_type_are_a_type_error(size):
    with pytest.raises(TypeError, match="page_size must be an int"):
        Machine(page_size=size)


def test_default_machine_is_6_18_with_4k_pages():
    m = Machine()
    assert m.page_size == 4096 and m.kernel == "6.18" and m.numa_nodes == 1


def test_zero_page_is_pfn_0_reserved_and_never_freed():
    m = Machine(page_size=256)
    zp = m.memory.zero_page
    assert zp.pfn == ZERO_PFN == 0
    assert zp.flags == PG_zero and zp.is_zero and not zp.is_anon and not zp.is_ksm
    assert bytes(zp.data) == bytes(256)
    m.memory.put_page(zp)
    m.memory.put_page(zp)
    assert zp.refcount == 1, "put_page on the zero page is a no-op (it is reserved)"
    assert m.memory.pfn_to_page(0) is zp
    assert 0 not in m.memory.pages


def test_a_new_frame_is_zeroed_with_one_reference():
    m = Machine(page_size=128)
    page = m.memory.alloc_page()
    assert page.pfn == 1, "pfn 0 is the zero page, so the first frame is pfn 1"
    assert page.data == bytearray(128)
    assert (page.refcount, page.mapcount, page.flags, page.nid) == (1, 0, 0, 0)
    assert m.memory.pages[1] is page


def test_pfns_are_reused_most_recently_freed_first():
    m = Machine(page_size=64)
    mem = m.memory
    a, b, c = (mem.alloc_page() for _ in range(3))
    assert [a.pfn, b.pfn, c.pfn] == [1, 2, 3]
    mem.put_page(b)
    assert mem.alloc_page().pfn == 2, "a freed pfn comes back before new ones"
    mem.put_page(a)
    mem.put_page(c)
    # a per-CPU free list is LIFO: c (freed last) first, then a, then fresh pfns
    assert [mem.alloc_page().pfn for _ in range(3)] == [3, 1, 4]


def test_a_reused_frame_starts_clean():
    m = Machine(page_size=64)
    mem = m.memory
    page = mem.alloc_page()
    mem.write_page(page, 0, b"\xff" * 64)
    page.flags |= PG_anon | PG_ksm
    page.mapping = object()
    mem.put_page(page)
    again = mem.alloc_page()
    assert again.pfn == page.pfn
    assert again is not page
    assert again.data == bytearray(64) and again.flags == 0 and again.mapping is None
    assert page.flags == 0 and page.mapping is None, \
        "a freed page drops its KSM link (stable nodes then read as stale)"


def test_pages_filled_alike_share_one_bytes_until_written():
    """25,600 pages filled with one byte must not cost 100 MiB (issue 8: a chapter's
    kernel under 200 MB): whole-page writes of equal bytes share one immutable
    object, and a later write gives only that frame bytes of its own."""
    m = Machine(page_size=64)
    mem = m.memory
    fresh = [mem.alloc_page() for _ in range(3)]
    assert fresh[0].data is fresh[1].data, "new frames share the zero bytes"
    pages = [mem.alloc_page() for _ in range(4)]
    for page in pages:
        mem.write_page(page, 0, bytes([0x2A]) * 64)      # a memset() fill, page by page
    assert all(p.data is pages[0].data for p in pages), "one fill, one bytes object"
    mem.write_page(pages[1], 5, b"\x01\x02")
    assert pages[1].data == b"*" * 5 + b"\x01\x02" + b"*" * 57
    assert all(p.data == b"*" * 64 for p in pages if p is not pages[1]), \
        "a partial write changes only the frame written"
    mem.write_page(fresh[0], 0, b"\x07")
    assert fresh[0].data == b"\x07" + bytes(63) and fresh[1].data == bytes(64)
    assert mem.zero_page.data == bytes(64)


def test_copy_page_shares_until_either_side_is_written():
    m = Machine(page_size=64)
    mem = m.memory
    src, dst = mem.alloc_page(), mem.alloc_page()
    mem.write_page(src, 0, b"ab" * 32)
    mem.copy_page(dst, src)
    assert dst.data == src.data
    mem.write_page(dst, 0, b"Z")
    assert (src.data[:2], dst.data[:2]) == (b"ab", b"Zb"), "copy-on-write of the bytes"
    mem.write_page(src, 1, b"Q")                 # src now has a bytearray of its own
    other = mem.alloc_page()
    mem.copy_page(other, src)
    mem.write_page(src, 0, b"X")
    assert other.data[:2] == b"aQ" and src.data[:2] == b"XQ"


def test_put_page_frees_only_at_refcount_zero_and_reports_events():
    m = Machine(page_size=64)
    mem = m.memory
    with m.events.capture() as events:
        page = mem.alloc_page()
        page.refcount += 1
        mem.put_page(page)
        assert page.pfn in mem.pages
        mem.put_page(page)
        assert page.pfn not in mem.pages
    assert [type(e) for e in events] == [PageAlloc, PageFree]
    assert events[0].pfn == events[1].pfn == page.pfn
    with pytest.raises(AssertionError, match="underflow"):
        mem.put_page(page)              # one put too many


def test_freeing_a_mapped_page_is_a_kernel_bug():
    m = Machine(page_size=64)
    page = m.memory.alloc_page()
    page.mapcount = 1
    with pytest.raises(AssertionError, match="mapped"):
        m.memory.put_page(page)


def test_numa_nodes_have_their_own_pfn_ranges():
    m = Machine(page_size=64, numa_nodes=3)
    mem = m.memory
    p0 = mem.alloc_page(0)
    p1 = mem.alloc_page(1)
    p2 = mem.alloc_page(2)
    # node n owns pfns [n * NODE_PFN_SPAN, (n+1) * NODE_PFN_SPAN); node 0 skips pfn 0
    assert (p0.pfn, p1.pfn, p2.pfn) == (1, NODE_PFN_SPAN, 2 * NODE_PFN_SPAN)
    assert [p.nid for p in (p0, p1, p2)] == [0, 1, 2]
    assert [mem.pfn_to_nid(p.pfn) for p in (p0, p1, p2)] == [0, 1, 2]
    mem.put_page(p1)
    assert mem.alloc_page(1).pfn == NODE_PFN_SPAN
    assert mem.alloc_page(0).pfn == 2, "freeing on node 1 does not feed node 0"
    with pytest.raises(ValueError):
        mem.alloc_page(3)


def test_processes_allocate_from_their_node():
    m = Machine(page_size=64, numa_nodes=2)
    p = m.spawn("p", node=1)
    a = p.mmap(64)
    p.write(a, b"x")
    pte = p.mm.pagetables.get_pte(a)
    data_pfn = pte >> 12
    assert m.memory.pages[data_pfn].nid == 1
    # an explicit node for the mapping wins over the process's node
    b = p.mmap(64, node=0)
    p.write(b, b"y")
    assert m.memory.pages[p.mm.pagetables.get_pte(b) >> 12].nid == 0
    with pytest.raises(ValueError):
        m.spawn("q", node=2)


def test_out_of_memory_is_enomem_and_changes_nothing():
    # node 0's first frame is the zero page, so 3 frames leave room for two more
    m = Machine(page_size=64, pages_per_node=3)
    mem = m.memory
    pages = [mem.alloc_page() for _ in range(2)]
    assert [p.pfn for p in pages] == [1, 2]
    before = fingerprint(m)
    with pytest.raises(OSError) as e:
        mem.alloc_page()
    assert e.value.errno == errno.ENOMEM
    assert fingerprint(m) == before
    mem.put_page(pages[0])
    assert mem.alloc_page().pfn == 1, "a freed frame can be allocated again at the limit"


def test_page_repr_and_flag_names():
    m = Machine(page_size=64)
    page = m.memory.alloc_page()
    page.flags = PG_anon | PG_ksm
    assert page.flag_names() == ["anon", "ksm"]
    assert "ref=1" in repr(page) and "anon|ksm" in repr(page)
    assert m.memory.nr_allocated() == 1 and m.memory.nr_allocated(PG_ksm) == 1
