"""The oracle: the same scenario on the simulator and on a real Linux kernel.

A :class:`~ksmbook.oracle.scenario.Scenario` is a list of steps (spawn, mmap,
fill, madvise, knob writes, "run ksmd for n full scans", fork, exit ...).  It
runs in two places that must agree after every step:

* in the simulator, by :func:`~ksmbook.oracle.scenario.run_in_simulator`;
* on this machine's kernel, by :func:`~ksmbook.oracle.live.run_live`, where each
  scenario process is the syscall-only C worker ``_worker.c`` and ksmd is
  driven through ``/sys/kernel/mm/ksm`` so that it does exactly n full scans.

Both write the same record (every counter of ``/sys/kernel/mm/ksm`` and every
``/proc/<pid>/ksm_stat`` field), and :func:`~ksmbook.oracle.scenario.diff_traces`
lines them up.  ``workloads`` holds the built-in scenarios (the kernel's own
selftests among them), ``sidebyside`` turns traces into the comparisons chapter 09
draws, and ``host`` reads a live kernel's KSM state without writing anything.

Nothing here runs the real kernel on import: a live run starts only on an
explicit call, and refuses while another process uses KSM.
"""
