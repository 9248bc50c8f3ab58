"""A read-the-figure exercise on the trees figure must not print its answer in the
captions: chapter 03's tree_nodes asks how many nodes each tree has, chapter 04's
chain_dups how many dups hang on the chain (= the KSM pages the caption would count)."""
import re

import pytest

from ksmbook import exercises
from ksmbook.exercises import ch03, ch04


@pytest.fixture(autouse=True)
def _self_study_after():
    """Every test here seeds the exercises: give the next test file the book's numbers back."""
    exercises.seed(None)
    yield
    exercises.seed(None)


def _captions(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.text] + [fig.layout.title.text or ""]


@pytest.mark.parametrize("seed", ["alice", "bob", 7])
@pytest.mark.parametrize("ex", [ch03.tree_nodes, ch04.chain_dups], ids=lambda e: e.name)
def test_trees_figure_exercise_captions_carry_no_count(ex, seed):
    exercises.seed(seed)
    fig = ex.figure()
    caps = _captions(fig)
    stable = next(c for c in caps if c.startswith("Stable tree"))
    unstable = next(c for c in caps if c.startswith("Unstable tree"))
    for cap in (stable, unstable):
        head = cap.split("<br>")[0]
        assert not re.search(r"\d", head), f"{ex.name}: the caption gives a count: {head!r}"
    # the figure still draws the nodes the student counts
    drawn = {t.name: len(t.x or ()) for t in fig.data}
    kinds = ("stable node (a KSM page)", "dup (one KSM copy in a chain)",
             "unstable item (an ordinary page)")
    answer = ex.facts["answer"]
    if ex is ch03.tree_nodes:
        assert (drawn[kinds[0]] + drawn[kinds[1]], drawn[kinds[2]]) == answer
    else:
        assert drawn[kinds[1]] == answer[0]


def test_the_live_trees_figure_still_counts():
    exercises.seed("alice")
    snap = ch03.tree_nodes.facts["snap"]
    from ksmbook import viz
    caps = _captions(viz.trees_figure(snap))
    assert any(re.match(r"Stable tree: \d+ KSM page", c) for c in caps), caps
