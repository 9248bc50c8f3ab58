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
