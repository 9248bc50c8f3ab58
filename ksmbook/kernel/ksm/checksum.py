"""calc_checksum(): KSM's change detector.

5.0+ uses ``xxhash(addr, PAGE_SIZE, 0)`` — xxh64 on 64-bit builds — truncated to
the u32 field; 2.6.32-4.20 used ``jhash2(addr, PAGE_SIZE / 4, 17)``.  Equality of
pages is always decided by memcmp, never by the checksum.
"""
from __future__ import annotations

import struct

try:
    from xxhash import xxh64_intdigest as xxh64
except ImportError:  # pragma: no cover - JupyterLite without the wheel
    xxh64 = None


def xxhash_u32(data) -> int:
    """xxhash(addr, PAGE_SIZE, 0) as calc_checksum() stores it: xxh64, low 32 bits."""
    return xxh64(data) & 0xFFFFFFFF


def _rol32(x, r):
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def jhash2(data, initval: int = 17) -> int:
    """include/linux/jhash.h jhash2() over 32-bit words (the pre-5.0 KSM checksum)."""
    words = struct.unpack(f"<{len(data) // 4}I", bytes(data))
    length = len(words)
    a = b = c = (0xDEADBEEF + (length << 2) + initval) & 0xFFFFFFFF
    i = 0
    M = 0xFFFFFFFF
    while length > 3:
        a = (a + words[i]) & M
        b = (b + words[i + 1]) & M
        c = (c + words[i + 2]) & M
        # __jhash_mix
        a = (a - c) & M; a ^= _rol32(c, 4); c = (c + b) & M
        b = (b - a) & M; b ^= _rol32(a, 6); a = (a + c) & M
        c = (c - b) & M; c ^= _rol32(b, 8); b = (b + a) & M
        a = (a - c) & M; a ^= _rol32(c, 16); c = (c + b) & M
        b = (b - a) & M; b ^= _rol32(a, 19); a = (a + c) & M
        c = (c - b) & M; c ^= _rol32(b, 4); b = (b + a) & M
        length -= 3
        i += 3
    if length:
        if length >= 3:
            c = (c + words[i + 2]) & M
        if length >= 2:
            b = (b + words[i + 1]) & M
        a = (a + words[i]) & M
        # __jhash_final
        c ^= b; c = (c - _rol32(b, 14)) & M
        a ^= c; a = (a - _rol32(c, 11)) & M
        b ^= a; b = (b - _rol32(a, 25)) & M
        c ^= b; c = (c - _rol32(b, 16)) & M
        a ^= c; a = (a - _rol32(c, 4)) & M
        b ^= a; b = (b - _rol32(a, 14)) & M
        c ^= b; c = (c - _rol32(b, 24)) & M
    return c


_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                           0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
_M64 = (1 << 64) - 1


def _rol64(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc, lane):
    acc = (acc + lane * _P2) & _M64
    return (_rol64(acc, 31) * _P1) & _M64


def _xxh64_py(data: bytes, seed: int = 0) -> int:
    """Pure-Python XXH64, only used where the xxhash wheel is missing."""
    n = len(data)
    i = 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        lanes = struct.unpack_from(f"<{(n // 32) * 4}Q", data)
        for j in range(0, len(lanes), 4):
            v = [_round(v[k], lanes[j + k]) for k in range(4)]
        i = (n // 32) * 32
        h = (_rol64(v[0], 1) + _rol64(v[1], 7) + _rol64(v[2], 12) + _rol64(v[3], 18)) & _M64
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * _P1 + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        (k1,) = struct.unpack_from("<Q", data, i)
        h = ((_rol64(h ^ _round(0, k1), 27) * _P1) + _P4) & _M64
        i += 8
    if i + 4 <= n:
        (k1,) = struct.unpack_from("<I", data, i)
        h = ((_rol64(h ^ (k1 * _P1 & _M64), 23) * _P2) + _P3) & _M64
        i += 4
    while i < n:
        h = (_rol64(h ^ (data[i] * _P5 & _M64), 11) * _P1) & _M64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    h ^= h >> 32
    return h


if xxh64 is None:  # pragma: no cover - JupyterLite without the wheel
    def xxh64(data) -> int:
        """xxh64 with seed 0, in pure Python (slow; only without the xxhash wheel)."""
        return _xxh64_py(bytes(data))
