"""Chapter 10's lab: the attacker's histogram under the defence, era and probe you pick.

``SideChannelLab()`` shows toggles for the defence (none / KSM off / zero pages only /
VUsion-like), the kernel and the probe (write or read), a threshold slider, one live
histogram and the classifier's rates.  Each (kernel, defence, probe) experiment is
run once by ``ksmbook.labs.sidechannel.run_experiment`` and cached; moving the threshold
only re-reads it.  No simulation logic lives here.
"""
from __future__ import annotations

import html

import ipywidgets as w

from ..labs.sidechannel import DEFENCES, PROBES, QUIET, run_experiment
from ..viz import sidechannel as sc_viz
from ..viz.style import sync_figure
from .views import figure_widget, kernel_free_bundle

KERNELS = ("2.6.32", "3.7", "6.10", "6.18")


class SideChannelLab:
    """Pick a defence, a kernel, a probe and a threshold; watch what the attacker sees."""

    kind = "ksmbook-sidechannel"

    def __init__(self, *, kernel: str = "6.18", defence: str = "none", probe: str = "write",
                 threshold: float = 500.0, candidates: int = 256, noise=QUIET, seed: int = 0,
                 factory=figure_widget):
        self.candidates = candidates
        self.noise = noise
        self.seed = seed
        self.cache: dict = {}
        self.shown = False
        self.defence_picker = w.ToggleButtons(
            options=[(sc_viz.DEFENCE_TITLES[d], d) for d in DEFENCES], value=defence,
            description="defence", style={"button_width": "230px"})
        self.kernel_picker = w.ToggleButtons(
            options=[(f"Linux {k}", k) for k in KERNELS], value=kernel, description="kernel",
            style={"button_width": "110px"})
        self.probe_picker = w.ToggleButtons(options=list(PROBES), value=probe,
                                            description="probe", style={"button_width": "90px"})
        self.threshold = w.FloatLogSlider(
            value=threshold, base=10, min=1, max=5, step=0.05, description="threshold (ns)",
            continuous_update=False, readout_format=".3g", style={"description_width": "initial"},
            layout=w.Layout(width="520px"))
        for c, css in ((self.defence_picker, "defence"), (self.kernel_picker, "kernel"),
                       (self.probe_picker, "probe"), (self.threshold, "threshold")):
            c.add_class(f"ksmbook-sc-{css}")
            c.observe(lambda _ch: self.refresh(), names="value")
        self.figure = factory(sc_viz.latency_figure(self.experiment, self.threshold.value),
                              classes=("ksmbook-view", "ksmbook-view-latency"))
        self.updates = 0
        self.status = w.HTML().add_class("ksmbook-events")
        self._render_text()

    @property
    def key(self) -> tuple:
        return (self.kernel_picker.value, self.defence_picker.value, self.probe_picker.value)

    @property
    def experiment(self):
        """The experiment of the current choices (run on first use, then cached)."""
        if self.key not in self.cache:
            kernel, defence, probe = self.key
            self.cache[self.key] = run_experiment(kernel, defence, probe=probe,
                                                  candidates=self.candidates,
                                                  noise=self.noise, seed=self.seed)
        return self.cache[self.key]

    @property
    def rates(self):
        return self.experiment.rates(self.threshold.value)

    @property
    def box(self):
        if not hasattr(self, "_box"):
            self._box = w.VBox([self.defence_picker, self.kernel_picker, self.probe_picker,
                                self.threshold, self.figure, self.status])
            self._box.add_class("ksmbook-app")
            self._box.add_class(self.kind)
        return self._box

    def refresh(self) -> None:
        sync_figure(self.figure, sc_viz.latency_figure(self.experiment, self.threshold.value))
        self.updates += 1
        self._render_text()

    def verdict(self) -> str:
        r = self.rates
        j = r.tpr - r.fpr
        if j > 0.9:
            return "the attacker reads the victim's pages almost perfectly"
        if j > 0.2:
            return "the attacker learns something, with errors"
        return "the attacker does no better than a coin"

    def _render_text(self) -> None:
        lines = sc_viz.latency_text(self.experiment, self.threshold.value).splitlines()
        self.status.value = (f"<div><b>{html.escape(self.verdict())}</b></div>"
                             f"<pre style='font-size:12px;line-height:1.3;margin:0'>"
                             f"{html.escape(chr(10).join(lines))}</pre>")

    def text(self) -> str:
        """The text twin: the histogram by decade, the rates and the verdict."""
        return sc_viz.latency_text(self.experiment, self.threshold.value) + \
            f"\nverdict: {self.verdict()}"

    def summary(self) -> str:
        k, d, p = self.key
        return (f"SideChannelLab(kernel={k!r}, defence={d!r}, probe={p!r}, "
                f"threshold={self.threshold.value:.3g})")

    def _repr_mimebundle_(self, **kw):
        self.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = self.summary()
        bundle.update(kernel_free_bundle(self.box, self.text()))
        return bundle
