"""Package data of an installed ksmbook: the notebooks and the recorded kernel traces.

A wheel carries them here (pyproject.toml's force-include copies
``notebooks/`` to ``ksmbook/data/notebooks`` and ``tests/data/kernel_traces``
to ``ksmbook/data/kernel_traces``); a source checkout keeps them at the top
of the repository instead, so every lookup tries the package first and the
checkout second.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The repository root when ksmbook runs from a checkout (or an editable install).
CHECKOUT = HERE.parent.parent


def packaged(name: str) -> Path:
    """``ksmbook/data/<name>`` (it exists only in an installed wheel)."""
    return HERE / name


def notebooks_dir() -> Path:
    """The folder holding the book's notebooks: the wheel's copy, else the checkout's."""
    for candidate in (packaged("notebooks"), CHECKOUT / "notebooks"):
        if (candidate / "00_index.ipynb").is_file():
            return candidate
    raise FileNotFoundError("no ksmbook notebooks: looked in "
                            f"{packaged('notebooks')} and {CHECKOUT / 'notebooks'}")


def book_files(folder: Path | None = None) -> list[Path]:
    """The book's chapters in ``folder``: every NN_name.ipynb that has its MyST
    source NN_name.md beside it, and those .md files (stale notebooks left
    behind by a renumbering have no .md and are not part of the book)."""
    folder = notebooks_dir() if folder is None else folder
    files = []
    for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        md = nb.with_suffix(".md")
        if md.is_file():
            files += [nb, md]
    return files
