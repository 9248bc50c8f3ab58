"""The scan-time advisor (6.8+): ksmd tunes pages_to_scan to hit a full-scan time.

ksmbook evaluates scan_time_advisor() exactly as mm/ksm.c does, with simulated time:
the scan time is the simulated wall time of the full scan and ksmd's CPU time is the
simulated cost of the pages it processed (``ksmd.SCAN_COST_NS`` each).  That keeps the
arithmetic of the kernel (integer steps, EWMA, caps) while staying deterministic.
"""
from __future__ import annotations

KSM_ADVISOR_MIN_CPU = 10


def ewma(prev: int, curr: int) -> int:
    return ((100 - 30) * prev + 30 * curr) // 100


class AdvisorMixin:

    def init_advisor(self) -> None:
        self.advisor_mode = "none"
        self.advisor_max_cpu = 70
        self.advisor_min_pages_to_scan = 500
        self.advisor_max_pages_to_scan = 30000
        self.advisor_target_scan_time = 200
        self.advisor_ctx = {"start_scan": 0, "scan_time": 0, "change": 0, "cpu_time": 0}
        self.ksmd_cpu_ns = 0

    def set_advisor_defaults(self) -> None:
        if self.advisor_mode == "none":
            self.pages_to_scan = 100
        else:
            self.advisor_ctx = {"start_scan": 0, "scan_time": 0, "change": 0, "cpu_time": 0}
            self.pages_to_scan = self.advisor_min_pages_to_scan

    def advisor_start_scan(self) -> None:
        if self.advisor_mode == "scan-time":
            self.advisor_ctx["start_scan"] = self.machine.clock_ns

    def advisor_stop_scan(self) -> None:
        if self.advisor_mode == "scan-time":
            self.scan_time_advisor()

    def scan_time_advisor(self) -> None:
        """scan_time_advisor(): the kernel's formula, integer step by integer step."""
        ctx = self.advisor_ctx
        scan_time = (self.machine.clock_ns - ctx["start_scan"]) // 1_000_000_000 or 1
        cpu_time = self.ksmd_cpu_ns
        cpu_time_diff_ms = (cpu_time - ctx["cpu_time"]) // 1_000_000
        cpu_percent = (cpu_time_diff_ms * 100) // (scan_time * 1000) or 1
        last_scan_time = ctx["scan_time"] or scan_time
        factor = (self.advisor_target_scan_time * 100) // scan_time or 1
        change = (scan_time * 100) // last_scan_time or 1
        change = ewma(ctx["change"], change)
        pages = self.pages_to_scan * 100 // factor
        pages = pages * change // 100
        per_page_cost = self.pages_to_scan // cpu_percent or 1
        pages = min(pages, per_page_cost * self.advisor_max_cpu)
        pages = max(pages, per_page_cost * KSM_ADVISOR_MIN_CPU)
        pages = min(pages, self.advisor_max_pages_to_scan)
        ctx.update(change=change, scan_time=scan_time, cpu_time=cpu_time)
        self.pages_to_scan = pages
