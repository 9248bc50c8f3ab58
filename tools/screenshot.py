#!/usr/bin/env python3
"""Screenshot a notebook as a reader sees it in JupyterLab.

    .venv/bin/python tools/screenshot.py NOTEBOOK [OUT.png] [--no-run] [--width PX]

Starts a throw-away JupyterLab on 127.0.0.1 rooted at the notebook's folder,
opens NOTEBOOK in headless Chromium (/usr/bin/chromium), clears and runs all
cells (unless --no-run), waits for the kernel to go idle and writes a
full-height PNG (default: build/screenshots/<name>.png). The notebook file is
not modified. Prints the title and any error outputs; exits 1 if a cell failed.
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
    ap.add_argument("notebook", help="path to an .ipynb file, e.g. notebooks/00_index.ipynb")
    ap.add_argument("out", nargs="?", help="output PNG (default build/screenshots/<name>.png)")
    ap.add_argument("--no-run", action="store_true", help="show the stored outputs, run nothing")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in pixels")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    args = ap.parse_args(argv)

    nb = Path(args.notebook)
    if not nb.exists() and (REPO / "notebooks" / nb).exists():
        nb = REPO / "notebooks" / nb
    if not nb.is_file():
        ap.error(f"no such notebook: {args.notebook}")
    nb = nb.resolve()
    out = Path(args.out) if args.out else REPO / "build" / "screenshots" / f"{nb.stem}.png"

    problem = labshot.browser_problem()
    if problem:
        print(f"cannot take a screenshot: {problem}", file=sys.stderr)
        return 2

    with labshot.jupyter_lab(nb.parent) as lab:
        report = labshot.screenshot_notebook(lab, nb.name, out, run_all=not args.no_run,
                                             width=args.width, timeout_s=args.timeout)
    print(f"screenshot: {report.png}")
    print(f"title:      {report.title!r}")
    print(f"run all:    {report.run_all_result}")
    for label, items in (("error output", report.error_outputs),
                         ("stderr traceback", report.stderr_tracebacks),
                         ("page error", report.page_errors)):
        for item in items:
            print(f"{label}: {item}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
