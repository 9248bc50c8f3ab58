"""The wheel carries the book: notebooks and recorded kernel traces as package
data, and the ``ksmbook`` command opens or copies them from an installed package.

The wheel is built from this checkout (``python -m build --no-isolation``, offline)
and unpacked into a temporary folder, which is what pip does for a pure-Python
wheel; every check then runs in a fresh interpreter with that folder first on
sys.path and the working directory outside any checkout, so nothing can be found
through the repository.  Takes about 3 s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ksmbook.data import book_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    for mod in ("build", "hatchling"):
        try:
            __import__(mod)
        except ImportError:
            pytest.skip(f"SKIPPED: {mod} is not installed (pip install -e '.[test]'); "
                        "cannot build the wheel offline")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("ksmbook-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def run(installed, *code_or_args, cwd, module=False):
    env = dict(os.environ, PYTHONPATH=str(installed), PYTHONSAFEPATH="1")
    argv = [sys.executable, "-m", "ksmbook.cli", *code_or_args] if module else \
        [sys.executable, "-c", code_or_args[0]]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)


def test_wheel_carries_every_chapter_and_every_recorded_trace(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for src in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.md")):
        for suffix in (".md", ".ipynb"):
            assert f"ksmbook/data/notebooks/{src.stem}{suffix}" in names
    packaged = {n.rsplit("/", 1)[1] for n in names if n.startswith("ksmbook/data/notebooks/")}
    assert packaged == {p.name for p in book_files(REPO / "notebooks")}
    # not the book: the one-cell redirect pages at old chapter names and nbval's conftest
    stubs = [p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")
             if "moved_to" in json.loads(p.read_text()).get("metadata", {}).get("ksmbook", {})]
    assert len(stubs) >= 3, stubs
    for name in [*stubs, "conftest.py"]:
        assert (REPO / "notebooks" / name).is_file()
        assert f"ksmbook/data/notebooks/{name}" not in names
    traces = sorted((REPO / "tests/data/kernel_traces").glob("*.json"))
    assert traces
    for t in traces:
        assert f"ksmbook/data/kernel_traces/{t.name}" in names
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "ksmbook = ksmbook.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_package_reads_its_own_traces_outside_a_checkout(installed, tmp_path):
    code = ("import json, ksmbook; from ksmbook.oracle import sidebyside as sb;"
            "t = sb.recorded('fork_one_page');"
            "print(json.dumps([ksmbook.__file__, str(sb.traces_dir()), len(sb.recorded_names()),"
            " len(t.snapshots)]))")
    where, traces, n, snaps = json.loads(run(installed, code, cwd=tmp_path).stdout)
    assert Path(where).is_relative_to(installed)
    assert Path(traces) == installed / "ksmbook" / "data" / "kernel_traces"
    assert n == len(list((REPO / "tests/data/kernel_traces").glob("*.json")))
    assert snaps > 0


def test_installed_cli_version_notebooks_and_lab(installed, tmp_path):
    from ksmbook import __version__
    assert run(installed, "--version", cwd=tmp_path, module=True).stdout.strip() \
        == f"ksmbook {__version__}"

    out = tmp_path / "mybook"
    run(installed, "notebooks", str(out), cwd=tmp_path, module=True)
    chapters = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.md"))
    assert sorted(p.name for p in out.glob("*.md")) == chapters
    assert (out / "00_index.ipynb").read_bytes() == (REPO / "notebooks/00_index.ipynb").read_bytes()
    # a reader's edit survives a second copy
    (out / "00_index.md").write_text("my notes")
    run(installed, "notebooks", str(out), cwd=tmp_path, module=True)
    assert (out / "00_index.md").read_text() == "my notes"

    labdir = tmp_path / "labcopy"
    cmd = run(installed, "lab", "--dry-run", "--dir", str(labdir), cwd=tmp_path,
              module=True).stdout.split()
    assert cmd[1:4] == ["-m", "jupyter", "lab"] and f"--notebook-dir={labdir}" in cmd
    assert "00_index.ipynb" in cmd and (labdir / "00_index.ipynb").is_file()
