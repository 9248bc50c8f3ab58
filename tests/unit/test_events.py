"""Events are data; viz words them.

* Every KSM and KVM action the kernel emits (found in ksmbook/kernel's source) has
  words in viz/events.py, and every worded action is emitted somewhere.
* Scenarios that make every one of those actions happen: each event renders into
  text through describe_event()/explain() from its fields alone.
* The kernel builds no prose for events: no f-string or sentence is passed to an
  event constructor or emit helper in ksmbook/kernel/, and every field of every
  emitted event is a number, a flag, an identifier or a dict of those.
"""
from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest

import ksmbook

from ksmbook import MADV_MERGEABLE, MADV_UNMERGEABLE, Machine
from ksmbook.kernel.events import (RECORDS, Event, Fault, KsmEvent, KvmEvent, NotifierCall,
                                   PageAlloc, PageFree, PteChange)
from ksmbook.kernel.mmu_notifier import RULES
from ksmbook.viz import events as vev

KERNEL = Path(__file__).resolve().parents[2] / "ksmbook" / "kernel"
PS = 256
KSM = "/sys/kernel/mm/ksm"
#: calls in kernel/ that build or emit an event record
EMITTERS = {"KsmEvent", "KvmEvent", "NotifierCall", "Fault", "PteChange", "PageAlloc",
            "PageFree", "put", "_emit", "_emit_fault", "_call", "_call_one", "_zap",
            "_zap_range", "_flush", "_install"}
IDENT = re.compile(r"^[A-Za-z0-9_.]*$")


# --- what the kernel emits, read from its source --------------------------------------

def _calls():
    for path in sorted(KERNEL.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if name in EMITTERS:
                    yield path, name, node


def _records():
    """(file, record class, constructor arguments) of every record kernel/ builds:
    ``Cls(time_ns, ...)``, ``log.put(("Cls", time_ns, ...))`` and the ``_emit(...)``
    helpers of Ksm and VM (which add the class and the time)."""
    for path, name, node in _calls():
        if name == "put":
            fields = node.args[0] if len(node.args) == 1 else None
            if isinstance(fields, ast.Tuple) and isinstance(fields.elts[0], ast.Constant):
                assert fields.elts[0].value in RECORDS, ast.unparse(node)
                yield path, fields.elts[0].value, fields.elts[1:]
        elif name == "_emit" and path.name == "kvm.py":
            yield path, "KvmEvent", [None, None] + node.args      # time_ns, vm added
        elif name == "_emit":
            yield path, "KsmEvent", [None] + node.args             # time_ns added
        elif name in ("KsmEvent", "KvmEvent"):
            yield path, name, node.args


def _emitted(cls_name):
    index = {"KsmEvent": 2, "KvmEvent": 3}[cls_name]       # after time_ns, function (, vm)
    out = set()
    for _path, cls, args in _records():
        if cls == cls_name and isinstance(args[index], ast.Constant):
            out.add(args[index].value)
    return out


def test_every_ksm_action_the_kernel_emits_has_words_and_no_words_are_orphans():
    ksm, kvm = _emitted("KsmEvent"), _emitted("KvmEvent")
    assert len(ksm) >= 18 and ksm == set(vev.KSM_TEXT), ksm ^ set(vev.KSM_TEXT)
    assert len(kvm) >= 10 and kvm == set(vev.KVM_TEXT), kvm ^ set(vev.KVM_TEXT)


def test_every_notifier_rule_has_words():
    assert set(RULES) == set(vev.NOTIFIER_RULES)
    assert all(re.match(r"^(all eras|[0-9.+ -]+:|unmap:|aging:|exit_mmap|mmu_notifier)", t)
               or "all eras" in t for t in vev.NOTIFIER_RULES.values())


def test_the_kernel_passes_no_prose_to_events():
    """No f-string, no %-format, no sentence (a string with a space) goes into an event."""
    bad = []
    for path, name, node in _calls():
        for arg in list(node.args) + [k.value for k in node.keywords]:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.JoinedStr) or (
                        isinstance(sub, ast.Constant) and isinstance(sub.value, str)
                        and not IDENT.match(sub.value)):
                    bad.append(f"{path.name}:{node.lineno} {name}({ast.unparse(arg)})")
                    break
    assert not bad, bad
    # and there is no prose field for it to go in
    for cls in (KsmEvent, KvmEvent, NotifierCall, Fault, PteChange, PageAlloc, PageFree):
        assert "detail" not in cls.FIELDS and "__slots__" in vars(cls), cls


def test_viz_parses_no_text():
    for name in ("events.py", "notifiers.py"):
        src = (KERNEL.parent / "viz" / name).read_text()
        assert "import re" not in src and ".detail" not in src, name


# --- scenarios that make every action happen ------------------------------------------

def _proc(m, name, contents):
    p = m.spawn(name)
    a = p.mmap(len(contents) * PS)
    for i, c in enumerate(contents):
        p.write(a + i * PS, bytes([c]) * PS if isinstance(c, int) else c)
    p.madvise(a, len(contents) * PS, MADV_MERGEABLE)
    return p, a


def _uniq(i):
    return bytes((i * 7 + j) % 251 for j in range(PS))


def scenario_events() -> list:
    out = []
    # merges, stable hits, chains, full dups, a collapse, stale nodes, a fork past the
    # limit, unmerging, smart scan skips, idle scans
    m = Machine(page_size=PS, fastpath=False)
    m.sysfs.write(f"{KSM}/max_page_sharing", "2")
    m.sysfs.write(f"{KSM}/smart_scan", "1")
    with m.events.capture() as ev:
        p, a = _proc(m, "p", [9] * 5 + [_uniq(i) for i in range(4)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(2)
        p.munmap(a + 2 * PS, 2 * PS)                  # a dup's page goes: stale, collapse
        m.ksmd.run_full_scans(2)
        c = p.fork()                                  # forked KSM mappings bypass the limit
        m.ksmd.run_full_scans(8)                      # unique pages age: smart scan skips
        p.madvise(a, PS, MADV_UNMERGEABLE)            # break_ksm
        c.exit()
        p.exit()
        q = m.spawn("q")
        b = q.mmap(4 * PS)
        q.madvise(b, 4 * PS, MADV_MERGEABLE)          # mergeable, but no page: idle scans
        m.advance(2000)
    out += ev
    # use_zero_pages; a COW copy still in the per-CPU LRU batch cannot merge; an
    # unstable tree page vanishes under the descent
    m = Machine(page_size=PS, fastpath=False)
    m.sysfs.write(f"{KSM}/use_zero_pages", "1")
    with m.events.capture() as ev:
        p, a = _proc(m, "p", [0, 0, 5, 5] + [_uniq(i) for i in range(6)])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(2)          # zero pages placed; pages 2 and 3 merged
        m.ksmd.scan(1)                    # a new full scan (the batch drained), page 2
        p.write(a + 3 * PS, bytes([5]) * PS)   # COW, same bytes: the copy is in the batch
        m.ksmd.scan(3)                    # page 3 fails to merge; pages 4, 5 enter the tree
        p.munmap(a + 4 * PS, PS)          # the tree's root page goes
        m.ksmd.scan(1)                    # page 6's descent meets it
    out += ev
    # KVM: exits, installs, change_pte/zaps across eras, release
    for kernel in ("2.6.32", "3.7", "6.9", "6.18"):
        m = Machine(page_size=4096, kernel=kernel)
        p = m.spawn("qemu")
        a = p.mmap(4 * 4096)
        vm = m.kvm.create_vm(p, a, 2 * 4096)         # pages 2, 3: host memory outside it
        with m.events.capture() as ev:
            vm.guest_write(0, b"A" * 4096)
            vm.guest_write(4096, b"A" * 4096)
            p.write(a + 2 * 4096, b"C" * 2 * 4096)   # 5.13-6.9: change_pte with no
            p.madvise(a, 4 * 4096, MADV_MERGEABLE)   # invalidation counted in: skipped
            m.sysfs.write(f"{KSM}/run", "1")
            m.ksmd.run_full_scans(3)
            vm.guest_read(0, 8)
            vm.guest_write(0, b"B")
            p.exit()
        out += ev
    # THP: a huge fault, KSM's failed then successful split_huge_page(), a 2 MiB spte
    # zapped by the split
    m = Machine(page_size=4096)
    thp = 512 * 4096
    with m.events.capture() as ev:
        p = m.spawn("qemu-thp")
        a = p.mmap(thp)
        p.madvise(a, thp, ksmbook.MADV_HUGEPAGE)
        vm = m.kvm.create_vm(p, a, thp)
        vm.guest_write(0, b"\x2a" * thp)
        p.madvise(a, thp, MADV_MERGEABLE)
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(2)
    out += ev
    return out


@pytest.fixture(scope="module")
def events():
    return scenario_events()


def test_the_scenarios_make_every_worded_action_happen(events):
    ksm = {e.action for e in events if isinstance(e, KsmEvent)}
    kvm = {e.action for e in events if isinstance(e, KvmEvent)}
    assert ksm == set(vev.KSM_TEXT), set(vev.KSM_TEXT) - ksm
    assert kvm == set(vev.KVM_TEXT), set(vev.KVM_TEXT) - kvm
    kinds = {type(e) for e in events}
    assert kinds == {KsmEvent, KvmEvent, NotifierCall, Fault, PteChange, PageAlloc, PageFree}


def test_every_event_renders_from_its_fields(events):
    for e in events:
        line = vev.explain_event(e)
        assert line and "None" not in line and "{" not in line, (e, line)
        if isinstance(e, KsmEvent):
            text = vev.ksm_detail(e)
            assert text != e.describe() and "None" not in text, e
            assert vev.describe_event(e).split()[-len(text.split()):] == text.split()
            assert f"{e.function}()" in vev.describe_event(e)
        if isinstance(e, KvmEvent):
            assert vev.kvm_detail(e) != e.describe(), e
        if isinstance(e, NotifierCall):
            assert vev.rule_text(e.rule) != e.rule, e
    lines = vev.describe_events(events)
    assert len(lines) > 100


def test_events_hold_only_data(events):
    def data(v):
        if isinstance(v, dict):
            return all(IDENT.match(k) and data(x) for k, x in v.items())
        return v is None or isinstance(v, (int, bool)) or (isinstance(v, str) and
                                                           IDENT.match(v) is not None)
    for e in events:
        assert isinstance(e, Event)
        assert all(data(v) for v in e._fields().values()), e


def test_merge_events_name_the_other_page_and_chains_the_visited_page():
    m = Machine(page_size=PS)
    m.sysfs.write(f"{KSM}/max_page_sharing", "2")
    p, a = _proc(m, "p", [9] * 5)
    m.sysfs.write(f"{KSM}/run", "1")
    with m.events.capture() as ev:
        m.ksmd.run_full_scans(2)
    merge = [e for e in ev if isinstance(e, KsmEvent) and e.action == "merge"][0]
    assert (merge.pid, merge.address, merge.other_pid, merge.other_address) == \
        (p.pid, a + PS, p.pid, a)
    assert merge.other_pfn not in m.memory.pages        # the tree page's frame was freed
    label = {(p.pid, a + i * PS): f"p[{i}]" for i in range(5)}
    text = vev.describe_event(merge, lambda pid, addr: label.get((pid, addr)))
    assert text.startswith("p[1]") and "p[0] now maps it" in text
    chain = [e for e in ev if isinstance(e, KsmEvent) and e.action in
             ("stable_full", "chain_created", "dup_created")]
    assert {e.action for e in chain} == {"stable_full", "chain_created", "dup_created"}
    for e in chain:                     # the page being visited, not 0
        assert e.pid == p.pid and a <= e.address < a + 5 * PS, e


def test_records_compare_by_value_pickle_and_read_their_info():
    e = KsmEvent(5, "try_to_merge_with_ksm_page", "stable_hit", 1000, 0x1000, 7, "merged",
                 None, None, None, 9, 3, {"sharers": 4})
    same = KsmEvent(5, "try_to_merge_with_ksm_page", "stable_hit", 1000, 0x1000, 7, "merged",
                    None, None, None, 9, 3, {"sharers": 4})
    assert e == same and hash(e) == hash(same) and e != PageFree(5, 7)
    assert e.sharers == 4 and pickle.loads(pickle.dumps(e)) == e
    with pytest.raises(AttributeError):
        e.no_such_field
    assert not hasattr(e, "__dict__")
    assert "detail" not in KsmEvent.FIELDS


def test_old_kvm_explain_name_still_works_for_one_release():
    from ksmbook.kernel import kvm
    with pytest.warns(DeprecationWarning):
        old = kvm.explain
    assert old is vev.explain
    with pytest.raises(AttributeError):
        kvm.no_such_name


def test_the_ring_keeps_fields_and_reads_back_records():
    """The hot emitters store ("Cls", *fields) tuples; the ring reads them back as the
    records a listener got when they were emitted."""
    seen = []
    quiet, heard = Machine(page_size=PS), Machine(page_size=PS, event_sink=seen.append)
    for m in (quiet, heard):
        _proc(m, "p", [3, 3, 4])
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(2)
    raw = list(quiet.events.history._ring)
    assert any(type(x) is tuple for x in raw)                 # stored unbuilt
    assert all(isinstance(e, Event) for e in quiet.events.history)
    assert list(quiet.events.history) == seen == list(heard.events.history)
    assert quiet.events.history[-1] == seen[-1] and quiet.events.history[:2] == seen[:2]
    assert quiet.events.of(KsmEvent) == [e for e in seen if isinstance(e, KsmEvent)]
