"""Run a :class:`~ksmbook.oracle.scenario.Scenario` on the real Linux kernel.

The real kernel is the oracle the simulator is measured against, so this
module's only job is to make the kernel's numbers *exact and repeatable*:

Processes
    Each scenario process is a tiny C worker (``_worker.c``, compiled on first
    use into ``~/.cache/ksmbook/``) driven over a SOCK_SEQPACKET socket.  Its
    only KSM-relevant memory is the scenario's regions: no malloc, no stdio,
    MADV_NOHUGEPAGE on every region (THPs only after a ``hugepage`` step), and after
    ``PR_SET_MEMORY_MERGE`` it
    takes VM_MERGEABLE off every VMA that is not a region.  A fork gets its own
    channel: the controller passes the child's socket with SCM_RIGHTS.

Exact full scans (checked against mm/ksm.c, 6.15-6.18)
    * ``ksm_do_scan`` stops its batch when ``scan_get_next_rmap_item`` returns
      NULL at the end of a full scan, so **a batch never crosses a full-scan
      boundary**.  With ``pages_to_scan`` larger than all scenario pages, one
      batch is exactly one full scan.
    * After a batch, ``ksm_scan_thread`` sleeps in
      ``wait_event_freezable_timeout(ksm_iter_wait, sleep_ms !=
      ksm_thread_sleep_millisecs, sleep_ms)``: it wakes early only when
      ``sleep_millisecs`` is rewritten **with a different value**
      (``sleep_millisecs_store`` wakes ``ksm_iter_wait``; the condition is
      re-checked).  With ``run`` off it sleeps in ``wait_event_freezable(
      ksm_thread_wait, ksmd_should_run())``, which ``run_store`` wakes.
    * So one scan = one wake-up: ``run=1`` from the idle wait, or toggling
      ``sleep_millisecs`` between two huge values from the timed wait.  The
      runner waits for each wake-up to finish by watching ksmd itself:
      ``full_scans`` advanced, ``voluntary_ctxt_switches`` advanced, state
      ``S`` and the top of ``/proc/<ksmd>/stack`` back at one of the two wait
      sites in ``ksm_scan_thread`` (their offsets are learned at start).  A
      wake-up is only ever sent while ksmd is asleep at a known site, so no
      wake-up is lost and none causes an extra scan.
    * ``scans(n)`` ends with ``run=0`` plus one more toggle, which moves ksmd
      from the timed wait to the idle wait without scanning.
    * If ksmd returns to the *idle* wait while run=1, its mm list is empty
      (``ksmd_should_run`` is false) and no more scans can happen: the step
      stops there, exactly as the kernel does.

The runner owns ``pages_to_scan`` and ``sleep_millisecs``: a scenario's
``knob`` step on them is checked like the kernel checks it (EINVAL for a
non-number, or for ``pages_to_scan`` while the advisor is on) and recorded in
:attr:`LiveRun.scenario_knobs`, but not written.  That is faithful to what a
snapshot can observe: counters are read only at full-scan boundaries, and
since no batch crosses a boundary, the batch size and the sleep between
batches change *when* a full scan ends, not what it does.

khugepaged (not modelled)
    A scenario with a ``hugepage`` step registers its processes with khugepaged, which
    would collapse 4 KiB pages back into THPs every ``scan_sleep_millisecs`` (10 s).
    For such a scenario the runner sets ``transparent_hugepage/khugepaged/
    scan_sleep_millisecs`` to an hour and restores it afterwards, after registering
    an anchor process with khugepaged so that no scenario process wakes it
    (:func:`pause_khugepaged`).  A ``thp_stat`` snapshot's ``thp_collapse_alloc``
    shows it if one ran anyway.

Global state
    KSM counters are global, so the runner takes a machine-wide lock, refuses
    to start while another process has KSM-mergeable memory, saves every
    writable knob, resets KSM (run=2, run=0), writes the kernel defaults for
    the tunables, and in ``finally`` kills its workers, unmerges (run=2,
    run=0) and restores every knob.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from ..kernel.errors import SegmentationFault
from ..uapi import (KSM_SYSFS, MADV_BY_NAME, MADV_HUGEPAGE, MADV_NOHUGEPAGE, PROT_BY_NAME,
                    TUNABLE_DEFAULTS)
from .scenario import (DELTA_COUNTERS, THP_TRACE_VMSTAT, WRITABLE_KNOBS, Scenario, Snapshot,
                       Step, error_name, handlers, make_snapshot, parse_ksm_stat, parse_vmstat)

__all__ = ["available", "run_live", "LiveRun", "LiveUnavailable", "KsmBusy",
           "ProtocolError", "worker_binary", "DEFAULT_TUNABLES"]

KSM_DIR = Path(KSM_SYSFS)

#: Kernel defaults (6.18) written at scenario start, so every run starts from
#: the state a freshly booted kernel (and a fresh simulator) has.
#: Knobs the runner owns during a scenario (see the module docstring).
OWNED_KNOBS = ("pages_to_scan", "sleep_millisecs")
DEFAULT_TUNABLES = {k: v for k, v in TUNABLE_DEFAULTS.items() if k not in OWNED_KNOBS}
#: One batch = one full scan when pages_to_scan exceeds every scenario page.
SCAN_BATCH = 1 << 30
#: ksmd's timed sleep; toggling between the two values is the wake-up.
SLEEP_VALUES = ("600000", "600001")

LOCK_PATH = Path(tempfile.gettempdir()) / "ksmbook-live.lock"
#: khugepaged's sleep between scans, paused (an hour) during scenarios with THPs
KHUGEPAGED_SLEEP = Path("/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs")
KHUGEPAGED_PAUSE = "3600000"
MADV = MADV_BY_NAME
PROT = PROT_BY_NAME


class LiveUnavailable(RuntimeError):
    """No root, no KSM, or no C compiler: the oracle tests skip loudly on this."""


class KsmBusy(RuntimeError):
    """Another process uses KSM (or another live run holds the lock)."""


class ProtocolError(RuntimeError):
    """ksmd did not behave as the scan protocol expects (timeout, extra scan)."""


# --------------------------------------------------------------------------
# Availability and the worker binary
# --------------------------------------------------------------------------

def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def available() -> tuple[bool, str]:
    """(True, "") if scenarios can run on this kernel, else (False, why)."""
    if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
        return False, "not Linux"
    if os.geteuid() != 0:
        return False, "needs root (KSM knobs in /sys/kernel/mm/ksm are root-only)"
    if not (KSM_DIR / "run").exists():
        return False, "this kernel has no KSM (/sys/kernel/mm/ksm missing: CONFIG_KSM=n?)"
    if not Path("/proc/self/ksm_stat").exists():
        return False, "no /proc/<pid>/ksm_stat (kernel older than 6.1)"
    if _compiler() is None:
        return False, "no C compiler (cc, gcc or clang): the live worker is compiled on first use"
    try:
        _ksmd_pid()
    except ProtocolError as exc:
        return False, str(exc)
    return True, ""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmbook"


def worker_binary() -> Path:
    """Compile ``_worker.c`` once per source version; return the binary's path.

    Static linking is preferred (fewer VMAs, no loader mappings); a dynamic
    build is the fallback.  Raises :class:`LiveUnavailable` without a compiler.
    """
    cc = _compiler()
    if cc is None:
        raise LiveUnavailable("no C compiler (cc, gcc or clang) to build the live worker")
    source = resources.files("ksmbook.oracle").joinpath("_worker.c").read_bytes()
    digest = hashlib.sha256(source + cc.encode()).hexdigest()[:16]
    out = _cache_dir() / f"worker-{digest}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "worker.c"
        src.write_bytes(source)
        errors = []
        for extra in (["-static"], []):
            exe = Path(tmp) / "worker"
            proc = subprocess.run([cc, "-O2", *extra, "-o", str(exe), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(exe, out)
                return out
            errors.append(proc.stderr)
    raise LiveUnavailable("could not compile the live worker:\n" + "\n".join(errors))


# --------------------------------------------------------------------------
# sysfs
# --------------------------------------------------------------------------

def read_knob(name: str) -> str:
    """The text of /sys/kernel/mm/ksm/<name>; ``advisor_mode`` as its selected word."""
    text = (KSM_DIR / name).read_text().strip()
    if name == "advisor_mode" and "[" in text:
        text = text.split("[", 1)[1].split("]", 1)[0]
    return text


def write_knob(name: str, value) -> None:
    """Write a knob; kernel errors surface as OSError with the kernel's errno."""
    with open(KSM_DIR / name, "w") as f:
        f.write(str(value))


def _ksmd_pid() -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() == "ksmd":
                if not os.access(f"/proc/{entry}/stack", os.R_OK):
                    raise ProtocolError("/proc/<ksmd>/stack is not readable (needs root "
                                        "and CONFIG_STACKTRACE): cannot see where ksmd sleeps")
                return int(entry)
        except OSError:
            continue
    raise ProtocolError("no ksmd kernel thread found")


# --------------------------------------------------------------------------
# ksmd: exact full scans
# --------------------------------------------------------------------------

class Ksmd:
    """Drives ksmd one full scan at a time (see the module docstring)."""

    POLL = 0.0005

    def __init__(self, timeout: float = 60.0):
        self.pid = _ksmd_pid()
        self.timeout = timeout
        self.sleep_index = 0
        self.idle_site: str | None = None    # top stack frame of the idle wait
        self.timed_site: str | None = None   # top stack frame of the timed wait

    # -- observation
    def observe(self) -> tuple[str, str, int]:
        """(scheduler state, top stack frame, voluntary context switches)."""
        state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        lines = Path(f"/proc/{self.pid}/stack").read_text().splitlines()
        top = lines[0].split("] ", 1)[-1] if lines else ""
        vcs = 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vcs = int(line.split()[1])
        return state, top, vcs

    def _wait(self, what: str, predicate):
        deadline = time.monotonic() + self.timeout
        while True:
            obs = self.observe()
            result = predicate(*obs)
            if result:
                return result
            if time.monotonic() > deadline:
                raise ProtocolError(f"ksmd: timed out waiting for {what}; last seen {obs}")
            time.sleep(self.POLL)

    def toggle_sleep(self) -> None:
        """Rewrite sleep_millisecs with the *other* huge value: wakes the timed wait."""
        self.sleep_index ^= 1
        write_knob("sleep_millisecs", SLEEP_VALUES[self.sleep_index])

    # -- setup
    def take_over(self) -> None:
        """Install the scan knobs and learn where ksmd sleeps when idle.

        Called with run=0: one toggle pulls ksmd out of any timed sleep left
        from before, after which it can only be in the idle wait.
        """
        write_knob("pages_to_scan", SCAN_BATCH)
        self.sleep_index = 1
        self.toggle_sleep()
        time.sleep(0.02)
        self.toggle_sleep()            # in case the first one raced a batch end
        seen = []

        def stable_sleep(state, top, vcs):
            seen.append((state, top))
            recent = seen[-5:]
            ok = (len(recent) == 5 and all(s == "S" and t == top for s, t in recent)
                  and top.startswith("ksm_scan_thread+"))
            return top if ok else None
        self.idle_site = self._wait("ksmd to settle in its idle wait", stable_sleep)

    def ensure_scan_knobs(self, max_pages: int) -> None:
        """Before each scans step: one batch must still cover a whole scan."""
        if read_knob("advisor_mode") == "none":
            if read_knob("pages_to_scan") != str(SCAN_BATCH):
                write_knob("pages_to_scan", SCAN_BATCH)
        elif int(read_knob("pages_to_scan")) < max_pages:
            raise ProtocolError(
                f"advisor_mode=scan-time set pages_to_scan={read_knob('pages_to_scan')}, "
                f"less than the scenario's {max_pages} pages: a full scan would take "
                "several batches and the runner could not stop at its boundary")
        if read_knob("sleep_millisecs") != SLEEP_VALUES[self.sleep_index]:
            raise ProtocolError("sleep_millisecs was changed behind the live runner's back")

    # -- scanning
    def _asleep_after(self, vcs0: int, fs0: int):
        """Predicate: ksmd slept again after vcs0 at a wait site -> 'idle'/'timed'."""
        def pred(state, top, vcs):
            if state != "S" or vcs == vcs0 or not top.startswith("ksm_scan_thread+"):
                return None
            if top == self.idle_site:
                return "idle"
            if self.timed_site is None and full_scans() > fs0:
                self.timed_site = top          # learned on the first scan
            return "timed" if top == self.timed_site else None
        return pred

    def wait_idle(self) -> None:
        self._wait("ksmd's idle wait",
                   lambda s, top, v: s == "S" and top == self.idle_site)

    def full_scans(self, n: int) -> int:
        """Exactly ``n`` full scans (fewer only if the mm list runs empty).

        Precondition and postcondition: run=0 and ksmd in its idle wait.
        Returns how many scans happened.
        """
        self.wait_idle()
        base = full_scans()
        _, _, vcs = self.observe()
        write_knob("run", 1)                       # wakes the idle wait
        done = 0
        while True:
            where = self._wait(f"full scan {done + 1} of {n}", self._asleep_after(vcs, base + done))
            done = full_scans() - base
            if where == "idle" or done >= n:
                break
            _, _, vcs = self.observe()
            self.toggle_sleep()                    # ksmd is in its timed wait: one more scan
        write_knob("run", 0)
        self.toggle_sleep()                        # leave the timed wait; run=0 -> idle wait
        self.wait_idle()
        final = full_scans() - base
        if final != done or done > n:
            raise ProtocolError(f"asked for {n} full scans, ksmd did {final} (saw {done})")
        return done


    def one_batch(self, pages: int) -> None:
        """One ksm_do_scan(pages) batch: pages_to_scan=pages, run=1, wait for ksmd's
        next sleep in ksm_scan_thread (the timed wait after the batch, or the idle
        wait if its mm list is empty), run=0, one toggle, idle again."""
        self.wait_idle()
        _, _, vcs = self.observe()
        write_knob("pages_to_scan", pages)
        write_knob("run", 1)

        def asleep(state, top, v):
            if state != "S" or v == vcs or not top.startswith("ksm_scan_thread+"):
                return None
            return "idle" if top == self.idle_site else "timed"
        try:
            self._wait(f"one batch of {pages} pages", asleep)
        finally:
            write_knob("run", 0)
            self.toggle_sleep()
            self.wait_idle()
            write_knob("pages_to_scan", SCAN_BATCH)


def full_scans() -> int:
    return int(read_knob("full_scans"))


def pause_khugepaged(binary: Path, timeout: float) -> "Worker":
    """Keep khugepaged asleep for a scenario (see the module docstring); returns the
    anchor process, to be killed after ``scan_sleep_millisecs`` is restored.

    khugepaged runs at nice 19: woken when the first mm registers (its list was
    empty), it may be scheduled only seconds later on a busy host, and then collapse
    what the scenario faulted meanwhile.  So an anchor worker registers first -- a
    huge fault in a 4 MiB region (on 6.18 MADV_HUGEPAGE alone does not register an
    mm, do_huge_pmd_anonymous_page() does) -- the sleep is set to an hour, and the
    runner waits for the scan that the write starts (khugepaged/full_scans moves).
    After that no registration wakes khugepaged: its list is not empty.  Called
    before the scenario's vmstat baseline is read; the anchor is not a KSM user."""
    anchor = Worker.spawn("khugepaged-anchor", binary)
    length = 4 << 20
    addr = anchor.command(f"mmap {length} 0")
    anchor.command(f"madvise {addr} {length} {MADV_HUGEPAGE}")
    anchor.command(f"poke {addr} 1")
    done = KHUGEPAGED_SLEEP.parent / "full_scans"
    before = int(done.read_text())
    KHUGEPAGED_SLEEP.write_text(KHUGEPAGED_PAUSE)
    deadline = time.monotonic() + timeout
    while int(done.read_text()) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    return anchor


# --------------------------------------------------------------------------
# Workers: the scenario's processes
# --------------------------------------------------------------------------

class WorkerError(OSError):
    pass


class Worker:
    """One scenario process: a ``_worker.c`` instance and its command socket."""

    def __init__(self, name: str, sock: socket.socket, pid: int, binary: Path,
                 popen: subprocess.Popen | None = None):
        self.name, self.sock, self.pid, self.binary, self.popen = name, sock, pid, binary, popen
        self.regions: dict[str, int] = {}          # region name -> address

    @classmethod
    def spawn(cls, name: str, binary: Path) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        popen = subprocess.Popen([str(binary), str(theirs.fileno())],
                                 pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        w = cls(name, ours, popen.pid, binary, popen)
        w.command("ping")
        return w

    def command(self, text: str, fd: int | None = None) -> int | None:
        """Send one command (with ``fd`` attached by SCM_RIGHTS); return its
        value.  ``err``/``sig`` replies raise OSError / SegmentationFault, the
        exceptions the simulator raises for the same failures."""
        sock = self.sock
        try:
            if fd is None:
                sock.send(text.encode())
            else:
                socket.send_fds(sock, [text.encode()], [fd])
            reply = sock.recv(256).decode()
        except OSError as exc:       # a dead worker is a runner failure, not an errno
            raise ProtocolError(f"worker {self.name} is gone ({exc}) during {text!r}") from exc
        return self._reply(reply, text)

    def _reply(self, reply: str, text: str) -> int | None:
        words = reply.split()
        if not words:
            raise ProtocolError(f"worker {self.name} died during {text!r}")
        if words[0] == "ok":
            return int(words[1]) if len(words) > 1 else None
        if words[0] == "err":
            code = int(words[1])
            raise WorkerError(code, f"{os.strerror(code)} ({text})")
        if words[0] == "sig":
            raise SegmentationFault(int(words[2]), "access", f"worker: {text}")
        raise ProtocolError(f"worker {self.name}: bad reply {reply!r}")

    def fork(self, child_name: str) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self.command("fork", fd=theirs.fileno())
        finally:
            theirs.close()
        child = Worker(child_name, ours, pid, self.binary)
        if child._reply(ours.recv(256).decode(), "fork (child)") != pid:
            raise ProtocolError("forked worker reported a different pid")
        child.regions = dict(self.regions)
        return child

    def exit(self, timeout: float = 10.0) -> None:
        """Exit and wait until the mm is gone (exit_mmap, hence ksm_exit, ran)."""
        self.sock.send(b"exit")
        if self.popen is not None:
            self.popen.wait(timeout)
        else:
            _wait_gone(self.pid, timeout)
        self.sock.close()

    def kill(self) -> None:
        """Best-effort cleanup; only signals a pid that still runs our binary."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.popen is not None:
            with contextlib.suppress(OSError):
                self.popen.kill()
            with contextlib.suppress(Exception):
                self.popen.wait(5)
            return
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{self.pid}/exe") == str(self.binary):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProtocolError):
            _wait_gone(self.pid, 5)


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until ``pid`` is reaped or a zombie: either way its mm is torn down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return
        time.sleep(0.001)
    raise ProtocolError(f"process {pid} did not exit")


# --------------------------------------------------------------------------
# Machine-wide checks
# --------------------------------------------------------------------------

def ksm_users(exclude: set[int] = frozenset()) -> list[str]:
    """Processes (other than ``exclude``) with KSM-mergeable memory or KSM state."""
    users = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            text = Path(f"/proc/{entry}/ksm_stat").read_text()
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        st = parse_ksm_stat(text)
        if (st.get("ksm_mergeable") == "yes" or st.get("ksm_merge_any") == "yes"
                or any(st.get(k, 0) for k in ("ksm_rmap_items", "ksm_merging_pages",
                                              "ksm_zero_pages"))):
            users.append(f"{entry} ({comm})")
    return users


@contextlib.contextmanager
def machine_lock(timeout: float = 600.0):
    """Serialize live runs on this machine: KSM counters are global."""
    with open(LOCK_PATH, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KsmBusy(f"another live run holds {LOCK_PATH}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------

class LiveRun:
    """One scenario on the real kernel.  Use :func:`run_live` unless you want
    the extra details (``regions`` addresses, ``scenario_knobs``)."""

    def __init__(self, scenario: Scenario, timeout: float = 60.0):
        if scenario.page_size != os.sysconf("SC_PAGE_SIZE"):
            raise LiveUnavailable(f"scenario page_size {scenario.page_size} != this "
                                  f"kernel's {os.sysconf('SC_PAGE_SIZE')}")
        ok, why = available()
        if not ok:
            raise LiveUnavailable(why)
        self.sc = scenario
        self.timeout = timeout
        self.binary = worker_binary()
        self.ksmd = Ksmd(timeout)
        self.workers: dict[str, Worker] = {}
        self.all_workers: list[Worker] = []
        self.saved: dict[str, str] = {}
        self.scenario_knobs: dict[str, str] = {}
        self.max_pages = max(scenario.max_pages, 1)
        self.baseline: dict[str, int] = {}

    # -- the whole run
    def run(self) -> list[Snapshot]:
        with machine_lock():
            others = ksm_users()
            if others:
                raise KsmBusy("other processes use KSM, and its counters are global: "
                              + ", ".join(others))
            self.saved = {k: read_knob(k) for k in ("run", *WRITABLE_KNOBS)
                          if (KSM_DIR / k).exists()}
            khugepaged = anchor = None
            if any(s.op == "hugepage" and s.on for s in self.sc.steps) and \
                    KHUGEPAGED_SLEEP.exists():
                khugepaged = KHUGEPAGED_SLEEP.read_text().strip()
            try:
                if khugepaged is not None:
                    anchor = pause_khugepaged(self.binary, self.timeout)
                self.reset()
                snaps = [self.do_step(i, s) for i, s in enumerate(self.sc.steps)]
            finally:
                try:
                    self.cleanup()
                finally:
                    if khugepaged is not None:
                        KHUGEPAGED_SLEEP.write_text(khugepaged)
                    if anchor is not None:
                        anchor.kill()
            others = ksm_users()
            if others:
                raise KsmBusy("another process started using KSM during the run; "
                              "the trace is not trustworthy: " + ", ".join(others))
            return snaps

    def reset(self) -> None:
        """run=2 then run=0 (unmerge all, full_scans=0), kernel defaults, scan knobs."""
        write_knob("run", 2)
        write_knob("run", 0)
        write_knob("advisor_mode", "none")         # before pages_to_scan: it resets it
        for name, value in DEFAULT_TUNABLES.items():
            if name in self.saved and read_knob(name) != value:
                write_knob(name, value)
        self.ksmd.take_over()
        self.scenario_knobs = {"pages_to_scan": "100", "sleep_millisecs": "20"}
        self.baseline = {n: int(read_knob(n)) for n in DELTA_COUNTERS}
        vm = parse_vmstat(_read_vmstat())
        self.baseline.update({n: vm.get(n, 0) for n in THP_TRACE_VMSTAT})

    def cleanup(self) -> None:
        """Kill workers, unmerge, restore every knob; run ends as it began (0 here)."""
        try:
            for w in reversed(self.all_workers):
                w.kill()
        finally:
            self.restore_knobs()

    def restore_knobs(self) -> None:
        write_knob("run", 2)
        write_knob("run", 0)
        write_knob("advisor_mode", "none")         # so pages_to_scan is writable
        failed = []
        for name in WRITABLE_KNOBS:
            if name in self.saved and name != "advisor_mode" and read_knob(name) != self.saved[name]:
                try:
                    write_knob(name, self.saved[name])
                except OSError as exc:
                    failed.append(f"{name}={self.saved[name]!r}: {exc}")
        if self.saved["advisor_mode"] != "none":
            write_knob("advisor_mode", self.saved["advisor_mode"])
        if self.saved["run"] != "0":
            write_knob("run", self.saved["run"])
        if failed:
            raise RuntimeError("could not restore KSM knobs: " + "; ".join(failed))

    # -- one step
    def do_step(self, index: int, step: Step) -> Snapshot:
        error = None
        try:
            getattr(self, self.DO[step.op])(step)
        except (OSError, SegmentationFault) as exc:
            error = error_name(exc)
        procs = [(w.name, w.pid) for w in self.workers.values()]
        return make_snapshot(index, step, error, read_knob, _read_proc, procs, self.baseline,
                             _read_vmstat)

    def addr(self, s, page: int | None = None) -> int:
        return self.workers[s.proc].regions[s.region] + (s.page if page is None else page) * self.sc.page_size

    def length(self, s) -> int:
        return s.count * self.sc.page_size

    def cmd(self, s, text: str) -> int | None:
        return self.workers[s.proc].command(text)

    def do_spawn(self, s):
        w = Worker.spawn(s.proc, self.binary)
        self.workers[s.proc] = w
        self.all_workers.append(w)

    def do_mmap(self, s):
        addr = self.cmd(s, f"mmap {s.pages * self.sc.page_size} {int(s.shared)}")
        self.workers[s.proc].regions[s.region] = addr

    def do_fill(self, s):
        self.cmd(s, f"fill {self.addr(s)} {self.length(s)} {s.byte}")

    def do_unique(self, s):
        self.cmd(s, f"unique {self.addr(s)} {s.count} {s.tag} {s.page} {self.sc.page_size}")

    def do_poke(self, s):
        self.cmd(s, f"poke {self.addr(s) + s.offset} {s.byte}")

    def do_touch_read(self, s):
        self.cmd(s, f"read {self.addr(s)} {s.count} {self.sc.page_size}")

    def do_madvise(self, s):
        self.cmd(s, f"madvise {self.addr(s)} {self.length(s)} {MADV[s.advice]}")

    def do_mprotect(self, s):
        self.cmd(s, f"mprotect {self.addr(s)} {self.length(s)} {PROT[s.prot]}")

    def do_munmap(self, s):
        self.cmd(s, f"munmap {self.addr(s)} {self.length(s)}")

    def do_prctl_merge(self, s):
        self.cmd(s, f"prctl {s.value}")

    def do_fork(self, s):
        child = self.workers[s.proc].fork(s.child)
        self.workers[s.child] = child
        self.all_workers.append(child)

    def do_exit(self, s):
        self.workers.pop(s.proc).exit()

    def do_knob(self, s):
        if s.name in OWNED_KNOBS:
            self.record_owned_knob(s.name, s.value)
        else:
            write_knob(s.name, s.value)

    def record_owned_knob(self, name: str, value: str) -> None:
        """Check a pages_to_scan/sleep_millisecs write as the kernel would, then
        record it instead of writing it (the runner owns these two knobs)."""
        try:
            number = int(value.strip(), 10)
        except ValueError:
            number = -1
        if not 0 <= number < 2**32:
            raise OSError(errno.EINVAL, f"invalid {name} {value!r}")
        if name == "pages_to_scan" and read_knob("advisor_mode") != "none":
            raise OSError(errno.EINVAL, "pages_to_scan is owned by the advisor")
        self.scenario_knobs[name] = str(number)

    def do_scans(self, s):
        self.ksmd.ensure_scan_knobs(self.max_pages)
        self.ksmd.full_scans(s.n)

    def do_run(self, s):
        write_knob("run", s.value)

    def do_hugepage(self, s):
        advice = MADV_HUGEPAGE if s.on else MADV_NOHUGEPAGE
        self.cmd(s, f"madvise {self.addr(s)} {self.length(s)} {advice}")

    def do_dontneed(self, s):
        self.cmd(s, f"madvise {self.addr(s)} {self.length(s)} {MADV['MADV_DONTNEED']}")

    def do_sleep(self, s):
        time.sleep(s.ms / 1000)

    def do_thp_stat(self, s):
        pass                        # an observation: make_snapshot reads it

    def do_batch(self, s):
        self.ksmd.ensure_scan_knobs(self.max_pages)
        self.ksmd.one_batch(s.pages)


#: The live runner's handler per step (import fails if a declared step has none).
LiveRun.DO = handlers(LiveRun, "do_")


def _read_proc(pid: int, file: str) -> str:
    return Path(f"/proc/{pid}/{file}").read_text()


def _read_vmstat() -> str:
    return Path("/proc/vmstat").read_text()


def run_live(scenario: Scenario, timeout: float = 60.0) -> list[Snapshot]:
    """Run ``scenario`` on this machine's kernel; one snapshot per step.

    Raises :class:`LiveUnavailable` (no root/KSM/compiler), :class:`KsmBusy`
    (someone else uses KSM) or :class:`ProtocolError` (ksmd misbehaved).
    """
    return LiveRun(scenario, timeout).run()


# --------------------------------------------------------------------------
# python -m ksmbook.oracle.live: run built-in scenarios, print or record their traces
# --------------------------------------------------------------------------

def trace_document(scenario: Scenario, snapshots: list[Snapshot]) -> dict:
    """What a recorded trace file holds: the scenario, the kernel, the snapshots."""
    return {"scenario": scenario.to_dict(), "kernel": os.uname().release,
            "machine": os.uname().machine, "recorded_with": "ksmbook.oracle.live.run_live",
            "snapshots": snapshots}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from .scenario import SCENARIOS

    ap = argparse.ArgumentParser(prog="python -m ksmbook.oracle.live",
                                 description="Run scenarios on the real kernel's KSM (root).")
    ap.add_argument("names", nargs="*", help="scenario names (default: all built-in)")
    ap.add_argument("--record", metavar="DIR", help="write DIR/<name>.json per scenario")
    args = ap.parse_args(argv)
    ok, why = available()
    if not ok:
        print(f"live runner unavailable: {why}")
        return 2
    for name in args.names or list(SCENARIOS):
        sc = SCENARIOS[name]
        snaps = run_live(sc)
        if args.record:
            path = Path(args.record) / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(trace_document(sc, snaps), indent=1) + "\n")
            print(f"wrote {path}")
        else:
            print(f"== {name}")
            for s in snaps:
                err = f"  error={s['error']}" if s["error"] else ""
                print(f"{s['step']:>3} {s['op']}{err}\n    {s['counters']}")
                for proc, st in s["ksm_stat"].items():
                    print(f"    {proc}: {st}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
