"""The ``ksmbook`` command: built-in scenarios in the simulator and on this kernel.

    ksmbook scenarios                      list the built-in scenarios
    ksmbook run NAME [--kernel 6.18]       the counters after every step, simulated
    ksmbook compare NAME                   the simulator beside this machine's kernel
    ksmbook notebooks DIR                  copy the book's notebooks into DIR for editing
    ksmbook lab [--dir DIR]                open the book in JupyterLab (from a checkout, or
                                           from an installed wheel via a copy in DIR)
    ksmbook --version

``compare`` exits 0 when every counter and ksm_stat field is equal after every
step, 1 when some differ, and 2 when the real kernel cannot be used (not root,
no KSM, someone else using KSM...), saying why.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import textwrap
import time

from .oracle.scenario import (COUNTERS, DELTA_COUNTERS, KSM_STAT_FIELDS, SCENARIOS, Scans, Scenario,
                       diff_snapshots, diff_traces, run_in_simulator)

#: Column headers for the global counters, in COUNTERS order.
SHORT = {
    "full_scans": "full", "pages_scanned": "scanned", "pages_shared": "shared",
    "pages_sharing": "sharing", "pages_unshared": "unshared", "pages_volatile": "volatile",
    "pages_skipped": "skipped", "stable_node_chains": "chains", "stable_node_dups": "dups",
    "ksm_zero_pages": "zero", "general_profit": "profit",
}
STAT_SHORT = {
    "ksm_rmap_items": "rmap_items", "ksm_zero_pages": "zero_pages",
    "ksm_merging_pages": "merging", "ksm_process_profit": "profit",
    "ksm_merge_any": "merge_any", "ksm_mergeable": "mergeable",
    "merging_pages_file": "merging_pages_file",
}
OP_WIDTH = 44
#: A run is "long" (progress bar in auto mode) past this many page visits or steps.
LONG_PAGE_VISITS = 20_000
LONG_STEPS = 40
#: compare lists at most this many differing fields (grouped over steps).
MAX_DIFF_LINES = 40


class UsageError(Exception):
    """A bad command line (unknown scenario...): message to stderr, exit 2."""


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

def _scenarios() -> dict[str, Scenario]:
    return SCENARIOS


def find_scenario(name: str) -> Scenario:
    """The built-in scenario ``name``, or a UsageError suggesting close names."""
    scenarios = _scenarios()
    if name in scenarios:
        return scenarios[name]
    close = difflib.get_close_matches(name, list(scenarios), n=4, cutoff=0.5)
    close += [n for n in sorted(scenarios) if name and name in n and n not in close][:4]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown scenario {name!r}{hint} "
                     f"('ksmbook scenarios' lists all {len(scenarios)})")


def one_line(text: str, width: int) -> str:
    """The first sentence of ``text``, cut to ``width`` characters."""
    text = " ".join(text.split())
    cut = text.find(". ")
    if cut > 0:
        text = text[:cut + 1]
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def cmd_scenarios(args, out) -> int:
    scenarios = _scenarios()
    width = max(len(n) for n in scenarios)
    columns = shutil.get_terminal_size((120, 24)).columns
    for name in sorted(scenarios):
        desc = one_line(scenarios[name].description, max(columns - width - 2, 40))
        print(f"{name:<{width}}  {desc}", file=out)
    print(f"\n{len(scenarios)} scenarios; 'ksmbook run NAME' runs one in the simulator, "
          "'ksmbook compare NAME' beside this machine's kernel.", file=out)
    return 0


# --------------------------------------------------------------------------
# progress bar (stderr, plain text)
# --------------------------------------------------------------------------

class ProgressBar:
    """``[#####-----]  50%  step 6/12 scans(4) full scan 2/4`` redrawn in place."""

    WIDTH = 30

    def __init__(self, scenario: Scenario, stream, enabled: bool):
        self.stream, self.enabled = stream, enabled
        pages = max(scenario.max_pages, 1)
        # weight of each step: 1, plus the pages one full scan visits per scan
        self.weights = [1 + (s.n * pages if isinstance(s, Scans) else 0) for s in scenario.steps]
        self.total = sum(self.weights)
        self.before = [sum(self.weights[:i]) for i in range(len(self.weights))]
        self.pages = pages
        self.drawn = False

    def __call__(self, index: int, step, done: int, n: int) -> None:
        if not self.enabled:
            return
        work = self.before[index] + done * self.pages
        frac = work / self.total if self.total else 1.0
        fill = int(frac * self.WIDTH)
        detail = f" full scan {done}/{n}" if n else ""
        text = (f"\r[{'#' * fill}{'-' * (self.WIDTH - fill)}] {frac:4.0%}  "
                f"step {index + 1}/{len(self.weights)} {step.describe()[:32]}{detail}")
        self.stream.write(text.ljust(100)[:100])
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write(f"\r[{'#' * self.WIDTH}] 100%  done".ljust(100)[:100] + "\n")
            self.stream.flush()


def is_long(scenario: Scenario) -> bool:
    visits = sum(s.n for s in scenario.steps if isinstance(s, Scans)) * scenario.max_pages
    return visits >= LONG_PAGE_VISITS or len(scenario.steps) >= LONG_STEPS


def want_progress(args, scenario: Scenario, err) -> bool:
    if args.progress == "always":
        return True
    if args.progress == "never":
        return False
    return bool(getattr(err, "isatty", lambda: False)()) and is_long(scenario)


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------

def _op_text(snap) -> str:
    op = snap["op"]
    if len(op) > OP_WIDTH - 1:
        op = op[:OP_WIDTH - 4] + "..."
    if snap["error"]:
        op = op[:OP_WIDTH - len(snap["error"]) - 4] + " -> " + snap["error"]
    return op


def _widths() -> list[int]:
    return [max(len(SHORT[c]), 6) for c in COUNTERS]


def _header(side: bool) -> str:
    cells = [f"{SHORT[c]:>{w}}" for c, w in zip(COUNTERS, _widths())]
    return f"{'step':>4}  {'op':<{OP_WIDTH}}" + (f"{'side':<7}" if side else "") + " ".join(cells)


def _row(index, op: str, counters: dict, side: str | None = None, mark=frozenset()) -> str:
    cells = []
    for c, w in zip(COUNTERS, _widths()):
        text = str(counters[c]) + ("*" if c in mark else "")
        cells.append(f"{text:>{w}}")
    step = f"{index:>4}" if index is not None else " " * 4
    return f"{step}  {op:<{OP_WIDTH}}" + (f"{side:<7}" if side is not None else "") + " ".join(cells)


def _stat_line(proc: str, stat: dict, mark=frozenset(), other: dict | None = None) -> str:
    parts = []
    for key in (*KSM_STAT_FIELDS, "merging_pages_file"):
        if key not in stat and (other is None or key not in other):
            continue
        value = stat.get(key, "-")
        if key in mark and other is not None:
            parts.append(f"{STAT_SHORT[key]}={value}|{other.get(key, '-')}!=")
        elif key != "merging_pages_file" or stat.get(key) != stat.get("ksm_merging_pages"):
            parts.append(f"{STAT_SHORT[key]}={value}")
    return f"{'':>6}{proc}: " + " ".join(parts)


def _wrapped(text: str) -> str:
    width = max(shutil.get_terminal_size((100, 24)).columns, 60)
    return textwrap.fill(" ".join(text.split()), width=min(width, 100),
                         initial_indent="  ", subsequent_indent="  ")


def print_run(scenario: Scenario, snaps, kernel: str, show_stat: bool, out) -> None:
    print(f"{scenario.name}: simulator, Linux {kernel} model", file=out)
    print(_wrapped(scenario.description), file=out)
    print(f"  ({', '.join(DELTA_COUNTERS)} count from the scenario's start)\n", file=out)
    print(_header(False), file=out)
    for s in snaps:
        print(_row(s["step"], _op_text(s), s["counters"]), file=out)
        if show_stat:
            for proc, stat in s["ksm_stat"].items():
                print(_stat_line(proc, stat), file=out)


# --------------------------------------------------------------------------
# run / compare
# --------------------------------------------------------------------------

def simulate(scenario: Scenario, args, err) -> tuple[list, ProgressBar]:
    """The scenario in the simulator, with the progress bar if wanted."""
    bar = ProgressBar(scenario, err, want_progress(args, scenario, err))
    try:
        return run_in_simulator(scenario, kernel=args.kernel, progress=bar), bar
    finally:
        bar.close()


def cmd_run(args, out, err) -> int:
    scenario = find_scenario(args.scenario)
    snaps, _ = simulate(scenario, args, err)
    if args.json:
        json.dump({"scenario": scenario.to_dict(), "kernel": args.kernel, "runner": "simulator",
                   "snapshots": snaps}, out, indent=1)
        out.write("\n")
    else:
        print_run(scenario, snaps, args.kernel, args.stat, out)
    return 0


def _diff_fields(a, b) -> list:
    """(path, simulator, kernel) for every differing field of one step."""
    return [(d.path, d.a, d.b) for d in diff_snapshots(a, b)]


def _step_ranges(steps: list[int]) -> str:
    """[0, 1, 2, 5] -> 'after steps 0-2, 5'."""
    parts, run = [], [steps[0], steps[0]]
    for x in steps[1:]:
        if x == run[1] + 1:
            run[1] = x
        else:
            parts.append(run)
            run = [x, x]
    parts.append(run)
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)
    return ("after step " if len(steps) == 1 else "after steps ") + text


def print_compare(scenario: Scenario, sim, ker, kernel: str, show_stat: bool, out) -> int:
    release = os.uname().release
    print(f"{scenario.name}: simulator (Linux {kernel} model) beside this kernel ({release})",
          file=out)
    print(_wrapped(scenario.description), file=out)
    print("  one row where both agree; a 'sim' and a 'kernel' row where they do not, with *"
          " on each differing counter\n", file=out)
    print(_header(True) + "  !=", file=out)
    total = 0
    listing = []
    for a, b in zip(sim, ker):
        diffs = _diff_fields(a, b)
        total += len(diffs)
        listing += [(a["step"], a["op"], d) for d in diffs]
        marked = {p.split(".", 1)[1] for p, _, _ in diffs if p.startswith("counters.")}
        if not diffs:
            print(_row(a["step"], _op_text(a), a["counters"], "both"), file=out)
        else:
            others = [p for p, _, _ in diffs if not p.startswith("counters.")]
            note = f"{len(diffs)} field{'s' if len(diffs) > 1 else ''}"
            if others:
                note += ": " + ", ".join(p.replace("ksm_stat.", "") for p in others[:3])
                note += ", ..." if len(others) > 3 else ""
            print(_row(a["step"], _op_text(a), a["counters"], "sim", marked), file=out)
            print(_row(None, "", b["counters"], "kernel", marked) + f"  != {note}", file=out)
        if show_stat:
            for proc in list(a["ksm_stat"]) + [p for p in b["ksm_stat"] if p not in a["ksm_stat"]]:
                sa, sb = a["ksm_stat"].get(proc, {}), b["ksm_stat"].get(proc, {})
                mark = {k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)}
                print(_stat_line(proc, sa, mark, sb if mark else None), file=out)
    if len(sim) != len(ker):
        total += 1
        listing.append((None, "", ("len", len(sim), len(ker))))
    fields = sum(len(s["counters"]) + sum(len(v) for v in s["ksm_stat"].values()) for s in ker)
    print("", file=out)
    groups: dict[tuple, list] = {}
    for step, _op, (path, va, vb) in listing:
        groups.setdefault((path, repr(va), repr(vb)), []).append(step)
    for (path, va, vb), steps in list(groups.items())[:MAX_DIFF_LINES]:
        where = "number of steps" if steps == [None] else _step_ranges(steps)
        print(f"  != {path}: simulator {va}, kernel {vb}  ({where})", file=out)
    if len(groups) > MAX_DIFF_LINES:
        print(f"  ... and {len(groups) - MAX_DIFF_LINES} more (--json lists them all)", file=out)
    if total:
        print(f"{total} field differs" if total == 1 else f"{total} fields differ", file=out)
        return 1
    print(f"0 fields differ: all {fields} counter and ksm_stat values are equal after "
          f"every one of the {len(sim)} steps", file=out)
    return 0


def cmd_compare(args, out, err) -> int:
    from .oracle import live
    scenario = find_scenario(args.scenario)
    ok, why = live.available()
    if not ok:
        print(f"ksmbook compare: cannot run {scenario.name} on this kernel: {why}", file=err)
        return 2
    sim, bar = simulate(scenario, args, err)
    if bar.enabled:
        print("running on the real kernel...", file=err)
    started = time.monotonic()
    try:
        ker = live.run_live(scenario, timeout=args.timeout)
    except (live.LiveUnavailable, live.KsmBusy, live.ProtocolError) as exc:
        print(f"ksmbook compare: cannot run {scenario.name} on this kernel: {exc}", file=err)
        return 2
    if bar.enabled:
        print(f"kernel run took {time.monotonic() - started:.1f} s", file=err)
    if args.json:
        diffs = [d._asdict() for d in diff_traces(sim, ker)]
        json.dump({"scenario": scenario.to_dict(), "simulator_kernel": args.kernel,
                   "kernel": os.uname().release, "simulator": sim, "live": ker,
                   "diffs": diffs}, out, indent=1)
        out.write("\n")
        return 1 if diffs else 0
    return print_compare(scenario, sim, ker, args.kernel, args.stat, out)


# --------------------------------------------------------------------------
# the book: notebooks / lab
# --------------------------------------------------------------------------

#: Where ``ksmbook lab`` puts its copy of the notebooks of an installed wheel
#: (the package folder may be read-only, and readers' edits must survive upgrades).
DEFAULT_BOOK_DIR = "~/ksmbook-notebooks"


def copy_notebooks(dest, *, overwrite: bool = False) -> tuple[list, list]:
    """Copy the book's chapters (.ipynb and their .md sources) into ``dest``;
    files already there are kept unless ``overwrite``. Returns (copied, kept)."""
    from pathlib import Path
    from . import data
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for src in data.book_files():
        target = dest / src.name
        if target.exists() and not overwrite:
            kept.append(target)
            continue
        shutil.copyfile(src, target)
        copied.append(target)
    return copied, kept


def cmd_notebooks(args, out) -> int:
    copied, kept = copy_notebooks(args.dir, overwrite=args.force)
    print(f"copied {len(copied)} files into {os.path.abspath(os.path.expanduser(args.dir))}"
          + (f"; kept {len(kept)} already there (--force overwrites)" if kept else ""), file=out)
    return 0


def lab_command(args) -> tuple[list[str], str]:
    """(argv, folder) of the JupyterLab that opens the book's index. From a
    checkout it opens notebooks/ in place; from an installed wheel it copies the
    notebooks to ``--dir`` first (keeping a reader's edited files)."""
    from pathlib import Path
    from . import data
    source = data.notebooks_dir()
    if args.dir is None and source == data.CHECKOUT / "notebooks":
        folder = source
    else:
        folder = Path(args.dir or DEFAULT_BOOK_DIR).expanduser()
        copy_notebooks(folder)
    argv = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={folder}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        argv.append("--allow-root")      # jupyter refuses root without it (containers, CI)
    extra = list(args.lab_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return argv + ["00_index.ipynb"] + extra, str(folder)


def cmd_lab(args, out) -> int:
    argv, folder = lab_command(args)
    if args.dry_run:
        print(" ".join(argv), file=out)
        return 0
    print(f"opening the book in {folder}", file=out)
    out.flush()
    os.chdir(folder)
    os.execv(argv[0], argv)              # replaces this process; returns only on failure


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ksmbook",
        description="KSM scenarios in ksmbook's simulated Linux kernel, and beside the real one.")
    from . import __version__
    ap.add_argument("--version", action="version", version=f"ksmbook {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("scenarios", help="list the built-in scenarios")

    def scenario_command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("scenario", metavar="SCENARIO", help="a name from 'ksmbook scenarios'")
        p.add_argument("--kernel", default="6.18",
                       help="kernel version the simulator models (default 6.18)")
        p.add_argument("--json", action="store_true", help="print the snapshots as JSON")
        p.add_argument("--stat", action="store_true",
                       help="also print every process's /proc/<pid>/ksm_stat after each step")
        p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                       help="progress bar on stderr (auto: on a terminal, for long runs)")
        return p

    scenario_command("run", "run a scenario in the simulator; print the counters after every step")
    cmp = scenario_command("compare", "run a scenario in the simulator and on this machine's "
                                      "kernel (root + KSM); mark every field that differs")
    cmp.add_argument("--timeout", type=float, default=60.0,
                     help="seconds to wait for ksmd on each full scan (default 60)")

    ex = sub.add_parser("exercises", help="the exercises: list, instructor key, otter-grader "
                                          "assignments and grading")
    exsub = ex.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = exsub.add_parser("list", help="what exists, per chapter and kind")
    ls.add_argument("--chapter", help="one chapter, e.g. 04")
    k = exsub.add_parser("key", help="every question and answer for a seed, with explanations")
    who = k.add_mutually_exclusive_group(required=True)
    who.add_argument("--seed", help="a number or a student id")
    who.add_argument("--roster", help="a CSV of students (column 'id'): one row per student")
    k.add_argument("--chapter", help="one chapter, e.g. 04")
    k.add_argument("--format", choices=("md", "json", "csv"), default=None,
                   help="output format (default md; csv for --roster)")
    a = exsub.add_parser("assign", help="student notebooks + otter autograder zips in OUTDIR")
    a.add_argument("outdir", metavar="OUTDIR")
    a.add_argument("--chapter", action="append", help="a chapter (repeatable; default all)")
    a.add_argument("--allow-solutions", action="store_true",
                   help="let students call solution()/expected() in their notebooks")
    g = exsub.add_parser("grade", help="grade a folder of submitted notebooks with otter "
                                       "(no container); print a per-student score table")
    g.add_argument("autograder", metavar="AUTOGRADER_ZIP")
    g.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    g.add_argument("--refuse-mismatch", action="store_true",
                   help="score 0 for a notebook whose file name is not the student id it is "
                        "seeded with (default: grade it and flag it in the id_check column)")
    nb = sub.add_parser("notebooks", help="copy the book's notebooks into DIR for editing")
    nb.add_argument("dir", metavar="DIR")
    nb.add_argument("--force", action="store_true", help="overwrite files already in DIR")
    lab = sub.add_parser("lab", help="open the book in JupyterLab")
    lab.add_argument("--dir", default=None,
                     help=f"folder for the reader's copy of the notebooks (default: the checkout's "
                          f"notebooks/, or {DEFAULT_BOOK_DIR} for an installed package)")
    lab.add_argument("--dry-run", action="store_true", help="print the jupyter command only")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER,
                     help="further arguments for jupyter lab (after --)")
    return ap


def cmd_exercises(args, out) -> int:
    """``ksmbook exercises list|key|assign|grade``."""
    from .exercises import classroom as C

    chapter = getattr(args, "chapter", None)
    if isinstance(chapter, str):
        chapter = f"{int(chapter):02d}"
    if args.action == "list":
        print(C.format_listing(C.listing(chapter)), file=out)
    elif args.action == "key":
        if args.roster:
            out.write(C.roster_key(C.read_roster(args.roster), chapter, args.format or "csv"))
        else:
            seed = int(args.seed) if args.seed.lstrip("-").isdigit() else args.seed
            out.write(C.format_key(C.key(seed, chapter), args.format or "md"))
    elif args.action == "assign":
        made = C.assign(args.outdir, args.chapter, allow_solutions=args.allow_solutions)
        for c, paths in made.items():
            print(f"ch{c}: hand out {paths['student']}  grade with {paths['autograder']}", file=out)
    else:
        rows = C.grade(args.autograder, args.submissions, refuse_mismatch=args.refuse_mismatch)
        out.write(C.format_scores(rows))
        for r in rows:
            if r["id_check"] != "ok":
                print(f"ksmbook exercises grade: {r['student']}.ipynb: {r['id_check']}",
                      file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 differences, 2 usage/unavailable)."""
    out, err = sys.stdout, sys.stderr
    args = build_parser().parse_args(argv)
    try:
        if args.command == "scenarios":
            return cmd_scenarios(args, out)
        if args.command == "run":
            return cmd_run(args, out, err)
        if args.command == "exercises":
            return cmd_exercises(args, out)
        if args.command == "notebooks":
            return cmd_notebooks(args, out)
        if args.command == "lab":
            return cmd_lab(args, out)
        return cmd_compare(args, out, err)
    except UsageError as exc:
        print(f"ksmbook {args.command}: {exc}", file=err)
        return 2
    except ValueError as exc:             # e.g. an unknown --kernel version
        print(f"ksmbook {args.command}: {exc}", file=err)
        return 2
    except FileNotFoundError as exc:      # a counter the chosen --kernel does not have
        print(f"ksmbook {args.command}: {exc.strerror}; scenario "
              f"snapshots read every counter of Linux 6.18, so --kernel {args.kernel} "
              "cannot run them (pages_skipped needs 6.7 or later)", file=err)
        return 2
    except BrokenPipeError:               # `ksmbook scenarios | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
