"""Chapter 09's apps: one scenario, the simulator beside a Linux kernel.

    SimulatorTrace(name)      pick a scenario; its counters after every step, simulated
    RecordedCompare(name)     ... beside the trace Linux 6.18 recorded (any machine)
    LiveCompare(name)         ... beside this machine's kernel, run on a click (root + KSM)

Each app has a scenario picker, the scenario's description, one live figure per
view (updated in place) and a ``text()`` twin.  The runs themselves come from
``ksmbook.oracle.sidebyside`` (simulator, recorded file, ``ksmbook.oracle.live``); nothing is
simulated or measured here.
"""
from __future__ import annotations

import html
import time

import ipywidgets as w

from ..oracle import sidebyside as sb
from ..oracle.live import KsmBusy, LiveUnavailable, ProtocolError
from ..viz import compare as vc
from ..viz.style import sync_figure
from .views import figure_widget, kernel_free_bundle

DEFAULT = "ten_identical_pages"
BUILDERS = {"timeline": vc.timeline_figure, "grid": vc.grid_figure}


class TraceApp:
    """A scenario picker and live figures of a :class:`~ksmbook.oracle.sidebyside.Comparison`."""

    kind = "ksmbook-trace"
    views = ("timeline",)

    def __init__(self, name: str = DEFAULT, *, kernel: str = "6.18", extra=(),
                 factory=figure_widget):
        self.scenarios = {n: sb.scenario_named(n) for n in self.names()}
        self.scenarios.update({sc.name: sc for sc in extra})
        if name not in self.scenarios:
            raise ValueError(f"unknown scenario {name!r}")
        self.name, self.kernel = name, kernel
        self.shown = False
        self.updates = 0
        self.picker = w.Dropdown(options=list(self.scenarios), value=name,
                                 description="scenario", layout=w.Layout(width="460px"))
        self.picker.add_class("ksmbook-scenario-picker")
        self.picker.observe(lambda ch: self.select(ch["new"]), names="value")
        self.about = w.HTML(layout=w.Layout(max_width="980px")).add_class("ksmbook-about")
        cmp = self.comparison()
        self.figures = {}
        for view in self.views:
            self.figures[view] = factory(BUILDERS[view](cmp),
                                         classes=("ksmbook-view", f"ksmbook-view-{view}"))
        self._render()

    # --- what is compared (subclasses) ---
    def names(self) -> list[str]:
        return sb.scenario_names()

    def other(self) -> sb.Trace | None:
        return None

    @property
    def scenario(self):
        return self.scenarios[self.name]

    def comparison(self) -> sb.Comparison:
        return sb.Comparison(sb.simulate(self.scenario, self.kernel), self.other())

    # --- actions ---
    def select(self, name: str) -> None:
        """Show another scenario (what picking it in the menu does)."""
        if name not in self.scenarios:
            raise ValueError(f"unknown scenario {name!r}")
        if self.picker.value != name:
            self.picker.value = name        # its observer calls select() again
            return
        self.name = name
        self.on_select()
        self.refresh()

    def on_select(self) -> None:
        """Hook: forget what belonged to the previous scenario."""

    def refresh(self) -> None:
        cmp = self.comparison()
        for view, fig in self.figures.items():
            new = BUILDERS[view](cmp)
            sync_figure(fig, new)      # shapes and annotations too, even when now empty
        self.updates += 1
        self._render()

    # --- text and display ---
    def status_html(self) -> str:
        return ""

    def _render(self) -> None:
        sc = self.scenario
        self.about.value = (f"<div style='font-size:14px;line-height:1.4'><b>{html.escape(sc.name)}"
                            f"</b> ({len(sc.steps)} steps): {html.escape(sc.description)}</div>"
                            + self.status_html())

    def text(self) -> str:
        """The text twin: the scenario, then every counter after every step (and,
        with something to compare with, each difference)."""
        return (f"{self.name}: {self.scenario.description}\n"
                + vc.compare_table(self.comparison()))

    def controls(self) -> list:
        return [self.picker]

    @property
    def box(self):
        if not hasattr(self, "_box"):
            self._box = w.VBox([w.HBox(self.controls()), self.about,
                                *self.figures.values()]).add_class("ksmbook-app")
            self._box.add_class(self.kind)
        return self._box

    def summary(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kernel model {self.kernel})"

    def _repr_mimebundle_(self, **kw):
        self.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = self.summary()     # deterministic, unlike a widget repr
        bundle.update(kernel_free_bundle(self.box, self.text()))
        return bundle


class SimulatorTrace(TraceApp):
    """Section 1: a scenario in the simulator alone."""

    kind = "ksmbook-sim-trace"


class RecordedCompare(TraceApp):
    """Section 2: the simulator beside a recorded Linux trace; the model's version
    can be changed to see which rules of older kernels the recording refutes."""

    kind = "ksmbook-recorded"
    views = ("timeline", "grid")

    def __init__(self, name: str = DEFAULT, *, kernel: str = "6.18", **kw):
        self.model = w.Dropdown(options=list(sb.MODEL_KERNELS), value=kernel,
                                description="simulator models Linux",
                                style={"description_width": "initial"},
                                layout=w.Layout(width="280px"))
        self.model.add_class("ksmbook-model-picker")
        self.model.observe(lambda ch: self.set_kernel(ch["new"]), names="value")
        super().__init__(name, kernel=kernel, **kw)

    def names(self) -> list[str]:
        recorded = set(sb.recorded_names())
        return [n for n in super().names() if n in recorded]

    def other(self) -> sb.Trace:
        return sb.recorded(self.name)

    def set_kernel(self, kernel: str) -> None:
        """Model another kernel version (what the second menu does)."""
        if self.model.value != kernel:
            self.model.value = kernel       # its observer calls set_kernel() again
            return
        self.kernel = kernel
        self.refresh()

    def controls(self) -> list:
        return [self.picker, self.model]


#: Said before anything runs: what a live run does to this machine.
LIVE_RUN_TOUCHES = ("it takes /tmp/ksmbook-live.lock, saves every knob in /sys/kernel/mm/ksm, "
                    "writes run=2 then run=0 (unmerging every KSM page on this machine), starts "
                    "small worker processes that mmap and madvise(MADV_MERGEABLE) their own "
                    "memory, drives ksmd through pages_to_scan and sleep_millisecs, and then "
                    "kills the workers and restores every knob, leaving run as it found it")


class LiveCompare(TraceApp):
    """Section 4: the simulator beside this machine's kernel, run when asked; the
    simulator models this kernel's version (``sb.this_kernel_model()``).

    ``run()`` (the button) runs the scenario with ``ksmbook.oracle.live``; where that
    cannot work (no root, no KSM, no compiler) the button is disabled and the
    reason is shown in red.  Nothing is ever shown as a kernel result that did
    not come from the kernel.
    """

    kind = "ksmbook-live"
    views = ("timeline", "grid")

    def __init__(self, name: str = DEFAULT, *, timeout: float = 60.0, availability=None,
                 runner=None, kernel: str | None = None, **kw):
        from ..oracle import live
        kernel = kernel or sb.this_kernel_model()      # model the version that runs here
        self.timeout = timeout
        self.availability = availability or live.available
        self.runner = runner or sb.live_trace
        self.kernel_trace: sb.Trace | None = None
        self.error = ""
        self.seconds = None
        self.available, self.reason = self.availability()
        self.run_button = w.Button(description="Run on this kernel", icon="play",
                                   disabled=not self.available,
                                   tooltip=("run the scenario on this machine's KSM" if
                                            self.available else self.reason),
                                   layout=w.Layout(width="auto"))
        self.run_button.add_class("ksmbook-button")
        self.run_button.add_class("ksmbook-run-live")
        self.run_button.on_click(lambda _b: self.run())
        super().__init__(name, kernel=kernel, **kw)

    def other(self) -> sb.Trace | None:
        return self.kernel_trace

    def on_select(self) -> None:
        self.kernel_trace, self.error, self.seconds = None, "", None

    def run(self) -> bool:
        """Run the scenario on this kernel now; True if a trace came back."""
        self.available, self.reason = self.availability()
        self.run_button.disabled = not self.available
        self.kernel_trace, self.error = None, ""
        if not self.available:
            self.error = f"cannot run on this kernel: {self.reason}"
            self.refresh()
            return False
        self.about.value += ("<div class='ksmbook-live-running'><b>running on the kernel…"
                             "</b></div>")
        started = time.monotonic()
        try:
            self.kernel_trace = self.runner(self.scenario, self.timeout)
        except KsmBusy as exc:
            self.error = (f"KSM is busy: {exc}. Its counters are global, so the runner "
                          "refuses; run again when that process is done.")
        except (LiveUnavailable, ProtocolError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - started
        self.refresh()
        return self.kernel_trace is not None

    @property
    def busy(self) -> bool:
        return self.error.startswith("KSM is busy")

    def state(self) -> str:
        """One line: can it run, did it run, what came back."""
        if not self.available:
            return (f"LIVE COMPARISON UNAVAILABLE: {self.reason}. Everything shown is the "
                    "simulator alone.")
        if self.error:
            return f"NOT RUN: {self.error}"
        if self.kernel_trace is None:
            return ("ready, not run: root, KSM and a C compiler are here. Nothing runs until you "
                    "press 'Run on this kernel' (or call run()); then " + LIVE_RUN_TOUCHES + ".")
        took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
        return f"ran on Linux {self.kernel_trace.kernel}{took}: {self.comparison().headline()}"

    def status_html(self) -> str:
        text = html.escape(self.state())
        if not self.available or self.error:
            return ("<div class='ksmbook-live-status' style='margin-top:6px;padding:8px;"
                    "border:2px solid #B00020;color:#B00020;font-weight:bold;font-size:15px'>"
                    f"⚠ {text}</div>")
        return f"<div class='ksmbook-live-status' style='margin-top:6px'>{text}</div>"

    def text(self) -> str:
        return self.state() + "\n" + super().text()

    def controls(self) -> list:
        return [self.picker, self.run_button]
