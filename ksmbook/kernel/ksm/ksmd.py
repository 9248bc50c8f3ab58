"""ksmd in time: ksm_scan_thread()'s loop of batches and sleeps, plus stepping APIs.

``scan()`` is one batch (what ksmd does per wake-up), ``run_full_scans(n)`` runs
batches until full_scans has gone up by n, and ``Machine.advance(ms)`` lets ksmd
wake every sleep_millisecs as the real thread does.  A batch costs simulated CPU
time: SCAN_COST_NS per processed page, the rate measured for the real ksmd on the
machines this book was built on: 10**9 / 5,500 ns = about 182,000 pages/s of ksmd
CPU time (with sleep_millisecs=0 that is also its wall-clock rate).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from ..errors import check_int


@contextlib.contextmanager
def interrupt_between_batches():
    """Ctrl-C during a long run lands between two ksmd batches, never inside one.

    A batch (ksm_do_scan()) updates trees, rmap_items and counters together; stopping
    half-way would leave them disagreeing.  SIGINT is held while the batch runs and
    raised as KeyboardInterrupt at the next batch boundary (``check()``), so the
    machine stays consistent and can be used again.  Outside the main thread signals
    cannot be caught: then nothing is held."""
    pending = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))

    def check():
        if pending:
            pending.clear()
            raise KeyboardInterrupt("ksmd stopped between two batches; the machine is consistent")
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)

SCAN_COST_NS = 5_500


class KsmdNotRunning(RuntimeError):
    """ksmd only scans while /sys/kernel/mm/ksm/run is 1."""


class Ksmd:

    def __init__(self, machine, ksm):
        self.machine = machine
        self.ksm = ksm
        self.next_wake_ns = 0
        self.batches = 0

    def should_run(self) -> bool:
        """ksmd_should_run(): run has the MERGE bit and some mm is registered."""
        k = self.ksm
        return bool(k.run & 1) and k.ksm_mm_head.next is not k.ksm_mm_head

    def _require_running(self):
        if not self.ksm.run & 1:
            raise KsmdNotRunning("ksmd is stopped: write 1 to /sys/kernel/mm/ksm/run first")

    def _batch(self, pages: int) -> int:
        done = self.ksm.ksm_do_scan(pages)
        cost = max(done, 1) * SCAN_COST_NS
        self.ksm.ksmd_cpu_ns += cost
        self.machine.clock_ns += cost
        self.batches += 1
        return done

    def scan(self, pages: int | None = None) -> list:
        """One batch of up to ``pages`` (default pages_to_scan); returns its events."""
        self._require_running()
        if pages is None:
            pages = self.ksm.pages_to_scan
        check_int("pages", pages, "scan", accepted="an int or None")
        if pages < 0:
            raise ValueError(f"scan: pages must be >= 0, not {pages}")
        with self.machine.events.capture() as events:
            if self.should_run():
                self._batch(pages)
        return events

    def run_full_scans(self, n: int = 1, *, progress=None) -> int:
        """Exactly ``n`` more full scans (full_scans goes up by n); returns full_scans.

        With no mm registered ksmd would sleep forever: then nothing happens.
        ``progress(done_scans, n)`` is called after each full scan, for long runs.
        """
        self._require_running()
        check_int("n", n, "run_full_scans")
        if n < 0:
            raise ValueError(f"run_full_scans: n must be >= 0, not {n}")
        if progress is not None and not callable(progress):
            raise TypeError("run_full_scans: progress must be callable or None")
        k = self.ksm
        target = k.ksm_scan.seqnr + n
        batch = max(k.pages_to_scan, 1)
        with interrupt_between_batches() as check:
            while k.ksm_scan.seqnr < target and self.should_run():
                before = k.ksm_scan.seqnr
                self._batch(batch)
                if progress is not None and k.ksm_scan.seqnr != before:
                    progress(n - (target - k.ksm_scan.seqnr), n)
                check()
        return k.ksm_scan.seqnr

    def advance(self, ms: float, *, progress=None) -> None:
        """Let ``ms`` of simulated time pass with ksmd waking as ksm_scan_thread() does.

        Wake-ups that find nothing to scan (mergeable areas with no pages in them) are
        all alike: each is one empty full scan costing one page's worth of CPU, then a
        sleep.  Once two in a row were empty, the rest up to ``end`` are done in one step
        (_skip_empty_wakeups) with exactly the counters and clock that one-by-one
        wake-ups give; a long run of simulated time then costs O(1), not O(wake-ups)."""
        m = self.machine
        end = m.clock_ns + int(ms * 1_000_000)
        if progress is not None and not callable(progress):
            raise TypeError("advance: progress must be callable or None")
        start = m.clock_ns
        with interrupt_between_batches() as check:
            def check_and_report():
                check()
                if progress is not None:      # progress(done_ns, total_ns) between batches
                    progress(m.clock_ns - start, end - start)
            self._advance_to(end, check_and_report)

    def _advance_to(self, end: int, check) -> None:
        m = self.machine
        empty_in_a_row = 0
        advisor_before = None
        slots_after_last = None     # slot count after the last wake-up that met no rmap_item
        while True:
            check()
            if not self.should_run():
                m.clock_ns = max(m.clock_ns, end)
                self.next_wake_ns = m.clock_ns
                return
            wake = max(self.next_wake_ns, m.clock_ns)
            if wake > end:
                m.clock_ns = end
                return
            if empty_in_a_row >= 2 and self._idle_is_periodic(advisor_before):
                self._skip_empty_wakeups(wake, end)
                empty_in_a_row = 0
                continue
            m.clock_ns = wake
            k = self.ksm
            advisor_before = self._advisor_state()
            seqnr = k.ksm_scan.seqnr
            done = self._batch(k.pages_to_scan)
            # empty: one whole scan that met no rmap_item at all (a scan whose pages
            # smart scan skipped is not empty: the skip counts change every scan) and
            # left the mm list as the previous such scan did.  The list is counted only
            # after a scan that met nothing, so busy wake-ups pay nothing for this.
            empty = False
            if done == 0 and k.ksm_rmap_items == 0 and k.ksm_scan.seqnr == seqnr + 1:
                slots = self._slot_count()
                empty = slots == slots_after_last
                slots_after_last = slots
            else:
                slots_after_last = None
            empty_in_a_row = empty_in_a_row + 1 if empty else 0
            self.next_wake_ns = m.clock_ns + self.ksm.sleep_millisecs * 1_000_000

    def _slot_count(self) -> int:
        head, n, slot = self.ksm.ksm_mm_head, 0, self.ksm.ksm_mm_head.next
        while slot is not head:
            n, slot = n + 1, slot.next
        return n

    def _advisor_state(self):
        """What scan_time_advisor() carries from one scan to the next, less the two
        clock readings it only ever subtracts (start_scan, cpu_time)."""
        k = self.ksm
        return (k.pages_to_scan, k.advisor_ctx["change"], k.advisor_ctx["scan_time"])

    def _idle_is_periodic(self, advisor_before=None) -> bool:
        """An empty wake-up repeats exactly when nothing carried between scans changes:
        always without the advisor; with advisor_mode=scan-time once the last empty scan
        left scan_time_advisor()'s state as it found it (pages_to_scan at its cap or
        floor, the EWMA at its integer fixed point)."""
        if self.ksm.advisor_mode == "none":
            return True
        return advisor_before is not None and advisor_before == self._advisor_state()

    def _skip_empty_wakeups(self, first_wake: int, end: int) -> None:
        """Every empty wake-up from ``first_wake`` to ``end`` at once: each one is
        ksm_do_scan() finding no rmap_item (a full scan, full_scans + 1, one page's
        SCAN_COST_NS) and then a sleep of sleep_millisecs."""
        m, k = self.machine, self.ksm
        period = SCAN_COST_NS + k.sleep_millisecs * 1_000_000
        wakeups = (end - first_wake) // period + 1
        first_seqnr = k.ksm_scan.seqnr
        k.ksm_scan.seqnr += wakeups
        k.ksmd_cpu_ns += wakeups * SCAN_COST_NS
        self.batches += wakeups
        last_wake = first_wake + (wakeups - 1) * period
        m.clock_ns = last_wake + SCAN_COST_NS
        self.next_wake_ns = m.clock_ns + k.sleep_millisecs * 1_000_000
        if k.advisor_mode == "scan-time":
            # the last skipped scan's readings, as advisor_start_scan()/scan_time_advisor()
            # took them: at its wake-up, before its batch's CPU was added
            k.advisor_ctx["start_scan"] = last_wake
            k.advisor_ctx["cpu_time"] = k.ksmd_cpu_ns - SCAN_COST_NS
        if m.events.enabled:
            k._emit("ksm_scan_thread", "idle_scans", 0, 0, 0, "nothing_to_scan",
                    info={"first_seqnr": first_seqnr, "seqnr": k.ksm_scan.seqnr,
                          "wakeups": wakeups})
