"""The book's links (issue 8): a glossary in the index, linked from the first use of
each term in every chapter; every kernel function named in the prose linked to its
source at the version the book models; every commit to its message; every paper
to its DOI or URL.  tools/book_links.py writes the links; this checks them, partly
with its own, simpler reading of the text."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(REPO / "tools"))
import book_links  # noqa: E402

CHAPTERS = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")) if p.name != "00_index.md"]
INDEX = (NOTEBOOKS / "00_index.md").read_text()


def prose(md: Path) -> str:
    """The markdown of a chapter without its code cells and front matter."""
    text = md.read_text().split("\n---\n", 1)[1]
    return re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)


def glossary_anchors() -> dict[str, str]:
    """{anchor: term} of the index's glossary headings (### <a id="x"></a>term)."""
    gloss = INDEX.split("\n## Glossary\n", 1)[1]
    found = {}
    for anchor, term in re.findall(r'^### <a id="([^"]+)"></a>(.+)$', gloss, flags=re.M):
        # the same fragment as MyST's heading slug, so that the static book resolves it
        assert anchor == re.sub(r"[^\w\- ]", "", term.strip().lower().replace(" ", "-"))
        found[anchor] = term
    return found


def test_the_index_has_a_glossary_of_the_issue_terms():
    anchors = glossary_anchors()
    for slug in ("rmap_item", "stable_node", "chain", "dup", "volatile", "spte", "gfn", "hva",
                 "unstable-tree", "ksm-page", "zero-page", "cow", "vma", "full-scan"):
        assert slug in anchors
    assert {t.slug for t in book_links.GLOSSARY} == set(anchors)
    # every entry is a heading with some text under it
    for term in anchors.values():
        body = INDEX.split(f"</a>{term}\n", 1)[1].strip().split("\n### ", 1)[0]
        assert len(body) > 60, term


def test_every_chapter_is_linked_at_first_use():
    """The tool finds nothing left to link (run python tools/book_links.py)."""
    stale = [md.name for md in book_links.chapters()
             if book_links.link_chapter(md.read_text(), glossary=md.name != "00_index.md")
             != md.read_text()]
    assert stale == [], f"run python tools/book_links.py, then make sync-notebooks: {stale}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem[:2])
def test_glossary_links_point_at_existing_entries_and_come_first(md):
    anchors = glossary_anchors()
    text = prose(md)
    links = re.findall(r"\]\(00_index\.ipynb#([^)]+)\)", text)
    assert links, f"{md.name} links no glossary term"
    assert set(links) <= set(anchors)
    assert len(links) == len(set(links)), "a term is linked more than once"
    # a simpler reading than the tool's: the first plain-text use of a few terms is
    # the linked one
    for word, slug in (("rmap_item", "rmap_item"), ("unstable tree", "unstable-tree"),
                       ("spte", "spte"), ("full scan", "full-scan")):
        plain = re.sub(r"^(#.*|.*chapter-nav.*|<.*)$", "", text, flags=re.M)
        # code spans count only when they are the term itself
        plain = re.sub(r"`([^`\n]*)`", lambda m: m.group(0) if re.fullmatch(
            rf"{re.escape(word)}s?", m.group(1), flags=re.I) else "", plain)
        first = re.search(rf"(?<![\w\-]){re.escape(word)}s?(?![\w\-])", plain, flags=re.I)
        if first is None:
            assert slug not in links, (md.name, word)
            continue
        after = plain[first.end():first.end() + 40]
        assert re.match(rf"s?`?\]\(00_index\.ipynb#{slug}\)", after), (md.name, word, after)


def test_kernel_functions_link_to_their_source_at_the_version_named():
    allowed = {book_links.VERSION, *book_links.REMOVED.values()}
    for md in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")):
        text = prose(md)
        urls = re.findall(r"\]\((https://elixir\.bootlin\.com/[^)]+)\)", text)
        for url in urls:
            m = re.fullmatch(r"https://elixir\.bootlin\.com/linux/(v[\d.]+)/C/ident/(\w+)", url)
            assert m, url
            version, name = m.groups()
            assert version in allowed and name in book_links.KERNEL_FUNCTIONS, url
            assert version == book_links.REMOVED.get(name, book_links.VERSION), url
        # each named function is linked once, at its first mention
        names = [re.search(r"ident/(\w+)", u).group(1) for u in urls]
        assert len(names) == len(set(names)), md.name
        for name in book_links.functions_named(md.read_text()):
            if name in book_links.KERNEL_FUNCTIONS:
                assert name in names, (md.name, name)
    ch03 = prose(NOTEBOOKS / "03_ksmd_checksums_and_the_unstable_tree.md")
    assert ("[`cmp_and_merge_page()`](https://elixir.bootlin.com/linux/v6.18/C/ident/"
            "cmp_and_merge_page)") in ch03
    # gone from 6.18: linked where it still exists
    ch07 = prose(NOTEBOOKS / "07_mmu_notifiers_and_kvm_through_the_eras.md")
    assert "v6.9/C/ident/set_pte_at_notify" in ch07 and "v6.18/C/ident/set_pte_at_notify" not in ch07


def test_commits_link_to_their_message():
    for md in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")):
        text = prose(md)
        hashes = {h for h in re.findall(r"(?<![0-9a-f/])[0-9a-f]{12}(?![0-9a-f])", text)
                  if not h.isdigit()}
        linked = set(re.findall(r"\]\(https://git\.kernel\.org/torvalds/c/([0-9a-f]{12})\)", text))
        assert hashes == linked, md.name
    assert "https://git.kernel.org/torvalds/c/6bdb913f0a70" in INDEX


@pytest.mark.parametrize("chapter,heading", [("08_many_guests", "| Arcangeli"),
                                             ("10_dedup_side_channels", "| Work | Where")])
def test_every_paper_links_to_its_doi_or_url(chapter, heading):
    text = (NOTEBOOKS / f"{chapter}.md").read_text()
    table = text[text.index(heading):]
    rows = [r for r in table.split("\n\n", 1)[0].splitlines()
            if r.startswith("|") and not r.startswith("|---") and not r.startswith("| Work")]
    assert len(rows) >= 3
    for row in rows:
        # a DOI, or (where no source confirmed a DOI) the publisher's or the authors'
        # page of the paper, checked against a source (see the chapter's references)
        assert re.search(r"\]\((https://(doi\.org/10\.\d+/|www\.usenix\.org/|www\.kernel\.org/doc/ols/"
                         r"|ieeexplore\.ieee\.org/document/\d+|research\.vu\.nl/en/publications/)[^)]*)\)",
                         row), row


def test_no_leftover_placeholder_line():
    for md in NOTEBOOKS.glob("*.md"):
        assert "Every chapter is ready" not in md.read_text()


def test_static_book_resolves_heading_anchors():
    """The static book (jupyter-book) resolves 00_index.ipynb#slug only with MyST heading
    anchors on: without them every glossary link is a build warning (-W fails)."""
    config = (REPO / "site" / "_config.yml").read_text()
    assert re.search(r"^\s+myst_heading_anchors: 3\s*$", config, flags=re.M)
