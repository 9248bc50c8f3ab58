"""The otter-grader round trip: assign, hand out, fill in (right, wrong, blank, raising), grade.

otter (a kept grader) does the stripping and the grading; ``otter run`` needs no container.
"""
import csv
import io
import json
import re
import subprocess
import sys

import nbformat
import pytest

otter = pytest.importorskip("otter", reason="otter-grader is in the 'classroom' extra (make test "
                                             "installs it); without it the round trip cannot run")

from ksmbook.exercises import classroom  # noqa: E402

QUESTIONS = ["chain_design", "chain_dups", "cow_lag", "predict_counters", "refusing_store",
             "which_errno"]


def _fill(student_nb, out, student_id, answers: dict):
    """A student's copy: their id in the seed cell, ``answers[name]`` (code) in each answer cell."""
    nb = nbformat.read(student_nb, 4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "STUDENT_ID = " in cell.source:
            cell.source = cell.source.replace('"your student id"', repr(student_id))
        if "otter_answer_cell" in cell.metadata.get("tags", []):
            name = re.search(r"check\(ans_(\w+)\)", cell.source).group(1)
            if name in answers:
                cell.source = answers[name]
    nbformat.write(nb, out)


def _right(student_id):
    return {r["exercise"]: (r["answer"] + "\n\nans_chain_design = scenario" if r["kind"] == "design"
                            else f"ans_{r['exercise']} = {r['answer']}")
            for r in classroom.key(student_id, "04")}


def _scores(out):
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["student", *QUESTIONS, "total", "possible", "id_check"]
    return {r[0]: ([float(x) for x in r[1:-1]], r[-1]) for r in rows[1:]}


def test_assign_strips_solutions_and_grading_gives_exact_scores(tmp_path):
    made = subprocess.run([sys.executable, "-m", "ksmbook.cli", "exercises", "assign",
                           str(tmp_path / "out"), "--chapter", "04"],
                          capture_output=True, text=True, check=True).stdout
    assert "ch04: hand out" in made
    student = tmp_path / "out" / "ch04" / "student" / "ch04.ipynb"
    zips = list((tmp_path / "out" / "ch04" / "autograder").glob("*.zip"))
    assert student.exists() and len(zips) == 1

    # answers out of reach: the student side has no solution line and no outputs
    text = student.read_text()
    assert "# SOLUTION" not in text and "facts['answer']" not in text
    assert "solutions=True" not in text
    nb = nbformat.read(student, 4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert sum("otter_answer_cell" in c.metadata.get("tags", []) for c in nb.cells) == 6
    # a figure exercise hands the student its figure to draw, from their own seed
    assert "ch04.chain_dups.figure()" in text

    subs = tmp_path / "subs"
    subs.mkdir()
    _fill(student, subs / "alice.ipynb", "alice", _right("alice"))          # all right
    bob = _right("bob")
    bob.update(predict_counters="ans_predict_counters = (1, 0, 0)",         # wrong
               refusing_store="ans_refusing_store = 'stable_tree_search'",  # wrong function
               chain_design="def scenario(s):\n    s.spawn('v')\n    s.mmap('v', 'm', 1)\n"
                            "ans_chain_design = scenario")                  # nothing merges
    _fill(student, subs / "bob.ipynb", "bob", bob)
    _fill(student, subs / "carol.ipynb", "carol", {})                       # blank
    dave = _right("dave")
    dave["cow_lag"] = "ans_cow_lag = 1 / 0"                                 # raises
    _fill(student, subs / "dave.ipynb", "dave", dave)
    # a right answer for somebody else's seed is wrong for this student
    _fill(student, subs / "erin.ipynb", "erin", {"predict_counters":
                                                  _right("alice")["predict_counters"]})
    # frank hands in alice's notebook, seeded with her id: all right, under the wrong name
    _fill(student, subs / "ch04_frank.ipynb", "alice", _right("alice"))

    grade = [sys.executable, "-m", "ksmbook.cli", "exercises", "grade", str(zips[0]), str(subs)]
    done = subprocess.run(grade, capture_output=True, text=True, check=True)
    table = _scores(done.stdout)
    assert table["alice"] == ([1, 1, 1, 1, 1, 1, 6, 6], "ok")
    assert table["bob"] == ([0, 1, 1, 0, 0, 1, 3, 6], "ok")
    assert table["carol"] == ([0, 0, 0, 0, 0, 0, 0, 6], "ok")
    assert table["dave"] == ([1, 1, 0, 1, 1, 1, 5, 6], "ok")
    alice_pc = classroom.key("alice", "04")[0]["answer"]
    erin_pc = classroom.key("erin", "04")[0]["answer"]
    assert table["erin"][0][3] == (1.0 if alice_pc == erin_pc else 0.0)
    assert table["erin"][1] == "ok"
    # the file name check: flagged by default (scores kept), refused on request
    assert table["ch04_frank"] == ([1, 1, 1, 1, 1, 1, 6, 6],
                                   "mismatch: the notebook is seeded with 'alice'")
    assert "ch04_frank.ipynb: mismatch" in done.stderr
    refused = _scores(subprocess.run(grade + ["--refuse-mismatch"], capture_output=True,
                                     text=True, check=True).stdout)
    assert refused["ch04_frank"] == ([0, 0, 0, 0, 0, 0, 0, 6],
                                     "refused: mismatch: the notebook is seeded with 'alice'")
    assert refused["alice"] == table["alice"] and refused["bob"] == table["bob"]
    assert json.dumps(table)


def test_file_name_matches_the_recorded_student_id(tmp_path):
    assert classroom.file_matches_id("s1234567", "s1234567")
    assert classroom.file_matches_id("ch04_S1234567", " s1234567 ")
    assert classroom.file_matches_id("ada_lovelace", "Ada Lovelace")
    assert not classroom.file_matches_id("s1234567x", "s1234567")
    assert not classroom.file_matches_id("bob", "alice")
    assert not classroom.file_matches_id("bob", None)
    import nbformat.v4 as nbf
    nb = nbf.new_notebook(cells=[nbf.new_code_cell('import ksmbook.exercises as kx\n'
                                                   'STUDENT_ID = "s7"\nkx.seed(STUDENT_ID)')])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert classroom.recorded_id(tmp_path / "a.ipynb") == "s7"
    nb.cells[0].source = 'import ksmbook.exercises as kx\nkx.seed("s8", solutions=False)'
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert classroom.recorded_id(tmp_path / "b.ipynb") == "s8"
    nb.cells[0].source = "x = 1"
    nbformat.write(nb, tmp_path / "c.ipynb")
    assert classroom.recorded_id(tmp_path / "c.ipynb") is None
