"""Pick a process and a page; watch its page-table walk (one figure, updated in place)."""
from __future__ import annotations

import ipywidgets as w

from .. import viz
from .views import figure_widget, kernel_free_bundle


class WalkExplorer:
    """A process dropdown and a page slider over the scene's regions, plus the walk figure."""

    def __init__(self, scene, proc: str | None = None, *, factory=figure_widget):
        self.scene = scene
        names = [n for n in scene.procs if any(r.proc == n for r in scene.regions.values())]
        self.proc = w.Dropdown(options=names, value=proc or names[0], description="process")
        self.proc.add_class("ksmbook-walk-proc")
        self.page = w.IntSlider(min=0, max=self._pages() - 1, value=0, description="page",
                                continuous_update=False)
        self.page.add_class("ksmbook-walk-page")
        self.view = factory(viz.pagewalk_figure(self.walk()),
                            classes=("ksmbook-view", "ksmbook-view-walk"))
        self.updates = 0
        self.shown = False
        self.proc.observe(self._proc_changed, names="value")
        self.page.observe(lambda _ch: self.refresh(), names="value")
        self.box = w.VBox([w.HBox([self.proc, self.page]), self.view])
        self.box.add_class("ksmbook-walk")

    def _pages(self) -> int:
        return sum(r.pages for r in self.scene.regions.values() if r.proc == self.proc.value)

    def address(self) -> int:
        regions = sorted((r for r in self.scene.regions.values() if r.proc == self.proc.value),
                         key=lambda r: r.addr)
        i = self.page.value
        for r in regions:
            if i < r.pages:
                return r.addr + i * self.scene.page_size
            i -= r.pages
        raise IndexError(self.page.value)

    def walk(self):
        return viz.walk(self.scene, self.proc.value, self.address())

    def _proc_changed(self, _change) -> None:
        self.page.max = self._pages() - 1
        self.refresh()

    def refresh(self) -> None:
        viz.sync_figure(self.view, viz.pagewalk_figure(self.walk()))
        self.updates += 1

    def text(self) -> str:
        return viz.pagewalk_text(self.walk())

    def _repr_mimebundle_(self, **kw):
        self.shown = True
        bundle = self.box._repr_mimebundle_(**kw) or {}
        bundle["text/plain"] = f"WalkExplorer(processes={list(self.proc.options)})"
        bundle.update(kernel_free_bundle(self.box, self.text()))
        return bundle
