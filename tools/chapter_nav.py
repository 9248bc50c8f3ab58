"""Write the previous / index / next links at the top and bottom of every chapter.

The order is the index's: 00_index, then 01..10.  Each chapter's MyST source
(notebooks/NN_name.md) gets one line right under its title and one markdown cell
at its end; running this again rewrites them in place.  Then `make sync-notebooks`.

    python tools/chapter_nav.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MARK = "<!-- chapter-nav -->"


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapters in reading order (moved-chapter stubs are not chapters)."""
    out = []
    for md in sorted(folder.glob("[0-9][0-9]_*.md")):
        if md.stem == "00_index":
            continue
        nb = md.with_suffix(".ipynb")
        if nb.exists() and '"moved_to"' in nb.read_text():
            continue
        out.append(md)
    return out


def title(stem: str) -> str:
    """The chapter's heading without its markup: "03 · KSM: ksmd, checksums ..." """
    head = re.search(r"^# (.+)$", (NOTEBOOKS / f"{stem}.md").read_text(), flags=re.M)
    return head.group(1).replace("`", "") if head else stem


def nav_line(prev: str | None, nxt: str | None) -> str:
    parts = [f"[← {title(prev)}]({prev}.ipynb)" if prev else "",
             "[Index](00_index.ipynb)",
             f"[{title(nxt)} →]({nxt}.ipynb)" if nxt else ""]
    # the marker goes last: a line that *starts* with "<!--" is an HTML block in
    # CommonMark, and its links would be shown as raw text
    return " · ".join(p for p in parts if p) + " " + MARK


def with_nav(text: str, line: str) -> str:
    text = re.sub(rf"\n*(\+\+\+\n\n)?[^\n]*{re.escape(MARK)}[^\n]*\n*", "\n\n", text)  # drop old
    text = re.sub(r"^(# [^\n]+\n)", lambda m: m.group(1) + "\n" + line + "\n", text, count=1,
                  flags=re.M)
    return text.rstrip("\n") + "\n\n+++\n\n" + line + "\n"


def main() -> int:
    chs = chapters()
    stems = [c.stem for c in chs]
    for i, md in enumerate(chs):
        prev = stems[i - 1] if i else None
        nxt = stems[i + 1] if i + 1 < len(stems) else None
        md.write_text(with_nav(md.read_text(), nav_line(prev, nxt)))
        print(f"{md.name}: {nav_line(prev, nxt)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
