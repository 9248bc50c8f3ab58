"""ksmbook: an interactive textbook about how Linux shares memory, and the
simulated kernel that drives it.

    import ksmbook
    m = ksmbook.Machine()                 # Linux 6.18 defaults, 4 KiB pages
    p = m.spawn("vm1")
    addr = p.mmap(4 * 4096)
    p.write(addr, b"x" * 4096)
    p.madvise(addr, 4 * 4096, ksmbook.MADV_MERGEABLE)
"""
from .kernel.errors import SegmentationFault
from .kernel.machine import Machine
from .kernel.mm import (MADV_DONTNEED, MADV_HUGEPAGE, MADV_MERGEABLE, MADV_NOHUGEPAGE,
                        MADV_UNMERGEABLE, PR_GET_MEMORY_MERGE,
                        PR_SET_MEMORY_MERGE, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE)
from .kernel.sysfs import parse_ksm_stat
from .kernel.versions import KNOWN_ERAS, profile

__version__ = "0.1.0"

# Old import paths (ksmbook 0.1 kept the oracle and the labs at the top level):
# ``import ksmbook.scenario`` still works for one release and gives the very module
# ``ksmbook.oracle.scenario`` is, with a DeprecationWarning naming the new path.
from ._moved import install_moved_module_aliases as _install_moved

_install_moved(__name__, {
    "scenario": "oracle.scenario", "live": "oracle.live", "workloads": "oracle.workloads",
    "sidebyside": "oracle.sidebyside", "host": "oracle.host",
    "scenes": "labs.scenes", "eras": "labs.eras", "sidechannel": "labs.sidechannel",
})

__all__ = ["Machine", "SegmentationFault", "MADV_DONTNEED", "MADV_MERGEABLE", "MADV_HUGEPAGE",
           "MADV_NOHUGEPAGE",
           "MADV_UNMERGEABLE", "PR_SET_MEMORY_MERGE", "PR_GET_MEMORY_MERGE", "PROT_NONE",
           "PROT_READ", "PROT_WRITE", "PROT_EXEC", "parse_ksm_stat", "profile", "KNOWN_ERAS",
           "__version__"]
