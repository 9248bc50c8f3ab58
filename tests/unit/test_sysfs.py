"""/sys/kernel/mm/ksm and /proc/<pid>/ksm_*: files, defaults, formats, store errors.

The list of files and the tunables' defaults are also compared with the real
/sys/kernel/mm/ksm of the machine running the tests, read-only, when it has one.
"""
import errno
import os
import time
from pathlib import Path

import pytest

from ksmbook import MADV_MERGEABLE, PR_SET_MEMORY_MERGE, Machine, parse_ksm_stat

from machine_checks import fingerprint

KSM = "/sys/kernel/mm/ksm"
REAL = Path(KSM)

# mm/ksm.c of 6.18: ksm_attrs[] (merge_across_nodes only with CONFIG_NUMA, which the
# distribution kernels and this project's machines have)
FILES_6_18 = {
    "sleep_millisecs", "pages_to_scan", "run", "pages_scanned", "pages_shared",
    "pages_sharing", "pages_unshared", "pages_volatile", "pages_skipped", "ksm_zero_pages",
    "full_scans", "merge_across_nodes", "max_page_sharing", "stable_node_chains",
    "stable_node_dups", "stable_node_chains_prune_millisecs", "use_zero_pages",
    "general_profit", "smart_scan", "advisor_mode", "advisor_max_cpu",
    "advisor_min_pages_to_scan", "advisor_max_pages_to_scan", "advisor_target_scan_time",
}
# the tunables' boot values: the static initialisers of mm/ksm.c and ksm_init()
DEFAULTS_6_18 = {
    "run": "0", "pages_to_scan": "100", "sleep_millisecs": "20", "merge_across_nodes": "1",
    "use_zero_pages": "0", "max_page_sharing": "256",
    "stable_node_chains_prune_millisecs": "2000", "smart_scan": "1",
    "advisor_mode": "[none] scan-time", "advisor_max_cpu": "70",
    "advisor_min_pages_to_scan": "500", "advisor_max_pages_to_scan": "30000",
    "advisor_target_scan_time": "200",
}
COUNTERS = sorted(FILES_6_18 - set(DEFAULTS_6_18))


def test_every_6_18_file_is_there_with_its_default():
    m = Machine()
    assert set(m.sysfs.listdir()) == FILES_6_18
    assert m.sysfs.listdir(KSM + "/") == sorted(FILES_6_18)
    for name, value in DEFAULTS_6_18.items():
        assert m.sysfs.read(f"{KSM}/{name}") == value + "\n", name
    for name in COUNTERS:
        assert m.sysfs.read(f"{KSM}/{name}") == "0\n", name
    assert m.sysfs.snapshot() == {**DEFAULTS_6_18, **{c: "0" for c in COUNTERS}}
    assert m.sysfs.read_int(f"{KSM}/max_page_sharing") == 256


real_ksm = pytest.mark.skipif(not REAL.is_dir(),
                              reason=f"{KSM} does not exist on this machine (no CONFIG_KSM)")


@real_ksm
def test_the_files_are_those_of_the_running_kernel():
    real = set(os.listdir(KSM))
    sim = set(Machine().sysfs.listdir())
    assert sim == real, f"only in the simulator: {sim - real}; only in Linux: {real - sim}"


@real_ksm
def test_tunable_defaults_match_the_running_kernel():
    """Read-only.  If this fails, check first that nothing on the machine changed a knob
    (the kernel-oracle tests restore them; `run` must be 0 when idle).  A kernel-oracle
    run in another process moves the knobs for a moment: a mismatch is re-read a few
    times before it counts."""
    sim = {name: Machine().sysfs.read(f"{KSM}/{name}") for name in DEFAULTS_6_18}
    for attempt in range(5):
        real = {name: (REAL / name).read_text() for name in DEFAULTS_6_18}
        if real["run"] != "0\n":
            pytest.skip(f"KSM is in use on this machine (run={real['run'].strip()}): the "
                        f"boot defaults cannot be compared now")
        if real == sim:
            break
        time.sleep(1)
    diff = {k: (sim[k], real[k]) for k in sim if sim[k] != real[k]}
    assert not diff, f"(simulator, kernel) differ: {diff}"


@real_ksm
def test_counters_print_like_the_running_kernel():
    # the counters may be nonzero on a busy machine; their format is one decimal + "\n"
    sim = Machine().sysfs
    for name in COUNTERS:
        real = (REAL / name).read_text()
        assert real.endswith("\n") and real[:-1].lstrip("-").isdigit(), (name, real)
        assert sim.read(f"{KSM}/{name}") == "0\n"


@real_ksm
def test_read_only_files_refuse_writes_like_the_running_kernel():
    # kernfs refuses to open a file without a store op for writing: EACCES, even for root
    with pytest.raises(OSError) as real:
        fd = os.open(REAL / "full_scans", os.O_WRONLY)
        os.close(fd)
    m = Machine()
    with pytest.raises(OSError) as sim:
        m.sysfs.write(f"{KSM}/full_scans", "1")
    assert sim.value.errno == real.value.errno == errno.EACCES


# Store errors.  Each row was checked against this machine's 6.18 kernel by writing the
# same text to the real file (all of them fail there too and change nothing).  The
# errno comes from the store functions of mm/ksm.c: most turn any kstrto*() failure into
# -EINVAL, but merge_across_nodes and max_page_sharing return kstrtoul/kstrtoint's own
# error, so an overflowing number is ERANGE there.
BAD_WRITES = [
    ("run", "3", errno.EINVAL), ("run", "-1", errno.EINVAL), ("run", "abc", errno.EINVAL),
    ("run", "1 ", errno.EINVAL), ("run", " 1", errno.EINVAL), ("run", "0x1", errno.EINVAL),
    ("run", "99999999999", errno.EINVAL),
    ("pages_to_scan", "-1", errno.EINVAL), ("pages_to_scan", "1.5", errno.EINVAL),
    ("pages_to_scan", "99999999999", errno.EINVAL), ("pages_to_scan", "0x10", errno.EINVAL),
    ("sleep_millisecs", "abc", errno.EINVAL), ("sleep_millisecs", "4294967296", errno.EINVAL),
    ("sleep_millisecs", "99999999999", errno.EINVAL), ("run", "\n", errno.EINVAL),
    ("merge_across_nodes", "2", errno.EINVAL), ("merge_across_nodes", "-1", errno.EINVAL),
    ("merge_across_nodes", "99999999999", errno.EINVAL),
    ("merge_across_nodes", "99999999999999999999999", errno.ERANGE),
    ("use_zero_pages", "2", errno.EINVAL), ("use_zero_pages", "+5", errno.EINVAL),
    ("use_zero_pages", " 1", errno.EINVAL), ("use_zero_pages", "abc", errno.EINVAL),
    ("max_page_sharing", "1", errno.EINVAL), ("max_page_sharing", "-1", errno.EINVAL),
    ("max_page_sharing", "abc", errno.EINVAL), ("max_page_sharing", "0x10", errno.EINVAL),
    ("max_page_sharing", "99999999999", errno.ERANGE),
    ("max_page_sharing", "99999999999999999999999", errno.ERANGE),
    ("stable_node_chains_prune_millisecs", "-1", errno.EINVAL),
    ("stable_node_chains_prune_millisecs", "99999999999", errno.EINVAL),
    ("smart_scan", "3", errno.EINVAL), ("smart_scan", "x", errno.EINVAL),
    ("advisor_mode", "scan_time", errno.EINVAL), ("advisor_mode", "1", errno.EINVAL),
    ("advisor_mode", " none", errno.EINVAL),
    ("advisor_max_cpu", "-1", errno.EINVAL),
    ("advisor_max_cpu", "99999999999999999999999", errno.EINVAL),
    ("advisor_min_pages_to_scan", "x", errno.EINVAL),
    ("advisor_max_pages_to_scan", "1.5", errno.EINVAL),
    ("advisor_target_scan_time", "0", errno.EINVAL),
    ("advisor_target_scan_time", "-1", errno.EINVAL),
]


@pytest.mark.parametrize("name,text,code", BAD_WRITES)
def test_bad_writes_fail_with_the_kernel_errno_and_change_nothing(name, text, code):
    m = Machine()
    before = fingerprint(m)
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{KSM}/{name}", text)
    assert e.value.errno == code
    assert fingerprint(m) == before


GOOD_WRITES = [   # text written -> what the file shows afterwards (checked on 6.18)
    ("pages_to_scan", "+5", "5"), ("pages_to_scan", "7\n", "7"),
    ("sleep_millisecs", "60000", "60000"), ("sleep_millisecs", "600000", "600000"),
    ("sleep_millisecs", "", "20"), ("use_zero_pages", "1 ", "1"),
    ("use_zero_pages", "0x10", "0"), ("use_zero_pages", "1.5", "1"),
    ("use_zero_pages", "on", "1"), ("use_zero_pages", "N", "0"), ("smart_scan", "off", "0"),
    ("smart_scan", "yes", "1"), ("max_page_sharing", "+5", "5"),
    ("stable_node_chains_prune_millisecs", "0", "0"),
    ("advisor_min_pages_to_scan", "99999999999", "99999999999"),
    # advisor_max_cpu is an unsigned int filled from kstrtoul(): the value is truncated
    ("advisor_max_cpu", "99999999999", str(99999999999 % (1 << 32))),
    ("advisor_mode", "scan-time\n", "none [scan-time]"),
]


@pytest.mark.parametrize("name,text,shown", GOOD_WRITES)
def test_good_writes_show_what_the_kernel_shows(name, text, shown):
    m = Machine()
    m.sysfs.write(f"{KSM}/{name}", text)
    assert m.sysfs.read(f"{KSM}/{name}") == shown + "\n"


def test_unknown_and_read_only_paths():
    m = Machine()
    for path in (f"{KSM}/nope", "/proc/1/ksm_stat", "sys/kernel/mm/ksm/run"):
        with pytest.raises(OSError) as e:
            m.sysfs.read(path)
        assert e.value.errno == errno.ENOENT
    # read(2) of a directory is EISDIR; a file with a trailing '/' is ENOTDIR (path walk)
    for path, code in (("/sys/kernel/mm/ksm", errno.EISDIR), (f"{KSM}/run/", errno.ENOTDIR)):
        with pytest.raises(OSError) as e:
            m.sysfs.read(path)
        assert e.value.errno == code
    assert m.sysfs.read(f"{KSM}//run") == m.sysfs.read(f"{KSM}/run")
    with pytest.raises(OSError) as e:
        m.sysfs.listdir("/sys/kernel/mm")
    assert e.value.errno == errno.ENOENT
    for name in COUNTERS:
        with pytest.raises(OSError) as e:
            m.sysfs.write(f"{KSM}/{name}", "0")
        assert e.value.errno == errno.EACCES


def test_advisor_owns_pages_to_scan():
    m = Machine()
    m.sysfs.write(f"{KSM}/advisor_mode", "scan-time")
    # switching to scan-time starts from advisor_min_pages_to_scan
    assert m.sysfs.read(f"{KSM}/pages_to_scan") == "500\n"
    before = fingerprint(m)
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{KSM}/pages_to_scan", "100")
    assert e.value.errno == errno.EINVAL
    assert fingerprint(m) == before
    m.sysfs.write(f"{KSM}/advisor_mode", "scan-time")         # same mode: no reset
    assert m.sysfs.read(f"{KSM}/pages_to_scan") == "500\n"
    m.sysfs.write(f"{KSM}/advisor_mode", "none")
    assert m.sysfs.read(f"{KSM}/pages_to_scan") == "100\n"
    m.sysfs.write(f"{KSM}/pages_to_scan", "42")
    assert m.sysfs.read(f"{KSM}/pages_to_scan") == "42\n"


def merged_machine(**kw):
    """Two identical pages merged: pages_shared=1, pages_sharing=1."""
    m = Machine(page_size=256, **kw)
    p = m.spawn("p")
    a = p.mmap(512)
    p.write(a, b"k" * 512)
    p.madvise(a, 512, MADV_MERGEABLE)
    m.sysfs.write(f"{KSM}/run", "1")
    m.ksmd.run_full_scans(2)
    assert m.ksm.stats()["pages_shared"] == 1
    return m, p, a


@pytest.mark.parametrize("name", ["max_page_sharing", "merge_across_nodes"])
def test_ebusy_while_pages_are_shared(name):
    m, p, a = merged_machine(numa_nodes=2)
    other = {"max_page_sharing": "3", "merge_across_nodes": "0"}[name]
    before = fingerprint(m)
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{KSM}/{name}", other)
    assert e.value.errno == errno.EBUSY
    assert fingerprint(m) == before
    # writing the current value is not a change: no EBUSY
    m.sysfs.write(f"{KSM}/{name}", m.sysfs.read(f"{KSM}/{name}"))
    # run=2 unmerges everything; then the knob may change
    m.sysfs.write(f"{KSM}/run", "2")
    m.sysfs.write(f"{KSM}/{name}", other)
    assert m.sysfs.read(f"{KSM}/{name}") == other + "\n"


def test_ebusy_once_the_counters_catch_up_after_an_unmap():
    # munmap frees the KSM page at once, but pages_shared stays 1 until ksmd notices:
    # the store still sees ksm_pages_shared != 0 and says EBUSY
    m, p, a = merged_machine()
    p.munmap(a, 512)
    assert m.ksm.stats()["pages_shared"] == 1
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{KSM}/max_page_sharing", "3")
    assert e.value.errno == errno.EBUSY
    m.ksmd.run_full_scans(1)
    assert m.ksm.stats()["pages_shared"] == 0
    m.sysfs.write(f"{KSM}/max_page_sharing", "3")
    assert m.ksm.max_page_sharing == 3


# --- version windows -------------------------------------------------------------------

@pytest.mark.parametrize("kernel,absent,present", [
    ("6.6", {"smart_scan", "pages_skipped", "advisor_mode", "advisor_max_cpu"},
     {"ksm_zero_pages", "pages_scanned", "general_profit"}),
    ("6.7", {"advisor_mode", "advisor_target_scan_time"}, {"smart_scan", "pages_skipped"}),
    ("6.5", {"ksm_zero_pages", "pages_scanned", "smart_scan"}, {"general_profit"}),
    ("6.3", {"general_profit"}, {"use_zero_pages", "max_page_sharing"}),
    ("4.12", {"max_page_sharing", "stable_node_chains", "stable_node_dups",
              "stable_node_chains_prune_millisecs"}, {"use_zero_pages"}),
    ("4.10", {"use_zero_pages", "max_page_sharing"}, {"merge_across_nodes"}),
    ("3.8", {"merge_across_nodes", "use_zero_pages"}, {"run", "full_scans"}),
])
def test_files_a_kernel_did_not_have_yet_are_absent(kernel, absent, present):
    m = Machine(kernel=kernel)
    names = set(m.sysfs.listdir())
    assert not absent & names
    assert present <= names
    for name in absent:
        with pytest.raises(OSError) as e:
            m.sysfs.read(f"{KSM}/{name}")
        assert e.value.errno == errno.ENOENT
        with pytest.raises(OSError) as e:
            m.sysfs.write(f"{KSM}/{name}", "1")
        assert e.value.errno == errno.ENOENT


def test_the_seed_kernel_has_its_nine_files():
    # 2.6.32's ksm_attrs: sleep_millisecs, pages_to_scan, run, max_kernel_pages and the
    # five counters
    m = Machine(kernel="2.6.32")
    assert set(m.sysfs.listdir()) == {
        "sleep_millisecs", "pages_to_scan", "run", "max_kernel_pages", "pages_shared",
        "pages_sharing", "pages_unshared", "pages_volatile", "full_scans"}
    assert "max_kernel_pages" not in Machine(kernel="2.6.33").sysfs.listdir()


# --- /proc ---------------------------------------------------------------------------------

def test_ksm_stat_lines_per_version():
    expected = {
        "6.18": ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit",
                 "ksm_merge_any:", "ksm_mergeable:"],
        "6.6": ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit"],
        "6.4": ["ksm_rmap_items", "ksm_merging_pages", "ksm_process_profit"],
        "6.1": ["ksm_rmap_items"],
    }
    for kernel, keys in expected.items():
        m = Machine(kernel=kernel)
        p = m.spawn("p")
        text = m.procfs.read(f"/proc/{p.pid}/ksm_stat")
        assert [line.split()[0] for line in text.splitlines()] == keys, kernel
        assert text.endswith("\n")


@real_ksm
def test_ksm_stat_has_the_running_kernels_lines():
    real = Path("/proc/self/ksm_stat").read_text()
    m = Machine()
    sim = m.procfs.read(f"/proc/{m.spawn('p').pid}/ksm_stat")
    assert [line.split()[0] for line in sim.splitlines()] == \
        [line.split()[0] for line in real.splitlines()]


@pytest.mark.parametrize("kernel,has_stat,has_merging", [
    ("5.18", False, False), ("5.19", False, True), ("6.0", False, True), ("6.1", True, True)])
def test_proc_files_appear_with_their_kernel(kernel, has_stat, has_merging):
    m = Machine(kernel=kernel)
    p = m.spawn("p")
    for name, present in (("ksm_stat", has_stat), ("ksm_merging_pages", has_merging)):
        if present:
            assert m.procfs.read(f"/proc/{p.pid}/{name}").endswith("\n")
        else:
            with pytest.raises(OSError) as e:
                m.procfs.read(f"/proc/{p.pid}/{name}")
            assert e.value.errno == errno.ENOENT


def test_ksm_stat_values_and_profit_formula():
    m, p, a = merged_machine()
    stat = parse_ksm_stat(m.procfs.read(f"/proc/{p.pid}/ksm_stat"))
    # two rmap_items, both on the stable node: process profit counts every stable item
    # (merging_pages * PAGE_SIZE - rmap_items * 64), general_profit only pages_sharing
    assert stat == {"ksm_rmap_items": 2, "ksm_zero_pages": 0, "ksm_merging_pages": 2,
                    "ksm_process_profit": 2 * 256 - 2 * 64, "ksm_merge_any": "no",
                    "ksm_mergeable": "yes"}
    assert m.sysfs.read(f"{KSM}/general_profit") == f"{1 * 256 - 2 * 64}\n"
    assert m.procfs.read(f"/proc/{p.pid}/ksm_merging_pages") == "2\n"
    p.prctl(PR_SET_MEMORY_MERGE, 1)
    assert parse_ksm_stat(m.procfs.read(f"/proc/{p.pid}/ksm_stat"))["ksm_merge_any"] == "yes"


def test_proc_of_a_dead_or_unknown_pid_is_enoent():
    m = Machine()
    p = m.spawn("p")
    p.exit()
    for path in (f"/proc/{p.pid}/ksm_stat", "/proc/99999/maps", "/proc/self/ksm_stat",
                 f"/proc/{m.spawn('q').pid}/status"):
        with pytest.raises(OSError) as e:
            m.procfs.read(path)
        assert e.value.errno == errno.ENOENT


def test_proc_maps_lists_the_vmas():
    m = Machine()
    p = m.spawn("p")
    a = p.mmap(8192)
    lines = m.procfs.read(f"/proc/{p.pid}/maps").splitlines()
    assert lines == [f"{a:08x}-{a + 8192:08x} rw-p 00000000 00:00 0"]
    assert p.maps() == lines[0] + "\n"
    # vmstat_text order: the THP events, then ksm_swpin_copy, cow_ksm
    assert m.procfs.read("/proc/vmstat").splitlines()[-2:] == ["ksm_swpin_copy 0", "cow_ksm 0"]
    assert m.procfs.read("/proc/vmstat").splitlines()[0] == "thp_fault_alloc 0"
    assert Machine(kernel="2.6.37").procfs.read("/proc/vmstat").splitlines() == [
        "ksm_swpin_copy 0", "cow_ksm 0"]
