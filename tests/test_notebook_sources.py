"""Each chapter's MyST source (notebooks/NN_name.md) and its executed .ipynb agree.

The .md is what authors edit and git merges; the .ipynb carries the outputs nbval
compares.  If they drift, nbval tests code nobody wrote and the book shows code
that is not in the source: `make sync-notebooks` (or `make execute-notebooks`)
brings them back together.
"""
import json
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="jupytext is part of the lab extra (make setup)")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IPYNBS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
MOVED = [p for p in IPYNBS if "moved_to" in json.loads(p.read_text())["metadata"].get("ksmbook", {})]
CHAPTERS = [p for p in IPYNBS if p not in MOVED]


def _cells(nb):
    return [(c["cell_type"], "".join(c["source"]).rstrip("\n"), sorted(c.get("metadata", {}).get("tags", [])))
            for c in nb.cells]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 9


@pytest.mark.parametrize("ipynb", CHAPTERS, ids=lambda p: p.stem)
def test_md_source_matches_ipynb(ipynb):
    md = ipynb.with_suffix(".md")
    assert md.is_file(), f"{md.name} is missing: run `jupytext --set-formats ipynb,md:myst {ipynb}`"
    from_md = jupytext.read(md)
    from_ipynb = jupytext.read(ipynb)
    assert _cells(from_md) == _cells(from_ipynb), (
        f"{md.name} and {ipynb.name} differ: edit the .md, then `make sync-notebooks` "
        f"(or `make execute-notebooks NB={ipynb.relative_to(NOTEBOOKS.parent)}`)")


@pytest.mark.parametrize("stub", MOVED, ids=lambda p: p.stem)
def test_moved_chapter_stub_points_at_an_existing_chapter(stub):
    target = json.loads(stub.read_text())["metadata"]["ksmbook"]["moved_to"]
    assert (NOTEBOOKS / target).is_file(), f"{stub.name} points at missing {target}"
    assert target in "".join(json.loads(stub.read_text())["cells"][0]["source"])


# --- navigation: previous / index / next on every chapter, in the index's order ----------

import re  # noqa: E402

NAV = "<!-- chapter-nav -->"
READING_ORDER = [p.stem for p in CHAPTERS if p.stem != "00_index"]


def _nav_lines(md: Path) -> list[str]:
    return [line for line in md.read_text().splitlines() if NAV in line]


@pytest.mark.parametrize("stem", READING_ORDER)
def test_every_chapter_links_previous_index_and_next_at_top_and_bottom(stem):
    lines = _nav_lines(NOTEBOOKS / f"{stem}.md")
    assert len(lines) == 2 and lines[0] == lines[1], "run python tools/chapter_nav.py"
    targets = re.findall(r"\]\(([^)]+\.ipynb)\)", lines[0])
    i = READING_ORDER.index(stem)
    want = ([READING_ORDER[i - 1] + ".ipynb"] if i else []) + ["00_index.ipynb"] + \
        ([READING_ORDER[i + 1] + ".ipynb"] if i + 1 < len(READING_ORDER) else [])
    assert targets == want
    assert not lines[0].startswith("<"), "a line starting with an HTML comment renders as raw text"
    text = (NOTEBOOKS / f"{stem}.md").read_text()
    assert text.index(NAV) < text.index("\n## ")             # the top one is above the first section


def test_every_notebook_link_in_the_book_points_at_a_notebook_that_exists():
    for md in sorted(NOTEBOOKS.glob("[0-9]*.md")):
        for target in re.findall(r"\]\(([0-9][0-9]_[^)#]+\.ipynb)", md.read_text()):
            assert (NOTEBOOKS / target).exists(), f"{md.name} links to missing {target}"
