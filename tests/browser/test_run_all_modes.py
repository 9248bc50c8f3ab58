"""Run All under every JupyterLab windowing mode, several times: every plotly figure
must have traces on screen (bug: blank steppers after Run All, issue 8).

    KSMBOOK_BROWSER_RUNS=5 pytest -q -m browser tests/browser/test_run_all_modes.py -s

Knobs (environment): KSMBOOK_BROWSER_RUNS (repetitions per chapter and mode;
default 1, because 11 chapters x 4 modes already take ~25 min on 2 cores;
the issue asks for 5: set it), KSMBOOK_BROWSER_MODES (comma list, default all four),
KSMBOOK_BROWSER_CHAPTERS (comma list of notebook-name prefixes, default every
chapter).  Click latency (click -> figure or event log changed), Run All time and
the kernel's peak RSS are printed per chapter and written to
build/browser-metrics.jsonl; they are budgets, not asserted with a clock.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import labshot

pytestmark = [pytest.mark.browser, pytest.mark.windowing_modes]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
RUNS = int(os.environ.get("KSMBOOK_BROWSER_RUNS", "1"))
MODES = [m for m in os.environ.get("KSMBOOK_BROWSER_MODES", ",".join(labshot.WINDOWING_MODES))
         .split(",") if m]
PREFIXES = [p for p in os.environ.get("KSMBOOK_BROWSER_CHAPTERS", "").split(",") if p]
CLICKS = (".ksmbook-full-scan", ".ksmbook-next", ".ksmbook-step-batch")
METRICS = REPO / "build" / "browser-metrics.jsonl"


def chapters() -> list[str]:
    """Every chapter notebook (00 index and the redirect pages excluded)."""
    out = []
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        md = nb.with_suffix(".md")
        if nb.name.startswith("00_") or not md.exists():
            continue                      # redirect pages for old names have no .md
        if PREFIXES and not any(nb.name.startswith(p) for p in PREFIXES):
            continue
        out.append(nb.name)
    return out


_servers: dict = {}


@pytest.fixture
def lab_in_mode(browser_ready):
    """One JupyterLab per windowing mode, started when first needed and kept for the
    session (the runs go run by run, each over every mode)."""
    def get(mode):
        if mode not in _servers:
            cm = labshot.jupyter_lab(NOTEBOOKS, windowing_mode=mode)
            _servers[mode] = (cm, cm.__enter__())
        return _servers[mode][1]
    return get


def teardown_module(module):
    for cm, _ in _servers.values():
        cm.__exit__(None, None, None)
    _servers.clear()


# the run is the slowest-varying parameter: stopped early, the matrix has every
# chapter and mode of the first runs rather than all the runs of a few
@pytest.mark.parametrize("chapter", chapters())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("run", range(RUNS))
def test_run_all_draws_every_figure(lab_in_mode, chromium, mode, chapter, run):
    lab = lab_in_mode(mode)
    rep = labshot.run_all_and_look(lab, chapter, browser=chromium, mode=mode,
                                   clicks=CLICKS if (run == 0 and mode == "none") else ())
    METRICS.parent.mkdir(exist_ok=True)
    blank = [f for f in rep.figures if not f[-1]]
    with METRICS.open("a") as f:
        f.write(json.dumps({"chapter": chapter, "mode": mode, "run": run,
                            "run_all_s": round(rep.run_all_s, 1), "rss_kb": rep.rss_kb,
                            "click_ms": rep.click_ms, "figures": len(rep.figures),
                            "expected": rep.expected, "blank": blank,
                            "errors": rep.errors, "load": os.getloadavg()[0],
                            "time": time.strftime("%H:%M:%S")}) + "\n")
    print(f"\n{chapter} [{mode} #{run}] run all {rep.run_all_s:.1f}s, "
          f"kernel {rep.rss_kb}, {len(rep.figures)} figures of {rep.expected}, "
          f"clicks {rep.click_ms}, load {os.getloadavg()[0]:.1f}")
    assert rep.run_all_result == "ok" and rep.errors == []
    assert rep.figures, "no plotly figure found"
    assert len([f for f in rep.figures if f[1] != "missing"]) >= rep.expected
    assert blank == [], ("figures without traces on screen, or missing (cell, title, traces, "
                         f"with points, drawn, ok): {blank}")
