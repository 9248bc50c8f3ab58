"""Small helpers the labs share when they build workloads."""
from __future__ import annotations


def page_of(page_size: int, tag: bytes) -> bytes:
    """A page filled with ``tag`` repeated: equal tags give equal pages, others differ."""
    return (tag * (page_size // len(tag) + 1))[:page_size]


def require_counts(obj, names) -> None:
    """Refuse a dataclass whose ``names`` are not non-negative ints (bools are not counts)."""
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a non-negative int, "
                             f"not {value!r}")
