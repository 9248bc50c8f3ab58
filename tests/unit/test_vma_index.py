"""find_vma()'s bisection index (VmaList.starts) stays in step with the VMA list."""
import random

from ksmbook import MADV_MERGEABLE, MADV_UNMERGEABLE, PROT_READ, Machine
from ksmbook.kernel.mm import VmaList

PS = 256


def _brute_find(mm, address):
    for v in mm.vmas:
        if v.start <= address < v.end:
            return v
    return None


def _check(m):
    for p in m.live_processes():
        vmas = p.mm.vmas
        assert isinstance(vmas, VmaList)
        assert vmas.starts == [v.start for v in vmas]
        assert vmas.starts == sorted(vmas.starts)


def test_starts_follow_mmap_split_unmap_fork_and_exit():
    rng = random.Random(3)
    m = Machine(page_size=PS)
    procs = [m.spawn("a")]
    regions = []
    for _ in range(200):
        p = rng.choice([q for q in procs if q.alive])
        r = rng.random()
        if r < 0.3 or not regions:
            n = rng.randrange(1, 9)
            regions.append((p, p.mmap(n * PS), n))
        else:
            q, a, n = rng.choice(regions)
            if not q.alive:
                continue
            off, k = rng.randrange(n), rng.randrange(1, 4)
            k = min(k, n - off)
            try:
                if r < 0.5:
                    q.mprotect(a + off * PS, k * PS, PROT_READ)
                elif r < 0.65:
                    q.madvise(a + off * PS, k * PS, MADV_MERGEABLE)
                elif r < 0.75:
                    q.madvise(a + off * PS, k * PS, MADV_UNMERGEABLE)
                elif r < 0.9:
                    q.munmap(a + off * PS, k * PS)
                elif r < 0.95:
                    procs.append(q.fork())
                elif sum(x.alive for x in procs) > 1:
                    q.exit()
            except OSError:
                pass
        _check(m)
        for p in (q for q in procs if q.alive):
            for addr in {v.start for v in p.mm.vmas} | {v.end for v in p.mm.vmas} | \
                    {v.end - PS for v in p.mm.vmas} | {v.start - PS for v in p.mm.vmas}:
                assert p.mm.find_vma(addr) is _brute_find(p.mm, addr), hex(addr)


def test_a_start_changed_in_place_is_noticed():
    m = Machine(page_size=PS)
    p = m.spawn("a")
    a = p.mmap(4 * PS)
    vma = p.mm.find_vma(a)
    vma.start = a + PS                       # not what the kernel code does, but survive it
    assert p.mm.find_vma(a + PS) is vma
    assert p.mm.vmas.starts == [a + PS]
