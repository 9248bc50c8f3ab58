"""Issue 8, bug 8: the messages an exercise prints match the answer it asks for.

A page name was refused with "e.g. 'do_wp_page'", three numbers with "e.g. (1, 2)",
and a wrong item was reported as "Item 1 … differ"."""
import pytest

from ksmbook.exercises import all_exercises, ch03, ch04
from ksmbook.exercises.base import _compare, as_ints, as_name

EXERCISES = [ex for _c, ex in all_exercises() if ex.kind != "design"]


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_a_refused_answer_shows_no_example_of_another_kind(ex):
    """The shared parsers (as_name, as_ints) give no example of their own: the
    exercise's answer_format says what it wants."""
    for wrong in (object(), 3.5j):
        text = ex.check(wrong).text
        if text.startswith("Could not read"):
            assert ex.answer_format in text
        assert "do_wp_page" not in text or "do_wp_page" in ex.answer_format + ex.question
        assert "e.g. (1, 2)" not in text


def test_the_shared_parsers_name_no_example():
    for parse, bad in ((as_name, 3), (as_ints, "x"), (as_ints, 5)):
        with pytest.raises(TypeError) as err:
            parse(bad)
        assert "e.g." not in str(err.value)


def test_page_name_and_tuple_refusals_say_what_was_wrong():
    text = ch03.surviving_frame.check(3).text
    # the hint shows a page name (the answer's kind), never a function name
    assert "page name" in text and "'vm1[" in text and "do_wp_page" not in text
    text = ch04.predict_counters.check("x").text
    assert "three numbers" in text and "3 numbers" in text and "(1, 2)" not in text
    text = ch04.predict_counters.check((1, 2)).text
    assert "expected 3 numbers, got 2" in text


def test_wrong_items_are_reported_in_grammar():
    assert _compare((1, 2, 3), (1, 0, 3)) == "Item 2 of your answer is not what the simulator finds."
    assert _compare((1, 2, 3), (0, 0, 3)) == \
        "Items 1 and 2 of your answer are not what the simulator finds."
    assert _compare((1, 2, 3), (0, 0, 0)).startswith("Items 1, 2 and 3 of your answer are")
    assert "differ." not in _compare((1, 2), (2, 1))
