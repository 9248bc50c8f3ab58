"""Issue 2's property test: random sequences of spawn, mmap (private and shared), write,
read, fork, munmap, madvise(DONTNEED), mprotect and exit against a plain model.

After every step: each live process's memory equals the model, every frame's
refcount and mapcount equal a recount from the page tables (and nothing allocated is
unaccounted for), and once every process has exited no frame is left.

Example counts come from the hypothesis profile (tests/conftest.py): "ci" runs 200
examples of 50 steps.
"""
from mm_model import MMMachine, checked_fastpath

TestMemoryManager = MMMachine.TestCase
TestMemoryManagerCheckedFastpath = checked_fastpath(MMMachine)
