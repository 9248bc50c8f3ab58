"""Machine(event_limit=, event_sink=): the event log is a bounded ring plus an optional sink."""
import pytest

import ksmbook
from ksmbook.kernel.machine import EVENT_LIMIT


def _scan(m, pages=64, scans=3):
    p = m.spawn("t")
    a = p.mmap(pages * m.page_size)
    for i in range(pages):
        p.write(a + i * m.page_size, bytes([i % 4 + 1]) * m.page_size)
    p.madvise(a, pages * m.page_size, ksmbook.MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(scans)


def test_default_ring_is_bounded():
    m = ksmbook.Machine()
    assert m.events.history.maxlen == EVENT_LIMIT


def test_ring_keeps_the_newest_and_sink_sees_all():
    seen = []
    full = ksmbook.Machine(event_limit=None)
    _scan(full)
    m = ksmbook.Machine(event_limit=50, event_sink=seen.append)
    _scan(m)
    assert len(full.events.history) > 50
    assert len(m.events.history) == 50
    assert list(m.events.history) == list(full.events.history)[-50:]
    assert seen == list(full.events.history)


def test_zero_keeps_none():
    m = ksmbook.Machine(event_limit=0)
    _scan(m)
    assert len(m.events.history) == 0


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (1.5, TypeError), ("10", TypeError)])
def test_bad_limit(bad, exc):
    with pytest.raises(exc):
        ksmbook.Machine(event_limit=bad)


def test_bad_sink():
    with pytest.raises(TypeError):
        ksmbook.Machine(event_sink=3)
