"""The chapters' exercise sections: every exercise of chNN.EXERCISES is asked in its
notebook, a figure exercise draws its figure first, and no cell a student sees calls
anything that shows an answer before the student has tried (issue 9)."""
import glob
import re

import pytest

import ksmbook.exercises as kx

GIVEAWAYS = (".solution(", ".expected(", ".facts", "classroom.key", "sample_code(")


def _section(chapter: str) -> tuple[str, str]:
    path = glob.glob(f"notebooks/{chapter}_*.md")[0]
    src = open(path).read()
    start = src.index("## Exercises")
    end = src.index("## What is easy to get wrong", start)
    return path, src[start:end]


def _visible_cells(section: str) -> list[str]:
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", section, re.S)
    # a cell's options sit between two '---' lines at its top; remove-cell hides it
    return [c for c in cells if not (c.startswith("---") and "remove-cell" in c.split("---")[1])]


@pytest.mark.parametrize("chapter", list(kx.chapters()))
def test_every_exercise_is_asked_and_none_gives_its_answer_away(chapter):
    mod = kx.chapters()[chapter]
    path, section = _section(chapter)
    visible = _visible_cells(section)
    assert visible, path
    names = {k: v for k, v in vars(mod).items() if isinstance(v, kx.Exercise)}
    for ex in mod.EXERCISES:
        var = next(k for k, v in names.items() if v is ex)
        checks = [c for c in visible if f"ch{chapter}.{var}.check(" in c]
        assert checks, f"{path}: ch{chapter}.{var} is never asked"
        assert "..." in checks[0], f"{path}: ch{chapter}.{var} has no blank to fill in"
        if ex.kind == "figure":
            i = visible.index(checks[0])
            assert f"ch{chapter}.{var}.figure()" in visible[i - 1], \
                f"{path}: the figure of ch{chapter}.{var} must come just before its answer"
    for cell in visible:
        for bad in GIVEAWAYS:
            assert bad not in cell, f"{path}: a visible exercise cell calls {bad}: {cell!r}"
    numbers = [int(n) for n in re.findall(r"^\*\*(\d+)\.\*\*", section, re.M)]
    assert numbers == list(range(1, len(mod.EXERCISES) + 1)), (path, numbers)
