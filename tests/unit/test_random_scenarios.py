"""The random scenario generators (oracle/workloads.py) give the scenarios their seeds
name: the recorded kernel traces of random seeds (tests/data/kernel_traces/random_*.json)
were made from ``random_scenario(seed, 60, 24)`` behind a knob, so the generator must
still give exactly their steps; the THP generator is one with it (``thp=True``)."""
import json
import re
from pathlib import Path

import pytest

from ksmbook.oracle.scenario import Scenario
from ksmbook.oracle.workloads import random_scenario, random_thp_scenario

TRACES = sorted((Path(__file__).parents[1] / "data" / "kernel_traces").glob("random_*.json"))


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_the_generator_still_gives_the_recorded_random_scenarios(path):
    recorded = Scenario.from_dict(json.loads(path.read_text())["scenario"])
    seed, steps, pages = map(int, re.match(r"random_scenario\((\d+), (\d+), (\d+)\)",
                                           recorded.description).groups())
    made = [s.describe() for s in random_scenario(seed, steps, pages).steps]
    steps_recorded = [s.describe() for s in recorded.steps]
    assert len(steps_recorded) > len(made) >= steps
    assert steps_recorded[len(steps_recorded) - len(made):] == made        # behind the knob


def test_random_thp_scenarios_are_valid_thp_runs_and_repeatable():
    for seed in range(20):
        a, b = random_thp_scenario(seed), random_thp_scenario(seed)
        assert [s.describe() for s in a.steps] == [s.describe() for s in b.steps]
        ops = [s.op for s in a.steps]
        assert ops[0] == "spawn" and ops[-2:] == ["scans", "thp_stat"]
        # regions of whole 2 MiB blocks
        assert all(s.pages in (512, 1024) for s in a.steps if s.op == "mmap")
        Scenario(a.name, a.description, a.steps)      # the static check accepts it
    assert len({tuple(s.describe() for s in random_thp_scenario(k).steps) for k in range(20)}) == 20
