"""Bad input fuzz (issue 14): every syscall-shaped entry point gets integers of every
shape and wrong types; each call succeeds or raises TypeError / ValueError / OSError /
SIGSEGV, and an error leaves the machine exactly as it was (fingerprint) with counters
equal to a recount.  The errno table is checked against the running Linux via ctypes."""
import ctypes
import errno
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ksmbook import MADV_MERGEABLE, Machine
from ksmbook.kernel.errors import SegmentationFault

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from machine_checks import check_page_counts, fingerprint  # noqa: E402

PS = 4096
U64 = 1 << 64

# (call, addr offset from a fresh 16-page mapping or absolute, length, extra, errno) —
# offsets are added to the mapping's start; errno 0 means success.
SYSCALL_TABLE = [
    ("mmap", None, 0, 3, errno.EINVAL),
    ("mmap", None, U64 - 1, 3, errno.ENOMEM),
    ("mmap", None, 1 << 63, 3, errno.ENOMEM),
    ("mmap", None, 1 << 47, 3, errno.ENOMEM),
    ("mmap", None, PS, 0x8, 0),              # do_mmap() validates no prot bit
    ("mmap", None, PS, 0x10 | 3, 0),
    ("munmap", 1, PS, None, errno.EINVAL),
    ("munmap", 0, 0, None, errno.EINVAL),
    ("munmap", 0, U64 - 1, None, errno.EINVAL),
    ("munmap", 0, 1 << 63, None, errno.EINVAL),
    ("mprotect", 1, PS, 1, errno.EINVAL),
    ("mprotect", 0, 0, 1, 0),
    ("mprotect", 1, 0, 1, errno.EINVAL),
    ("mprotect", 0, U64 - 1, 1, errno.ENOMEM),
    ("mprotect", 0, PS, 0x10, errno.EINVAL),
    ("mprotect", 0, PS, 0x8 | 1, 0),          # PROT_SEM passes arch_validate_prot()
    ("madvise", 1, PS, 12, errno.EINVAL),
    ("madvise", 0, 0, 12, 0),
    ("madvise", 1, 0, 12, errno.EINVAL),
    ("madvise", 0, U64 - 1, 12, errno.EINVAL),
    ("madvise", 0, 1 << 63, 12, errno.ENOMEM),
    ("madvise", 0, PS, 999, errno.EINVAL),
    ("madvise", 0, PS, -1, errno.EINVAL),
    ("madvise", 0, PS, 5, errno.EINVAL),
]
PRCTL_TABLE = [((67, 1, 1, 0, 0), errno.EINVAL), ((68, 1, 0, 0, 0), errno.EINVAL),
               ((68, 0, 0, 0, 0), 0), ((67, 2, 0, 0, 0), 0), ((9999, 0, 0, 0, 0), errno.EINVAL),
               ((67, 0, 0, 0, 0), 0)]


def sim_errno(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def sim_call(call, off, length, extra):
    m = Machine()
    p = m.spawn("fuzz")
    a = p.mmap(16 * PS)
    if call == "mmap":
        return sim_errno(lambda: p.mmap(length, extra))
    args = (a + off, length) + (() if extra is None else (extra,))
    return sim_errno(lambda: getattr(p, call)(*args))


@pytest.mark.parametrize("call,off,length,extra,expect", SYSCALL_TABLE)
def test_syscall_errnos_are_linuxs(call, off, length, extra, expect):
    assert sim_call(call, off, length, extra) == expect
    # and negative Python ints mean what a C caller's (size_t)-1 means
    if length == U64 - 1:
        assert sim_call(call, off, -1, extra) == expect


@pytest.mark.parametrize("args,expect", PRCTL_TABLE)
def test_prctl_errnos(args, expect):
    p = Machine(kernel="6.18").spawn("p")
    assert sim_errno(lambda: p.prctl(*args)) == expect


def _real(call, args):
    """Run one syscall in a forked child (a huge mprotect could wreck this process)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    for f in ("munmap", "mprotect", "madvise"):
        getattr(libc, f).argtypes = [ctypes.c_void_p, ctypes.c_size_t] + \
            ([ctypes.c_int] if f != "munmap" else [])
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        ctypes.set_errno(0)
        if call == "mmap":
            v = libc.mmap(None, args[0], args[1], 0x22, -1, 0)
            bad = v is None or v == U64 - 1
        else:
            a = libc.mmap(None, 16 * PS, 3, 0x22, -1, 0)
            if call == "prctl":
                bad = libc.prctl(*args) != 0
                if args[0] == 68:
                    bad = libc.prctl(*args) < 0
            else:
                bad = getattr(libc, call)(a + args[0], *args[1:]) != 0
        os._exit(ctypes.get_errno() if bad else 0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="SKIPPED LOUDLY: the errno table is compared with a "
                                       "real Linux kernel via ctypes, and this is not Linux")


@linux_only
@pytest.mark.parametrize("call,off,length,extra,expect", SYSCALL_TABLE)
def test_the_errno_table_is_what_this_linux_says(call, off, length, extra, expect):
    args = (length, extra) if call == "mmap" else \
        (off, length) + (() if extra is None else (extra,))
    assert _real(call, args) == expect


@linux_only
@pytest.mark.parametrize("args,expect", PRCTL_TABLE)
def test_prctl_table_is_what_this_linux_says(args, expect):
    if tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2]) < (6, 4):
        pytest.skip("PR_SET_MEMORY_MERGE needs Linux 6.4")
    assert _real("prctl", args) == expect


# --- hypothesis: any shape of argument, no raw exception, no trace after an error -----

INTS = st.one_of(st.integers(-2, 2 ** 65), st.sampled_from([0, 1, -1, PS, PS - 1, PS + 1,
                                                            U64 - 1, 1 << 63, 1 << 47]))
ARGS = st.one_of(INTS, INTS, st.none(), st.text(max_size=2), st.floats(allow_nan=True),
                 st.booleans(), st.just(b"x"))
OK_ERRORS = (TypeError, ValueError, OSError, SegmentationFault)


def _world():
    m = Machine(pages_per_node=40)
    p = m.spawn("fuzz")
    a = p.mmap(8 * PS)
    p.write(a, b"q" * PS * 2)
    p.madvise(a, 8 * PS, MADV_MERGEABLE)
    return m, p, a


CALLS = ["mmap", "munmap", "mprotect", "madvise", "read", "write", "prctl", "fork", "spawn",
         "procfs", "advance", "guest_read", "guest_write"]


@settings(deadline=None, suppress_health_check=list(HealthCheck))   # profile: ci 200, thorough 1000
@given(call=st.sampled_from(CALLS), x=ARGS, y=ARGS, z=ARGS, rel=st.booleans())
def test_fuzz_bad_arguments_leave_no_trace(call, x, y, z, rel):
    m, p, a = _world()
    vm = m.kvm.create_vm(p, a, 8 * PS)
    if rel and isinstance(x, int) and not isinstance(x, bool):
        x = a + x % (16 * PS)                 # near the mapping, where it is interesting
    fns = {
        "mmap": lambda: p.mmap(x, y), "munmap": lambda: p.munmap(x, y),
        "mprotect": lambda: p.mprotect(x, y, z), "madvise": lambda: p.madvise(x, y, z),
        "read": lambda: p.read(x, y if not isinstance(y, int) else y % (3 * PS)),
        "write": lambda: p.write(x, y), "prctl": lambda: p.prctl(x, y, z),
        "fork": lambda: p.fork(x), "spawn": lambda: m.spawn(x, y),
        "procfs": lambda: m.procfs.read(x), "advance": lambda: m.advance(x),
        "guest_read": lambda: vm.guest_read(x, y if not isinstance(y, int) else y % (3 * PS)),
        "guest_write": lambda: vm.guest_write(x, y),
    }
    before = fingerprint(m)
    try:
        fns[call]()
    except OSError as e:
        hole = call in ("madvise", "mprotect") and e.errno == errno.ENOMEM
        if not hole:                  # madvise/mprotect over a hole change the mapped part
            assert fingerprint(m) == before, f"{call} failed with {e} but changed state"
    except OK_ERRORS as e:
        assert fingerprint(m) == before, f"{call} failed with {e!r} but changed state"
    check_page_counts(m)
    vm.check_invariants()


# --- KVM -------------------------------------------------------------------------------

def test_a_vm_over_another_machines_process_is_refused():
    m1, m2 = Machine(), Machine()
    p = m2.spawn("g")
    a = p.mmap(4 * PS)
    with pytest.raises(ValueError, match="another Machine"):
        m1.kvm.create_vm(p, a, 4 * PS)
    with pytest.raises(TypeError, match="process must be a Process"):
        m1.kvm.create_vm("p", a, 4 * PS)


@pytest.mark.parametrize("shared", [False, True])
def test_guest_write_out_of_memory_leaks_nothing(shared):
    m = Machine(pages_per_node=16)
    p = m.spawn("g")
    a = p.mmap(8 * PS, shared=shared)
    vm = m.kvm.create_vm(p, a, 8 * PS)
    hog = m.spawn("h")
    b = hog.mmap(64 * PS)
    with pytest.raises(OSError):
        for i in range(64):
            hog.write(b + i * PS, b"z")
    hog.munmap(b, PS)                          # exactly one free frame
    before = fingerprint(m)
    with pytest.raises(OSError) as e:
        vm.guest_write(0, b"x" * 10)
    assert e.value.errno == errno.ENOMEM
    assert fingerprint(m) == before
    check_page_counts(m)
    vm.check_invariants()


@pytest.mark.parametrize("gpa,n,exc", [(8 * PS, 1, ValueError), (-1, 1, ValueError),
                                       ("0", 1, TypeError), (0.0, 1, TypeError),
                                       (0, "1", TypeError)])
def test_guest_accesses_out_of_range(gpa, n, exc):
    m = Machine()
    p = m.spawn("g")
    a = p.mmap(8 * PS)
    vm = m.kvm.create_vm(p, a, 8 * PS)
    before = fingerprint(m)
    with pytest.raises(exc):
        vm.guest_read(gpa, n)
    assert fingerprint(m) == before


# --- long work: progress and Ctrl-C ------------------------------------------------------

def _busy():
    m = Machine()
    p = m.spawn("busy")
    a = p.mmap(64 * PS)
    for i in range(64):
        p.write(a + i * PS, bytes([i % 7]) * PS)
    p.madvise(a, 64 * PS, MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    return m, p, a


@pytest.mark.skipif(not hasattr(os, "kill"), reason="needs os.kill to send SIGINT")
@pytest.mark.parametrize("how", ["run_full_scans", "advance"])
def test_ctrl_c_in_a_long_run_stops_between_batches_and_leaves_it_consistent(how):
    import signal
    from machine_checks import check_ksm
    m, p, a = _busy()
    seen = []

    def progress(done, n):
        seen.append(done)
        if done == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        if how == "run_full_scans":
            m.ksmd.run_full_scans(10 ** 12, progress=progress)
        else:
            orig = m.ksmd._batch

            def batch(pages):                 # the signal arrives while a batch runs
                if m.ksm.ksm_scan.seqnr == 3:
                    os.kill(os.getpid(), signal.SIGINT)
                return orig(pages)
            m.ksmd._batch = batch
            m.advance(1e12, progress=lambda done, total: seen.append((done, total)))
    assert m.ksm.ksm_scan.seqnr < 10
    assert seen and seen[-1][0] <= seen[-1][1] if how == "advance" else seen[-1] == 3
    check_page_counts(m)
    check_ksm(m)
    m.ksmd.run_full_scans(2)                  # and it goes on working
    check_ksm(m)
    assert m.ksm.stats()["pages_sharing"] > 0


@pytest.mark.parametrize("sleep", ["20", "3"])
def test_fast_forward_equals_one_by_one_when_pages_arrive_mid_way(monkeypatch, sleep):
    """Idle stretch, then pages (enough to build stable_node chains at max_page_sharing=2,
    so chain pruning by stable_node_chains_prune_millisecs runs), then idle again, then
    the pages go away: the skipping machine ends exactly where the one-by-one one does."""
    from ksmbook.kernel.ksm import ksmd as ksmd_mod

    def build():
        m = Machine()
        m.sysfs.write("/sys/kernel/mm/ksm/max_page_sharing", "2")
        m.sysfs.write("/sys/kernel/mm/ksm/sleep_millisecs", sleep)
        m.sysfs.write("/sys/kernel/mm/ksm/stable_node_chains_prune_millisecs", "50")
        p = m.spawn("p")
        a = p.mmap(12 * PS)
        p.madvise(a, 12 * PS, MADV_MERGEABLE)
        m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
        return m, p, a

    fast, slow = build(), build()
    real = ksmd_mod.Ksmd._idle_is_periodic
    monkeypatch.setattr(ksmd_mod.Ksmd, "_idle_is_periodic",
                        lambda self, *a: self is fast[0].ksmd and real(self, *a))
    skipped = []
    orig = ksmd_mod.Ksmd._skip_empty_wakeups
    monkeypatch.setattr(ksmd_mod.Ksmd, "_skip_empty_wakeups",
                        lambda self, *a: (skipped.append(self is fast[0].ksmd), orig(self, *a)))
    for m, p, a in (fast, slow):
        m.advance(777.7)
        p.write(a, b"s" * 12 * PS)                   # twelve equal pages: chains of dups
        m.advance(500)
        p.madvise(a, 12 * PS, 4)                     # MADV_DONTNEED: nothing left to scan
        m.advance(1234.5)
    assert skipped and all(skipped)                  # the fast one did skip, the slow one not
    f, s = fast[0], slow[0]
    assert (f.clock_ns, f.ksm.ksm_scan.seqnr, f.ksm.ksmd_cpu_ns, f.ksmd.next_wake_ns,
            f.ksm.stats()) == (s.clock_ns, s.ksm.ksm_scan.seqnr, s.ksm.ksmd_cpu_ns,
                               s.ksmd.next_wake_ns, s.ksm.stats())
    assert fingerprint(f) == fingerprint(s)
