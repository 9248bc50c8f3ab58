"""Chapter 08's lab (ksmbook.labs.guests): density against likeness."""
import pytest

from ksmbook.exercises import ch08
from ksmbook.labs import guests
from ksmbook.viz import guests as gviz

IMG = guests.GuestImage(kernel=8, libs=12, zero=10, private=6)


def test_a_lone_guest_saves_only_its_zero_pages():
    r = guests.measure(1, image=IMG)
    assert r.saved == {"kernel": 0, "libs": 0, "zero": IMG.zero - 1, "private": 0}
    assert r.saved_total == r.counters["pages_sharing"]


def test_identical_guests_share_every_alike_page_once():
    n = 4
    r = guests.measure(n, image=IMG)
    assert r.saved["kernel"] == (n - 1) * IMG.kernel and r.saved["libs"] == (n - 1) * IMG.libs
    assert r.saved["zero"] == n * IMG.zero - 1 and r.saved["private"] == 0


def test_kaslr_removes_only_the_kernel_share():
    a, b = guests.measure(3, "identical", IMG), guests.measure(3, "identical, KASLR", IMG)
    assert b.saved["kernel"] == 0 and b.saved["libs"] == a.saved["libs"]
    assert a.saved_total - b.saved_total == 2 * IMG.kernel


def test_distros_share_only_with_their_own_kind():
    r = guests.measure(4, "3 distros", IMG)          # distros 0, 1, 2, 0
    assert r.saved["kernel"] == IMG.kernel and r.saved["libs"] == IMG.libs


def test_divergence_takes_the_saving_back_through_cow():
    points = guests.divergence_sweep(3, (0.0, 0.5, 1.0), image=IMG)
    saved = [r.saved_total for _f, r in points]
    assert saved[0] > saved[1] > saved[2] == 2 * IMG.kernel
    with pytest.raises(ValueError, match="must not decrease"):
        guests.divergence_sweep(2, (0.5, 0.2), image=IMG)


def test_density_is_guests_per_gib_of_the_frames_left():
    r = guests.measure(2, image=IMG)
    assert r.guests_per_gib() == pytest.approx(2**30 / ((r.pages - r.saved_total) / 2 * 4096))


@pytest.mark.parametrize("kw,match", [(dict(guests=0), "guests"), (dict(guests=2.0), "guests"),
                                      (dict(guests=2, mix="nope"), "mix")])
def test_bad_hosts_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        guests.Host(**kw)


def test_figures_draw_every_mix_and_kind():
    sweep = guests.density_sweep((1, 2), image=IMG)
    assert [t.name for t in gviz.density_figure(sweep).data] == list(guests.MIXES)
    bars = gviz.breakdown_figure([rows[-1] for rows in sweep.values()])
    assert [t.name for t in bars.data] == ["zero", "kernel", "libs"]
    div = gviz.divergence_figure(guests.divergence_sweep(2, (0.0, 1.0), image=IMG))
    assert all(len(t.y) == 2 for t in div.data)
    table = guests.density_table(sweep)
    assert "identical" in table and "identical, KASLR" in table
    # 76 characters fit an 800 px window's output; the table wrapped line by line
    assert max(map(len, table.splitlines())) <= 76


@pytest.mark.parametrize("ex", ch08.EXERCISES, ids=lambda ex: ex.name)
def test_chapter_08_exercises_accept_their_answer_and_refuse_blanks(ex):
    assert ex.check(ex.expected()).correct is True
    assert ex.check(...).correct is None and ex.hints


def test_chapter_08_wrong_answers_say_why():
    assert "inside one guest" in ch08.one_guest.check(0).text
    assert "never reuses" in ch08.cow_breaks.check("do_wp_page").text
    assert ch08.kaslr_loss.expected() == 7 * guests.GuestImage().kernel
