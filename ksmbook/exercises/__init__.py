"""The book's exercises, one module per chapter (ch01 ... ch10).

    from ksmbook.exercises import ch03
    ch03.merge_scan.check(2)      # instant feedback, computed from the simulator
    ch03.merge_scan.hint()        # graduated hints: hint(2), hint(3) ...
    ch03.merge_scan.solution()
"""
from .base import Exercise, Feedback

__all__ = ["Exercise", "Feedback"]
