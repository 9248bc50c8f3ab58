"""Binder: repo2docker reads binder/ (Python from runtime.txt, the package with
its lab extras from requirements.txt) and the README and the index carry a
launch badge that opens the book's index in JupyterLab."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LABPATH = "labpath=notebooks%2F00_index.ipynb"


def repo2docker() -> str:
    exe = Path(sys.executable).with_name("repo2docker")
    if exe.is_file():
        return str(exe)
    if shutil.which("repo2docker"):
        return shutil.which("repo2docker")
    pytest.skip("SKIPPED: jupyter-repo2docker not installed (pip install -e '.[test]')")


def test_repo2docker_reads_the_binder_folder():
    run = subprocess.run([repo2docker(), "--no-build", "--no-run", "--debug", "--user-id", "1000",
                          "--user-name", "jovyan", str(REPO)],
                         capture_output=True, text=True, timeout=120)
    dockerfile = run.stdout + run.stderr
    assert run.returncode == 0, dockerfile[-3000:]
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    python = (REPO / "binder/runtime.txt").read_text().strip().removeprefix("python-")
    assert f"python={python}" in dockerfile
    assert ".[lab]" in (REPO / "binder/requirements.txt").read_text()


@pytest.mark.parametrize("doc", ["README.md", "notebooks/00_index.md", "notebooks/00_index.ipynb"])
def test_binder_badge_opens_the_index(doc):
    text = (REPO / doc).read_text()
    assert "https://mybinder.org/badge_logo.svg" in text and LABPATH in text
