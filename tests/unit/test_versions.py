"""Kernel-version profiles: one object holds every behaviour difference."""
from dataclasses import fields

import pytest

import ksmbook
from ksmbook import Machine
from ksmbook.kernel.versions import FEATURE_LIFETIMES, KNOWN_ERAS, KernelProfile, profile


def test_every_profile_field_has_a_lifetime_and_vice_versa():
    names = {f.name for f in fields(KernelProfile)} - {"version"}
    assert names == set(FEATURE_LIFETIMES)


@pytest.mark.parametrize("era", KNOWN_ERAS)
def test_every_known_era_boots(era):
    m = Machine(kernel=era)
    assert m.kernel == era and m.profile.version == era
    p = m.spawn("p")
    a = p.mmap(4096)
    p.write(a, b"x")
    assert p.read(a, 1) == b"x"


@pytest.mark.parametrize("bad", ["2.6.31", "6.19", "7.0", "2.4", "6", "6.x", "", "6.10.1.2"])
def test_versions_outside_the_model_are_refused(bad):
    with pytest.raises(ValueError):
        Machine(kernel=bad)


def test_three_part_versions_and_unlisted_releases_work():
    assert profile("5.4.100").ksm_xxhash_checksum
    assert Machine(kernel="5.10").profile.reuse_ksm_page is False


# (feature, last version without it, first version with it, version where it is gone)
WINDOWS = [
    ("change_pte", None, "2.6.32", "6.10"),
    # 6bdb913f0a70 (2012-10-09) landed after v3.6 (2012-09-30): 3.7 is the first bracketed
    ("bracket_set_pte_at_notify", "3.6", "3.7", None),
    ("set_pte_first_then_notify", None, "2.6.32", "3.7"),
    ("change_pte_falls_back_to_invalidate_page", None, "2.6.32", "3.7"),
    ("invalidate_page", None, "2.6.32", "4.13"),
    ("ksm_wp_restore_notifies", None, "2.6.32", "2.6.35"),
    ("kvm_read_fault_maps_readonly", "2.6.37", "2.6.38", None),
    ("kvm_generic_hva_walk", "5.12", "5.13", None),
    ("ksm_merge_across_nodes", "3.8", "3.9", None),
    ("ksm_use_zero_pages", "4.10", "4.11", None),
    ("ksm_stable_node_chains", "4.12", "4.13", None),
    ("ksm_xxhash_checksum", "4.20", "5.0", None),
    ("ksm_merging_pages_file", "5.18", "5.19", None),
    ("ksm_stat_file", "6.0", "6.1", None),
    ("prctl_memory_merge", "6.3", "6.4", None),
    ("ksm_zero_pages_counter", "6.5", "6.6", None),
    ("ksm_smart_scan", "6.6", "6.7", None),
    ("ksm_advisor", "6.7", "6.8", None),
    ("ksm_checksum_before_stable_search", "6.10", "6.11", None),
    ("ksm_fork_resets_counters", "6.17", "6.18", None),
    ("reuse_ksm_page", "5.0", "5.1", "5.9"),
    ("ksm_max_kernel_pages", None, "2.6.32", "2.6.33"),
]


@pytest.mark.parametrize("feature,before,first,gone", WINDOWS)
def test_feature_windows(feature, before, first, gone):
    if before is not None:
        assert not getattr(profile(before), feature)
    assert getattr(profile(first), feature)
    if gone is not None:
        assert not getattr(profile(gone), feature)
    else:
        assert getattr(profile("6.18"), feature)


def test_the_profile_is_frozen_and_shared_by_the_machine():
    m = Machine(kernel="6.10")
    assert m.profile is m.ksm.profile
    with pytest.raises(Exception):
        m.profile.change_pte = True
    assert "change_pte removed" in m.profile.era
    assert "bracketed" in profile("3.7").era and "seed" in profile("2.6.32").era
    assert "seed" in profile("3.6").era


def test_prctl_does_not_exist_before_6_4():
    p = Machine(kernel="6.3").spawn("p")
    with pytest.raises(OSError):
        p.prctl(ksmbook.PR_SET_MEMORY_MERGE, 1)
    assert Machine(kernel="6.4").spawn("q").prctl(ksmbook.PR_GET_MEMORY_MERGE) == 0


def test_knob_defaults_follow_the_version():
    # before 4.13 there is no limit (no chains); before 6.7 no smart scan
    old = Machine(kernel="4.12").ksm
    assert old.max_page_sharing > 1 << 32 and old.smart_scan == 0
    assert Machine(kernel="6.6").ksm.smart_scan == 0
    assert Machine(kernel="6.7").ksm.smart_scan == 1
