"""Errors shaped like the kernel's: errno-carrying OSErrors and SIGSEGV."""
from __future__ import annotations

import errno
import os


def kernel_error(code: int, what: str) -> OSError:
    """An OSError with the kernel's errno, e.g. ``kernel_error(errno.EINVAL, 'madvise')``."""
    return OSError(code, f"{os.strerror(code)} ({what})")


def einval(what: str) -> OSError:
    return kernel_error(errno.EINVAL, what)


def ebusy(what: str) -> OSError:
    return kernel_error(errno.EBUSY, what)


def enomem(what: str) -> OSError:
    return kernel_error(errno.ENOMEM, what)


def check_int(name: str, value, what: str = "", allow_bool: bool = False,
              accepted: str = "an int") -> None:
    """TypeError naming the argument (and the call, ``what``), for every integer argument
    of the public API: a bool is a mistake, except where the kernel reads a flag (e.g.
    prctl's arg2)."""
    if not isinstance(value, int) or (isinstance(value, bool) and not allow_bool):
        raise TypeError(f"{what + ': ' if what else ''}{name} must be {accepted}, not "
                        f"{type(value).__name__} {value!r}")


class SegmentationFault(Exception):
    """SIGSEGV: an access the VMA layout or its protection does not allow."""

    def __init__(self, address: int, access: str, reason: str):
        self.address = address
        self.access = access
        self.reason = reason
        super().__init__(f"SIGSEGV: {access} at {address:#x} ({reason})")
