"""Where the book lives online, set in one place: pyproject.toml.

    [project.urls]
    Repository = "https://github.com/OWNER/NAME"     # the public repository (GitHub)
    [tool.ksmbook]
    branch = "main"                                  # the branch Binder builds
    lite_url = "lite/lab/index.html"                 # the JupyterLite site, relative to
                                                     # the static book's root, or absolute

Everything else is derived from these:

- the Binder launch URL (``binder_url``) and its badge (``badge``), which open
  ``notebooks/00_index.ipynb`` in JupyterLab;
- the static book's repository and Binder buttons and its JupyterLite button
  (site/ksmbook_site.py reads ``settings()`` when Sphinx starts);
- the badges written in README.md, notebooks/00_index.md and its .ipynb, which are
  plain text: ``python site/book_urls.py`` rewrites them from pyproject.toml (a fork
  sets its repository there, then runs it once), ``--check`` only says whether they
  agree (tests/test_binder.py runs the check).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import quote

try:
    import tomllib
except ImportError:                      # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
INDEX = "notebooks/00_index.ipynb"
#: the files that carry a Binder badge
BADGED = ("README.md", "notebooks/00_index.md", "notebooks/00_index.ipynb")
BADGE_IMG = "https://mybinder.org/badge_logo.svg"
BINDERHUB = "https://mybinder.org"
#: any Binder badge link to a GitHub repository's index (what rewrite() replaces)
BADGE_RE = re.compile(r"\[!\[Binder\]\(" + re.escape(BADGE_IMG) + r"\)\]\("
                      + re.escape(BINDERHUB) + r"/v2/gh/[^)\s]+\)")


def settings(repo: Path = REPO) -> dict:
    """{'repository', 'owner', 'name', 'branch', 'lite_url', 'binderhub'} from pyproject.toml."""
    meta = tomllib.loads((repo / "pyproject.toml").read_text())
    url = meta["project"]["urls"]["Repository"].rstrip("/")
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not m:
        raise ValueError(f"pyproject.toml [project.urls] Repository must be a GitHub "
                         f"repository URL (Binder builds from GitHub): {url!r}")
    tool = meta.get("tool", {}).get("ksmbook", {})
    return {"repository": url, "owner": m[1], "name": m[2], "branch": tool.get("branch", "main"),
            "lite_url": tool.get("lite_url", "lite/lab/index.html"), "binderhub": BINDERHUB}


def binder_url(s: dict | None = None, labpath: str = INDEX) -> str:
    s = settings() if s is None else s
    return (f"{s['binderhub']}/v2/gh/{s['owner']}/{s['name']}/{s['branch']}"
            f"?labpath={quote(labpath, safe='')}")


def badge(s: dict | None = None) -> str:
    return f"[![Binder]({BADGE_IMG})]({binder_url(s)})"


def stale(repo: Path = REPO) -> list[str]:
    """The files whose Binder badges are missing or differ from pyproject.toml's."""
    want = badge(settings(repo))
    out = []
    for name in BADGED:
        found = BADGE_RE.findall((repo / name).read_text())
        if not found or any(b != want for b in found):
            out.append(name)
    return out


def rewrite(repo: Path = REPO) -> list[str]:
    """Rewrite every Binder badge from pyproject.toml; the files changed.  The badge is
    plain markdown text in the .ipynb's markdown cell too (no JSON escaping needed), so
    the notebook's outputs are untouched."""
    want = badge(settings(repo))
    changed = []
    for name in BADGED:
        path = repo / name
        text = path.read_text()
        new = BADGE_RE.sub(want.replace("\\", "\\\\"), text)
        if not BADGE_RE.search(text):
            raise SystemExit(f"{name} has no Binder badge to rewrite")
        if new != text:
            path.write_text(new)
            changed.append(name)
    return changed


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        bad = stale()
        if bad:
            print(f"Binder badges differ from pyproject.toml ({binder_url()}): {', '.join(bad)}; "
                  "run python site/book_urls.py")
            return 1
        print(f"Binder badges agree with pyproject.toml: {binder_url()}")
        return 0
    if argv:
        raise SystemExit("usage: python site/book_urls.py [--check]")
    changed = rewrite()
    print(f"Binder badges: {binder_url()} ({', '.join(changed) or 'nothing'} rewritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
