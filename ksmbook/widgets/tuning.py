"""Chapter 06's lab: move ksmd's knobs, watch memory saved against ksmd CPU.

``TuningLab()`` shows sliders for ``pages_to_scan`` and ``sleep_millisecs``, toggles
for ``smart_scan`` and the workload, and one live figure: the chosen run next to the
kernel defaults (``pages_to_scan=100``, ``sleep_millisecs=20``).  Each setting is
simulated once by ``ksmbook.labs.tuning.run_timeline`` and cached; the figure is
``ksmbook.viz.tuning.saving_and_cpu_figure`` updated in place.  No simulation logic
lives here.
"""
from __future__ import annotations

import html

import ipywidgets as w

from ..labs import tuning
from ..viz import tuning as tviz
from ..viz.style import sync_figure
from .views import figure_widget

#: slider stops (the kernel accepts any value >= 1 / >= 0; these keep a run under a second)
PAGES_TO_SCAN = (25, 50, 100, 200, 400, 800, 1600)
SLEEP_MILLISECS = (10, 20, 50, 100, 200)
#: workload name -> the lab's Workload
WORKLOADS = {
    "alike": tuning.Workload(),
    "half volatile": tuning.Workload(copies=96, unique=32, volatile=96),
    "nothing alike": tuning.Workload(copies=0, zeros=0, unique=256),
}
DEFAULTS = {"pages_to_scan": 100, "sleep_millisecs": 20, "smart_scan": 1}


class TuningLab:
    """Pick pages_to_scan, sleep_millisecs, smart_scan and a workload; compare with the defaults."""

    kind = "ksmbook-tuning"

    def __init__(self, *, pages_to_scan: int = 400, sleep_millisecs: int = 20,
                 smart_scan: bool = True, workload: str = "alike", duration_ms: int = 3000,
                 factory=figure_widget):
        self.duration_ms = duration_ms
        self.cache: dict = {}
        self.shown = False
        self.pages = w.SelectionSlider(options=PAGES_TO_SCAN, value=pages_to_scan,
                                       description="pages_to_scan", continuous_update=False,
                                       style={"description_width": "initial"},
                                       layout=w.Layout(width="420px"))
        self.sleep = w.SelectionSlider(options=SLEEP_MILLISECS, value=sleep_millisecs,
                                       description="sleep_millisecs", continuous_update=False,
                                       style={"description_width": "initial"},
                                       layout=w.Layout(width="420px"))
        self.smart = w.ToggleButton(value=bool(smart_scan), description="smart_scan",
                                    layout=w.Layout(width="140px"))
        self.workload = w.ToggleButtons(options=list(WORKLOADS), value=workload,
                                        description="workload", style={"button_width": "120px"})
        for c, css in ((self.pages, "pages"), (self.sleep, "sleep"), (self.smart, "smart"),
                       (self.workload, "workload")):
            c.add_class(f"ksmbook-tuning-{css}")
            c.observe(lambda _ch: self.refresh(), names="value")
        self.figure = factory(self._build(), classes=("ksmbook-view", "ksmbook-view-tuning"))
        self.updates = 0
        self.status = w.HTML().add_class("ksmbook-events")
        self._render_text()

    @property
    def knobs(self) -> dict:
        return {"pages_to_scan": self.pages.value, "sleep_millisecs": self.sleep.value,
                "smart_scan": int(self.smart.value)}

    def _run(self, knobs: dict, label: str) -> tuning.Timeline:
        key = (self.workload.value, tuple(sorted(knobs.items())))
        if key not in self.cache:
            self.cache[key] = tuning.run_timeline(knobs, WORKLOADS[self.workload.value],
                                                  duration_ms=self.duration_ms, sample_ms=100,
                                                  label=label)
        return self.cache[key]

    @property
    def runs(self) -> list[tuning.Timeline]:
        """[the kernel defaults, your setting] on the chosen workload."""
        k = self.knobs
        mine = f"yours {k['pages_to_scan']}/{k['sleep_millisecs']}ms smart={k['smart_scan']}"
        return [self._run(DEFAULTS, "defaults 100/20ms smart=1"), self._run(k, mine)]

    def _build(self):
        return tviz.saving_and_cpu_figure(
            self.runs, title=f"workload '{self.workload.value}': yours against the defaults",
            height=500)

    @property
    def box(self):
        if not hasattr(self, "_box"):
            self._box = w.VBox([w.HBox([self.pages, self.smart]), self.sleep, self.workload,
                                self.figure, self.status])
            self._box.add_class("ksmbook-app")
            self._box.add_class(self.kind)
        return self._box

    def refresh(self) -> None:
        sync_figure(self.figure, self._build())
        self.updates += 1
        self._render_text()

    def verdict(self) -> str:
        default, mine = self.runs
        if mine.final.general_profit < 0:
            return "KSM costs more memory than it saves here: general_profit is negative"
        t_d, t_m = default.time_to_save(), mine.time_to_save()
        ratio = mine.mean_cpu_percent() / default.mean_cpu_percent() if default.mean_cpu_percent() else 0
        if t_d is None or t_m is None:
            return "nothing to save on this workload"
        return (f"yours reaches 90% of the saving {'sooner' if t_m < t_d else 'later' if t_m > t_d else 'as fast'}"
                f" ({t_m / 1000:.1f} s vs {t_d / 1000:.1f} s) for {ratio:.1f}x the defaults' ksmd CPU")

    def _render_text(self) -> None:
        self.status.value = (f"<div><b>{html.escape(self.verdict())}</b></div>"
                             f"<pre style='font-size:12px;line-height:1.3;margin:0'>"
                             f"{html.escape(tuning.summary_table(self.runs))}</pre>")

    def text(self) -> str:
        """The text twin: both runs' summary rows and the verdict."""
        return tuning.summary_table(self.runs) + f"\nverdict: {self.verdict()}"

    def summary(self) -> str:
        k = self.knobs
        return (f"TuningLab(pages_to_scan={k['pages_to_scan']}, sleep_millisecs={k['sleep_millisecs']}, "
                f"smart_scan={k['smart_scan']}, workload={self.workload.value!r})")

    def _repr_mimebundle_(self, **kw):
        self.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = self.summary()
        return bundle
