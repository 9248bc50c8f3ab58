"""Steppers: ksmd one page / one batch / one full scan at a time, or a script of
process actions one at a time.

``KsmStepper`` buttons call ``m.ksmd.scan(1)``, ``m.ksmd.scan()`` (one batch of
pages_to_scan) and ``m.ksmd.run_full_scans(1)``; ``ActionStepper`` runs the
next (label, function) of a script.  Both only call the simulator's public API.
``KsmStepper(..., predict=FramePredict())`` adds a predict-then-step panel
(widgets/predict.py) that checks the reader's guess after each step.
"""
from __future__ import annotations

from .. import viz
from ..kernel.events import KsmEvent, PageFree
from ..kernel.memory import PG_table
from .app import SceneApp
from .knobs import Knobs


class KsmStepper(SceneApp):
    """Step ksmd through a scene: 1 page, 1 batch, 1 full scan; Reset; optional knobs."""

    kind = "ksmbook-stepper"
    event_kinds = (KsmEvent, PageFree)

    def __init__(self, scene_factory, views=("mappings", "trees", "counters"), *,
                 knobs=None, predict=None, **kw):
        super().__init__(scene_factory, views, **kw)
        self.predict = predict
        if predict is not None:
            predict.arm(self.snap)
        self.step_page = self._button("Step 1 page", "ksmbook-step-page", lambda: self.step(1),
                                      "m.ksmd.scan(1): one cmp_and_merge_page()")
        self.step_batch = self._button("Step batch", "ksmbook-step-batch", self.batch,
                                       "m.ksmd.scan(): up to pages_to_scan pages")
        self.full_scan = self._button("Full scan", "ksmbook-full-scan", self.scan_full,
                                      "m.ksmd.run_full_scans(1)")
        self.knobs = Knobs(self.machine, knobs, on_change=self._knob_changed) if knobs else None

    def controls(self):
        return [self.step_page, self.step_batch, self.full_scan, self.reset_button]

    def extra(self):
        return ([self.predict.box] if self.predict else []) + ([self.knobs.box] if self.knobs else [])

    def needs_snapshot(self) -> bool:
        return super().needs_snapshot() or getattr(self, "predict", None) is not None

    def on_reset(self):
        if self.knobs:
            self.knobs.attach(self.machine)
        if getattr(self, "predict", None) is not None:
            self.predict.reset(viz.snapshot(self.scene))

    def _knob_changed(self, name, value):
        self.last_action = f"{name} = {value}"
        self.last_events = []
        self.before = self.snap          # a knob moves no page: nothing to mark
        self.refresh()
        if self.predict is not None:
            self.predict.arm(self.snap)

    # --- the buttons ---
    def _scan_act(self, label, fn) -> None:
        """Run a scan call and say how many pages cmp_and_merge_page() saw: pages that
        are already merged produce no event, pages_scanned still counts them."""
        before = self.machine.ksm.stats()["pages_scanned"]

        def describe():
            if not self.machine.profile.ksm_pages_scanned:
                return label             # no pages_scanned before 6.6: nothing to count with
            done = self.machine.ksm.stats()["pages_scanned"] - before
            return f"{label}: {done} page{'s' if done != 1 else ''} processed"
        self._checking = label
        self.act(label, fn, describe)

    def on_snapshot(self, snap) -> None:
        """After a scan button, the predict panel checks the guess (before the text and
        the figures are sent, so its verdict arrives with the step's log)."""
        label, self._checking = getattr(self, "_checking", None), None
        if label is not None and self.predict is not None:
            self.predict.after_step(label, self.before, snap)

    def step(self, pages: int = 1) -> None:
        self._scan_act(f"scan({pages})", lambda: self.machine.ksmd.scan(pages))

    def batch(self) -> None:
        n = self.machine.ksm.pages_to_scan
        self._scan_act(f"scan() with pages_to_scan={n}", lambda: self.machine.ksmd.scan())

    def scan_full(self) -> None:
        self._scan_act("run_full_scans(1)", lambda: self.machine.ksmd.run_full_scans(1))

    def text(self, views: bool = False) -> str:
        out = super().text(views)
        out += ("\n" + self.knobs.text() if self.knobs else "")
        return out + ("\n" + self.predict.text() if self.predict else "")


class ActionStepper(SceneApp):
    """Run a script of (label, fn(scene)) actions one at a time, showing their events."""

    kind = "ksmbook-actions"

    def __init__(self, scene_factory, actions, views=("mappings", "frames"), **kw):
        self.actions = list(actions)
        self.position = 0
        super().__init__(scene_factory, views, **kw)
        self.next_button = self._button(self._next_label(), "ksmbook-next", self.next,
                                        "run the next action of the script")

    def _next_label(self) -> str:
        if self.position >= len(self.actions):
            return "done (Reset to replay)"
        return f"Next: {self.actions[self.position][0]}"

    def controls(self):
        return [self.next_button, self.reset_button]

    def status_rows(self):
        """Frames by role: what copy-on-write changes."""
        mem = self.machine.memory
        anon = sum(1 for p in mem.pages.values() if p.is_anon)
        tables = sum(1 for p in mem.pages.values() if p.flags & PG_table)
        return [("processes", len(self.machine.live_processes())), ("anonymous frames", anon),
                ("page-table frames", tables), ("free frames", len(mem.free_pfns()))]

    def next(self) -> None:
        if self.position >= len(self.actions):
            return
        label, fn = self.actions[self.position]
        self.position += 1
        self.act(label, lambda: fn(self.scene))
        self.next_button.description = self._next_label()
        self.next_button.disabled = self.position >= len(self.actions)

    def on_reset(self):
        self.position = 0
        if hasattr(self, "next_button"):
            self.next_button.description = self._next_label()
            self.next_button.disabled = False

    def run_all(self) -> None:
        while self.position < len(self.actions):
            self.next()
