"""Every write to /sys/kernel/mm/ksm, replayed on the real kernel and in the simulator.

``INPUTS`` names, per knob, the texts written: empty, whitespace, newlines, signs,
hex and octal spellings, the 2^31/2^32/2^64 edges, NUL bytes, a write longer than a
page, and for the kstrtobool() knobs every spelling.  Each text is one write(2)
(``os.write`` on an ``O_WRONLY`` descriptor, so ``""`` really is a zero-length
write), made after the knob was set back to its base value; the outcome is the
errno name (or ``"ok"``) and what the file shows afterwards.

The read-only files are opened for writing once each: kernfs_fop_open() refuses
that with EACCES, even for root.

``python -m ksmbook.oracle.knobs --record tests/data/sysfs_knobs.json`` replays the
table on this machine's kernel (root, under the live lock, every knob restored and
run left at 0) and writes the results; ``tests/test_sysfs_knobs.py`` checks the
simulator against that file everywhere and against the kernel live when it can.
"""
from __future__ import annotations

import argparse
import errno as _errno
import json
import os
import platform
from pathlib import Path
from ..uapi import KSM_SYSFS

__all__ = ["INPUTS", "BASE", "READ_ONLY", "replay_live", "replay_simulator", "record"]

KSM_DIR = Path(KSM_SYSFS)

U32, U64 = 1 << 32, 1 << 64
#: Numbers and non-numbers every numeric knob gets.
NUMERIC = [
    "", "\n", " ", "\t", "0", "1", "2", "3", "7", "7\n", "7\n\n", "\n7", " 7", "7 ", "\t7",
    "+7", "++7", "-7", "-0", "+0", "-+7", "+-7", "07", "010", "0x10", "0X1f", "0o7", "0b1",
    "1e3", "7a", "abc", "7.0", "7,0", "1_000", "\uff17",       # a full-width digit 7
    str((1 << 31) - 1), str(1 << 31), str(-(1 << 31)), str(-(1 << 31) - 1),
    str(U32 - 1), str(U32), str(U32 + 1), str(U64 - 1), str(U64), str(U64 + 1),
    "9" * 30, "9" * 30 + "x", "00000000000000000000000000007",
    "60000", "60001", "600000", "7\0", "7\0junk", "\0" "7", "7" * 5000,
]
#: kstrtobool() spellings, and a few numbers.
BOOLEAN = [
    "", "\n", " ", "0", "1", "2", "-1", "+1", "01", "10", "y", "Y", "n", "N", "yes", "no",
    "YES", "No", "t", "T", "f", "F", "true", "false", "on", "off", "ON", "OFF", "oN", "oF",
    "o", "O", "ox", "e", "E", "d", "D", "enable", "disable", "y\n", "n\n", " y", "\ny",
    "x", "yx", "1\0", "\0" "1", "0x1", "1" * 5000,
]
#: advisor_mode is matched with sysfs_streq().
ADVISOR_MODE = [
    "", "\n", " ", "none", "none\n", "none\n\n", " none", "none ", "NONE", "None",
    "scan-time", "scan-time\n", "scan-time\n\n", "scan-time ", " scan-time", "scan_time",
    "scan", "scan-timex", "Scan-Time", "0", "1", "scan-time\0", "scan-time\0junk",
    "none\0", "[none]", "[scan-time]", "none scan-time", "\0scan-time",
]

#: Per knob: its base value (written before each input) and its inputs.  run's
#: base is 0; writing 1 there is harmless: no process is registered with KSM while
#: the lock is held (replay_live refuses to start otherwise).
BASE = {
    "run": "0", "pages_to_scan": "100", "sleep_millisecs": "20",
    "merge_across_nodes": "1", "use_zero_pages": "0", "max_page_sharing": "256",
    "stable_node_chains_prune_millisecs": "2000", "smart_scan": "1",
    "advisor_mode": "none", "advisor_max_cpu": "70", "advisor_min_pages_to_scan": "500",
    "advisor_max_pages_to_scan": "30000", "advisor_target_scan_time": "200",
}
INPUTS = {name: (BOOLEAN if name in ("use_zero_pages", "smart_scan") else
                 ADVISOR_MODE if name == "advisor_mode" else NUMERIC)
          for name in BASE}
READ_ONLY = ("full_scans", "pages_scanned", "pages_shared", "pages_sharing", "pages_unshared",
             "pages_volatile", "pages_skipped", "stable_node_chains", "stable_node_dups",
             "ksm_zero_pages", "general_profit")


def _errname(exc: OSError) -> str:
    return _errno.errorcode.get(exc.errno, str(exc.errno))


def _shown(text: str) -> str:
    return text.strip()


# ---------------------------------------------------------------- the real kernel

def _raw_write(name: str, text: str) -> str:
    fd = os.open(KSM_DIR / name, os.O_WRONLY)
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
        return "ok"
    except OSError as exc:
        return _errname(exc)
    finally:
        os.close(fd)


def replay_live(knobs=None) -> dict:
    """The table on this kernel: ``{knob: [[text, outcome, shown], ...]}`` and
    ``{"<ro>": [[name, outcome]]}``.  Needs root; holds the live lock; restores
    every knob it wrote (run=2 then 0 first and last)."""
    from .live import KsmBusy, available, ksm_users, machine_lock, read_knob, write_knob
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    knobs = list(knobs or INPUTS)
    out: dict = {"knobs": {}, "read_only": []}
    with machine_lock():
        others = ksm_users()
        if others:
            raise KsmBusy("other processes use KSM: " + ", ".join(others))
        saved = {n: read_knob(n) for n in BASE if (KSM_DIR / n).exists()}
        try:
            write_knob("run", 2)
            write_knob("run", 0)
            write_knob("advisor_mode", "none")
            for name in knobs:
                if name not in saved:
                    continue
                rows = []
                for text in INPUTS[name]:
                    write_knob(name, BASE[name])
                    if name == "advisor_mode":
                        write_knob("pages_to_scan", BASE["pages_to_scan"])
                    outcome = _raw_write(name, text)
                    rows.append([text, outcome, _shown((KSM_DIR / name).read_text())])
                    if name == "run" and outcome == "ok":
                        write_knob("run", 2)       # leave nothing merged or running
                write_knob(name, BASE[name])
                out["knobs"][name] = rows
            for name in READ_ONLY:
                if not (KSM_DIR / name).exists():
                    continue
                try:
                    os.close(os.open(KSM_DIR / name, os.O_WRONLY))
                    out["read_only"].append([name, "ok"])
                except OSError as exc:
                    out["read_only"].append([name, _errname(exc)])
        finally:
            write_knob("run", 2)
            write_knob("run", 0)
            write_knob("advisor_mode", "none")
            for name, value in saved.items():
                if name not in ("run", "advisor_mode") and read_knob(name) != value:
                    write_knob(name, value)
            if saved.get("advisor_mode", "none") != "none":
                write_knob("advisor_mode", saved["advisor_mode"])
            if saved.get("run", "0") != "0":
                write_knob("run", saved["run"])
    return out


# ---------------------------------------------------------------- the simulator

def replay_simulator(knobs=None, machine=None) -> dict:
    """The same table on a fresh simulated 6.18 machine, through ``m.sysfs``."""
    from ..kernel.machine import Machine
    m = machine or Machine()
    fs = m.sysfs
    d = KSM_SYSFS
    out: dict = {"knobs": {}, "read_only": []}
    present = set(fs.listdir())
    for name in knobs or INPUTS:
        if name not in present:
            continue
        rows = []
        for text in INPUTS[name]:
            fs.write(f"{d}/{name}", BASE[name])
            if name == "advisor_mode":
                fs.write(f"{d}/pages_to_scan", BASE["pages_to_scan"])
            try:
                fs.write(f"{d}/{name}", text)
                outcome = "ok"
            except OSError as exc:
                outcome = _errname(exc)
            rows.append([text, outcome, _shown(fs.read(f"{d}/{name}"))])
            if name == "run" and outcome == "ok":
                fs.write(f"{d}/run", "2")
        fs.write(f"{d}/{name}", BASE[name])
        out["knobs"][name] = rows
    for name in READ_ONLY:
        if name not in present:
            continue
        try:
            fs.write(f"{d}/{name}", "0")
            out["read_only"].append([name, "ok"])
        except OSError as exc:
            out["read_only"].append([name, _errname(exc)])
    return out


def record(path: str | os.PathLike) -> dict:
    doc = {"kernel": platform.release(), "inputs": sum(len(v) for v in INPUTS.values()),
           **replay_live()}
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", metavar="FILE", required=True)
    args = ap.parse_args(argv)
    doc = record(args.record)
    print(f"{doc['kernel']}: {doc['inputs']} writes over {len(doc['knobs'])} knobs, "
          f"{len(doc['read_only'])} read-only files -> {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
