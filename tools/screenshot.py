#!/usr/bin/env python3
"""Screenshot a notebook as a reader sees it in JupyterLab.

    .venv/bin/python tools/screenshot.py NOTEBOOK [OUT.png] [--no-run] [--width PX]
    .venv/bin/python tools/screenshot.py --all [--width 1280 --width 800]

Starts a throw-away JupyterLab on 127.0.0.1 rooted at the notebook's folder,
opens NOTEBOOK in headless Chromium (/usr/bin/chromium), clears and runs all
cells (unless --no-run), waits for the kernel to go idle and writes a
full-height PNG (default: build/screenshots/<name>.png). The notebook file is
not modified. Prints the title and any error outputs; exits 1 if a cell failed.

A notebook taller than Chromium's 16,000 px limit is taken in parts:
<name>.png, then <name>-part2.png, <name>-part3.png, ... (the notebook scrolled
by a window each time, 200 px repeated at the top of each part).

--width may be given several times: one screenshot per width, named
<name>-<width>.png.  --all takes every chapter of notebooks/ (00 index included,
the redirect pages for old names left out), one JupyterLab for all of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def _reexec_in_venv() -> None:
    """If run with a python that lacks playwright, retry with the repo's .venv."""
    venv_python = REPO / ".venv" / "bin" / "python"
    try:
        import playwright  # noqa: F401
    except ImportError:
        in_venv = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
        if venv_python.exists() and not in_venv and not os.environ.get("KSMBOOK_REEXEC"):
            os.environ["KSMBOOK_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    _reexec_in_venv()
    import labshot

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", nargs="?",
                    help="path to an .ipynb file, e.g. notebooks/00_index.ipynb")
    ap.add_argument("out", nargs="?", help="output PNG (default build/screenshots/<name>.png)")
    ap.add_argument("--all", action="store_true", help="every chapter of notebooks/")
    ap.add_argument("--no-run", action="store_true", help="show the stored outputs, run nothing")
    ap.add_argument("--width", type=int, action="append",
                    help="viewport width in pixels (default 1280; may be repeated)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    args = ap.parse_args(argv)
    widths = args.width or [1280]

    if args.all:
        if args.notebook or args.out:
            ap.error("--all takes no notebook and no output name")
        books = [nb for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                 if nb.with_suffix(".md").exists()]
    else:
        if not args.notebook:
            ap.error("name a notebook, or --all")
        nb = Path(args.notebook)
        if not nb.exists() and (REPO / "notebooks" / nb).exists():
            nb = REPO / "notebooks" / nb
        if not nb.is_file():
            ap.error(f"no such notebook: {args.notebook}")
        books = [nb.resolve()]
    if args.out and len(widths) > 1:
        ap.error("one output name goes with one --width")

    def out_path(nb: Path, width: int) -> Path:
        if args.out:
            return Path(args.out)
        name = nb.stem if len(widths) == 1 and not args.all else f"{nb.stem}-{width}"
        return REPO / "build" / "screenshots" / f"{name}.png"

    problem = labshot.browser_problem()
    if problem:
        print(f"cannot take a screenshot: {problem}", file=sys.stderr)
        return 2

    failed = 0
    with labshot.jupyter_lab(books[0].parent) as lab:
        for nb in books:
            for width in widths:
                report = labshot.screenshot_notebook(lab, nb.name, out_path(nb, width),
                                                     run_all=not args.no_run, width=width,
                                                     timeout_s=args.timeout)
                print(f"screenshot: {report.png}")
                for part in report.parts[1:]:
                    print(f"   part:    {part}")
                print(f"title:      {report.title!r}")
                print(f"run all:    {report.run_all_result}")
                for label, items in (("error output", report.error_outputs),
                                     ("stderr traceback", report.stderr_tracebacks),
                                     ("page error", report.page_errors)):
                    for item in items:
                        print(f"{label}: {item}", file=sys.stderr)
                failed += not report.ok
                labshot.shutdown_sessions(lab)       # one kernel at a time
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
