"""Predict, then step (issue 8): the panels check a reader's guess against what the
simulator did, without a browser.  The expected answers below are the kernel's
behaviour (try_to_merge_two_pages() keeps the scanned page's frame, a full node
sends a page to the unstable tree, ...), and each is also checked against
viz.predict reading the snapshots, so a panel cannot pass by hard-coding."""
import pytest

from ksmbook import viz
from ksmbook.labs.scenes import identical_pages
from ksmbook.viz import predict as outcomes
from ksmbook.widgets import CounterPredict, FramePredict, KsmStepper


def four_and_two():
    return identical_pages(4, unique=2)


def frame_stepper():
    ui = KsmStepper(four_and_two, views=("trees",), predict=FramePredict())
    ui.scan_full()                           # scan 1: checksums only
    return ui


def test_frame_guess_right_and_wrong_on_the_first_merges():
    ui = frame_stepper()
    p = ui.predict
    assert "ksmbook-predict" in p.box._dom_classes and p.box in ui.extra()
    ui.predict.guess("own")
    ui.step(1)                               # vm1[0] goes into the unstable tree: no merge
    guess, got, right = p.last
    assert (guess, got.answer, right) == ("own", "none", False)
    assert "No PTE was repointed" in got.explanation and p.current_guess() is None   # re-armed
    p.guess("own")
    ui.step(1)                               # vm1[1] matches vm1[0]: vm1[1]'s frame survives
    guess, got, right = p.last
    assert (got.answer, right) == ("own", True)
    assert "vm1[1] (the page ksmd scanned) kept its frame" in got.explanation
    assert "Right" in p.verdict.value and "your guess: (none yet)" in ui.text()
    p.guess("waiting")
    ui.step(1)                               # vm1[2] joins the KSM page from the stable tree
    guess, got, right = p.last
    assert (got.answer, right) == ("ksm", False) and "Not this time" in p.verdict.value
    assert p.checked == 3 and p.right == 1


def test_the_frame_answer_is_read_from_the_simulator_not_stored():
    """The same guess is right or wrong depending on what the machine did: the answer
    is viz.predict.frame_outcome of the app's own snapshots."""
    ui = frame_stepper()
    for _ in range(6):
        ui.predict.guess("ksm")
        ui.step(1)
        guess, got, right = ui.predict.last
        assert got == outcomes.frame_outcome(ui.before, ui.snap)
        assert right == (got.answer == "ksm")
    # a zero page merge is its own answer (use_zero_pages=1)
    zu = KsmStepper(lambda: identical_pages(2, 0x00, knobs={"use_zero_pages": 1}),
                    views=("trees",), predict=FramePredict())
    zu.scan_full()
    answers = []
    for _ in range(3):
        zu.predict.guess("zero")
        zu.step(1)
        answers.append(zu.predict.last[1].answer)
    assert "zero" in answers


def test_frame_question_waits_for_step_one_page_and_reset_clears():
    ui = frame_stepper()
    ui.predict.guess("own")
    ui.batch()                               # many pages: not what the question is about
    assert ui.predict.last is None and ui.predict.current_guess() == "own"
    assert "checked on Step 1 page" in ui.predict.verdict.value
    ui.reset()
    assert ui.predict.current_guess() is None and ui.predict.last is None


def test_stepping_without_a_guess_still_explains():
    ui = frame_stepper()
    ui.step(1)
    ui.step(1)
    guess, got, right = ui.predict.last
    assert guess is None and right is None and got.answer == "own"
    assert "No guess this time" in ui.predict.verdict.value


CHAIN_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                  "stable_node_chains", "stable_node_dups")


def chain_scene():
    s = identical_pages(7, knobs={"max_page_sharing": 3})
    s.machine.ksmd.run_full_scans(1)
    return s


def test_counter_guesses_on_a_chain():
    ui = KsmStepper(chain_scene, views=("trees",), predict=CounterPredict(CHAIN_COUNTERS))
    p = ui.predict
    moved = []
    for _ in range(5):                       # vm1[0] .. vm1[4]
        p.guess({"pages_sharing"})
        ui.step(1)
        moved.append(p.last[1].answer)
        c0, c1 = ui.before.counters, ui.snap.counters
        assert p.last[1].answer == {n for n in CHAIN_COUNTERS if c0[n] != c1[n]}
        assert p.last[2] == (p.last[1].answer == {"pages_sharing"})
    assert moved[2] == {"pages_sharing", "pages_volatile"}           # vm1[2] joins s1
    # vm1[3] meets a full node: it waits in the unstable tree instead
    assert moved[3] == {"pages_unshared", "pages_volatile"}
    # vm1[4] merges with it: a second KSM copy, the content's node becomes a chain
    assert {"stable_node_chains", "stable_node_dups", "pages_shared"} <= moved[4]
    assert "stable_node_chains 0 → 1" in p.last[1].explanation
    with pytest.raises(ValueError):
        p.guess({"full_scans"})


def test_counter_guess_none_of_them_and_every_step_counts():
    ui = KsmStepper(four_and_two, views=("counters",), predict=CounterPredict())
    ui.predict.guess(set())                  # "none of them"
    assert ui.predict.current_guess() == frozenset()
    ui.scan_full()                           # scan 1: six volatile pages
    assert ui.predict.last[1].answer == {"pages_volatile"} and ui.predict.last[2] is False
    ui.predict.guess({"pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"})
    ui.scan_full()                           # scan 2: the merges
    assert ui.predict.last[2] is True
    ui.predict.guess(set())
    ui.scan_full()                           # scan 3: nothing changes
    assert ui.predict.last[2] is True and ui.predict.last[1].answer == frozenset()
    assert "None of them moved" in ui.predict.last[1].explanation


def test_the_trees_view_marks_the_page_the_step_moved():
    ui = frame_stepper()
    ui.step(1)
    ui.step(1)
    text = ui.text(views=True)
    assert "unstable tree -> stable node s1" in text
    fig = ui.views["trees"].widget
    assert [t for t in fig.data if t.name == "left the unstable tree"][0].x == (0 + 1,)
    ui.knobs = None
    ui.step(1)                               # vm1[2]: from no tree to s1, no ghost
    assert [t for t in ui.views["trees"].widget.data
            if t.name == "left the unstable tree"][0].x == ()
    ui.reset()
    assert "moved:" not in ui.text(views=True)


def test_snapshots_only_are_read():
    ui = frame_stepper()
    before = viz.snapshot(ui.scene)
    ui.predict.after_step("scan(1)", before, before)     # no step taken: nothing moved
    assert ui.predict.last[1].answer == "none"
    assert viz.snapshot(ui.scene) == before
