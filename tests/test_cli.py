"""The ``ksmbook`` command: scenarios, run, compare (main() called with argv)."""
import copy
import json
import re

import pytest

from ksmbook import cli
from ksmbook.oracle import live
from ksmbook.oracle.scenario import COUNTERS, SCENARIOS, diff_traces, run_in_simulator

LIVE_OK, LIVE_WHY = live.available()


def ksmbook(capsys, *argv):
    """Run ``ksmbook argv...``; return (exit status, stdout, stderr)."""
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def table_rows(out):
    """{step: [counter values]} from the rows of a run/compare table."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+)  (.{%d})(?:both   |sim    )?([-\d* ]+)$" % cli.OP_WIDTH, line)
        if m:
            rows[int(m.group(1))] = [int(v.rstrip("*")) for v in m.group(3).split()]
    return rows


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

def test_scenarios_lists_every_builtin_with_its_description(capsys):
    status, out, _ = ksmbook(capsys, "scenarios")
    assert status == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0] != " "}
    for name, sc in SCENARIOS.items():
        assert name in lines, name
        first_words = " ".join(sc.description.split()[:3])
        assert first_words in lines[name], (name, lines[name])
    assert f"{len(SCENARIOS)} scenarios" in out


def test_one_line_takes_the_first_sentence_and_cuts_it():
    assert cli.one_line("Two pages merge.  Then more text.", 80) == "Two pages merge."
    assert cli.one_line("a " * 50, 20).endswith("...")
    assert len(cli.one_line("a " * 50, 20)) <= 20


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["two_identical_pages", "max_page_sharing_3_of_10",
                                  "zero_page_lifecycle"])
def test_run_prints_the_simulators_counters_after_every_step(capsys, name):
    status, out, err = ksmbook(capsys, "run", name)
    assert status == 0
    snaps = run_in_simulator(SCENARIOS[name])
    rows = table_rows(out)
    assert sorted(rows) == list(range(len(snaps)))
    for s in snaps:
        assert rows[s["step"]] == [s["counters"][c] for c in COUNTERS], s["op"]
    assert err == ""                       # not a terminal: no progress bar


def test_run_shows_errors_and_ksm_stat(capsys):
    status, out, _ = ksmbook(capsys, "run", "unmerge_and_dontneed", "--stat")
    assert status == 0
    assert "knob('max_page_sharing', '3') -> EBUSY" in out
    last = run_in_simulator(SCENARIOS["unmerge_and_dontneed"])[-1]["ksm_stat"]["a"]
    assert f"a: rmap_items={last['ksm_rmap_items']} " in out.splitlines()[-1]


def test_run_json_is_the_simulator_trace(capsys):
    status, out, _ = ksmbook(capsys, "run", "fork_one_page", "--json")
    assert status == 0
    doc = json.loads(out)
    assert doc["snapshots"] == run_in_simulator(SCENARIOS["fork_one_page"])
    assert doc["scenario"]["name"] == "fork_one_page" and doc["runner"] == "simulator"


def test_run_with_another_kernel_version(capsys):
    # 6.10 searches the stable tree before the checksum test: the late joiner c
    # merges on its first visit there, one scan earlier than on 6.18
    _, new, _ = ksmbook(capsys, "run", "late_joiners")
    status, old, _ = ksmbook(capsys, "run", "late_joiners", "--kernel", "6.10")
    assert status == 0
    assert "Linux 6.10 model" in old
    sharing = COUNTERS.index("pages_sharing")
    assert table_rows(old)[15][sharing] > table_rows(new)[15][sharing]


def test_progress_bar_on_stderr(capsys):
    status, out, err = ksmbook(capsys, "run", "ksm_tests_merge", "--progress", "always")
    assert status == 0
    frames = err.split("\r")
    assert any("full scan 1/2" in f for f in frames)
    assert "100%  done" in frames[-1] and err.endswith("\n")
    assert "\r" not in out
    _, _, quiet = ksmbook(capsys, "run", "ksm_tests_merge", "--progress", "never")
    assert quiet == ""


def test_progress_auto_is_for_long_runs_only():
    assert cli.is_long(SCENARIOS["ksm_tests_merge_time"])     # 2 scans of 25600 pages
    assert cli.is_long(SCENARIOS["volatile_rewrites"])        # 54 steps
    assert not cli.is_long(SCENARIOS["two_identical_pages"])


@pytest.mark.parametrize("command", ["run", "compare"])
def test_unknown_scenario_suggests_close_names(capsys, command):
    status, out, err = ksmbook(capsys, command, "two_identical_page")
    assert status == 2 and out == ""
    assert "unknown scenario 'two_identical_page'" in err
    assert "did you mean two_identical_pages" in err


def test_unknown_kernel_version(capsys):
    status, _, err = ksmbook(capsys, "run", "two_identical_pages", "--kernel", "9.9")
    assert status == 2 and "9.9" in err


def test_kernel_without_the_counters_scenarios_read(capsys):
    status, _, err = ksmbook(capsys, "run", "two_identical_pages", "--kernel", "6.1")
    assert status == 2 and "pages_scanned" in err and "6.7 or later" in err


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------

def test_compare_without_a_usable_kernel_exits_2_and_says_why(capsys, monkeypatch):
    monkeypatch.setattr(live, "available", lambda: (False, "needs root (test)"))
    status, out, err = ksmbook(capsys, "compare", "two_identical_pages")
    assert status == 2 and out == ""
    assert "cannot run two_identical_pages on this kernel: needs root (test)" in err


def test_compare_when_ksm_is_busy_exits_2(capsys, monkeypatch):
    def busy(scenario, timeout=60.0):
        raise live.KsmBusy("other processes use KSM: 123 (qemu)")
    monkeypatch.setattr(live, "available", lambda: (True, ""))
    monkeypatch.setattr(live, "run_live", busy)
    status, _, err = ksmbook(capsys, "compare", "two_identical_pages")
    assert status == 2 and "123 (qemu)" in err


def test_compare_marks_every_differing_field(capsys, monkeypatch):
    """A kernel trace that differs from the simulator in two fields (faked, so this
    runs anywhere): both are marked, listed and counted, and the exit status is 1."""
    name = "two_identical_pages"
    fake = copy.deepcopy(run_in_simulator(SCENARIOS[name]))
    fake[5]["counters"]["pages_sharing"] += 1
    fake[6]["ksm_stat"]["p"]["ksm_rmap_items"] += 1
    monkeypatch.setattr(live, "available", lambda: (True, ""))
    monkeypatch.setattr(live, "run_live", lambda scenario, timeout=60.0: fake)
    status, out, _ = ksmbook(capsys, "compare", name)
    assert status == 1
    assert out.splitlines()[-1] == "2 fields differ"
    lines = out.splitlines()
    sim_row = next(i for i, line in enumerate(lines) if re.match(r"^\s+5  scans\(1\)\s+sim ", line))
    kernel_row = lines[sim_row + 1]
    assert "kernel" in kernel_row and "!= 1 field" in kernel_row
    sharing = COUNTERS.index("pages_sharing")
    assert table_rows(out)[5][sharing] == fake[5]["counters"]["pages_sharing"] - 1
    assert re.search(r"\s%d\*" % fake[5]["counters"]["pages_sharing"], kernel_row)
    assert "!= 1 field: p.ksm_rmap_items" in out
    assert re.search(r"!= counters.pages_sharing: simulator \d+, kernel \d+  \(after step 5\)", out)
    assert "!= ksm_stat.p.ksm_rmap_items" in out
    assert re.search(r"^\s+4  .*both ", out, re.M)          # equal steps: one row


@pytest.mark.kernel_oracle
def test_compare_on_this_kernel(capsys):
    if not LIVE_OK:
        status, out, err = ksmbook(capsys, "compare", "two_identical_pages")
        assert status == 2 and LIVE_WHY in err
        pytest.skip(f"live KSM runner unavailable (exit 2 checked): {LIVE_WHY}")
    status, out, _ = ksmbook(capsys, "compare", "two_identical_pages")
    assert status == 0, out
    assert out.splitlines()[-1].startswith("0 fields differ")
    # the 6.10 model against this 6.18 kernel: the difference is real and counted
    status, out, _ = ksmbook(capsys, "compare", "late_joiners", "--kernel", "6.10", "--json")
    assert status == 1
    doc = json.loads(out)
    expected = diff_traces(run_in_simulator(SCENARIOS["late_joiners"], kernel="6.10"),
                           doc["live"])
    assert len(doc["diffs"]) == len(expected) > 0
    status, text, _ = ksmbook(capsys, "compare", "late_joiners", "--kernel", "6.10")
    assert status == 1 and text.splitlines()[-1] == f"{len(expected)} fields differ"
