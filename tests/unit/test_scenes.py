"""The book's scenes: named processes and regions on top of the public Machine API."""
import pytest

from ksmbook import MADV_MERGEABLE
from ksmbook.labs.scenes import Scene, forked_pages, identical_pages


def test_identical_pages_builds_mergeable_regions_and_starts_ksmd():
    s = identical_pages(3, 0x2A, unique=2, procs=2)
    assert s.page_size == 256 and s.stat("run") == 1
    for name in ("vm1", "vm2"):
        assert s.read(name, 0, 4) == b"****" and s.read(name, 2, 1) == b"*"
        assert s.read(name, 3, 1) != s.read(name, 4, 1)
        assert "ksm_mergeable: yes" in s.machine.procfs.read(f"/proc/{s.procs[name].pid}/ksm_stat")
    assert s.read("vm1", 3, 1) != s.read("vm2", 3, 1)        # unique across processes too


def test_knobs_are_written_before_anything_is_mapped():
    s = identical_pages(2, knobs={"max_page_sharing": 2, "use_zero_pages": True}, run=0)
    assert s.stat("max_page_sharing") == 2 and s.stat("use_zero_pages") == 1
    assert s.stat("run") == 0


def test_labels_name_pages_by_process_and_region():
    s = Scene()
    s.spawn("a")
    s.mmap("a", "heap", 2)
    assert s.label(s.procs["a"].pid, s.addr("a", 1)) == "a[1]"
    s.mmap("a", "stack", 2)
    assert s.label(s.procs["a"].pid, s.addr("a", 1, region="heap")) == "a.heap[1]"
    assert s.label(s.procs["a"].pid, 0x1000) is None
    assert s.label(99999, s.addr("a", 0, region="heap")) is None
    with pytest.raises(KeyError):
        s.addr("a", 0)                        # two regions: the name is required


def test_fork_gives_the_child_the_parents_region_names():
    s = forked_pages(3)
    child = s.procs["child"]
    assert s.addr("child", 2) == s.addr("parent", 2)
    assert s.label(child.pid, s.addr("child", 2)) == "child[2]"
    assert s.read("child", 1, 2) == b"BB"


def test_madvise_defaults_to_the_whole_region():
    s = Scene(page_size=64)
    s.spawn("p")
    s.mmap("p", "r", 4)
    s.fill("p", 0, 4, 1)
    s.madvise("p", MADV_MERGEABLE, page=1, count=2)
    vmas = s.procs["p"].mm.vmas
    assert [bool(v.flags & v.VM_MERGEABLE) for v in vmas] == [False, True, False]
