"""The quick version of test_run_all_modes.py, in `make test`: Run All of chapter 03
(three live figures driven by hidden cells right after they are made, the chapter
where plotly's FigureWidget drew empty axes, issue 8 bug 1) under JupyterLab's
"full" windowing mode, where views are made only as cells scroll into view; every
plotly figure must have its title and traces on screen, and a click must redraw.

About a minute.  The whole matrix (every chapter x four modes x N runs) is
`make test-browser-modes`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import labshot

pytestmark = pytest.mark.browser

CHAPTER = "03_ksmd_checksums_and_the_unstable_tree.ipynb"


@pytest.fixture
def lab_full(browser_ready):
    with labshot.jupyter_lab(Path(__file__).resolve().parents[2] / "notebooks",
                             windowing_mode="full") as server:
        yield server


def test_run_all_draws_every_figure_in_full_windowing_mode(lab_full, chromium):
    rep = labshot.run_all_and_look(lab_full, CHAPTER, browser=chromium, mode="full",
                                   clicks=(".ksmbook-full-scan",))
    assert rep.run_all_result == "ok" and rep.errors == []
    assert rep.expected >= 6 and len(rep.figures) >= rep.expected, rep.figures
    blank = [f for f in rep.figures if not f[-1]]
    assert blank == [], f"figures without traces on screen (or missing): {blank}"
    # the stepper's figures were made by the widgets (not stored outputs) and are live
    times = rep.click_ms.get(".ksmbook-full-scan")
    assert times and all(t["log"] >= 0 and t["figures"] >= 0 for t in times), \
        f"a click did not redraw: {times}"
