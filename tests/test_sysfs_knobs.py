"""Every KSM sysfs knob, input by input: the simulator against Linux 6.18.

tests/data/sysfs_knobs.json holds what this project's 6.18 machine answered to each
write of ksmbook.oracle.knobs.INPUTS (errno or ok, and what the file showed after);
the simulator is checked against it everywhere.  As root on a kernel with KSM, the
same writes are replayed live (under the live lock, every knob restored, run left
at 0) and both are compared again; elsewhere that test skips and says why.
"""
import json
from pathlib import Path

import pytest

from ksmbook.oracle import knobs
from ksmbook.oracle.live import available

RECORDED = Path(__file__).parent / "data" / "sysfs_knobs.json"


def _table(doc):
    return {(k, text): tuple(rest) for k, rows in doc["knobs"].items() for text, *rest in rows}


def _diff(expected, got):
    e, g = _table(expected), _table(got)
    rows = [f"{k} {t!r:.40}: Linux {e.get((k, t))} simulator {g.get((k, t))}"
            for k, t in sorted(e.keys() | g.keys()) if e.get((k, t)) != g.get((k, t))]
    if expected["read_only"] != got["read_only"]:
        rows.append(f"read-only: {expected['read_only']} != {got['read_only']}")
    return rows


def test_the_recorded_table_covers_every_knob_with_25_inputs():
    doc = json.loads(RECORDED.read_text())
    assert set(doc["knobs"]) == set(knobs.BASE)
    for name, rows in doc["knobs"].items():
        assert len(rows) >= 25, name
        assert [r[0] for r in rows] == knobs.INPUTS[name], f"{name}: re-record the table"
    assert len(doc["read_only"]) == len(knobs.READ_ONLY)


def test_the_simulator_answers_every_write_as_recorded_on_linux():
    doc = json.loads(RECORDED.read_text())
    assert _diff(doc, knobs.replay_simulator()) == []


def test_the_values_the_old_simulator_refused():
    """sleep_millisecs_store() takes any unsigned int (the live oracle itself writes
    600000), and a zero-length write never reaches a store (sysfs_kf_write())."""
    doc = _table(json.loads(RECORDED.read_text()))
    assert doc[("sleep_millisecs", "600000")] == ("ok", "600000")
    assert doc[("sleep_millisecs", str((1 << 32) - 1))] == ("ok", str((1 << 32) - 1))
    assert doc[("sleep_millisecs", "")] == ("ok", "20")
    sim = _table(knobs.replay_simulator(["sleep_millisecs", "run"]))
    assert sim[("sleep_millisecs", "600000")] == ("ok", "600000")
    assert sim[("run", "")] == ("ok", "0")


live = available()


@pytest.mark.skipif(not live[0], reason=f"live sysfs replay needs the real KSM: {live[1]}")
def test_the_running_kernel_answers_as_recorded_and_as_the_simulator():
    got = knobs.replay_live()
    assert _diff(knobs.replay_simulator(), got) == []
    assert _diff(json.loads(RECORDED.read_text()), got) == []


def test_writes_while_pages_are_shared_as_recorded_on_linux():
    """merge_across_nodes_store() and max_page_sharing_store() answer EBUSY to a
    change while ksm_pages_shared != 0 (mm/ksm.c, 6.18), the same value is fine, and
    no other store looks at the trees: the recorded trace knobs_while_shared says so
    step by step, and the simulator gives the same errors."""
    from ksmbook.oracle.scenario import SCENARIOS, run_in_simulator
    rec = json.loads((Path(__file__).parent / "data" / "kernel_traces"
                      / "knobs_while_shared.json").read_text())["snapshots"]
    refused = {(s["op"], s["counters"]["pages_shared"] > 0) for s in rec if s["error"] == "EBUSY"}
    assert refused == {("knob('merge_across_nodes', '0')", True),
                       ("knob('max_page_sharing', '4')", True),
                       ("knob('merge_across_nodes', '1')", True),
                       ("knob('max_page_sharing', '256')", True)}
    assert all(s["error"] in (None, "EBUSY") for s in rec)
    sim = run_in_simulator(SCENARIOS["knobs_while_shared"])
    assert [s["error"] for s in sim] == [s["error"] for s in rec]
