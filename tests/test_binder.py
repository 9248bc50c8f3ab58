"""Binder: repo2docker reads binder/ (Python from runtime.txt, the package with
its lab extras from requirements.txt) and the README and the index carry a
launch badge that opens the book's index in JupyterLab, built from the one place
that says where the book lives (pyproject.toml, through site/book_urls.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LABPATH = "labpath=notebooks%2F00_index.ipynb"
sys.path.insert(0, str(REPO / "site"))
import book_urls  # noqa: E402


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


def test_every_badge_is_the_one_pyproject_toml_gives():
    s = book_urls.settings()
    assert book_urls.binder_url(s) == (f"https://mybinder.org/v2/gh/{s['owner']}/{s['name']}/"
                                       f"{s['branch']}?{LABPATH}")
    assert book_urls.stale() == [], "run python site/book_urls.py"
    assert subprocess.run([sys.executable, str(REPO / "site/book_urls.py"), "--check"]).returncode == 0


def test_a_fork_sets_its_repository_once(tmp_path):
    """Change Repository in a copy's pyproject.toml: the check fails, the rewrite puts
    the fork's URL in every badge, and the index notebook stays the same notebook."""
    for name in ("pyproject.toml", *book_urls.BADGED):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    old = book_urls.settings()["repository"]
    assert text.count(f'Repository = "{old}"') == 1
    pyproject.write_text(text.replace(f'Repository = "{old}"',
                                      'Repository = "https://github.com/someone/their-ksmbook"'))
    assert book_urls.stale(tmp_path) == list(book_urls.BADGED)
    assert sorted(book_urls.rewrite(tmp_path)) == sorted(book_urls.BADGED)
    assert book_urls.stale(tmp_path) == []
    want = "https://mybinder.org/v2/gh/someone/their-ksmbook/main?" + LABPATH
    for name in book_urls.BADGED:
        assert want in (tmp_path / name).read_text(), name
    before = json.loads((REPO / "notebooks/00_index.ipynb").read_text())
    after = json.loads((tmp_path / "notebooks/00_index.ipynb").read_text())
    assert [c.get("outputs") for c in after["cells"]] == [c.get("outputs") for c in before["cells"]]
    assert sum(a != b for a, b in zip(after["cells"], before["cells"])) == 1   # the badge's cell
