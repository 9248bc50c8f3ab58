#!/usr/bin/env python3
"""Link the book's prose: glossary terms, kernel functions, commits.

    python tools/book_links.py            # rewrite notebooks/NN_*.md in place
    python tools/book_links.py --check    # exit 1 if a chapter needs linking

In every chapter's markdown (never in code cells, headings or the chapter-nav
line, never inside an existing link):

* the first use of each glossary term links to its entry in the index
  (``00_index.ipynb#rmap_item``; the entries are ``### <a id="slug"></a>term``
  headings, so the same fragment works in JupyterLab, on GitHub and in the static
  book, whose MyST slugs are the same);
* the first mention of each kernel function (a code span ``name()`` or ``name``
  of ``KERNEL_FUNCTIONS``) links to an identifier search at the version the book
  models (https://elixir.bootlin.com/linux/v6.18/C/ident/NAME), or at the last
  version that had it (``REMOVED``); system calls and libc functions link to
  their man page;
* the first mention of each kernel commit (12 hex digits) links to its message
  (https://git.kernel.org/torvalds/c/HASH), of each CVE to its NVD entry.

Papers are linked by hand (their DOI or the publisher's page), in the tables of
chapters 08 and 10; tests/test_book_links.py checks that every row has one.

Run it again after editing a chapter; then ``make sync-notebooks`` (markdown only,
the stored outputs stay).  tests/test_book_links.py checks the result.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
INDEX = "00_index.ipynb"
VERSION = "v6.18"
ELIXIR = "https://elixir.bootlin.com/linux/{version}/C/ident/{name}"
COMMIT_URL = "https://git.kernel.org/torvalds/c/{hash}"
CVE_URL = "https://nvd.nist.gov/vuln/detail/{hash}"
MAN_URL = "https://man7.org/linux/man-pages/man{sec}/{name}.{sec}.html"


@dataclass(frozen=True)
class Term:
    slug: str                # the glossary heading's anchor
    words: tuple             # the spellings that count as a use, singular first
    case: bool = False       # match case (acronyms)


#: the glossary: slug -> the spellings a chapter may use (plural forms included)
GLOSSARY = (
    Term("rmap_item", ("rmap_item", "rmap_items")),
    Term("stable_node", ("stable_node", "stable_nodes", "stable node", "stable nodes")),
    Term("chain", ("chain", "chains")),
    Term("dup", ("dup", "dups")),
    Term("volatile", ("volatile",)),
    Term("spte", ("spte", "sptes")),
    Term("gfn", ("gfn", "gfns")),
    Term("hva", ("hva",)),
    Term("stable-tree", ("stable tree",)),
    Term("unstable-tree", ("unstable tree",)),
    Term("ksm-page", ("KSM page", "KSM pages")),
    Term("zero-page", ("zero page", "zero pages")),
    Term("cow", ("COW", "copy-on-write", "Copy-on-write"), case=True),
    Term("vma", ("VMA", "VMAs"), case=True),
    Term("full-scan", ("full scan", "full scans")),
    Term("ksmd", ("ksmd",)),
    Term("pte", ("PTE", "PTEs"), case=True),
    Term("pfn", ("pfn", "pfns")),
    Term("checksum", ("checksum", "checksums")),
    Term("mmu-notifier", ("MMU notifier", "MMU notifiers")),
    Term("page-table", ("page table", "page tables")),
    Term("smart-scan", ("smart scan",)),
)

#: kernel functions the prose names (mm/, virt/kvm/, arch/x86/kvm/, lib/, selftests)
KERNEL_FUNCTIONS = frozenset("""
__ksm_enter __mmu_notifier_change_pte __pte_alloc alloc_stable_node_chain
assert_ksm_pages_count break_ksm calc_checksum cmp_and_merge_page copy_page_range
copy_present_pte do_anonymous_page do_wp_page dup_mm dup_mmap
folio_try_dup_anon_rmap_pte folio_walk_start get_user_pages handle_mm_fault
hva_to_pfn is_ksm_zero_pte ksm_add_vmas ksm_do_scan ksm_enable_merge_any ksm_fork
ksm_get_folio ksm_might_unmap_zero_page ksm_scan_thread kvm_set_spte_hva memcmp
pte_mkold pte_mkspecial ptep_clear_flush remove_node_from_stable_tree
remove_rmap_item_from_tree replace_page reuse_ksm_page scan_get_next_rmap_item
scan_time_advisor set_pte_at set_pte_at_notify should_skip_rmap_item skip_age
stable_node_dup stable_tree_append stable_tree_insert stable_tree_search
try_to_merge_two_pages try_to_merge_with_ksm_page try_to_merge_with_zero_page
unstable_tree_search_insert wp_can_reuse_anon_folio wp_page_copy wp_page_reuse
write_protect_page stable_node_chain_add_dup get_next_rmap_item run_store
max_page_sharing_store lru_add_drain_all folio_add_lru ksm_madvise zap_pte_range
unmap_region exit_mmap sleep_millisecs_store kstrtouint sysfs_streq kstrtobool
mmu_notifier_invalidate_range_start mmu_notifier_invalidate_range_end
kvm_mmu_notifier_change_pte kvm_set_spte_gfn calc_checksum
""".split())

#: functions that are gone from 6.18: linked at the last version that had them
REMOVED = {
    "set_pte_at_notify": "v6.9",              # removed with .change_pte in 6.10
    "__mmu_notifier_change_pte": "v6.9",
    "kvm_mmu_notifier_change_pte": "v6.9",
    "kvm_set_spte_gfn": "v6.9",
    "kvm_set_spte_hva": "v5.12",              # gfn-based callbacks from 5.13 on
    "reuse_ksm_page": "v5.8",                 # 5.1 to 5.8 only (chapter 04)
}

#: system calls and libc functions: their man page (section)
MAN_PAGES = {"fork": 2, "madvise": 2, "mmap": 2, "munmap": 2, "mprotect": 2, "prctl": 2,
             "write": 2, "read": 2, "exit": 2, "malloc": 3}

COMMIT = re.compile(r"(?<![0-9a-f/])[0-9a-f]{12}(?![0-9a-f])|CVE-\d{4}-\d{4,}")


def reference_url(ref: str) -> str:
    """A commit's message, or a CVE's entry."""
    return (CVE_URL if ref.startswith("CVE-") else COMMIT_URL).format(hash=ref)
TOKEN = re.compile(r"(!?\[[^\]]*\]\([^)]*\))|(`[^`\n]+`)|(<[^>\n]+>)")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<url>[^)]*)\)")


def kernel_url(name: str) -> str:
    if name in MAN_PAGES:
        return MAN_URL.format(sec=MAN_PAGES[name], name=name)
    return ELIXIR.format(version=REMOVED.get(name, VERSION), name=name)


def glossary_url(term: Term) -> str:
    return f"{INDEX}#{term.slug}"


def _term_regex(term: Term) -> re.Pattern:
    words = sorted(term.words, key=len, reverse=True)
    body = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w\-/.]){'(?:' + body + ')'}(?![\w\-])", 0 if term.case else re.I)


# --- the markdown of a MyST notebook ------------------------------------------------------

def prose_lines(text: str):
    """Yield (line number, line) of the markdown that may be linked: not the front
    matter, code cells, headings, the chapter-nav line, HTML comments or raw HTML."""
    lines = text.split("\n")
    i = 0
    if lines and lines[0] == "---":
        i = lines.index("---", 1) + 1
    in_code = False
    for n in range(i, len(lines)):
        line = lines[n]
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.startswith("#") or "<!-- chapter-nav -->" in line \
                or line.startswith("<") or line.startswith("+++"):
            continue
        yield n, line


def _segments(line: str):
    """(kind, start, end, text) for a line: 'link', 'code', 'html' or 'text'."""
    pos = 0
    for m in TOKEN.finditer(line):
        if m.start() > pos:
            yield "text", pos, m.start(), line[pos:m.start()]
        kind = "link" if m.group(1) else "code" if m.group(2) else "html"
        yield kind, m.start(), m.end(), m.group(0)
        pos = m.end()
    if pos < len(line):
        yield "text", pos, len(line), line[pos:]


@dataclass
class Use:
    line: int
    start: int
    end: int
    text: str
    linked_to: str | None      # the URL if this use is already a link


def first_use(text: str, *, term: Term | None = None, function: str | None = None,
              commit: str | None = None) -> Use | None:
    """The first use of a glossary term, a kernel function or a commit in the prose,
    skipping links to anything else (chapter titles ...)."""
    rx = _term_regex(term) if term else None
    for n, line in prose_lines(text):
        for kind, a, b, seg in _segments(line):
            if kind == "link":
                m = LINK.match(seg)
                inner = m.group("text")
                url = m.group("url")
                if term and rx.fullmatch(inner.strip("`*_")) and url == glossary_url(term):
                    return Use(n, a, b, seg, url)
                if function and _called(inner.strip("`")) == function \
                        and url == kernel_url(function):
                    return Use(n, a, b, seg, url)
                if commit and commit in inner and url == reference_url(commit):
                    return Use(n, a, b, seg, url)
                continue
            if kind == "html":
                continue
            if kind == "code":
                inner = seg[1:-1]
                if term and rx.fullmatch(inner):
                    return Use(n, a, b, seg, None)
                if function and _called(inner) == function and (
                        function in KERNEL_FUNCTIONS or inner != function):
                    return Use(n, a, b, seg, None)
                continue
            if term:
                m = rx.search(seg)
                if m:
                    return Use(n, a + m.start(), a + m.end(), m.group(0), None)
            if commit:
                m = re.search(rf"(?<![0-9a-f\-]){re.escape(commit)}(?![0-9a-f])", seg)
                if m:
                    return Use(n, a + m.start(), a + m.end(), m.group(0), None)
    return None


CALL = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\((?P<args>[^()]*)\)$")


def _called(inner: str) -> str | None:
    """'name' for a code span 'name', 'name()' or 'name(args)'."""
    m = CALL.match(inner)
    return m.group("name") if m else inner if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner) else None


def functions_named(text: str) -> list[str]:
    """Kernel functions and system calls named in code spans of the prose, in order."""
    out = []
    for _n, line in prose_lines(text):
        for kind, _a, _b, seg in _segments(line):
            inner = None
            if kind == "code":
                inner = seg[1:-1]
            elif kind == "link":
                inner = LINK.match(seg).group("text").strip("`")
            if inner is None:
                continue
            name = _called(inner)
            if name is None:
                continue
            if (name in KERNEL_FUNCTIONS or (name in MAN_PAGES and inner != name)) \
                    and name not in out:
                out.append(name)
    return out


def commits_named(text: str) -> list[str]:
    out = []
    for _n, line in prose_lines(text):
        for kind, _a, _b, seg in _segments(line):
            if kind in ("text", "link"):
                for h in COMMIT.findall(seg):
                    if h not in out and not h.isdigit():
                        out.append(h)
    return out


def _wrap(text: str, use: Use, url: str) -> str:
    lines = text.split("\n")
    line = lines[use.line]
    lines[use.line] = line[:use.start] + f"[{use.text}]({url})" + line[use.end:]
    return "\n".join(lines)


def link_chapter(text: str, *, glossary: bool = True) -> str:
    """The chapter's markdown with every first use linked (idempotent)."""
    for h in commits_named(text):
        use = first_use(text, commit=h)
        if use and use.linked_to is None:
            text = _wrap(text, use, reference_url(h))
    for name in functions_named(text):
        use = first_use(text, function=name)
        if use and use.linked_to is None:
            text = _wrap(text, use, kernel_url(name))
    if glossary:
        for term in GLOSSARY:
            use = first_use(text, term=term)
            if use and use.linked_to is None:
                text = _wrap(text, use, glossary_url(term))
    return text


def chapters() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.md"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for md in chapters():
        old = md.read_text()
        new = link_chapter(old, glossary=md.name != "00_index.md")
        if new != old:
            stale.append(md.name)
            if not check:
                md.write_text(new)
    if stale:
        print(("needs linking: " if check else "linked: ") + ", ".join(stale))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
