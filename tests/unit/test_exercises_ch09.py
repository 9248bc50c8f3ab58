"""Chapter 09's exercises: right answers accepted and explained, wrong ones refused
with a reason, every answer computed from the simulator and the recorded traces."""
import pytest

from ksmbook.oracle import sidebyside as sb
from ksmbook.exercises import ch09
from ksmbook.exercises.base import Feedback


@pytest.mark.parametrize("ex", ch09.EXERCISES, ids=lambda ex: ex.name)
def test_exercise_accepts_its_answer_refuses_blanks_and_has_graduated_hints(ex):
    fb = ex.check(ex.expected())
    assert isinstance(fb, Feedback) and fb.correct is True and fb.text.startswith("Correct. ")
    assert repr(ex.solution()).startswith(f"Answer: {ex.expected()!r}")
    assert ex.check(...).correct is None and "Not attempted" in ex.check(None).text
    assert ex.hints and ex.hint(99).text.startswith(ex.hints[-1])


def test_first_sharing_is_the_second_scan_in_both_runs():
    for trace in (sb.simulate("ten_identical_pages"), sb.recorded("ten_identical_pages")):
        sharing = trace.counter("pages_sharing")
        assert ch09.first_sharing.expected() == next(i for i, v in enumerate(sharing) if v)
    step = ch09.first_sharing.expected()
    assert [s.op for s in sb.scenario_named("ten_identical_pages").steps[step - 1:step + 1]] == \
        ["scans", "scans"]
    wrong = ch09.first_sharing.check(step - 1)
    assert wrong.correct is False and "first visit only records checksums" in wrong.text
    assert "nothing is scanned" in ch09.first_sharing.check(0).text


def test_late_joiner_counters_reads_names_in_any_order_and_refuses_non_counters():
    want = ch09.late_joiner_counters.expected()
    cmp = sb.Comparison(sb.simulate("late_joiners", "6.10"), sb.recorded("late_joiners"))
    assert want == tuple(cmp.counters_that_differ()) and "pages_sharing" in want
    assert ch09.late_joiner_counters.check(list(reversed(want))).correct is True
    assert ch09.late_joiner_counters.check("/sys/kernel/mm/ksm/" + want[0]).correct is False
    partial = ch09.late_joiner_counters.check(want[:1])
    assert partial.correct is False and f"{len(want) - 1} more counters differ" in partial.text
    assert "not a global counter: ksm_merge_any" in \
        ch09.late_joiner_counters.check(("ksm_merge_any",)).text
    assert "equal on both sides" in ch09.late_joiner_counters.check((*want, "full_scans")).text


def test_batch_boundary_counts_the_empty_batch_that_ends_the_scan():
    facts = ch09.batch_boundary.facts
    sizes = [n for n, _ in facts["batches"]]
    assert sum(sizes) == 300 and sizes[-1] == 0 and all(n == 100 for n in sizes[:-1])
    assert ch09.batch_boundary.expected() == (len(sizes), 0)
    assert "nobody has asked for the next page" in ch09.batch_boundary.check((3, 100)).text
