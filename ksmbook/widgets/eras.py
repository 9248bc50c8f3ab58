"""Chapter 07's stepper: pick a kernel era, then step one merge through KVM.

``EraStepper()`` shows an era picker (2.6.32 / 3.7 / 6.10), **Next step**, **All
steps** and **Reset**; two live figures (the step's sequence diagram and the state
of every guest frame after each step), the explain() lines of the last step and the
VM's counters.  Changing the era replays the new era's story up to the same step,
so the same moment can be compared across eras.  The simulation is
``ksmbook.labs.eras.EraStory``; this module only wires widgets to it.
"""
from __future__ import annotations

import html

import ipywidgets as w

from ..labs.eras import ERAS, STEPS, EraStory
from ..viz import kvm as kvm_viz
from ..viz import notifiers as seq_viz
from ..viz.style import sync_figure
from .views import figure_widget, kernel_free_bundle

STAT_ROWS = ("exits", "retries", "sptes_installed", "sptes_zapped", "sptes_remapped",
             "tlb_flushes")


class EraStepper:
    """The four steps of chapter 07 on the era the reader picks."""

    kind = "ksmbook-eras"

    def __init__(self, era: str = "2.6.32", *, steps=STEPS, factory=figure_widget):
        if era not in ERAS:
            raise ValueError(f"era must be one of {list(ERAS)}, not {era!r}")
        self.steps = tuple(steps)
        self.era = era
        self.story = EraStory(ERAS[era][0], steps=self.steps)
        self.shown = False
        self.picker = w.ToggleButtons(
            options=[(label, key) for key, (_v, label) in ERAS.items()], value=era,
            tooltips=[f"simulate Linux {v}" for v, _l in ERAS.values()],
            style={"button_width": "210px"})
        self.picker.add_class("ksmbook-era-picker")
        self.picker.observe(lambda ch: self.pick(ch["new"]), names="value")
        self.next_button = self._button("Next step", "ksmbook-next", self.next,
                                        "run the next step of the story")
        self.all_button = self._button("All steps", "ksmbook-run-all", self.run_all,
                                       "run the remaining steps")
        self.reset_button = self._button("Reset", "ksmbook-reset", self.reset,
                                         "start the story again")
        self.sequence = factory(self._sequence_figure(),
                                classes=("ksmbook-view", "ksmbook-view-sequence"))
        self.state = factory(self._state_figure(), classes=("ksmbook-view", "ksmbook-view-state"))
        self.updates = 0
        self.status = w.HTML(layout=w.Layout(min_width="210px")).add_class("ksmbook-counters")
        self.log = w.HTML(layout=w.Layout(flex="1 1 auto", max_height="300px",
                                          overflow="auto")).add_class("ksmbook-events")
        self._render_text()

    # --- plumbing ---
    def _button(self, label, css, handler, tooltip):
        b = w.Button(description=label, tooltip=tooltip, layout=w.Layout(width="auto"))
        b.add_class("ksmbook-button")
        b.add_class(css)
        b.on_click(lambda _b: handler())
        return b

    @property
    def label(self) -> str:
        return ERAS[self.era][1]

    @property
    def records(self):
        return self.story.records

    @property
    def last(self):
        return self.records[-1] if self.records else None

    @property
    def box(self):
        if not hasattr(self, "_box"):
            self._box = w.VBox([self.picker,
                                w.HBox([self.next_button, self.all_button, self.reset_button]),
                                self.sequence, w.HBox([self.status, self.log]), self.state])
            self._box.add_class("ksmbook-app")
            self._box.add_class(self.kind)
        return self._box

    def _sequence_figure(self):
        return seq_viz.sequence_figure(self.last, era_label=self.label)

    def _state_figure(self):
        return kvm_viz.state_table_figure(self.records, self.steps)

    def refresh(self) -> None:
        # the text first: the step's log and counters reach the page before the two
        # figures, whose drawing takes the browser longer (as SceneApp.refresh does)
        self.next_button.disabled = self.all_button.disabled = self.story.done
        self._render_text()
        sync_figure(self.sequence, self._sequence_figure())
        sync_figure(self.state, self._state_figure())
        self.updates += 1

    # --- actions ---
    def next(self) -> None:
        if not self.story.done:
            self.story.next()
            self.refresh()

    def run_all(self) -> None:
        self.story.run_all()
        self.refresh()

    def reset(self) -> None:
        self.story = EraStory(ERAS[self.era][0], steps=self.steps)
        self.refresh()

    def pick(self, era: str) -> None:
        """Switch era and replay the new era's story up to the same step."""
        if era not in ERAS:
            raise ValueError(f"no era {era!r}")
        position = self.story.position
        self.era = era
        if self.picker.value != era:
            self.picker.value = era          # observe() calls pick() again: harmless
            return
        self.story = EraStory(ERAS[era][0], steps=self.steps)
        for _ in range(position):
            self.story.next()
        self.refresh()

    # --- text ---
    def heading(self) -> str:
        pos = self.story.position
        if not pos:
            nxt = self.steps[0]
            return f"[{self.label}] ready: step 1 is '{nxt[0]}' ({nxt[1]})"
        r = self.last
        return (f"[{self.label}] step {r.index}/{len(self.steps)}: {r.name} ({r.description})"
                f": {r.exits} exit{'s' if r.exits != 1 else ''}, {r.retries} "
                f"retr{'ies' if r.retries != 1 else 'y'}")

    def explain_lines(self) -> list[str]:
        """viz.events.explain() of the last step, host addresses named by guest frame."""
        return seq_viz.story_lines(self.last) if self.last else []

    def stats_text(self) -> str:
        s = self.story.vm.stats
        return "  ".join(f"{k}={s[k]}" for k in STAT_ROWS)

    def _render_text(self) -> None:
        s = self.story.vm.stats
        rows = "".join(f"<tr><td>{k}</td><td style='text-align:right'><b>{s[k]}</b></td></tr>"
                       for k in STAT_ROWS)
        self.status.value = (f"<div><b>Linux {self.story.kernel}</b></div>"
                             "<div style='font-size:12px'>totals since the story began "
                             "(cumulative, not this step)</div>"
                             f"<table class='ksmbook-counter-table'>{rows}</table>")
        lines = self.explain_lines() or ["(no step yet: press Next step)"]
        self.log.value = (f"<div><b>{html.escape(self.heading())}</b></div>"
                          f"<pre style='font-size:12px;line-height:1.3;margin:0;"
                          f"white-space:pre-wrap'>{html.escape(chr(10).join(lines))}</pre>")

    def text(self, views: bool = False) -> str:
        """The text twin: heading, the last step's explain() lines, the VM's counters,
        and with ``views`` the sequence diagram and the state table as text."""
        out = [self.heading(), *self.explain_lines(), self.stats_text()]
        if views:
            if self.last is not None:
                out.append(seq_viz.sequence_text(self.last, era_label=self.label))
            out.append(kvm_viz.state_table_text(self.records, self.steps))
        return "\n".join(out)

    def summary(self) -> str:
        return f"EraStepper(era={self.era!r}, step={self.story.position}/{len(self.steps)})"

    def _repr_mimebundle_(self, **kw):
        self.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = self.summary()     # deterministic, unlike a widget repr
        bundle.update(kernel_free_bundle(self.box, self.text(views=True)))
        return bundle
