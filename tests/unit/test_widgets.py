"""The book's widgets, driven headlessly: button.click(), value assignment.

Each test checks what the reader would see (the text, the counters, the figure
data) and that every view is updated in place: the same live figure (Plot) object,
its state replaced, never re-created.
"""
import functools

from ksmbook.labs import scenes
from ksmbook.widgets.plot import Plot, figure_json
from ksmbook.widgets import ActionStepper, Knobs, KsmStepper, WalkExplorer

KSM = "/sys/kernel/mm/ksm"


def four_and_two():
    return scenes.identical_pages(4, unique=2)


def stepper(**kw):
    return KsmStepper(four_and_two, **kw)


# --- KsmStepper -----------------------------------------------------------------------

def test_step_one_page_runs_one_cmp_and_merge_page_and_says_so():
    ui = stepper()
    ui.step_page.click()
    assert ui.machine.ksm.stats()["pages_scanned"] == 1
    assert ui.last_action == "scan(1): 1 page processed"
    text = ui.text()
    assert "vm1[0]" in text and "first visit" in text and "cmp_and_merge_page()" in text
    assert "vm1[1]" not in text
    assert "first visit" in ui.log.value and "<b>1</b>" not in ui.log.value
    # issue 8: lines wrap instead of being cut off, and the newest line is highlighted
    assert "white-space:pre-wrap" in ui.log.value and "white-space:pre'" not in ui.log.value
    newest = ui.log.value.split("ksmbook-event-newest")[1]
    assert ui.event_lines()[-1].split()[0] in newest


def test_full_scans_merge_and_every_view_updates_in_place():
    ui = stepper()
    widgets = {name: v.widget for name, v in ui.views.items()}
    ui.full_scan.click()
    ui.full_scan.click()
    c = ui.machine.ksm.stats()
    assert (c["full_scans"], c["pages_shared"], c["pages_sharing"], c["pages_unshared"]) == \
        (2, 1, 3, 2)
    for name, v in ui.views.items():
        assert v.widget is widgets[name] and v.updates == 2
        assert v.widget.revision >= 1
        # what every view draws is the figure the widget holds
        assert v.widget.drawn == figure_json(v.widget.figure)
    assert isinstance(ui.views["trees"].widget, Plot)
    ksm = [t for t in ui.views["mappings"].widget.data if t.name == "KSM page"][0]
    assert len(ksm.y) == 1 and "mapcount 4" in ksm.text[0]
    sharing = [t for t in ui.views["counters"].widget.data if t.name == "pages_sharing"][0]
    assert list(sharing.y) == [0, 0, 3]
    assert "try_to_merge_two_pages()" in ui.text()
    assert "<td>pages_sharing</td><td style='text-align:right'><b>3</b>" in ui.status.value


def test_a_batch_stops_at_the_full_scan_boundary():
    ui = stepper()
    ui.scan_full()
    ui.machine.sysfs.write(f"{KSM}/pages_to_scan", "4")
    ui.step_batch.click()
    assert ui.last_action == "scan() with pages_to_scan=4: 4 pages processed"
    ui.step_batch.click()
    assert ui.last_action == "scan() with pages_to_scan=4: 2 pages processed"
    assert ui.machine.ksm.stats()["full_scans"] == 2


def test_reset_rebuilds_the_scene_and_keeps_the_figures():
    ui = stepper(knobs=("pages_to_scan",))
    fig = ui.views["trees"].widget
    old_machine = ui.machine
    ui.full_scan.click()
    ui.full_scan.click()
    ui.knobs.controls["pages_to_scan"].value = 7
    ui.reset_button.click()
    assert ui.machine is not old_machine and ui.machine.ksm.stats()["full_scans"] == 0
    assert ui.history == [{**ui.machine.ksm.stats(), "mid_scan": False}]
    assert ui.last_action == "reset"
    assert ui.views["trees"].widget is fig
    assert [a.text for a in fig.layout.annotations if a.text == "(empty)"] == ["(empty)"] * 2
    assert ui.knobs.machine is ui.machine and ui.knobs.controls["pages_to_scan"].value == 100


def test_a_stopped_ksmd_is_reported_not_raised():
    ui = KsmStepper(functools.partial(scenes.identical_pages, 2, run=0))
    ui.step_page.click()
    assert "KsmdNotRunning" in ui.error and "run" in ui.error
    assert "refused: KsmdNotRunning" in ui.text()
    assert "B00020" in ui.log.value


def test_widgets_carry_css_classes_for_browser_tests():
    ui = stepper(knobs=("max_page_sharing",))
    assert "ksmbook-stepper" in ui.box._dom_classes and "ksmbook-app" in ui.box._dom_classes
    assert "ksmbook-step-page" in ui.step_page._dom_classes
    assert "ksmbook-step-batch" in ui.step_batch._dom_classes
    assert "ksmbook-full-scan" in ui.full_scan._dom_classes
    assert "ksmbook-reset" in ui.reset_button._dom_classes
    assert "ksmbook-events" in ui.log._dom_classes and "ksmbook-counters" in ui.status._dom_classes
    assert "ksmbook-view-trees" in ui.views["trees"].widget._dom_classes
    assert "ksmbook-knob-max_page_sharing" in ui.knobs.controls["max_page_sharing"]._dom_classes


def test_display_bundle_has_a_deterministic_text_and_batches_afterwards():
    ui = stepper()
    bundle = ui._repr_mimebundle_()
    assert bundle["text/plain"] == "KsmStepper(views=['mappings', 'trees', 'counters'])"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ui.box.model_id
    assert all(v.shown for v in ui.views.values())


# --- Knobs ----------------------------------------------------------------------------

def test_knob_writes_go_through_sysfs():
    s = scenes.identical_pages(2)
    k = Knobs(s.machine)
    k.controls["pages_to_scan"].value = 9
    k.controls["use_zero_pages"].value = True
    k.controls["smart_scan"].value = False
    k.controls["max_page_sharing"].value = 5
    assert s.stat("pages_to_scan") == 9 and s.stat("use_zero_pages") == 1
    assert s.stat("smart_scan") == 0 and s.stat("max_page_sharing") == 5
    assert k.error == "" and "wrote max_page_sharing=5" in k.message.value
    assert k.text() == "pages_to_scan=9  max_page_sharing=5  use_zero_pages=1  smart_scan=0"


def test_refused_knob_write_shows_the_kernel_error_and_springs_back():
    s = scenes.identical_pages(4)
    s.machine.ksmd.run_full_scans(2)
    changes = []
    k = Knobs(s.machine, ("max_page_sharing",), on_change=lambda n, v: changes.append((n, v)))
    k.controls["max_page_sharing"].value = 3
    assert k.error.startswith("write max_page_sharing=3: EBUSY: Device or resource busy")
    assert "EBUSY" in k.message.value
    assert k.controls["max_page_sharing"].value == 256 == s.stat("max_page_sharing")
    assert changes == [] and "last write refused" in k.text()
    s.knob("run", 2)
    k.controls["max_page_sharing"].value = 3
    assert s.stat("max_page_sharing") == 3 and k.error == "" and changes == [("max_page_sharing", 3)]


def test_knob_controls_never_clamp_the_kernel_value():
    s = scenes.identical_pages(1)
    s.knob("max_page_sharing", 5000)
    k = Knobs(s.machine, ("max_page_sharing",))
    assert k.controls["max_page_sharing"].value == 5000


def test_knobs_skip_files_the_kernel_version_lacks():
    from ksmbook.kernel.machine import Machine
    k = Knobs(Machine(kernel="4.4"))
    assert "smart_scan" not in k.names and "pages_to_scan" in k.names


# --- ActionStepper --------------------------------------------------------------------

def test_action_stepper_runs_the_script_one_action_at_a_time():
    script = [("fork", lambda s: s.fork("parent", "child")),
              ("child writes 0", lambda s: s.write("child", 0, b"x"))]

    def parent():
        s = scenes.Scene()
        s.spawn("parent")
        s.mmap("parent", "mem", 2)
        s.fill("parent", 0, 2, 0x41)
        return s

    ui = ActionStepper(parent, script)
    fig = ui.views["mappings"].widget
    assert ui.next_button.description == "Next: fork"
    ui.next_button.click()
    assert ui.last_action == "fork" and len(ui.machine.live_processes()) == 2
    assert "copy_present_pte" in ui.text()
    ui.next_button.click()
    assert "wp_page_copy" in ui.text() and "anonymous frames=3" in ui.text()
    assert ui.next_button.disabled and ui.next_button.description.startswith("done")
    ui.next_button.click()                          # nothing left: nothing happens
    assert ui.position == 2
    ro = [t for t in fig.data if t.name.startswith("read-only")][0]
    # parent[0] stays read-only until it writes; parent[1] and child[1] still share
    assert len(ro.x) == 3 * 3
    ui.reset_button.click()
    assert ui.position == 0 and not ui.next_button.disabled and ui.views["mappings"].widget is fig
    assert len(ui.machine.live_processes()) == 1


# --- WalkExplorer ---------------------------------------------------------------------

def test_walk_explorer_follows_the_slider_in_place():
    s = scenes.identical_pages(4)
    s.machine.ksmd.run_full_scans(2)
    ui = WalkExplorer(s)
    fig = ui.view
    first = ui.text()
    ui.page.value = 3
    assert ui.view is fig and ui.updates == 1
    assert ui.text() != first and "vm1[3]" in ui.text() and "KSM page, mapcount 4" in ui.text()
    texts = [a.text for a in fig.layout.annotations]
    assert f"<b>PTE index {ui.walk().indices[3]}</b>" in texts
    assert ui._repr_mimebundle_()["text/plain"] == "WalkExplorer(processes=['vm1'])"


def test_walk_explorer_switches_process():
    s = scenes.identical_pages(2, procs=2)
    ui = WalkExplorer(s)
    ui.proc.value = "vm2"
    assert ui.walk().proc == "vm2" and ui.page.max == 1 and ui.updates == 1


def test_a_counters_only_stepper_copies_no_page_per_step(monkeypatch):
    """A view drawn from the counter history alone needs no snapshot of the machine
    (issue 13: one step of a 4,096-page stepper); with the trees, or a predict panel,
    every step takes one, and the text comes before the figures."""
    import ksmbook.widgets.app as app_module
    taken = []
    real = app_module.viz.snapshot
    monkeypatch.setattr(app_module.viz, "snapshot", lambda *a, **k: taken.append(1) or real(*a, **k))
    ui = stepper(views=("counters",))
    taken.clear()
    ui.step(1)
    ui.full_scan.click()
    assert taken == [] and ui.snap is None
    assert list(ui.views["counters"].widget.data[1].y)[-1] == ui.machine.ksm.stats()["pages_sharing"]
    assert ui.last_action.startswith("run_full_scans(1): ")
    both = stepper(views=("counters", "trees"))
    taken.clear()
    both.step(1)
    assert len(taken) == 1 and both.snap is not None


def test_a_step_sends_its_text_before_its_figures():
    ui = stepper()
    sent = []
    ui.log.observe(lambda ch: sent.append("log"), "value")
    for name, v in ui.views.items():
        v.widget.observe(lambda ch, name=name: sent.append(name), "outputs")
    ui.full_scan.click()
    assert sent[0] == "log" and set(sent[1:]) <= set(ui.views) and len(sent) >= 2, sent
