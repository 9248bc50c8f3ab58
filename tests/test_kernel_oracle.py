"""The simulator against Linux: same scenario, same counters, same ksm_stat.

Two oracles:
* the recorded 6.18 traces in tests/data/kernel_traces (run everywhere), and
* the kernel of this machine, live (root + KSM + a C compiler, else skipped
  with the reason), on the built-in scenarios and on random ones.
"""
import json
from pathlib import Path

import pytest

from ksmbook import live
from ksmbook.scenario import SCENARIOS, Scenario, diff_traces, run_in_simulator
from ksmbook.workloads import random_scenario

TRACES = Path(__file__).parent / "data" / "kernel_traces"
LIVE_OK, LIVE_WHY = live.available()
needs_live = pytest.mark.skipif(not LIVE_OK, reason=f"live KSM runner unavailable: {LIVE_WHY}")


def report(diffs, scenario):
    lines = [f"{len(diffs)} fields differ (kernel != simulator) in {scenario.name}:"]
    for d in diffs[:20]:
        lines.append(f"  {d}")
    if diffs and diffs[0].path.startswith("["):
        step = int(diffs[0].path[1:].split("]")[0])
        lines.append(f"first difference after step {step}: {scenario.steps[step].describe()}")
    return "\n".join(lines)


@pytest.mark.parametrize("path", sorted(TRACES.glob("*.json")), ids=lambda p: p.stem)
def test_simulator_matches_recorded_kernel_trace(path):
    doc = json.loads(path.read_text())
    scenario = Scenario.from_dict(doc["scenario"])
    diffs = diff_traces(doc["snapshots"], run_in_simulator(scenario))
    assert not diffs, report(diffs, scenario)


@pytest.mark.kernel_oracle
@needs_live
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulator_matches_live_kernel(name):
    scenario = SCENARIOS[name]
    diffs = diff_traces(live.run_live(scenario), run_in_simulator(scenario))
    assert not diffs, report(diffs, scenario)


@pytest.mark.kernel_oracle
@needs_live
@pytest.mark.parametrize("seed", range(40))
def test_simulator_matches_live_kernel_on_random_scenarios(seed):
    scenario = random_scenario(seed, steps=50, max_pages=24)
    diffs = diff_traces(live.run_live(scenario), run_in_simulator(scenario))
    assert not diffs, report(diffs, scenario)
