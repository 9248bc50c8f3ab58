"""Exercises with instant feedback: ``check(answer)``, ``hint(n)``, ``solution()``.

The expected answer is never typed in: each exercise runs its scene in the
simulator (``simulate()``, cached) and reads the answer and the facts that
explain it from there.  ``check`` says whether the answer is right and, if not,
why not, in terms of what the simulator saw.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

#: the kinds of exercise, in the order ``ksmbook exercises list`` shows them
KINDS = ("predict", "function", "figure", "design")

#: set by :func:`ksmbook.exercises.seed`; None means self-study (book defaults, solutions on)
_COURSE = {"seed": None, "solutions": True}


def stable_seed(value) -> int:
    """A seed from an int or a string (a student id), the same on every machine and run:
    sha256, not Python's ``hash()`` (which is salted per process for str)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int.from_bytes(hashlib.sha256(str(value).strip().encode()).digest()[:8], "big")


class SolutionsLocked(RuntimeError):
    """solution()/expected() in a course notebook whose instructor did not allow them."""


@dataclass(frozen=True)
class Feedback:
    """The result of a check, hint or solution: text, plus whether it was right."""
    correct: bool | None        # None: not attempted (or a hint / a solution)
    text: str

    def __bool__(self):
        return self.correct is True

    def __repr__(self):
        return self.text

    def _repr_markdown_(self):
        icon = {True: "✅ ", False: "❌ ", None: ""}[self.correct]
        return icon + self.text.replace("\n", "  \n")


class Exercise:
    """Subclasses set ``name``, ``question``, ``hints`` and implement
    ``simulate() -> dict`` (must hold ``"answer"``), ``explain(facts)`` and
    optionally ``normalise(answer)`` and ``why_not(answer, facts)``.

    Seeded variants: ``params`` holds the book's values; ``vary(rng)`` returns the
    values for a seed, and ``template`` (formatted with them) becomes ``question``.
    An exercise whose idea has one answer says why in ``fixed_because``; one whose seed
    varies the question but whose answer can only be one of a few (a function name per
    era, say) says why in ``few_answers_because``."""

    name = "exercise"
    question = ""
    kind = "predict"
    template = ""
    params: dict = {}
    fixed_because = ""
    few_answers_because = ""
    hints: tuple = ()
    answer_format = "a number"
    #: reads the reader's answer (``as_int``, ``as_name`` ...); None keeps it as given
    parse = None

    def __init__(self, **params):
        self._facts = None
        self.p = {**type(self).params, **params}
        self._book = dict(self.p)
        self.seed_value = None
        self._set_question()

    def __repr__(self):
        return f"{self.name}: {self.question}"

    def _set_question(self):
        if self.template:
            self.question = self.template.format(**self.p)

    def vary(self, rng: random.Random) -> dict:
        """The parameters for one seed (``rng`` is private to this exercise)."""
        return {}

    def reseed(self, seed) -> "Exercise":
        """Give this exercise the variant for ``seed`` (None: the book's own numbers)."""
        self.seed_value = seed
        if seed is None:
            self.p = dict(self._book)
        else:
            rng = random.Random(f"{stable_seed(seed)}:{self.name}")
            self.p = {**self._book, **self.vary(rng)}
        self._facts = None
        self._set_question()
        return self

    def ask(self):
        """The question for the current seed, as the notebook shows it."""
        return Feedback(None, f"**{self.name}** ({self.answer_format}): {self.question}")

    # --- to override ---
    def simulate(self) -> dict:
        raise NotImplementedError

    def explain(self, facts: dict) -> str:
        raise NotImplementedError

    def normalise(self, answer):
        return answer if self.parse is None else self.parse(answer)

    def why_not(self, answer, facts: dict) -> str:
        return ""

    # --- the API the book uses ---
    @property
    def facts(self) -> dict:
        if self._facts is None:
            self._facts = self.simulate()
        return self._facts

    def _unlocked(self):
        if not _COURSE["solutions"]:
            raise SolutionsLocked("Your instructor has not released the solutions for this "
                                  "assignment: use check(answer) and hint(n).")

    def expected(self):
        self._unlocked()
        return self.facts["answer"]

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return Feedback(None, f"Not attempted yet: replace `...` with your answer "
                                  f"({self.answer_format}) and run the cell again.")
        try:
            given = self.normalise(answer)
        except (TypeError, ValueError) as exc:
            return Feedback(False, f"Could not read {answer!r} as {self.answer_format}: {exc}")
        facts = self.facts
        if given == facts["answer"]:
            return Feedback(True, "Correct. " + self.explain(facts))
        reason = self.why_not(given, facts) or _compare(given, facts["answer"])
        more = " Try `hint()`." if self.hints else ""
        return Feedback(False, f"Not quite: you answered {given!r}. "
                               + (reason + " " if reason else "") + more.strip())

    def hint(self, n: int = 1) -> Feedback:
        if not self.hints:
            return Feedback(None, "No hint for this one.")
        n = max(1, min(n, len(self.hints)))
        more = f" (hint {n} of {len(self.hints)}" + (f"; try hint({n + 1}))" if n < len(self.hints)
                                                     else ")")
        return Feedback(None, self.hints[n - 1] + more)

    def solution(self) -> Feedback:
        self._unlocked()
        facts = self.facts
        return Feedback(None, f"Answer: {facts['answer']!r}. " + self.explain(facts))


class FigureExercise(Exercise):
    """The read-a-figure kind: ``figure()`` draws, with ``ksmbook.viz``, the scene of the
    current seed; the student reads the answer off it. Subclasses implement
    ``draw(facts)``; ``simulate()`` keeps in the facts what the figure needs."""
    kind = "figure"

    def draw(self, facts: dict):
        raise NotImplementedError

    def figure(self):
        """The figure to read (it is the same scene ``check`` uses)."""
        return self.draw(self.facts)


def eras(*features: str, since: str | None = None) -> tuple:
    """The kernel eras of ``kernel/versions.KNOWN_ERAS`` whose profile has every one of
    ``features`` (profile field names), from ``since`` on: the eras a seed may pick
    where the exercise's idea holds."""
    from ..kernel.versions import KNOWN_ERAS, parse_version, profile
    low = parse_version(since) if since else (0,)
    return tuple(e for e in KNOWN_ERAS if parse_version(e) >= low
                 and all(getattr(profile(e), f) for f in features))


def jhash2_era(kernel: str) -> bool:
    """Whether calc_checksum() (mm/ksm.c) is jhash2 in ``kernel`` (before 5.0; xxhash
    from 5.0). The simulator computes jhash2 word by word in Python, about 50 times slower
    than xxhash, so an exercise whose seed picks such an era draws a smaller scene of the
    same idea, keeping a check at a second or less."""
    from ..kernel.versions import profile
    return not profile(kernel).ksm_xxhash_checksum


def _compare(given, expected) -> str:
    """A direction for numeric answers, without giving the number away."""
    if isinstance(given, int) and isinstance(expected, int):
        return ("That is fewer than the simulator finds." if given < expected
                else "That is more than the simulator finds.")
    if isinstance(given, tuple) and isinstance(expected, tuple) and len(given) == len(expected):
        wrong = [i + 1 for i, (a, b) in enumerate(zip(given, expected)) if a != b]
        if len(wrong) == 1:
            return f"Item {wrong[0]} of your answer is not what the simulator finds."
        items = ", ".join(map(str, wrong[:-1])) + f" and {wrong[-1]}"
        return f"Items {items} of your answer are not what the simulator finds."
    return ""


def as_int(answer) -> int:
    if isinstance(answer, bool):
        raise TypeError("a number, not True/False")
    if isinstance(answer, float) and answer.is_integer():
        return int(answer)
    if isinstance(answer, str):
        return int(answer.strip(), 0)
    if not isinstance(answer, int):
        raise TypeError(f"a whole number, not {type(answer).__name__}")
    return answer


def as_ints(answer, n: int | None = None) -> tuple:
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
        raise TypeError("it is not a tuple of " + (f"{n} numbers" if n else "numbers"))
    out = tuple(as_int(a) for a in answer)
    if n is not None and len(out) != n:
        raise ValueError(f"expected {n} numbers, got {len(out)}")
    return out


def as_names(answer) -> tuple:
    """One name or several, in any order, as a sorted tuple of lower-case names."""
    if isinstance(answer, str):
        answer = (answer,)
    if not hasattr(answer, "__iter__"):
        raise TypeError("a tuple of names in quotes, e.g. ('parent', 'child1')")
    return tuple(sorted({as_name(a) for a in answer}))


def as_callback(answer) -> str:
    """An mmu notifier op name: 'kvm_mmu_notifier_change_pte()' reads as 'change_pte'."""
    name = as_name(answer)
    for prefix in ("kvm_mmu_notifier_", "__mmu_notifier_", "mmu_notifier_"):
        name = name.removeprefix(prefix)
    return name


def as_name(answer) -> str:
    if not isinstance(answer, str):
        raise TypeError("it is not text in quotes")
    return answer.strip().removesuffix("()").strip().lower()
