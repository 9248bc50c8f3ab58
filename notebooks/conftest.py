"""nbval configuration for the book's notebooks.

Stored outputs are compared strictly, except the output kinds below, which
change with every plotly/JupyterLab release or carry random ids.  Every widget
or plotly view in the book therefore prints a deterministic *text twin* (the
counters and events it shows), and that text is what nbval compares.
"""

SKIP_COMPARE = (
    "application/vnd.plotly.v1+json",           # whole figure JSON incl. template
    "text/html",                                 # plotly divs carry random UUIDs
    "application/vnd.jupyter.widget-view+json",  # widget model ids are random
    "application/javascript",
    "image/svg+xml",                             # static fallbacks drawn by kaleido/Chromium
    "stderr",                                    # warnings, progress bars
)


def pytest_collectstart(collector):
    # nbval's notebook collector has a `skip_compare` tuple; fspath is provided
    # by pytest's legacypath plugin (never run with -p no:legacypath).
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += SKIP_COMPARE
