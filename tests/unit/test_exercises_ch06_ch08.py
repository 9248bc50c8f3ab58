"""Chapters 06 and 08's exercises: each accepts its own answer, refuses wrong ones with
a reason, and takes its answer from the simulator."""
import pytest

from ksmbook.exercises import ch06, ch08
from ksmbook.exercises.base import Feedback

ALL = [*ch06.EXERCISES, *ch08.EXERCISES]


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.name)
def test_exercise_accepts_its_answer_and_explains_it(ex):
    fb = ex.check(ex.expected())
    assert isinstance(fb, Feedback) and fb.correct is True and fb.text.startswith("Correct")
    assert len(fb.text) > 80 and ex.solution().text.startswith("Answer: ")


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.name)
def test_unanswered_and_unreadable_answers(ex):
    assert ex.check(...).correct is None
    assert ex.check(object()).correct is False
    assert ex.hints and ex.hint(9).text.startswith(ex.hints[-1])


@pytest.mark.parametrize("ex, wrong, reason", [
    (ch06.exits_for_sequence, 2, "seed era"),
    (ch06.exits_for_sequence, 3, "retry"),
    (ch06.free_read_eras, ("2.6.32",), "went into 3.7"),
    (ch06.free_read_eras, ("2.6.32", "3.6", "3.7"), "zaps the spte"),
    (ch06.untouched_read_exercise, (1, True), "2.6.38"),
    (ch08.pick_threshold, 30, "wrong guesses are above"),
    (ch08.pick_threshold, 20_000, "right guesses are below"),
    (ch08.ksmd_wakeups, 16, "end of the first full scan"),
    (ch08.ksmd_wakeups, 10, "first visit"),
])
def test_wrong_answers_say_why(ex, wrong, reason):
    fb = ex.check(wrong)
    assert fb.correct is False and reason in fb.text


def test_answers_come_from_the_simulator():
    seq = ch06.exits_for_sequence.facts
    assert seq["answer"] == sum(e for _n, e in seq["per"]) and seq["answer"] > seq["seed"]
    eras = ch06.free_read_eras.facts
    assert eras["answer"] == tuple(k for k, r in eras["rows"].items() if r.read == 0)
    lo, hi = ch08.pick_threshold.facts["answer"]
    exp = ch08.pick_threshold.facts["exp"]
    assert exp.rates(hi).fpr < ch08.MAX_FPR and exp.rates(hi).tpr >= ch08.MIN_TPR
    assert not (exp.rates(lo).fpr < ch08.MAX_FPR and exp.rates(lo).tpr >= ch08.MIN_TPR)
    rates = ch08.probes_needed.facts["rates"]
    k = ch08.probes_needed.expected()
    assert rates[k].fpr < ch08.MAX_FPR and all(rates[j].fpr >= ch08.MAX_FPR for j in range(1, k))


def test_answer_formats():
    assert ch06.free_read_eras.check("2.6.32").correct is False
    assert ch06.free_read_eras.check(["3.6", "2.6.32", "3.6"]).correct is True
    assert ch06.free_read_eras.check(("banana",)).correct is False
    assert ch06.untouched_read_exercise.check((2, 0)).correct is False     # not a bool
    assert ch06.untouched_read_exercise.check([2, False]).correct is True
    assert ch08.pick_threshold.check("1000 ns").correct is True
    assert ch08.pick_threshold.check(-5).correct is False
