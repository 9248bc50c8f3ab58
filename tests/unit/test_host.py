"""ksmbook.oracle.host: reading KSM's state read-only, from the simulator or this machine."""
import builtins
import io
from pathlib import Path

import pytest

import ksmbook
from ksmbook.oracle import host
from ksmbook.oracle.scenario import COUNTERS

KSM = "/sys/kernel/mm/ksm"


def merged_machine(pages=4):
    m = ksmbook.Machine()
    p = m.spawn("vm1")
    addr = p.mmap(pages * m.page_size)
    p.write(addr, b"x" * (pages * m.page_size))
    p.madvise(addr, pages * m.page_size, ksmbook.MADV_MERGEABLE)
    idle = m.spawn("idle")
    m.sysfs.write(f"{KSM}/run", "1")
    m.ksmd.run_full_scans(2)
    return m, p, idle


def test_read_ksm_gives_every_file_as_the_kernel_prints_it_parsed():
    m, _, _ = merged_machine()
    ksm = host.read_ksm(m.sysfs)
    assert sorted(ksm) == m.sysfs.listdir()
    assert all(ksm[c] == m.ksm.stats()[c] for c in COUNTERS)
    assert ksm["advisor_mode"] == "none" and ksm["run"] == 1
    assert "[none]" in m.sysfs.read(f"{KSM}/advisor_mode")        # what was parsed


def test_read_processes_keeps_those_with_ksm_state_and_counts_unreadable_ones():
    m, vm1, idle = merged_machine()

    class Guarded:
        """procfs where one file is another user's."""
        def read(self, path):
            if path == "/proc/4242/ksm_stat":
                raise PermissionError(13, "Permission denied", path)
            if path == "/proc/4343/ksm_stat":
                raise FileNotFoundError(2, "exited", path)
            return m.procfs.read(path)

    found, unreadable = host.read_processes(
        Guarded(), [(vm1.pid, "vm1"), (idle.pid, "idle"), (4242, "other"), (4343, "gone")])
    assert [p.name for p in found] == ["vm1"] and unreadable == 1
    assert found[0].stat == ksmbook.parse_ksm_stat(m.procfs.read(f"/proc/{vm1.pid}/ksm_stat"))


def test_the_report_reads_like_the_counters():
    m, vm1, _ = merged_machine(4)
    ksm = host.read_ksm(m.sysfs)
    found, _ = host.read_processes(m.procfs, [(vm1.pid, "vm1")])
    text = host.ksm_report(ksm, found, where="the simulator", unreadable=2)
    assert text.startswith("KSM on the simulator: run=1 (merging)")
    assert f"pages_sharing={ksm['pages_sharing']}" in text
    assert (f"1 KSM page stands in for {ksm['pages_shared'] + ksm['pages_sharing']} mappings: "
            f"sharing/shared = {ksm['pages_sharing'] / ksm['pages_shared']:.1f}") in text
    assert f"general_profit = {ksm['general_profit']} bytes" in text
    row = next(line for line in text.splitlines() if line.strip().startswith(str(vm1.pid)))
    assert row.split()[1:5] == ["vm1", str(found[0].stat["ksm_rmap_items"]),
                                str(found[0].stat["ksm_merging_pages"]), "0"]
    assert "2 more ksm_stat files were not readable" in text
    assert "no process has KSM state" in host.ksm_report(ksm, [], where="x")


def test_host_files_reads_real_paths(tmp_path):
    (tmp_path / "pages_shared").write_text("3\n")
    (tmp_path / "advisor_mode").write_text("none [scan-time]\n")
    files = host.HostFiles()
    assert files.listdir(str(tmp_path)) == ["advisor_mode", "pages_shared"]
    assert host._value("advisor_mode", files.read(str(tmp_path / "advisor_mode"))) == "scan-time"
    assert host._value("pages_shared", files.read(str(tmp_path / "pages_shared"))) == 3


@pytest.mark.skipif(not Path(KSM).is_dir(), reason="this machine has no /sys/kernel/mm/ksm")
def test_this_machine_is_only_read(monkeypatch):
    """Never a write: KSM's knobs are global (and other live runs may change them
    meanwhile, so the test watches the calls instead of comparing the knobs)."""
    real_open = builtins.open
    opened = []

    def watching_open(file, mode="r", *args, **kw):
        opened.append((str(file), mode))
        return real_open(file, mode, *args, **kw)

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(io, "open", watching_open)          # what Path.read_text uses
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: pytest.fail("write_text"))
    monkeypatch.setattr(Path, "write_bytes", lambda *a, **k: pytest.fail("write_bytes"))
    ksm = host.read_ksm(host.HostFiles())
    procs, unreadable = host.read_processes(host.HostFiles(), host.host_pids())
    assert set(COUNTERS) <= set(ksm) and isinstance(ksm["pages_scanned"], int)
    assert all(p.pid > 0 and "ksm_rmap_items" in p.stat for p in procs) and unreadable >= 0
    assert any(f.startswith(KSM) for f, _ in opened)
    assert all(set(mode) <= set("rbt") for _, mode in opened)


# The verdicts follow the values (issue 8: "unshared/sharing = 0.0 (high: ...)" was printed).
import pytest as _pytest  # noqa: E402

from ksmbook.oracle.host import sharing_verdict, unshared_verdict  # noqa: E402


@_pytest.mark.parametrize("shared,sharing,word", [
    (0, 0, "nothing merged"), (10, 10, "little sharing"), (10, 90, "good sharing")])
def test_sharing_verdict_follows_the_ratio(shared, sharing, word):
    assert word in sharing_verdict(shared, sharing)


@_pytest.mark.parametrize("unshared,sharing,word", [
    (0, 0, "no wasted effort"), (0, 50, "no wasted effort"), (40, 0, "all effort, no saving"),
    (100, 10, "wasted effort: ksmd scans more"), (5, 50, "little wasted effort")])
def test_unshared_verdict_follows_the_ratio(unshared, sharing, word):
    assert unshared_verdict(unshared, sharing).startswith(word)
