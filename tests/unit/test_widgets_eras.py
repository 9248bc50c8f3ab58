"""Chapters 07 and 08's widgets, driven headlessly: button.click(), value assignment.

Each test checks what the reader sees (text, counters, figure data) and that the
figures are updated in place: the same live figure (Plot) object, never re-created.
"""

from ksmbook.labs.eras import STEPS
from ksmbook.widgets.eras import EraStepper
from ksmbook.widgets.sidechannel import SideChannelLab
from ksmbook.widgets.plot import Plot


def test_era_stepper_steps_through_the_story_in_place():
    ui = EraStepper("2.6.32")
    seq_widget, state_widget = ui.sequence, ui.state
    assert isinstance(seq_widget, Plot)
    assert "ready" in ui.text() and "exits=0" in ui.text()
    ui.next_button.click()
    ui.next_button.click()
    assert ui.sequence is seq_widget and ui.state is state_widget and ui.updates == 2
    text = ui.text()
    assert "step 2/4: merge" in text and "spte_remap" in text and "sptes_remapped=3" in text
    remaps = [t for t in ui.sequence.data if t.name.startswith("spte remapped")][0]
    assert len(remaps.x) == 3
    assert "2 · merge" in ui.state.data[0].header.values[2]
    assert "change_pte" in ui.log.value and "<b>3</b>" in ui.status.value


def test_an_era_step_sends_its_text_before_its_figures():
    ui = EraStepper("3.7")
    sent = []
    ui.log.observe(lambda ch: sent.append("log"), "value")
    ui.status.observe(lambda ch: sent.append("status"), "value")
    ui.sequence.observe(lambda ch: sent.append("sequence"), "outputs")
    ui.state.observe(lambda ch: sent.append("state"), "outputs")
    ui.next_button.click()
    assert sent[:2] == ["status", "log"] and set(sent[2:]) == {"sequence", "state"}, sent


def test_switching_era_replays_to_the_same_step():
    ui = EraStepper("2.6.32")
    ui.next()
    ui.next()
    ui.picker.value = "3.7"
    assert ui.era == "3.7" and ui.story.kernel == "3.7" and ui.story.position == 2
    text = ui.text(views=True)
    assert "change_pte_miss" in text and "3.7 – 6.9" in text
    assert "after step" in text and "no spte to change" in text
    ui.pick("6.10")
    assert ui.picker.value == "6.10" and ui.story.position == 2
    assert not any(ln.startswith("notifier  change_pte") for ln in ui.explain_lines())
    assert any("change_pte removed" in ln for ln in ui.explain_lines())


def test_run_all_disables_next_and_reset_starts_over():
    ui = EraStepper("3.7")
    ui.all_button.click()
    assert ui.story.done and ui.next_button.disabled and ui.all_button.disabled
    assert ui.story.vm.stats["exits"] == sum(r.exits for r in ui.records)
    ui.next()                                   # nothing left: a no-op
    assert ui.story.position == len(STEPS)
    ui.reset_button.click()
    assert ui.story.position == 0 and not ui.next_button.disabled
    assert sum(len(t.x) for t in ui.sequence.data) == 0
    assert ui.summary() == "EraStepper(era='3.7', step=0/4)"


def test_era_stepper_refuses_unknown_eras():
    try:
        EraStepper("4.0")
    except ValueError as exc:
        assert "era must be one of" in str(exc)
    else:
        raise AssertionError("an unknown era was accepted")


def test_side_channel_lab_toggles_rerun_and_the_threshold_only_reclassifies():
    ui = SideChannelLab(candidates=32)
    fig = ui.figure
    assert "almost perfectly" in ui.text() and len(ui.cache) == 1
    ui.threshold.value = 10_000
    assert ui.figure is fig and len(ui.cache) == 1 and ui.updates == 1
    assert "threshold 1e+04" not in ui.text() and "threshold 10,000 ns" in ui.text()
    ui.defence_picker.value = "vusion"
    assert len(ui.cache) == 2 and "coin" in ui.text()
    assert "VUsion" in ui.figure.layout.title.text.replace("<br>", " ")
    ui.defence_picker.value = "none"
    assert len(ui.cache) == 2, "an experiment already run is not run again"
    ui.kernel_picker.value = "2.6.32"
    ui.probe_picker.value = "read"
    ui.threshold.value = 500
    assert ui.rates.tp == 0 and "coin" in ui.verdict()
    ui.kernel_picker.value = "3.7"
    assert ui.rates.tpr == 1.0, "from 3.7 even a read probe finds merged pages"
    assert ui.figure is fig and ui.summary().startswith("SideChannelLab(kernel='3.7'")
    assert "read probes" in ui.status.value
