"""The pure-Python XXH64 (kernel/ksm/checksum._xxh64_py) against the xxhash wheel.

JupyterLite's Pyodide is served from the build (make lite), without Pyodide's own
compiled xxhash wheel, so there calc_checksum() runs on the fallback.  A different
checksum would change which pages ksmd finds volatile and so every figure, so the
fallback must give xxhash's value bit for bit: on every length around the 32-byte
stripe and the 8/4/1-byte tails, on random pages, on the pages the book writes, with
seeds, and through the module as it loads without xxhash.
"""
from __future__ import annotations

import importlib
import random
import sys

import pytest

xxhash = pytest.importorskip("xxhash", reason="SKIPPED: the xxhash wheel is the reference")

from ksmbook.kernel.ksm import checksum  # noqa: E402
from ksmbook.kernel.sysfs import PAGE_SIZE  # noqa: E402


def test_every_length_from_0_to_300_and_page_sized():
    rng = random.Random(20261203)
    lengths = [*range(301), 1023, 1024, 4095, PAGE_SIZE, PAGE_SIZE + 1, 2 * PAGE_SIZE]
    for n in lengths:
        for _ in range(3):
            data = rng.randbytes(n)
            assert checksum._xxh64_py(data) == xxhash.xxh64_intdigest(data), n


def test_random_pages_and_seeds():
    rng = random.Random(7)
    for i in range(300):
        data = rng.randbytes(PAGE_SIZE)
        seed = rng.getrandbits(64) if i % 3 else 0
        assert checksum._xxh64_py(data, seed) == xxhash.xxh64_intdigest(data, seed=seed)


def test_pages_the_book_writes():
    """Zero pages, one-byte-changed pages, repeated patterns, all-ones: the pages the
    chapters fill, where a wrong carry or rotate would most likely hide."""
    pages = [bytes(PAGE_SIZE), b"\xff" * PAGE_SIZE, b"A" * PAGE_SIZE,
             (b"guest kernel " * 400)[:PAGE_SIZE]]
    for k in range(0, PAGE_SIZE, 257):
        p = bytearray(PAGE_SIZE)
        p[k] = 1
        pages.append(bytes(p))
    for p in pages:
        assert checksum._xxh64_py(p) == xxhash.xxh64_intdigest(p)
        assert checksum._xxh64_py(p) & 0xFFFFFFFF == checksum.xxhash_u32(p)


def test_module_without_the_wheel_uses_the_fallback_with_equal_checksums(monkeypatch):
    """Reload checksum.py with ``import xxhash`` failing, as in Pyodide without the wheel."""
    rng = random.Random(3)
    pages = [rng.randbytes(PAGE_SIZE) for _ in range(50)] + [bytes(PAGE_SIZE)]
    expected = [xxhash.xxh64_intdigest(p) & 0xFFFFFFFF for p in pages]
    monkeypatch.setitem(sys.modules, "xxhash", None)     # import xxhash -> ImportError
    try:
        fallback = importlib.reload(checksum)
        assert fallback.xxh64.__module__ == checksum.__name__ and \
            fallback.xxh64.__name__ == "xxh64"           # the pure-Python one
        assert [fallback.xxhash_u32(bytearray(p)) for p in pages] == expected
        assert [fallback.xxh64(memoryview(p)) & 0xFFFFFFFF for p in pages] == expected
    finally:
        monkeypatch.undo()
        importlib.reload(checksum)
    assert checksum.xxh64 is xxhash.xxh64_intdigest
