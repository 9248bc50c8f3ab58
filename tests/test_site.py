"""make html: the static book builds with warnings as errors, from stored outputs
only, and every chapter page draws its plotly figures, loads plotly.js once, and
has Binder and JupyterLite launch buttons.  About 20 s (marker ``site``)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.site
sys.path.insert(0, str(REPO / "site"))
import book_urls  # noqa: E402


def jupyter_book() -> str:
    for candidate in (REPO / ".venv-book/bin/jupyter-book", os.environ.get("KSMBOOK_JUPYTER_BOOK"),
                      shutil.which("jupyter-book")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("SKIPPED: jupyter-book 1.x not found (make html creates .venv-book; "
                "or set KSMBOOK_JUPYTER_BOOK)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    jb = jupyter_book()
    static = REPO / "build" / "site-static"
    static.mkdir(parents=True, exist_ok=True)
    import plotly
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static)
    out = tmp_path_factory.mktemp("book")
    run = subprocess.run([jb, "build", str(REPO), "--config", str(REPO / "site/_config.yml"),
                          "--toc", str(REPO / "site/_toc.yml"), "--path-output", str(out),
                          "-W", "-n", "--keep-going"], capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "unknown mime type" not in log.lower() and "WARNING" not in log
    return out / "_build" / "html"


def chapters():
    toc = (REPO / "site/_toc.yml").read_text()
    return re.findall(r"file: (notebooks/\S+)", toc)


def test_every_chapter_is_in_the_toc():
    listed = {Path(c).name for c in chapters()}
    on_disk = {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.md")} - {"00_index"}
    assert listed == on_disk


def test_pages_have_figures_plotly_js_once_launch_buttons_and_search(site):
    assert (site / "search.html").is_file() and (site / "searchindex.js").is_file()
    assert (site / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    # the repository and launch buttons come from pyproject.toml (site/book_urls.py)
    urls = book_urls.settings()
    binder = f"{urls['binderhub']}/v2/gh/{urls['owner']}/{urls['name']}/{urls['branch']}?"
    lite = urls["lite_url"]
    for chapter in chapters():
        page = (site / f"{chapter}.html").read_text()
        src = (REPO / f"{chapter}.ipynb").read_text()
        if "application/vnd.plotly.v1+json" in src or "widget-view" in src:
            assert page.count("Plotly.newPlot") >= 1, chapter
        assert page.count("plotly.min.js") == 1, chapter           # once per page
        assert "mybinder.org" in page and "JupyterLite" in page, chapter
        assert binder in page and urls["repository"] in page, chapter
        # the JupyterLite button opens the chapter at the top of the lite site's files
        assert f'../{lite}?path={Path(chapter).name}.ipynb"' in page, chapter
        assert "next" in page.lower() and "prev" in page.lower(), chapter
