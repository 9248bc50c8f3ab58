"""The labs: the experiments the chapters are built on.

DOC: Overview.  A lab sets up simulated machines for one idea, runs them and
returns plain results, with no UI: the chapters show those results through
``ksmbook.viz`` and let the reader drive them through ``ksmbook.widgets``.

* ``scenes``: the small named machines that chapters 01-05 step through
  (identical pages, a fork, a page walk, zero pages);
* ``tuning``: ksmd's knobs (pages_to_scan, sleep_millisecs, the scan-time
  advisor, smart_scan, max_page_sharing) swept over simulated time, memory
  saved against ksmd CPU with the stated cost model (chapter 06);
* ``eras``: one KSM merge followed through the MMU notifiers and KVM's
  secondary MMU in every kernel era from 2.6.32 to 6.18 (chapter 07);
* ``guests``: many QEMU-like guests with kernels, libraries and zero pages,
  density as they converge or diverge (chapter 08);
* ``sidechannel``: timing writes to merged and unmerged pages, the dedup side
  channel (chapter 10).

A lab builds everything from the kernel's public API, so what it measures is
what the simulated kernel does, not a formula.
"""
