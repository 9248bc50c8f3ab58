"""Shared test set-up: hypothesis profiles.

The property tests take their example counts from a profile, chosen with
``--hypothesis-profile NAME`` or the HYPOTHESIS_PROFILE environment variable:

* ``ci`` (default): what the issues require, 200 examples of 50 steps per state machine;
* ``dev``: a quick smoke run while editing (25 examples of 30 steps);
* ``thorough``: a long hunt (1000 examples of 80 steps).

Nothing is derandomised in ``ci``: every run explores new sequences, and a failure is
printed as a reproducible program of calls (and stored in .hypothesis/ when the
database is writable).
"""
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# tests/machine_checks.py is imported by tests in subdirectories
sys.path.insert(0, str(Path(__file__).parent))

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=200, stateful_step_count=50, **_COMMON)
settings.register_profile("dev", max_examples=25, stateful_step_count=30, **_COMMON)
settings.register_profile("thorough", max_examples=1000, stateful_step_count=100, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
