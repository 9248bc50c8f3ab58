"""Sphinx extension of the static book: the repository and launch buttons from
pyproject.toml (site/book_urls.py: the one place a fork sets them), and a JupyterLite
launch button on every chapter beside sphinx-book-theme's Binder button.

The lite site (``make lite``) holds the chapters at the top of its file tree; the
button opens ``<lite_url>?path=<chapter>.ipynb``, where ``lite_url`` (pyproject.toml's
``[tool.ksmbook] lite_url``) is absolute or relative to the book's root.
"""
from __future__ import annotations

from pathlib import PurePosixPath

import book_urls


def set_urls(app, config):
    """The repository and Binder settings of sphinx-book-theme, from pyproject.toml
    (not site/_config.yml, so that they are written in one place)."""
    s = book_urls.settings()
    opts = config.html_theme_options
    opts.update(repository_url=s["repository"], repository_branch=s["branch"],
                path_to_docs="", use_repository_button=True)
    opts.setdefault("launch_buttons", {}).update(binderhub_url=s["binderhub"],
                                                 notebook_interface="jupyterlab")
    if not config.ksmbook_lite_url:
        config.ksmbook_lite_url = s["lite_url"]


def add_lite_button(app, pagename, templatename, context, doctree):
    if not pagename.startswith("notebooks/") or doctree is None:
        return
    url = app.config.ksmbook_lite_url
    if "://" not in url:
        url = "../" * pagename.count("/") + url
    path = PurePosixPath(pagename).with_suffix(".ipynb").name
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
    # empty: pyproject.toml's [tool.ksmbook] lite_url (a -D override still wins)
    app.add_config_value("ksmbook_lite_url", "", "html")
    # before sphinx-book-theme reads the theme options (its config-inited handler)
    app.connect("config-inited", set_urls, priority=100)
    # after sphinx-book-theme has filled header_buttons (its priority is 501)
    app.connect("html-page-context", add_lite_button, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
