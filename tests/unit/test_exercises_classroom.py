"""Classroom edition: seeded variants, the instructor key, locked solutions, the design kind."""
import os
import re
import subprocess
import sys

import pytest

import ksmbook.exercises as kx
from ksmbook.exercises import KINDS, SolutionsLocked, all_exercises, ch04, classroom


@pytest.fixture(autouse=True)
def self_study():
    kx.seed(None)
    yield
    kx.seed(None)


def _cli(*args, hashseed="0"):
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.run([sys.executable, "-m", "ksmbook.cli", "exercises", *args], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_every_chapter_has_five_exercises_of_mixed_kinds():
    chapters = {}
    for c, ex in all_exercises():
        chapters.setdefault(c, []).append(ex)
        assert ex.kind in KINDS, ex.name
        assert ex.question
    assert sorted(chapters) == ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]
    for c, exs in chapters.items():
        kinds = {ex.kind for ex in exs}
        assert len(exs) >= 5, (c, [ex.name for ex in exs])
        # every chapter has a figure, so every chapter has a read-a-figure exercise
        assert {"predict", "function", "figure"} <= kinds, (c, kinds)
    assert sum(ex.kind == "design" for exs in chapters.values() for ex in exs) >= 7


@pytest.mark.parametrize("chapter_ex", [ce for ce in all_exercises() if ce[1].kind == "figure"],
                         ids=lambda ce: f"ch{ce[0]}.{ce[1].name}")
def test_figure_exercises_draw_their_own_seeded_scene(chapter_ex):
    import plotly.graph_objects as go
    _, ex = chapter_ex
    assert "figure()" in ex.question
    for s in (None, 11):
        ex.reseed(s)
        fig = ex.figure()
        assert isinstance(fig, go.Figure) and (fig.data or fig.layout.shapes) and fig.layout.title.text
        assert ex.check(ex.facts["answer"]).correct is True
    ex.reseed(None)


@pytest.mark.parametrize("chapter_ex", list(all_exercises()), ids=lambda ce: f"ch{ce[0]}.{ce[1].name}")
def test_fifty_seeds_give_ten_answers_or_a_reason(chapter_ex):
    _, ex = chapter_ex
    if ex.fixed_because:
        assert len(ex.fixed_because) > 20, "say why the idea has one answer"
        assert not ex.few_answers_because
        return
    answers, questions, kernels = set(), set(), set()
    for s in range(50):
        ex.reseed(s)
        answers.add(repr(ex.facts["answer"]))
        questions.add(ex.question)
        kernels.add(ex.p.get("kernel"))
        if s < 3:            # a seeded variant accepts its own answer and says why
            assert ex.check(ex.facts["answer"] if ex.kind == "design" else ex.expected()), \
                (ex.name, s, ex.question)
    ex.reseed(None)
    assert len(questions) >= 10, (ex.name, questions)
    if ex.few_answers_because:
        assert len(ex.few_answers_because) > 20, "say why the answers are few"
        assert len(answers) >= 2, (ex.name, answers)
    else:
        assert len(answers) >= 10, (ex.name, answers)
    # the seed also picks the kernel era wherever the exercise names one
    if "kernel" in ex.p:
        assert len(kernels) >= 3, (ex.name, kernels)


def test_same_seed_same_question_and_answer_strings_hash_stably():
    assert kx.stable_seed("alice") == kx.stable_seed(" alice ") != kx.stable_seed("bob")
    a = classroom.key("alice", "04")
    b = classroom.key("alice", "04")
    assert a == b
    assert a != classroom.key("bob", "04")
    # different processes with different str-hash salts: the same key (Python's hash() would not)
    one = _cli("key", "--seed", "1234", hashseed="1")
    assert one == _cli("key", "--seed", "1234", hashseed="2")
    assert one != _cli("key", "--seed", "4321", hashseed="1")
    assert "## ch04.chain_design (design)" in one and "**Answer:**" in one


def test_a_seed_locks_solutions_unless_allowed_and_none_restores_the_book():
    book_q = ch04.predict_counters.question
    assert "9 identical pages" in book_q and "max_page_sharing=4" in book_q
    kx.seed("s1")
    with pytest.raises(SolutionsLocked):
        ch04.predict_counters.solution()
    with pytest.raises(SolutionsLocked):
        ch04.predict_counters.expected()
    assert ch04.predict_counters.check(...).correct is None        # checking still works
    assert ch04.predict_counters.check(ch04.predict_counters.facts["answer"]).correct is True
    kx.seed("s1", solutions=True)
    assert "Answer:" in ch04.predict_counters.solution().text
    kx.seed(None)
    assert ch04.predict_counters.question == book_q
    assert ch04.predict_counters.expected() == (2, 6, 1)


def test_key_formats_and_roster(tmp_path):
    rows = classroom.key(7, "03")
    assert {r["exercise"] for r in rows} >= {"merge_scan", "batch_size"}
    assert classroom.format_key(rows, "csv").splitlines()[0] == ",".join(classroom.KEY_FIELDS)
    roster = tmp_path / "roster.csv"
    roster.write_text("name,id\nAda,a1\nBo,b2\nCy,c3\n")
    out = _cli("key", "--roster", str(roster), "--chapter", "4")
    lines = out.strip().splitlines()
    assert lines[0].startswith("student,seed,ch04.predict_counters")
    assert [ln.split(",")[0] for ln in lines[1:] if ln[:2] in ("a1", "b2", "c3")] == ["a1", "b2", "c3"]
    assert str(kx.stable_seed("b2")) in out


def test_list_counts_by_chapter_and_kind():
    out = _cli("list")
    head = out.splitlines()[0].split()
    assert head[:5] == ["chapter", *KINDS]
    assert "ch04.chain_design" in out and "design" in out


# --- the design kind: the checker runs the student's scenario -------------------

def _pages(s, proc, n, byte=0x2A):
    s.spawn(proc)
    s.mmap(proc, "mem", n)
    s.fill(proc, 0, n, byte)
    s.madvise(proc)


def test_design_checker_runs_the_scenario_and_explains():
    d = ch04.chain_design            # book numbers: max_page_sharing=4, exactly 7, <= 12 pages
    assert d.check(...).correct is None
    right = d.check(lambda s: _pages(s, "vm1", 10))
    assert right.correct is True and "pages_sharing=7" in right.text and "stable_node_dups" in right.text
    # another design the simulator agrees with: two processes, 5 + 5 of the same bytes
    assert d.check(lambda s: (_pages(s, "a", 5), _pages(s, "b", 5))).correct is True
    few = d.check(lambda s: _pages(s, "vm1", 6))
    assert few.correct is False and "pages_sharing is 4" in few.text
    over = d.check(lambda s: _pages(s, "vm1", 13))
    assert over.correct is False and "13 pages is more than the 12 allowed" in over.text

    def no_madvise(s):
        s.spawn("x")
        s.mmap("x", "mem", 10)
        s.fill("x", 0, 10, 1)
    assert "did you s.madvise()" in d.check(no_madvise).text
    assert "raised ZeroDivisionError" in d.check(lambda s: 1 / 0).text
    assert "a function" in d.check(7).text


def test_design_variants_are_solvable_and_the_sample_answer_passes():
    for s in range(12):
        kx.seed(s)
        d = ch04.chain_design
        ns = {}
        exec(d.facts["answer"], ns)
        assert d.check(ns["scenario"]).correct is True, d.question


def test_function_kind_gives_why_not():
    fb = ch04.refusing_store.check("stable_tree_search")
    assert fb.correct is False and "never sees a sysfs write" in fb.text
    assert ch04.refusing_store.check("max_page_sharing_store()").correct is True


#: the 4 KiB-page labs that draw a smaller scene where calc_checksum() is jhash2 (pre-5.0)
SMALL_BEFORE_5_0 = {"06": ("cpu_share", "max_sharing", "sharing_bars"),
                    "10": ("ksmd_wakeups", "latency_reading", "probe_design")}


@pytest.mark.parametrize("chapter, name", [(c, n) for c, ns in SMALL_BEFORE_5_0.items() for n in ns])
def test_the_seed_also_picks_jhash2_eras_with_a_smaller_scene(chapter, name):
    """The 4 KiB-page labs once seeded only eras >= 5.0; now 50 seeds reach the jhash2
    eras too (where the idea holds: the chains of max_page_sharing from 4.13), each of
    those variants a working exercise, and their scenes no larger than the others'."""
    from ksmbook.exercises.base import jhash2_era
    from ksmbook.kernel.versions import parse_version
    ex = next(e for e in kx.chapters()[chapter].EXERCISES if e.name == name)
    old, new = [], []
    for s in range(50):
        ex.reseed(s)
        (old if jhash2_era(ex.p["kernel"]) else new).append(dict(ex.p))
    ex.reseed(None)
    # (2 of the 16 eras with chains are pre-5.0, so max_page_sharing's share is small)
    assert len(old) >= 2, (name, old)
    assert all(parse_version(p["kernel"]) < (5, 0) for p in old)
    size = {"cpu_share": "pages", "max_sharing": "total", "sharing_bars": "copies",
            "ksmd_wakeups": "victim", "latency_reading": "candidates",
            "probe_design": "candidates"}[name]
    assert max(p[size] for p in old) <= max(p[size] for p in new), (name, size)
    ex.reseed(next(s for s in range(50) if jhash2_era(ex.reseed(s).p["kernel"])))
    answer = ex.facts["answer"] if ex.kind == "design" else ex.expected()
    assert ex.check(answer).correct is True, (name, ex.question)
    ex.reseed(None)


def test_assignment_answer_cells_stub_what_each_design_asks_for():
    """A design answered with code gets its own function's stub (scenario(s), probe(g,
    page)); one answered with a value (07's accesses, 06's knobs) a value to fill in."""
    cells = {}
    for chapter in ("04", "07", "10"):
        for cell in classroom.master_notebook(chapter).cells:
            found = re.search(r"check\(ans_(\w+)\)", cell.source)
            if cell.cell_type == "code" and found and not cell.source.startswith("assert"):
                cells[found.group(1)] = cell.source
    assert cells["chain_design"].startswith("def scenario(s):")
    assert "ans_chain_design = scenario" in cells["chain_design"]
    assert cells["probe_design"].startswith("def probe(g, page):")
    assert "ans_probe_design = probe" in cells["probe_design"]
    assert cells["exits_design"].startswith("ans_exits_design = ch07.exits_design.facts")
    # the solution line the assign step strips runs the key's own answer
    ns = {}
    exec("from ksmbook.exercises import ch10\n" + cells["probe_design"], ns)
    assert ns["ch10"].probe_design.check(ns["ans_probe_design"]).correct is True
