"""The labs: the experiments the chapters are built on.

Each lab sets up a simulated machine for one idea and measures it, with no UI:
``scenes`` builds the small machines that chapters 01-05 step through (identical
pages, a fork, a page walk), ``eras`` follows one KSM merge through the MMU
notifier and KVM's secondary MMU in every kernel era (chapter 07), and
``sidechannel`` times writes to merged and unmerged pages, the dedup side channel
of chapter 10.  ``viz`` draws their results and ``widgets`` wires them to controls;
neither simulates.
"""
