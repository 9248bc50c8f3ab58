"""Chapter 06's design exercise: the checker runs the reader's knobs in the simulator."""
from ksmbook.exercises import ch06


def test_knob_design_accepts_what_the_simulator_accepts():
    ex = ch06.KnobDesign()
    assert ex.check(ex.expected()).correct is True
    assert ex.check((400, 20)).correct is True
    slow = ex.check((100, 20))                 # the defaults: cheap, too slow
    assert slow.correct is False and "450 ms" in slow.text
    dear = ex.check((1600, 20))                # fast, too much CPU
    assert dear.correct is False and "20." in dear.text
    assert ex.check("fast").correct is False and ex.check((0, 20)).correct is False


def test_knob_design_limits_come_from_params():
    strict = ch06.KnobDesign(within_ms=100, max_cpu=50)
    assert strict.check((400, 20)).correct is False          # 150 ms is too late now
    assert strict.check((1600, 20)).correct is True
    assert "100 ms" in strict.question and "50%" in strict.question
