"""Wheel build hook: the book's notebooks go into the wheel as package data.

Only the chapters go in, by the rule of ``ksmbook.data.book_files``: each
``notebooks/NN_name.ipynb`` that has its MyST source ``NN_name.md`` beside it, and
those ``.md`` files.  Left out: the one-cell redirect pages kept at old chapter
names (they have no ``.md``), ``notebooks/conftest.py`` (nbval's output filters, a
test helper) and editor checkpoints.  The recorded kernel traces are force-included
by pyproject.toml.
"""
from __future__ import annotations

import runpy
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BookDataHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        # ksmbook/data/__init__.py needs only pathlib: run it by path, so the build
        # does not import ksmbook (and its dependencies) in the build environment.
        book_files = runpy.run_path(str(root / "ksmbook" / "data" / "__init__.py"))["book_files"]
        files = book_files(root / "notebooks")
        if not files:
            raise RuntimeError(f"no chapters under {root / 'notebooks'}: the wheel would carry no book")
        for f in files:
            build_data["force_include"][str(f)] = f"ksmbook/data/notebooks/{f.name}"
