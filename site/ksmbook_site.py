"""Sphinx extension of the static book: a JupyterLite launch button on every
chapter beside sphinx-book-theme's Binder button.

The lite site (``make lite``) holds the same notebooks under ``notebooks/``;
the button opens ``<ksmbook_lite_url>?path=notebooks/<chapter>.ipynb``.
"""
from __future__ import annotations

from pathlib import PurePosixPath


def add_lite_button(app, pagename, templatename, context, doctree):
    if not pagename.startswith("notebooks/") or doctree is None:
        return
    depth = pagename.count("/")
    url = "../" * depth + app.config.ksmbook_lite_url
    path = PurePosixPath(pagename).with_suffix(".ipynb")
    button = {"type": "link", "url": f"{url}?path={path}", "tooltip": "Open in JupyterLite",
              "icon": "fas fa-rocket", "label": "jupyterlite-button", "text": "JupyterLite"}
    context.setdefault("header_buttons", []).insert(0, button)


PLOTLY_JSON = "application/vnd.plotly.v1+json"


def _handle_plotly_json() -> None:
    """myst-nb renders every MIME type of a bundle before choosing one, and warns
    on plotly's JSON, which it does not know.  Every plotly bundle the book saves
    also has text/html of the same figure (ksmbook/viz/render.py), which the page
    shows; so the JSON is handled here, by drawing nothing for it.  A bundle with
    only the JSON (a notebook not re-executed since render.py) still fails the
    build with myst-nb's "No mime type available" warning."""
    from myst_nb.core.render import NbElementRenderer
    original = NbElementRenderer.render_mime_type
    if getattr(original, "_ksmbook", False):
        return

    def render_mime_type(self, data):
        if data.mime_type == PLOTLY_JSON:
            return []
        return original(self, data)

    render_mime_type._ksmbook = True
    NbElementRenderer.render_mime_type = render_mime_type


def setup(app):
    _handle_plotly_json()
    app.add_config_value("ksmbook_lite_url", "lite/lab/index.html", "html")
    # after sphinx-book-theme has filled header_buttons (its priority is 501)
    app.connect("html-page-context", add_lite_button, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
