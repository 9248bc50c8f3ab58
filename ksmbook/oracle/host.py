"""Read KSM's state, read-only, from this machine or from the simulator.

The same three calls read both, because the simulator's ``m.sysfs`` and
``m.procfs`` answer the kernel's paths with the kernel's text::

    files = HostFiles()                       # or m.sysfs / m.procfs
    ksm = read_ksm(files)                     # /sys/kernel/mm/ksm/* as ints (advisor_mode: a word)
    procs = read_processes(files, pids)       # /proc/<pid>/ksm_stat, parsed
    print(ksm_report(ksm, procs, where="this machine"))

Nothing here ever writes: KSM's knobs are global, and changing them is the
live runner's job (``ksmbook.oracle.live``), which restores every one.
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..kernel.sysfs import parse_ksm_stat
from .scenario import COUNTERS, WRITABLE_KNOBS
from ..uapi import KSM_SYSFS

__all__ = ["HostFiles", "KSM_DIR", "read_ksm", "read_processes", "host_pids", "ksm_report",
           "ProcessKsm"]

#: The old name of :data:`ksmbook.uapi.KSM_SYSFS`, kept for one release.
KSM_DIR = KSM_SYSFS
#: The tunables, in the order a report lists them (``run`` first).
KNOBS = ("run", *WRITABLE_KNOBS)


class HostFiles:
    """This machine's /sys and /proc with the simulator's ``listdir``/``read`` calls."""

    def listdir(self, path: str = KSM_SYSFS) -> list[str]:
        return sorted(os.listdir(path))

    def read(self, path: str) -> str:
        return Path(path).read_text()


def _value(name: str, text: str):
    text = text.strip()
    if name == "advisor_mode" and "[" in text:      # "[none] scan-time": the selected word
        return text.split("[", 1)[1].split("]", 1)[0]
    try:
        return int(text)
    except ValueError:
        return text


def read_ksm(files) -> dict:
    """Every file of /sys/kernel/mm/ksm: numbers as ints, ``advisor_mode`` as its word.

    Raises FileNotFoundError when the kernel has no KSM (CONFIG_KSM=n).
    """
    return {name: _value(name, files.read(f"{KSM_SYSFS}/{name}")) for name in files.listdir(KSM_SYSFS)}


@dataclass(frozen=True)
class ProcessKsm:
    pid: int
    name: str
    stat: dict          # parsed /proc/<pid>/ksm_stat


def host_pids() -> list[tuple[int, str]]:
    """(pid, comm) of every process on this machine, by pid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.append((int(entry), Path(f"/proc/{entry}/comm").read_text().strip()))
            except OSError:             # it exited meanwhile
                continue
    return sorted(out)


def read_processes(files, pids) -> tuple[list[ProcessKsm], int]:
    """(processes with KSM state, how many ksm_stat files could not be read).

    A process has KSM state when its ksm_stat shows rmap_items, merged or
    zero pages, or a mergeable VMA.  Other users' ksm_stat files are not
    readable without root: they are counted, not guessed.
    """
    found, unreadable = [], 0
    for pid, name in pids:
        try:
            stat = parse_ksm_stat(files.read(f"/proc/{pid}/ksm_stat"))
        except PermissionError:
            unreadable += 1
            continue
        except OSError:                 # exited, or a kernel without ksm_stat
            continue
        if (stat.get("ksm_rmap_items", 0) or stat.get("ksm_merging_pages", 0)
                or stat.get("ksm_zero_pages", 0) or "yes" in (stat.get("ksm_mergeable"),
                                                                stat.get("ksm_merge_any"))):
            found.append(ProcessKsm(pid, name, stat))
    return found, unreadable


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.1f}" if b else "n/a"


def sharing_verdict(shared: int, sharing: int) -> str:
    """What pages_sharing/pages_shared says (Documentation/admin-guide/mm/ksm.rst:
    "a high ratio of pages_sharing to pages_shared indicates good sharing")."""
    if not shared:
        return "nothing merged yet"
    ratio = sharing / shared
    if ratio >= 2:
        return f"good sharing: each KSM page stands in for {ratio + 1:.0f} mappings on average"
    return "little sharing: most KSM pages stand in for only two mappings"


def unshared_verdict(unshared: int, sharing: int) -> str:
    """What pages_unshared/pages_sharing says (ksm.rst: "a high ratio of pages_unshared
    to pages_sharing indicates wasted effort")."""
    if not unshared:
        return "no wasted effort: no scanned page is waiting unmerged"
    if not sharing:
        return "all effort, no saving yet: every page scanned so far is unique"
    if unshared > sharing:
        return "wasted effort: ksmd scans more pages that do not merge than it saves"
    return "little wasted effort: most scanned pages merge"


def ksm_report(ksm: dict, procs: list[ProcessKsm], where: str, unreadable: int = 0) -> str:
    """A plain-text reading of KSM's state: knobs, counters, what they mean, processes."""
    run = {0: "stopped", 1: "merging", 2: "unmerging"}.get(ksm.get("run"), "?")
    knobs = " ".join(f"{k}={ksm[k]}" for k in KNOBS if k in ksm)
    counters = " ".join(f"{c}={ksm[c]}" for c in COUNTERS if c in ksm)
    indent = " " * 12
    lines = [f"KSM on {where}: run={ksm.get('run')} ({run})",
             textwrap.fill(knobs, 96, initial_indent="  tunables: ", subsequent_indent=indent),
             textwrap.fill(counters, 96, initial_indent="  counters: ", subsequent_indent=indent)]
    shared, sharing = ksm.get("pages_shared", 0), ksm.get("pages_sharing", 0)
    unshared = ksm.get("pages_unshared", 0)
    pages = "1 KSM page stands" if shared == 1 else f"{shared} KSM pages stand"
    lines.append(f"  {pages} in for {shared + sharing} mappings: sharing/shared = "
                 f"{_ratio(sharing, shared)} ({sharing_verdict(shared, sharing)})")
    lines.append(f"  unshared/sharing = {_ratio(unshared, sharing)} "
                 f"({unshared_verdict(unshared, sharing)})")
    if "general_profit" in ksm:
        lines.append(f"  general_profit = {ksm['general_profit']} bytes "
                     f"({ksm['general_profit'] / 2**20:.2f} MiB), the rmap_items' own memory "
                     "subtracted")
    if not procs:
        lines.append("  no process has KSM state" +
                     (f" ({unreadable} ksm_stat files were not readable: not root?)"
                      if unreadable else ""))
        return "\n".join(lines)
    lines.append(f"  {len(procs)} process{'es' if len(procs) > 1 else ''} with KSM state:")
    lines.append(f"  {'pid':>7}  {'name':<16} {'rmap_items':>10} {'merging':>8} "
                 f"{'zero':>6} {'profit':>10}  mergeable")
    for p in procs:
        st = p.stat
        lines.append(f"  {p.pid:>7}  {p.name[:16]:<16} {st.get('ksm_rmap_items', 0):>10} "
                     f"{st.get('ksm_merging_pages', 0):>8} {st.get('ksm_zero_pages', 0):>6} "
                     f"{st.get('ksm_process_profit', 0):>10}  {st.get('ksm_mergeable', '?')}")
    if unreadable:
        lines.append(f"  ({unreadable} more ksm_stat files were not readable: not root?)")
    return "\n".join(lines)
