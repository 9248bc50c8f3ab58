"""The book's exercises, one module per chapter (ch01 ... ch10).

DOC: Overview.  An exercise never stores its answer: it builds its scene in
the simulator (``simulate()``, cached), and reads the answer and the facts
that explain it from there, so a wrong answer gets feedback in terms of what
the kernel did.  The kinds (``base.KINDS``) are: predict a counter, name the
kernel function, read a figure, and design a scenario, where the student
writes Python calls and ``design.py`` runs them and explains the result.

    from ksmbook.exercises import ch03
    ch03.merge_scan.check(2)      # instant feedback, computed from the simulator
    ch03.merge_scan.hint()        # graduated hints: hint(2), hint(3) ...
    ch03.merge_scan.solution()

In a course, each student first sets their own variant (same id -> same numbers):

    import ksmbook.exercises
    ksmbook.exercises.seed("s1234567")

which also locks ``solution()`` / ``expected()`` unless the instructor allowed
them.  ``classroom.py`` turns the registry into the instructor's key and into
otter-grader assignments, and collects otter's scores; the grading is otter's.
"""
from __future__ import annotations

import importlib

from .base import KINDS, Exercise, Feedback, SolutionsLocked, _COURSE, stable_seed

__all__ = ["Exercise", "Feedback", "KINDS", "SolutionsLocked", "all_exercises", "chapters",
           "seed", "stable_seed"]

CHAPTERS = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10")


def chapters() -> dict:
    """{'04': <module ch04>, ...} for every chapter that has exercises."""
    return {c: importlib.import_module(f".ch{c}", __name__) for c in CHAPTERS}


def all_exercises(chapter: str | None = None):
    """(chapter, exercise) pairs, in book order."""
    for c, mod in chapters().items():
        if chapter is None or c == f"{int(chapter):02d}":
            for ex in mod.EXERCISES:
                yield c, ex


def seed(value=None, *, solutions: bool = False):
    """Set every exercise to the variant for ``value`` (a student id or a number).

    ``seed(None)`` returns to self-study: the book's numbers, solutions on.
    ``solutions=True`` keeps ``solution()``/``expected()`` available (the instructor's
    ``--allow-solutions``). Returns the numeric seed used."""
    num = None if value is None else stable_seed(value)
    _COURSE["seed"] = num
    _COURSE["solutions"] = True if value is None else bool(solutions)
    for _, ex in all_exercises():
        ex.reseed(num)
    return num
