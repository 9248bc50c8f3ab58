"""Chapter 07's experiment layer (ksmbook.labs.eras): the story of one merge seen by KVM.

The expectations are the era semantics of the research notes (3.4) and of the
kernel history: change_pte remaps in place until 3.6, 6bdb913f0a70's bracket (3.7)
zaps first, 6.10 removes change_pte; before 2.6.38 a KVM read fault asked for a
writable page.  The records are also checked against the VM they came from.
"""
import pytest

from ksmbook.labs import eras
from ksmbook.labs.eras import STEPS, EraStory, KvmNotifierWithoutChangePte
from ksmbook.kernel.events import KvmEvent, NotifierCall
from ksmbook.kernel.mmu_notifier import RULE_SEED_FALLBACK

SEED_ERA, BRACKETED, REMOVED = "2.6.32", "3.7", "6.10"


def test_a_step_record_agrees_with_the_vm_it_came_from():
    story = EraStory(BRACKETED)
    total = 0
    for rec in story.run_all():
        total += rec.exits
        assert rec.exits == sum(1 for e in rec.events
                                if isinstance(e, KvmEvent) and e.action == "exit")
        assert rec.retries == rec.stats.get("retries", 0)
    assert total == story.vm.stats["exits"]
    assert story.done and story.position == len(STEPS)
    for st in story.records[-1].state:
        s = story.vm.spte(st.gfn * story.page_size)
        assert (st.spte_pfn, st.spte_writable) == ((s.pfn, s.writable) if s else (None, False))
    assert sum(r.guest_ns for r in story.records) == story.vm.guest_ns
    with pytest.raises(StopIteration):
        story.next()


def test_the_seed_remaps_in_place_and_the_guest_never_notices_the_merge():
    story = EraStory(SEED_ERA)
    fault, merge, read, write = story.run_all()
    assert fault.exits == 2 and fault.stats["sptes_installed"] == 2
    assert merge.exits == 0 and merge.stats["sptes_remapped"] == 3
    assert merge.count(NotifierCall, "change_pte") == 3
    assert merge.count(NotifierCall, "invalidate_range_start") == 0
    ksm = {st.host_pfn for st in merge.state}
    assert len(ksm) == 1 and all(st.host_ksm and not st.host_writable for st in merge.state)
    assert all(st.spte_pfn in ksm and not st.spte_writable for st in merge.state)
    assert read.exits == 0 and read.events == ()
    assert write.exits == 2 and write.retries == 1
    after = write.state[0]
    assert after.spte_writable and after.host_writable and not after.host_ksm


@pytest.mark.parametrize("kernel", [BRACKETED, "6.9"])
def test_from_3_7_the_bracket_zaps_first_and_change_pte_finds_nothing(kernel):
    fault, merge, read, write = EraStory(kernel).run_all()
    assert merge.stats.get("sptes_remapped", 0) == 0 and merge.stats["sptes_zapped"] == 2
    calls = merge.count(NotifierCall, "change_pte")
    assert calls == 3 and merge.count(KvmEvent, "change_pte_miss") == calls
    assert merge.count(NotifierCall, "invalidate_range_start") == 3
    assert all(st.spte_pfn is None for st in merge.state)
    assert read.exits == 1 and read.state[0].spte_pfn == read.state[0].host_pfn
    assert write.exits == 2


def test_6_10_has_no_change_pte_at_all():
    merge = EraStory(REMOVED).run_all()[1]
    assert merge.count(NotifierCall, "change_pte") == 0
    assert merge.count(NotifierCall, "invalidate_range_start") == 3


def test_3_6_is_still_the_seed_era():
    """6bdb913f0a70 is dated 2012-10-09, after v3.6 (2012-09-30): it is in 3.7."""
    assert eras.measure_era("3.6").merge_action == "remap in place"
    assert eras.measure_era("3.7").merge_action == "zap"


def test_the_era_table_rows_follow_the_behaviour_boundaries():
    rows = {r.kernel: r for r in eras.era_table(("2.6.32", "2.6.38", "3.6", "3.7", "6.10"))}
    for k in ("2.6.32", "2.6.38", "3.6"):
        assert (rows[k].read, rows[k].read_then_write) == (0, rows[k].write_after_read)
    for k in ("3.7", "6.10"):
        assert rows[k].read == 1 and rows[k].read_then_write == rows[k].write_after_read + 1
    assert len({r.write_unread for r in rows.values()}) == 1, "a write costs the same everywhere"
    assert rows["3.7"].change_pte_misses == rows["3.7"].change_pte_calls > 0
    assert rows["6.10"].change_pte_calls == 0
    assert rows["3.7"].read_ns > rows["3.6"].read_ns


@pytest.mark.parametrize("kernel,stays", [("2.6.32", False), ("2.6.37", False),
                                          ("2.6.38", True), ("6.18", True)])
def test_a_first_read_of_a_page_qemu_wrote_breaks_the_merge_before_2_6_38(kernel, stays):
    got = eras.untouched_read(kernel)
    assert got["stays_merged"] is stays
    assert got["spte_writable"] is (not stays), "a broken merge leaves a private, RW page"
    assert got["exits"] == (1 if stays else 2)


def test_without_change_pte_the_seed_falls_back_to_invalidate_page_and_reads_break_merges():
    story = EraStory(SEED_ERA, steps=STEPS[:3], kvm_change_pte=False)
    assert not story.vm.notifier.implements("change_pte")
    assert isinstance(story.vm.notifier, KvmNotifierWithoutChangePte)
    assert story.vm.notifier in story.vm.mm.notifiers.list
    fault, merge, read = story.run_all()
    fallbacks = [e for e in merge.events if isinstance(e, NotifierCall)]
    assert fallbacks and all(e.op == "invalidate_page" and e.rule == RULE_SEED_FALLBACK
                             for e in fallbacks)
    assert merge.stats["sptes_zapped"] == 2
    assert read.exits == 2 and not read.state[0].host_ksm


def test_story_events_drop_checksums_and_frames_but_keep_merges():
    merge = EraStory(SEED_ERA).run_all()[1]
    kinds = {type(e).__name__ for e in merge.events}
    assert "PageAlloc" not in kinds and "PageFree" not in kinds
    assert [e.action for e in merge.events if type(e).__name__ == "KsmEvent"] == ["merge"]
    assert merge.explain() and len(merge.explain()) == len(merge.events)


def test_unknown_steps_are_refused():
    with pytest.raises(ValueError):
        EraStory(SEED_ERA, steps=(("jump", "no such step"),)).next()
