"""Saved figures carry text/html (plotly.js loaded once by the page, not per
figure) and, when asked for and possible, a static SVG; widget apps carry the
figures they draw first plus their text twin for readers without a kernel."""
from __future__ import annotations

import os
import shutil

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from ksmbook.viz import render


def small_figure():
    return go.Figure(go.Scatter(x=[0, 1, 2], y=[3, 1, 2], name="pages_sharing"))


def test_renderer_bundle_has_plotly_json_and_html_without_plotly_js(monkeypatch):
    monkeypatch.delenv(render.IMAGE_ENV, raising=False)
    bundle = pio.renderers[render.RENDERER].to_mimebundle(small_figure().to_dict())
    assert "application/vnd.plotly.v1+json" in bundle
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "ksmbook-fig-" in html
    assert len(html) < 20_000                     # no 4.8 MB plotly.js inside
    assert "image/svg+xml" not in bundle and "image/png" not in bundle


def test_div_id_is_stable_and_depends_on_the_figure():
    assert render.figure_id(small_figure()) == render.figure_id(small_figure())
    other = small_figure().update_layout(title="other")
    assert render.figure_id(other) != render.figure_id(small_figure())


def test_inside_a_kernel_the_book_renderer_replaces_plotly_mimetype(monkeypatch):
    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")
    render.install()
    assert pio.renderers.default == render.RENDERER
    monkeypatch.setattr(pio.renderers, "default", "browser")   # a terminal: left alone
    render.install()
    assert pio.renderers.default == "browser"


def test_missing_kaleido_degrades_to_no_image(monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_kaleido(name, *a, **k):
        if name == "kaleido":
            raise ImportError("No module named 'kaleido'")
        return real_import(name, *a, **k)

    monkeypatch.setenv(render.IMAGE_ENV, "svg")
    monkeypatch.setattr(builtins, "__import__", no_kaleido)
    monkeypatch.setattr(render, "_image_failed", [])
    monkeypatch.setattr(render, "_server", [])
    assert render.static_image(small_figure()) == {}
    assert render.html_and_image(small_figure()).keys() == {"text/html"}
    assert render._image_failed and "kaleido" in render._image_failed[0]


def test_svg_fallback_with_kaleido_and_chromium(monkeypatch):
    pytest.importorskip("kaleido", reason="SKIPPED: kaleido not installed (pip install -e '.[export]')")
    if not (os.environ.get("BROWSER_PATH") or shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        pytest.skip("SKIPPED: no Chromium for kaleido")
    monkeypatch.setenv(render.IMAGE_ENV, "svg")
    monkeypatch.setattr(render, "_image_failed", [])
    image = render.static_image(small_figure())
    assert not render._image_failed, render._image_failed
    assert image["image/svg+xml"].lstrip().startswith("<svg")


def test_widget_app_shows_its_first_figures_and_text_twin_without_a_kernel(monkeypatch):
    monkeypatch.delenv(render.IMAGE_ENV, raising=False)
    from ksmbook.labs import scenes
    from ksmbook.widgets.app import SceneApp
    app = SceneApp(lambda: scenes.identical_pages(4), views=("mappings", "trees"))
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert html.count("Plotly.newPlot") == len(app.views) >= 1
    assert "ksmbook-text-twin" in html and app.counters_text().split()[0] in html
