"""Sliders and toggles for KSM's tunables, written through sysfs.

Every change is a ``m.sysfs.write`` of the kernel path, so the widget meets the
kernel's rules: ``max_page_sharing`` cannot change while KSM pages exist (EBUSY),
``pages_to_scan`` is refused while the advisor runs (EINVAL).  A refused write
shows the kernel's error and the widget springs back to the value sysfs reads.
"""
from __future__ import annotations

import errno
import html

import ipywidgets as w
from ..uapi import KSM_SYSFS


from .views import kernel_free_bundle

#: knob -> (kind, min, max): "slider", "number" (a bounded text box) or "bool" (a toggle)
KNOBS = {
    "pages_to_scan": ("slider", 1, 128),
    "max_page_sharing": ("number", 2, 1024),
    "use_zero_pages": ("bool", 0, 1),
    "smart_scan": ("bool", 0, 1),
}


def error_text(name: str, value, exc: OSError) -> str:
    """'write max_page_sharing=3: EBUSY: Device or resource busy (...)'."""
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"write {name}={value}: {code}: {exc.strerror or exc}"


class Knobs:
    """``Knobs(machine)``: one control per tunable; ``attach(machine)`` after a reset."""

    def __init__(self, machine, names=tuple(KNOBS), on_change=None):
        self.machine = machine
        self.names = tuple(n for n in names if f"{KSM_SYSFS}/{n}" in machine.sysfs.files)
        self.on_change = on_change
        self.controls: dict = {}
        self.error = ""
        self._syncing = False
        for name in self.names:
            kind, lo, hi = KNOBS[name]
            if kind == "slider":
                c = w.IntSlider(min=lo, max=hi, description=name, continuous_update=False,
                                style={"description_width": "initial"},
                                layout=w.Layout(width="340px"))
            elif kind == "number":
                c = w.BoundedIntText(min=lo, max=hi, description=name,
                                     style={"description_width": "initial"},
                                     layout=w.Layout(width="220px"))
            else:
                c = w.ToggleButton(description=name, layout=w.Layout(width="160px"))
            c.add_class("ksmbook-knob")
            c.add_class(f"ksmbook-knob-{name}")
            c.observe(lambda ch, n=name: self._write(n, ch["new"]), names="value")
            self.controls[name] = c
        self.message = w.HTML().add_class("ksmbook-knob-error")
        self.box = w.VBox([w.HBox(list(self.controls.values())), self.message])
        self.box.add_class("ksmbook-knobs")
        self.read_back()

    def attach(self, machine) -> None:
        self.machine = machine
        self.error = ""
        self.message.value = ""
        self.read_back()

    def value(self, name: str) -> int:
        return self.machine.sysfs.read_int(f"{KSM_SYSFS}/{name}")

    def read_back(self) -> None:
        """Show what sysfs holds (after a refused write or a new machine)."""
        self._syncing = True
        try:
            for name, c in self.controls.items():
                v = self.value(name)
                if isinstance(c, w.ToggleButton):
                    c.value = bool(v)
                else:
                    c.max = max(c.max, v)      # never clamp what the kernel holds
                    c.value = v
        finally:
            self._syncing = False

    def _write(self, name: str, value) -> None:
        if self._syncing:
            return
        text = str(int(value))
        try:
            self.machine.sysfs.write(f"{KSM_SYSFS}/{name}", text)
        except OSError as exc:
            self.error = error_text(name, text, exc)
            self.message.value = f"<span style='color:#B00020'>{html.escape(self.error)}</span>"
            self.read_back()
            return
        self.error = ""
        self.message.value = f"<span style='color:#2E7D32'>wrote {name}={text}</span>"
        if self.on_change is not None:
            self.on_change(name, int(value))

    def text(self) -> str:
        """The text twin: the values sysfs reads now, and the last error."""
        vals = "  ".join(f"{n}={self.value(n)}" for n in self.names)
        return vals + (f"\nlast write refused: {self.error}" if self.error else "")

    def _repr_mimebundle_(self, **kw):
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = f"Knobs({', '.join(self.names)})"
        bundle.update(kernel_free_bundle(self.box, self.text()))
        return bundle
