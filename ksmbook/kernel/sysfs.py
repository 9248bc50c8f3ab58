"""/sys/kernel/mm/ksm/* and /proc/<pid>/{ksm_stat,ksm_merging_pages,maps} as text.

Each KSM attribute has the kernel's show format and store parser (kstrtouint,
kstrtobool, ...), its errors (EINVAL, EBUSY) and its version window: a file the
modelled kernel did not have yet is absent (ENOENT).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Callable

from .errors import einval, kernel_error
from ..uapi import KSM_SYSFS

UINT_MAX = (1 << 32) - 1
ULONG_MAX = (1 << 64) - 1
INT_MAX = (1 << 31) - 1


PAGE_SIZE = 4096
_HEXDIGITS = "0123456789abcdefABCDEF"


def sysfs_buffer(text) -> str | None:
    """What a store() sees of one write(2): kernfs_fop_write_iter() and sysfs_kf_write().

    kernfs copies at most PAGE_SIZE bytes (a longer write is cut, not refused) and
    NUL-terminates them, so the store reads a C string: it ends at the first NUL.
    sysfs_kf_write() returns 0 for a zero-length write without calling the store,
    so ``""`` succeeds and changes nothing (None here).
    """
    if not isinstance(text, str):
        raise einval("sysfs writes take text")
    data = text.encode("utf-8", "surrogateescape")[:PAGE_SIZE]
    if not data:
        return None
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def sysfs_streq(s1: str, s2: str) -> bool:
    """lib/string.c sysfs_streq(): equal, or equal but for one trailing newline."""
    return s1 == s2 or s1 + "\n" == s2 or s1 == s2 + "\n"


def _kstrtoull(s: str, base: int = 10) -> int:
    """lib/kstrtox.c _kstrtoull(): digits of ``base`` only (no sign, no space), then
    one optional newline and the end.  Overflow of 64 bits is -ERANGE, checked before
    the trailing text; no digit at all, or anything after them, is -EINVAL."""
    if base == 16 and s[:2].lower() == "0x":      # _parse_integer_fixup_radix()
        s = s[2:]
    n = 0               # _parse_integer(): the longest run of digits < base
    while n < len(s) and s[n] in _HEXDIGITS and int(s[n], 16) < base:
        n += 1
    if n and int(s[:n], base) > ULONG_MAX:
        raise kernel_error(errno.ERANGE, f"{s!r} overflows 64 bits")
    if n == 0:
        raise einval(f"not a number: {s!r}")
    rest = s[n:]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise einval(f"not a number: {s!r}")
    return int(s[:n], base)


def kstrtoull(text: str, limit: int = ULONG_MAX, base: int = 10) -> int:
    """lib/kstrtox.c kstrtoull(): one optional '+', then _kstrtoull(); ``limit`` is the
    range check of the narrower kstrto*() wrappers (-ERANGE above it)."""
    s = text[1:] if text.startswith("+") else text
    value = _kstrtoull(s, base)
    if value > limit:
        raise kernel_error(errno.ERANGE, f"{text!r} out of range")
    return value


def kstrtouint(text: str) -> int:
    """kstrtouint(s, 10): kstrtoull() then -ERANGE if it does not fit 32 bits."""
    return kstrtoull(text, UINT_MAX)


def kstrtoul(text: str) -> int:
    """kstrtoul(s, 10) on a 64-bit kernel is kstrtoull()."""
    return kstrtoull(text, ULONG_MAX)


def kstrtoint(text: str) -> int:
    """kstrtoint(s, 10) = kstrtoll() then the int range: '-' is followed by
    _kstrtoull() directly (so "-+5" is -EINVAL), '+' only without '-'."""
    if text.startswith("-"):
        value = _kstrtoull(text[1:])
        if value > INT_MAX + 1:
            raise kernel_error(errno.ERANGE, f"{text!r} out of range")
        return -value
    return kstrtoull(text, INT_MAX)


def kstrtobool(text: str) -> bool:
    """lib/kstrtox.c kstrtobool(): only the first one or two characters matter
    (y/Y/t/T/1/e/E true, n/N/f/F/0/d/D false, on/of[f] in any case)."""
    s = text if isinstance(text, str) else ""
    if s[:1] in ("y", "Y", "t", "T", "1", "e", "E"):
        return True
    if s[:1] in ("n", "N", "f", "F", "0", "d", "D"):
        return False
    if s[:1] in ("o", "O") and s[1:2] in ("n", "N"):
        return True
    if s[:1] in ("o", "O") and s[1:2] in ("f", "F"):
        return False
    raise einval(f"not a boolean: {text!r}")


def _as_einval(parse):
    """Most KSM stores turn any parse error into -EINVAL."""
    def wrapped(text):
        try:
            return parse(text)
        except OSError:
            raise einval(f"bad value {text!r}") from None
    return wrapped


@dataclass
class Attr:
    name: str
    show: Callable[[], str]
    store: Callable[[str], None] | None = None
    feature: str | None = None          # profile field that must be true


def ksm_attributes(machine) -> list[Attr]:
    """Every file of /sys/kernel/mm/ksm with the kernel's show/store semantics."""
    k = machine.ksm

    def num(getter):
        return lambda: f"{getter()}\n"

    def store_run(text):
        value = _as_einval(kstrtouint)(text)
        if value > 2:
            raise einval("run: 0, 1 or 2")
        k.set_run(value)

    def store_pages_to_scan(text):
        if k.advisor_mode != "none":
            raise einval("pages_to_scan is set by the advisor")
        k.pages_to_scan = _as_einval(kstrtouint)(text)

    def store_sleep(text):
        # sleep_millisecs_store(): any unsigned int, no upper bound (6.18)
        k.sleep_millisecs = _as_einval(kstrtouint)(text)
        machine.ksmd.next_wake_ns = machine.clock_ns     # the store wakes ksmd

    def store_merge_across_nodes(text):
        value = kstrtoul(text)          # kstrtoul's own error (ERANGE on overflow)
        if value > 1:
            raise einval("merge_across_nodes: 0 or 1")
        k.set_merge_across_nodes(value)

    def store_use_zero_pages(text):
        k.use_zero_pages = int(kstrtobool(text))

    def store_max_page_sharing(text):
        value = kstrtoint(text)         # kstrtoint's own error (ERANGE on overflow)
        if value < 2:
            raise einval("max_page_sharing: at least 2")
        k.set_max_page_sharing(value)

    def store_prune(text):
        k.stable_node_chains_prune_millisecs = _as_einval(kstrtouint)(text)

    def store_smart_scan(text):
        k.smart_scan = int(kstrtobool(text))

    def show_advisor():
        return "[none] scan-time\n" if k.advisor_mode == "none" else "none [scan-time]\n"

    def store_advisor(text):
        # advisor_mode_store(): sysfs_streq() against each mode's name
        s = next((m for m in ("scan-time", "none") if sysfs_streq(m, text)), None)
        if s is None:
            raise einval("advisor_mode: none or scan-time")
        if s != k.advisor_mode:
            k.advisor_mode = s
            k.set_advisor_defaults()

    def ulong_store(field, minimum=0, bits=64):
        def store(text):
            value = _as_einval(kstrtoul)(text)
            if value < minimum:
                raise einval(f"{field}: at least {minimum}")
            setattr(k, field, value & ((1 << bits) - 1))   # C assignment truncates
        return store

    s = k.stats
    return [
        Attr("run", num(lambda: k.run), store_run),
        Attr("pages_to_scan", num(lambda: k.pages_to_scan), store_pages_to_scan),
        Attr("sleep_millisecs", num(lambda: k.sleep_millisecs), store_sleep),
        Attr("max_kernel_pages", num(lambda: 0), None, "ksm_max_kernel_pages"),
        Attr("merge_across_nodes", num(lambda: k.merge_across_nodes), store_merge_across_nodes,
             "ksm_merge_across_nodes"),
        Attr("use_zero_pages", num(lambda: k.use_zero_pages), store_use_zero_pages,
             "ksm_use_zero_pages"),
        Attr("max_page_sharing", num(lambda: k.max_page_sharing), store_max_page_sharing,
             "ksm_stable_node_chains"),
        Attr("stable_node_chains_prune_millisecs",
             num(lambda: k.stable_node_chains_prune_millisecs), store_prune,
             "ksm_stable_node_chains"),
        Attr("smart_scan", num(lambda: k.smart_scan), store_smart_scan, "ksm_smart_scan"),
        Attr("advisor_mode", show_advisor, store_advisor, "ksm_advisor"),
        Attr("advisor_max_cpu", num(lambda: k.advisor_max_cpu),
             ulong_store("advisor_max_cpu", bits=32),
             "ksm_advisor"),
        Attr("advisor_min_pages_to_scan", num(lambda: k.advisor_min_pages_to_scan),
             ulong_store("advisor_min_pages_to_scan"), "ksm_advisor"),
        Attr("advisor_max_pages_to_scan", num(lambda: k.advisor_max_pages_to_scan),
             ulong_store("advisor_max_pages_to_scan"), "ksm_advisor"),
        Attr("advisor_target_scan_time", num(lambda: k.advisor_target_scan_time),
             ulong_store("advisor_target_scan_time", 1), "ksm_advisor"),
        Attr("full_scans", num(lambda: k.ksm_scan.seqnr)),
        Attr("pages_scanned", num(lambda: k.ksm_pages_scanned), None, "ksm_pages_scanned"),
        Attr("pages_shared", num(lambda: k.ksm_pages_shared)),
        Attr("pages_sharing", num(lambda: k.ksm_pages_sharing)),
        Attr("pages_unshared", num(lambda: k.ksm_pages_unshared)),
        Attr("pages_volatile", num(lambda: k.pages_volatile)),
        Attr("pages_skipped", num(lambda: k.ksm_pages_skipped), None, "ksm_smart_scan"),
        Attr("stable_node_chains", num(lambda: k.stable_node_chains), None,
             "ksm_stable_node_chains"),
        Attr("stable_node_dups", num(lambda: k.stable_node_dups), None, "ksm_stable_node_chains"),
        Attr("ksm_zero_pages", num(lambda: k.ksm_zero_pages), None, "ksm_zero_pages_counter"),
        Attr("general_profit", num(lambda: k.general_profit), None, "ksm_general_profit"),
    ]


THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"


def thp_attributes(machine) -> list[Attr]:
    """The files of /sys/kernel/mm/transparent_hugepage ksmbook models (mm/huge_memory.c):
    ``enabled`` (enabled_show/enabled_store: sysfs_streq of always/madvise/never,
    else -EINVAL), ``use_zero_page`` and ``hpage_pmd_size`` (read-only here)."""
    from .huge_memory import THP_MODES

    def show_enabled():
        return " ".join(f"[{m}]" if m == machine.thp else m for m in THP_MODES) + "\n"

    def store_enabled(text):
        for mode in THP_MODES:
            if sysfs_streq(text, mode):
                machine.thp = mode
                return
        raise einval(f"transparent_hugepage/enabled: {text!r}")

    return [Attr("enabled", show_enabled, store_enabled),
            Attr("use_zero_page", lambda: f"{int(machine.thp_use_zero_page)}\n"),
            Attr("hpage_pmd_size", lambda: f"{machine.page_size * 512}\n")]


class SysFs:
    """sysfs by path: ``read(path) -> str`` and ``write(path, text)``: /sys/kernel/mm/ksm,
    and (2.6.38+) the THP files of /sys/kernel/mm/transparent_hugepage."""

    def __init__(self, machine):
        self.machine = machine
        prof = machine.profile
        self.files = {f"{KSM_SYSFS}/{a.name}": a for a in ksm_attributes(machine)
                      if a.feature is None or getattr(prof, a.feature)}
        self.thp_files = ({f"{THP_SYSFS}/{a.name}": a for a in thp_attributes(machine)}
                          if prof.thp else {})

    def listdir(self, path: str = KSM_SYSFS) -> list[str]:
        if path.rstrip("/") != KSM_SYSFS:
            raise kernel_error(errno.ENOENT, path)
        return sorted(p.rsplit("/", 1)[1] for p in self.files)

    def _attr(self, path: str) -> Attr:
        """Path lookup as the VFS does it: repeated '/' collapse, a trailing '/' on a file
        is ENOTDIR, a directory is EISDIR, anything else absent ENOENT."""
        if not isinstance(path, str):
            raise TypeError(f"sysfs: path must be a string, not {type(path).__name__}")
        clean = "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
        attr = self.files.get(clean) or self.thp_files.get(clean)
        if attr is not None and path.endswith("/"):
            raise kernel_error(errno.ENOTDIR, path)
        if attr is None and path.startswith("/") and any(
                f.startswith(clean.rstrip("/") + "/") for f in (*self.files, *self.thp_files)):
            raise kernel_error(errno.EISDIR, path)
        if attr is None or not path.startswith("/"):
            raise kernel_error(errno.ENOENT, f"{path} (not in kernel {self.machine.profile.version})")
        return attr

    def read(self, path: str) -> str:
        return self._attr(path).show()

    def read_int(self, path: str) -> int:
        return int(self.read(path).split()[0])

    def write(self, path: str, text) -> None:
        attr = self._attr(path)
        if attr.store is None:      # kernfs_fop_open(): no ->write, -EACCES even for root
            raise kernel_error(errno.EACCES, f"{path} is read-only")
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("latin-1")       # write(2) takes bytes as they are
        elif isinstance(text, bool) or not isinstance(text, (str, int)):
            raise TypeError(f"sysfs write: value must be a str, bytes or int, "
                            f"not {type(text).__name__}")
        buf = sysfs_buffer(str(text))
        if buf is not None:
            attr.store(buf)

    def snapshot(self) -> dict[str, str]:
        return {p.rsplit("/", 1)[1]: a.show().strip() for p, a in self.files.items()}


class ProcFs:
    """/proc/<pid>/{ksm_stat,ksm_merging_pages,maps} and /proc/vmstat."""

    def __init__(self, machine):
        self.machine = machine

    def read(self, path: str) -> str:
        if not isinstance(path, str):
            raise TypeError(f"procfs: path must be a string, not {type(path).__name__}")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if not path.startswith("/"):
            raise kernel_error(errno.ENOENT, path)
        if parts == ["proc", "vmstat"]:
            return self._vmstat()
        if len(parts) != 3 or parts[0] != "proc":
            raise kernel_error(errno.ENOENT, path)
        pid_text, name = parts[1], parts[2]
        proc = self.machine.processes.get(int(pid_text)) if pid_text.isdigit() else None
        if proc is None or not proc.alive:
            raise kernel_error(errno.ENOENT, path)
        reader = getattr(self, f"_{name}", None)
        prof = self.machine.profile
        present = {"ksm_stat": prof.ksm_stat_file, "ksm_merging_pages": prof.ksm_merging_pages_file,
                   "maps": True, "smaps_rollup": True}
        if reader is None or not present.get(name):
            raise kernel_error(errno.ENOENT, path)
        return reader(proc)

    def _vmstat(self) -> str:
        """The modelled /proc/vmstat events, in vmstat_text order (THP ones with THP)."""
        from .huge_memory import THP_VMSTAT
        vm = self.machine.vmstat
        names = (THP_VMSTAT if self.machine.profile.thp else ()) + ("ksm_swpin_copy", "cow_ksm")
        return "".join(f"{k} {vm[k]}\n" for k in names)

    def _smaps_rollup(self, proc) -> str:
        """show_smaps_rollup(): the fields ksmbook models -- Rss (resident pages, a KSM
        page counted in every mapping, the zero page in none), Anonymous (the same
        outside MAP_SHARED mappings) and AnonHugePages (PMD-mapped THPs, not the huge
        zero page), each as "%-Ns%8lu kB"."""
        from .huge_memory import anon_huge_kb
        from .pagetable import pte_present, pte_special
        mm = proc.mm
        kb = mm.page_size // 1024
        huge = anon_huge_kb(mm)
        rss = anon = huge
        for v in mm.vmas:
            n = sum(kb for _a, pte in mm.pagetables.present(v.start, v.end)
                    if pte_present(pte) and not pte_special(pte))
            rss += n
            anon += 0 if v.shmem is not None else n
        head = (f"{min(v.start for v in mm.vmas):08x}-{max(v.end for v in mm.vmas):08x}"
                if mm.vmas else "00000000-00000000") + " ---p 00000000 00:00 0"
        lines = [f"{head:<73}[rollup]"]
        for name, value in (("Rss", rss), ("Anonymous", anon), ("AnonHugePages", huge)):
            lines.append(f"{name}:{value:>{23 - len(name)}} kB")
        return "\n".join(lines) + "\n"

    def _ksm_merging_pages(self, proc) -> str:
        return f"{proc.mm.ksm_merging_pages}\n"

    def _ksm_stat(self, proc) -> str:
        """proc_pid_ksm_stat() in fs/proc/base.c, line by line per version."""
        mm, k, prof = proc.mm, self.machine.ksm, self.machine.profile
        lines = [f"ksm_rmap_items {mm.ksm_rmap_items}"]
        if prof.ksm_zero_pages_counter:
            lines.append(f"ksm_zero_pages {mm.ksm_zero_pages}")
        if prof.ksm_general_profit:
            lines.append(f"ksm_merging_pages {mm.ksm_merging_pages}")
            lines.append(f"ksm_process_profit {k.process_profit(mm)}")
        if prof.ksm_stat_merge_flags:
            any_ = "yes" if mm.flags & k.MMF_VM_MERGE_ANY else "no"
            mergeable = "yes" if any(v.flags & v.VM_MERGEABLE for v in mm.vmas) else "no"
            lines.append(f"ksm_merge_any: {any_}")
            lines.append(f"ksm_mergeable: {mergeable}")
        return "\n".join(lines) + "\n"

    def _maps(self, proc) -> str:
        out = []
        for v in proc.mm.vmas:
            name = "/dev/zero (deleted)" if v.shmem is not None else ""
            off = (v.pgoff << proc.mm.page_shift) if v.shmem is not None else 0
            line = f"{v.start:08x}-{v.end:08x} {v.prot_text()} {off:08x} 00:00 0"
            out.append(f"{line:<73}{name}".rstrip())
        return "\n".join(out) + ("\n" if out else "")


def parse_ksm_stat(text: str) -> dict:
    """Parse /proc/<pid>/ksm_stat: ``name value`` or ``name: value`` lines.

    'ksm_rmap_items 3\nksm_merge_any: no' -> {'ksm_rmap_items': 3, 'ksm_merge_any': 'no'};
    numbers become ints, ``yes``/``no`` stay strings, as the kernel prints them.
    """
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, value = line.partition(" ")
        name, value = name.rstrip(":"), value.strip()
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = value
    return out
