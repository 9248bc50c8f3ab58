"""Chapters 07 and 10's exercises: each accepts its own answer, refuses wrong ones with
a reason, and takes its answer from the simulator."""
import pytest

from ksmbook.exercises import ch07, ch10
from ksmbook.exercises.base import Feedback

ALL = [*ch07.EXERCISES, *ch10.EXERCISES]


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
    (ch07.exits_for_sequence, (0, 0, 2), "2.6.32's count"),
    (ch07.exits_for_sequence, (1, 1, 1), "Item 3"),
    (ch07.free_read_eras, ("2.6.32",), "went into 3.7"),
    (ch07.free_read_eras, ("2.6.32", "3.6", "3.7"), "zaps the spte"),
    (ch07.untouched_read_exercise, (1, True), "2.6.38"),
    (ch10.pick_threshold, 30, "wrong guesses are above"),
    (ch10.pick_threshold, 20_000, "right guesses are below"),
    (ch10.ksmd_wakeups, 16, "only finds the end of a full scan"),
    (ch10.ksmd_wakeups, 10, "first visit"),
    (ch07.merge_notifier, "change_pte", "inside the bracket"),
    (ch07.merge_notifier, "kvm_mmu_notifier_invalidate_page", "fallback"),
    (ch07.spte_table, (None, None), "Items 1 and 2"),
    (ch10.retry_callback, "invalidate_range_start", "counts the invalidation in"),
    (ch10.latency_reading, (0, 1), "Item 1 of"),
])
def test_wrong_answers_say_why(ex, wrong, reason):
    fb = ex.check(wrong)
    assert fb.correct is False and reason in fb.text


def test_answers_come_from_the_simulator():
    seq = ch07.exits_for_sequence.facts
    assert seq["answer"] == tuple(e for _n, e in seq["per"])
    assert sum(seq["answer"]) > sum(seq["other_exits"])          # 3.7 zaps, 2.6.32 remaps
    eras = ch07.free_read_eras.facts
    assert eras["answer"] == tuple(k for k, r in eras["rows"].items() if r.read == 0)
    lo, hi = ch10.pick_threshold.facts["answer"]
    exp = ch10.pick_threshold.facts["exp"]
    assert exp.rates(hi).fpr < ch10.MAX_FPR and exp.rates(hi).tpr >= ch10.MIN_TPR
    assert not (exp.rates(lo).fpr < ch10.MAX_FPR and exp.rates(lo).tpr >= ch10.MIN_TPR)
    rates = ch10.probes_needed.facts["rates"]
    k = ch10.probes_needed.expected()
    assert rates[k].fpr < ch10.MAX_FPR and all(rates[j].fpr >= ch10.MAX_FPR for j in range(1, k))


def test_answer_formats():
    assert ch07.free_read_eras.check("2.6.32").correct is False
    assert ch07.free_read_eras.check(["3.6", "2.6.32", "3.6"]).correct is True
    assert ch07.free_read_eras.check(("banana",)).correct is False
    assert ch07.untouched_read_exercise.check((2, 0)).correct is False     # not a bool
    assert ch07.untouched_read_exercise.check([2, False]).correct is True
    assert ch10.pick_threshold.check("1000 ns").correct is True
    assert ch10.pick_threshold.check(-5).correct is False


def test_probe_design_runs_the_students_probe_on_the_simulated_host():
    ex = ch10.ProbeDesign()                      # the book's variant: 6.18, read-only, 1 access
    assert ex.check(lambda g, page: g.read(page)).correct is True
    cases = [
        (lambda g, page: g.write(page), "may not write"),
        (lambda g, page: min(g.read(page), g.read(page)), "more than the 1 allowed"),
        (lambda g, page: 7, "made no access"),
        (lambda g, page: "slow", "not a number"),
        ("def probe(g, page):\n    return g.read(99)", "candidate number 0-31"),
    ]
    for probe, reason in cases:
        fb = ex.check(probe)
        assert fb.correct is False and reason in fb.text, (reason, fb.text)
    # before 3.7 the merge remaps the spte in place: a read tells nothing, a write of the
    # byte that is already there still takes the COW's exits
    old = ch10.ProbeDesign(kernel="3.6", rule="unchanged", budget=2)
    fb = old.check(lambda g, page: g.read(page))
    assert fb.correct is False and "no threshold can tell them apart" in fb.text
    assert "0.0 exits per copy" in fb.text
    fb = old.check(lambda g, page: g.write(page, b"\x01"))
    assert fb.correct is False and "no longer hold what was planted" in fb.text
    fb = old.check(lambda g, page: g.write(page, g.planted(page)[8:9]))
    assert fb.correct is True and "2.0 exits per copy and 0.0 per other page" in fb.text
    # a second access to a merged page is fast: the first one mapped or unmerged it
    two = ch10.ProbeDesign(budget=2)
    fb = two.check(lambda g, page: g.read(page) and g.read(page))
    assert fb.correct is False and "1.0 exits per copy" in fb.text
