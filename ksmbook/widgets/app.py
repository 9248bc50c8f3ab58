"""The frame every interactive view of the book shares: a scene, its live figures,
the text of the last step, the counters, and Reset.

Subclasses only add buttons whose handlers call the simulator's public API
(``m.ksmd.scan``, ``p.write`` ...) inside ``self.act``; the app records the
events, refreshes every view in place and keeps a text twin (``text()``) that
prints exactly what the widgets show.
"""
from __future__ import annotations

import html

import ipywidgets as w

from .. import viz
from ..kernel.events import Fault, KsmEvent, PageAlloc, PageFree, PteChange
from .views import VIEWS, FigureView, figure_widget, kernel_free_bundle

ALL_EVENTS = (KsmEvent, Fault, PteChange, PageAlloc, PageFree)


class SceneApp:
    """A scene (rebuilt by Reset) shown through one live figure (Plot) per view."""

    kind = "ksmbook-app"
    event_kinds = ALL_EVENTS
    event_limit = 40

    def __init__(self, scene_factory, views=("mappings", "trees"), *, factory=figure_widget):
        self.scene_factory = scene_factory
        self.scene = scene_factory()
        self.history = [self.counter_record()]
        self.last_action = "start"
        self.last_events: list = []
        self.error = ""
        snap = viz.snapshot(self.scene)
        self.snap = snap            # the snapshot the views show now
        self.before = None          # ... and the one before the last action (None: reset)
        self.views = {name: FigureView(name, VIEWS[name], snap, self.history, factory)
                      for name in views}
        self.status = w.HTML(layout=w.Layout(min_width="200px")).add_class("ksmbook-counters")
        self.log = w.HTML(layout=w.Layout(flex="1 1 auto", max_height="320px",
                                          overflow="auto")).add_class("ksmbook-events")
        self.reset_button = self._button("Reset", "ksmbook-reset", self.reset,
                                         "rebuild the scene from scratch")
        self._render_text()

    # --- plumbing ---
    @property
    def machine(self):
        return self.scene.machine

    def _button(self, label, css, handler, tooltip=""):
        b = w.Button(description=label, tooltip=tooltip, layout=w.Layout(width="auto"))
        b.add_class("ksmbook-button")
        b.add_class(css)
        b.on_click(lambda _b: handler())
        return b

    def controls(self) -> list:
        """The row of buttons (subclasses prepend theirs)."""
        return [self.reset_button]

    def extra(self) -> list:
        """Widgets between the buttons and the figures (knobs ...)."""
        return []

    @property
    def box(self):
        if not hasattr(self, "_box"):
            self._box = w.VBox([w.HBox(self.controls()), *self.extra(),
                                w.HBox([self.status, self.log]),
                                *[v.widget for v in self.views.values()]])
            self._box.add_class("ksmbook-app")
            self._box.add_class(self.kind)
        return self._box

    # --- actions ---
    def act(self, label: str, fn, describe=None) -> None:
        """Run ``fn()`` (a simulator call), record its events, refresh everything;
        ``describe()``, if given, words the action once it ran (the log's heading)."""
        self.error = ""
        self.before = self.snap
        with self.machine.events.capture() as events:
            try:
                fn()
            except (OSError, RuntimeError, ValueError) as exc:   # kernel-shaped refusals
                self.error = f"{type(exc).__name__}: {exc}"
        self.last_action = label
        self.last_events = list(events)
        self.history.append(self.counter_record())
        if describe is not None:
            self.last_action = describe()
        self.refresh()

    def reset(self) -> None:
        self.scene = self.scene_factory()
        self.history = [self.counter_record()]
        self.last_action = "reset"
        self.last_events = []
        self.error = ""
        self.before = None
        self.on_reset()
        self.refresh()

    def on_reset(self) -> None:
        """Hook for subclasses that hold other machine-bound widgets."""

    def on_snapshot(self, snap) -> None:
        """Hook: the new snapshot, before anything is shown (a predict panel's verdict)."""

    def needs_snapshot(self) -> bool:
        """Whether anything shown reads a snapshot (views of counters alone do not)."""
        return any(v.spec.uses_snapshot for v in self.views.values())

    def refresh(self) -> None:
        # a snapshot copies every page's state: taken only when a view reads it
        snap = self.snap = viz.snapshot(self.scene) if self.needs_snapshot() else None
        self.on_snapshot(snap)
        # the text first: the step's log and counters reach the page before the
        # figures, whose drawing takes the browser longer
        self._render_text()
        for v in self.views.values():
            v.update(snap, self.history, self.before)

    # --- text ---
    def event_lines(self) -> list[str]:
        return viz.describe_events(self.last_events, self.scene.label, kinds=self.event_kinds,
                                   limit=self.event_limit)

    def counter_record(self) -> dict:
        """KSM's counters now, marked when ksmd is inside a full scan (the timeline
        draws only scan ends, plus the newest mid-scan record as "now")."""
        ksm = self.machine.ksm
        return {**ksm.stats(), "mid_scan": ksm.scan_in_progress()}

    def counters_text(self) -> str:
        return "  ".join(f"{k}={v}" for k, v in self.status_rows())

    def status_rows(self) -> list[tuple[str, int]]:
        """The numbers shown beside the event log (KSM's counters by default)."""
        c = self.machine.ksm.stats()
        return [(k, c[k]) for k in ("full_scans", "pages_shared", "pages_sharing",
                                    "pages_unshared", "pages_volatile", "pages_skipped",
                                    "ksm_zero_pages")]

    def _render_text(self) -> None:
        rows = "".join(f"<tr><td>{k}</td><td style='text-align:right'><b>{v}</b></td></tr>"
                       for k, v in self.status_rows())
        self.status.value = f"<table class='ksmbook-counter-table'>{rows}</table>"
        lines = self.event_lines() or ["(no events)"]
        err = (f"<div style='color:#B00020'>{html.escape(self.error)}</div>" if self.error else "")
        # wrapped, never cut at the right edge; the newest line (what this action
        # changed last) is highlighted
        rows = [f"<div class='ksmbook-event-line'>{html.escape(line)}</div>" for line in lines[:-1]]
        rows.append("<div class='ksmbook-event-line ksmbook-event-newest' style='background:"
                    f"#FFF3C4;font-weight:bold'>{html.escape(lines[-1])}</div>")
        self.log.value = (f"<div><b>{html.escape(self.last_action)}</b></div>{err}"
                          "<div style='font-family:monospace;font-size:12px;line-height:1.3;"
                          "white-space:pre-wrap;overflow-wrap:anywhere'>" + "".join(rows) +
                          "</div>")

    def text(self, views: bool = False) -> str:
        """The text twin: last action, its events, the counters (and each view's text)."""
        out = [f"[{self.last_action}]"]
        if self.error:
            out.append(f"refused: {self.error}")
        out += self.event_lines()
        out.append(self.counters_text())
        if views:
            snap = viz.snapshot(self.scene)
            for v in self.views.values():
                out.append(v.text(snap, self.history, self.before))
        return "\n".join(out)

    def summary(self) -> str:
        return f"{type(self).__name__}(views={list(self.views)})"

    def _repr_mimebundle_(self, **kw):
        for v in self.views.values():
            v.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = self.summary()     # deterministic, unlike a widget repr
        bundle.update(kernel_free_bundle(self.box, self.text(views=True)))
        return bundle
