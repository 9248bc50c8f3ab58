"""What a step did, read from the snapshots before and after it: the answers that
the predict-then-step panels (widgets/predict.py) check a reader's guess against.

Nothing here knows the right answer in advance: ``frame_outcome`` looks at which
PTEs were repointed and whose frame they now map, ``counters_outcome`` at which
of KSM's counters changed.  Both explain what they saw in the book's words.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernel.memory import ZERO_PFN

#: the frame question: whose frame does the content live in after the step?
FRAME_CHOICES = (
    ("own", "the scanned page's own frame (it becomes the KSM page)"),
    ("waiting", "the frame of the page waiting in the unstable tree"),
    ("ksm", "an existing KSM page's frame (found in the stable tree)"),
    ("zero", "the kernel's zero page (pfn 0)"),
    ("new", "a newly allocated frame"),
    ("none", "no frame changes hands in this step"),
)
FRAME_WORDS = dict(FRAME_CHOICES)

#: KSM's counters a counters question offers (chapter 04 adds the chain counters)
COUNTER_CHOICES = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                   "ksm_zero_pages", "pages_skipped")


@dataclass(frozen=True)
class Outcome:
    answer: object          # a FRAME_CHOICES key, or a frozenset of counter names
    explanation: str


def _pfn(x) -> str:
    return f"{x:#x}"


def frame_outcome(before, after) -> Outcome:
    """Which frame the first repointed page maps after the step, and whose it was."""
    old = {(m.pid, m.address): m for m in before.mappings}
    new = {(m.pid, m.address): m for m in after.mappings}
    moved = [(vp, old[vp], new[vp]) for vp in sorted(new) if vp in old and old[vp].pfn != new[vp].pfn]
    if not moved:
        return Outcome("none", "No PTE was repointed: every virtual page maps the frame it "
                               "mapped before (a checksum recorded, a page put in or found in a "
                               "tree, or a page already merged).")
    vp, was, now = moved[0]
    target = now.pfn
    waiting = {p for n in before.unstable_tree for p in n.vpages}
    owners = sorted((m for m in before.mappings if m.pfn == target), key=lambda m: (m.pid, m.address))
    names = ", ".join(m.label for m in owners)
    others = "" if len(moved) == 1 else f" ({len(moved) - 1} more page(s) moved in this step too)"
    if target == ZERO_PFN:
        return Outcome("zero", f"{now.label} was pointed at the zero page (pfn {_pfn(ZERO_PFN)}, "
                               f"dirty: KSM's mark) by try_to_merge_with_zero_page(); its frame "
                               f"{_pfn(was.pfn)} was freed{others}.")
    role = next((f.role for f in before.frames if f.pfn == target), "free")
    if role == "ksm":
        return Outcome("ksm", f"{now.label} found KSM page {_pfn(target)} (mapped by {names}) in "
                              f"the stable tree; try_to_merge_with_ksm_page() pointed it there and "
                              f"freed its own frame {_pfn(was.pfn)}{others}.")
    if not owners:
        return Outcome("new", f"{now.label} now maps {_pfn(target)}, a frame nobody mapped before "
                              f"the step: a newly allocated KSM page{others}.")
    if vp in waiting:
        return Outcome("own", f"{names} (the page ksmd scanned) kept its frame {_pfn(target)}, "
                              f"write-protected into a KSM page; {now.label}, which waited in the "
                              f"unstable tree, was repointed to it by replace_page() and its frame "
                              f"{_pfn(was.pfn)} was freed (try_to_merge_two_pages()){others}.")
    if any((m.pid, m.address) in waiting for m in owners):
        return Outcome("waiting", f"{names}, which waited in the unstable tree, kept its frame "
                                  f"{_pfn(target)}; {now.label} was repointed to it and its frame "
                                  f"{_pfn(was.pfn)} was freed{others}.")
    return Outcome("own", f"{now.label} now maps {_pfn(target)}, the frame of {names}{others}.")


def counters_outcome(before, after, names=COUNTER_CHOICES) -> Outcome:
    """Which of ``names`` changed, with each change."""
    b, a = before.counters, after.counters
    moved = frozenset(n for n in names if b.get(n) != a.get(n))
    if not moved:
        return Outcome(moved, "None of them moved: " + ", ".join(f"{n} {a.get(n)}" for n in names)
                       + ".")
    parts = [f"{n} {b.get(n)} → {a.get(n)}" for n in names if n in moved]
    still = [n for n in names if n not in moved]
    return Outcome(moved, "Moved: " + ", ".join(parts) + "."
                   + (f" Unchanged: {', '.join(still)}." if still else ""))
