"""Exercises: each accepts its own answer, refuses wrong ones with a reason, and
computes the answer from the simulator (so a different scene gives another answer)."""
import pytest

from ksmbook.exercises import ch01, ch02, ch03, ch04, ch05
from ksmbook.exercises.base import Feedback

ALL = [ex for mod in (ch01, ch02, ch03, ch04, ch05) for ex in mod.EXERCISES]


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.name)
def test_exercise_accepts_its_answer_and_explains_it(ex):
    fb = ex.check(ex.expected())
    assert isinstance(fb, Feedback) and fb.correct is True and bool(fb)
    assert fb.text.startswith("Correct. ") and len(fb.text) > 60
    assert fb._repr_markdown_().startswith("✅")
    assert repr(ex.solution()).startswith(f"Answer: {ex.expected()!r}")


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.name)
def test_unanswered_exercise_says_not_attempted(ex):
    for blank in (None, ...):
        fb = ex.check(blank)
        assert fb.correct is None and "Not attempted" in fb.text and not fb


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.name)
def test_hints_are_graduated(ex):
    assert ex.hints
    first = ex.hint()
    assert first.text.startswith(ex.hints[0]) and f"hint 1 of {len(ex.hints)}" in first.text
    last = ex.hint(99)
    assert last.text.startswith(ex.hints[-1])


@pytest.mark.parametrize("ex, wrong, reason", [
    (ch01.tables_for_one_page, 1, "PGD alone"),
    (ch01.tables_for_far_pages, 4, "2 MiB"),
    (ch01.read_then_write, "do_anonymous_page", "empty"),
    (ch01.walk_stops, ("PTE", 0), "last one drawn"),
    (ch01.walk_stops, ("PMD", 0), "Right level"),
    (ch02.mapcount_after_fork, (1, 4), "copies only the PTE"),
    (ch02.mapcount_after_fork, (2, 8), "does not copy the frames"),
    (ch02.frames_for_writes, 3, "last mapper"),
    (ch02.who_keeps_the_original, "child", ""),
    (ch02.which_handler, "wp_page_copy", "Count the mappers"),
    (ch02.which_handler, "copy_present_pte", "ran at fork()"),
    (ch02.shared_lines, (0, 0), "Items 1 and 2"),
    (ch03.merge_scan, 1, "first time"),
    (ch03.surviving_frame, "vm1[0]", "replace_page()"),
    (ch03.batch_size, 100, "does not wrap"),
    (ch03.inserts_unstable, "stable_tree_search", "looks among KSM pages"),
    (ch03.inserts_unstable, "cmp_and_merge_page()", "Close"),
    (ch03.tree_nodes, (1, 1), "Item 1"),
    (ch04.predict_counters, (1, 8, 0), "max_page_sharing"),
    (ch04.cow_lag, (2, 2), "Item 1"),
    (ch04.which_errno, "EINVAL", ""),
    (ch04.chain_dups, (1, 10), "Items 1 and 2"),
    (ch05.zero_pages, (1, 7, 0), "use_zero_pages=0"),
    (ch05.zero_write, 8, "lagging"),
    (ch05.smart_visits, 20, "smart_scan=0"),
    (ch05.zero_merger, "replace_page", "PTE swap"),
    (ch05.skipped_figure, 0, "fewer than the simulator"),
])
def test_wrong_answers_get_a_reason(ex, wrong, reason):
    fb = ex.check(wrong)
    assert fb.correct is False and fb.text.startswith("Not quite")
    assert reason in fb.text
    assert str(ex.expected()) not in fb.text.split("you answered")[1] or ex.expected() == wrong


def test_numeric_answers_get_a_direction_without_the_number():
    fb = ch01.tables_for_far_pages.check(2)
    assert "fewer than the simulator finds" in fb.text and "6" not in fb.text


def test_answers_are_read_leniently_and_bad_ones_explained():
    assert ch01.read_then_write.check(" WP_PAGE_COPY() ").correct is True
    assert ch01.tables_for_one_page.check("4").correct is True
    assert ch03.surviving_frame.check("VM1[1]").correct is True
    assert ch05.smart_visits.check(7.0).correct is True
    bad = ch04.predict_counters.check((1, 2))
    assert bad.correct is False and "expected 3 numbers" in bad.text
    assert "Could not read" in ch01.tables_for_one_page.check(True).text


def test_answers_come_from_the_simulator_not_from_a_table():
    # the same exercise class on other scenes gives the kernel's other answers
    assert ch04.PredictCounters(5, 2).expected() == (2, 2, 1)
    assert ch04.PredictCounters(10, 5).expected() == (2, 8, 0)
    assert ch04.PredictCounters(10, 256).expected() == (1, 9, 0)
    facts = ch03.merge_scan.facts
    assert [h[2] for h in facts["history"]] == [0, 3]
    assert ch05.smart_visits.facts["visits"] == (1, 2, 3, 4, 6, 9, 14)
