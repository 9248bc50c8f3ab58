"""Course use of the exercises: the instructor key, otter-grader assignments, grading.

The grading itself is otter-grader's (``otter assign`` strips solutions and builds the
autograder zip; ``otter run`` grades one notebook without a container). This module
only writes otter's master-notebook format from the exercise registry and collects
otter's per-question results into one table.
"""
from __future__ import annotations

import csv
import io
import json
import pathlib
import re

from . import _COURSE, all_exercises, seed as set_seed
from .base import KINDS
from .design import CodeDesign

KEY_FIELDS = ("seed", "chapter", "exercise", "kind", "question", "answer", "explanation")


# --- what exists -------------------------------------------------------------

def listing(chapter: str | None = None) -> list[dict]:
    """One row per exercise: chapter, name, kind, whether a seed changes it."""
    return [{"chapter": c, "exercise": ex.name, "kind": ex.kind,
             "seeded": not ex.fixed_because, "few_answers": bool(ex.few_answers_because),
             "format": ex.answer_format}
            for c, ex in all_exercises(chapter)]


def format_listing(rows: list[dict]) -> str:
    out = []
    chapters = sorted({r["chapter"] for r in rows})
    out.append("chapter  " + "  ".join(f"{k:>8}" for k in KINDS) + "     all  seeded")
    for c in chapters:
        mine = [r for r in rows if r["chapter"] == c]
        out.append(f"{c:>7}  " + "  ".join(f"{sum(r['kind'] == k for r in mine):>8}" for k in KINDS)
                   + f"  {len(mine):>6}  {sum(r['seeded'] for r in mine):>6}")
    out.append(f"{'all':>7}  " + "  ".join(f"{sum(r['kind'] == k for r in rows):>8}" for k in KINDS)
               + f"  {len(rows):>6}  {sum(r['seeded'] for r in rows):>6}")
    out.append("")
    out.append("seeded: the seed varies the question and its answer (seeded*: the question; "
               "the answer is one of a few); fixed: one variant, for the reason in the code")
    for r in rows:
        state = ("seeded*" if r["few_answers"] else "seeded") if r["seeded"] else "fixed"
        out.append(f"ch{r['chapter']}.{r['exercise']:<26} {r['kind']:<9} {state:<8} "
                   f"{r['format']}")
    return "\n".join(out)


# --- the key -----------------------------------------------------------------

def key(seed_value, chapter: str | None = None) -> list[dict]:
    """Every question and answer for one seed (a student id or a number), with the
    explanation the simulator gives. Leaves the course state as it found it."""
    saved = dict(_COURSE)
    num = set_seed(seed_value, solutions=True)
    try:
        rows = []
        for c, ex in all_exercises(chapter):
            facts = ex.facts
            rows.append({"seed": num, "chapter": c, "exercise": ex.name, "kind": ex.kind,
                         "question": ex.question, "answer": _show(ex, facts["answer"]),
                         "explanation": ex.explain(facts)})
        return rows
    finally:
        set_seed(None if saved["seed"] is None else saved["seed"], solutions=saved["solutions"])


def _show(ex, answer) -> str:
    """As the student would type it (a code design's answer is sample code)."""
    return answer if isinstance(ex, CodeDesign) else repr(answer)


def format_key(rows: list[dict], fmt: str = "md") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=KEY_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    out = [f"# Instructor key, seed {rows[0]['seed']}" if rows else "# Instructor key (empty)"]
    for r in rows:
        answer = r["answer"]
        shown = f"\n```python\n{answer}\n```" if "\n" in answer else f" `{answer}`"
        out.append(f"\n## ch{r['chapter']}.{r['exercise']} ({r['kind']})\n\n{r['question']}\n\n"
                   f"**Answer:**{shown}\n\n{r['explanation']}")
    return "\n".join(out) + "\n"


def read_roster(path) -> list[str]:
    """Student ids from a CSV with an 'id' (or 'student_id', 'email') column, else the
    first column."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    head = [h.strip().lower() for h in rows[0]]
    for col in ("id", "student_id", "sid", "email"):
        if col in head:
            i = head.index(col)
            return [r[i].strip() for r in rows[1:] if len(r) > i and r[i].strip()]
    return [r[0].strip() for r in rows if r and r[0].strip()]


def roster_key(ids: list[str], chapter: str | None = None, fmt: str = "csv") -> str:
    """One row per student: id, seed, then one column per exercise with its answer."""
    table = []
    for sid in ids:
        rows = key(sid, chapter)
        table.append({"student": sid, "seed": rows[0]["seed"] if rows else "",
                      **{f"ch{r['chapter']}.{r['exercise']}": r["answer"] for r in rows}})
    if fmt == "json":
        return json.dumps(table, indent=1)
    fields = list(table[0]) if table else ["student", "seed"]
    buf = io.StringIO()
    if fmt == "md":
        buf.write("| " + " | ".join(fields) + " |\n|" + "---|" * len(fields) + "\n")
        for row in table:
            buf.write("| " + " | ".join(str(row[f]).replace("\n", "<br>").replace("|", "\\|")
                                        for f in fields) + " |\n")
        return buf.getvalue()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


# --- otter-grader assignments -------------------------------------------------

def _var(ex) -> str:
    return f"ans_{ex.name}"


def master_notebook(chapter: str, *, allow_solutions: bool = False):
    """The otter-assign master notebook for one chapter: one question per exercise,
    solutions taken from the simulator for the seed the student's notebook sets."""
    import nbformat.v4 as nbf

    mod = f"ch{chapter}"
    exs = [ex for c, ex in all_exercises(chapter)]
    config = "\n".join([
        "# ASSIGNMENT CONFIG", f"name: ksmbook-{mod}", "init_cell: true",
        "check_all_cell: false", "export_cell: false", "run_tests: false",
        "solutions_pdf: false", "generate: true", "tests:", "  files: false"])
    cells = [nbf.new_raw_cell(config),
             nbf.new_markdown_cell(
                 f"# ksmbook chapter {chapter}: graded exercises\n\n"
                 "Put your student id in the first code cell and run it: your numbers are your "
                 "own. Replace each `...` with your answer; run the cell under it for feedback "
                 "(`hint()` helps" + ("; `solution()` is open for this assignment" if allow_solutions
                                      else "") + "). Save the notebook and hand it in."),
             nbf.new_code_cell(
                 "import ksmbook.exercises as kx\n"
                 f"from ksmbook.exercises import {mod}\n\n"
                 'STUDENT_ID = "your student id"\n'
                 f"kx.seed(STUDENT_ID{', solutions=True' if allow_solutions else ''})")]
    for i, ex in enumerate(exs, 1):
        ref = f"{mod}.{ex.name}"
        cells.append(nbf.new_raw_cell(f"# BEGIN QUESTION\nname: {ex.name}\npoints: 1"))
        cells.append(nbf.new_markdown_cell(f"**{i}. {ex.name}** ({ex.kind}; answer: "
                                           f"{ex.answer_format})"))
        cells.append(nbf.new_code_cell(f"{ref}.ask()"))
        if ex.kind == "figure":
            cells.append(nbf.new_code_cell(f"{ref}.figure()"))
        if isinstance(ex, CodeDesign):
            # the answer is a function (scenario(s), probe(g, page)); a design answered
            # with a value (a tuple of accesses or knobs) is filled in like any other answer
            body = (f"def {ex.function}({ex.args}):\n    # {ex.stub}\n"
                    f"    return {ref}.normalise({ref}.facts['answer'])({ex.args})  # SOLUTION\n\n"
                    f"{_var(ex)} = {ex.function}\n{ref}.check({_var(ex)})")
        else:
            body = f"{_var(ex)} = {ref}.facts['answer']  # SOLUTION\n{ref}.check({_var(ex)})"
        cells.append(nbf.new_raw_cell("# BEGIN SOLUTION"))
        cells.append(nbf.new_code_cell(body))
        cells.append(nbf.new_raw_cell("# END SOLUTION"))
        cells.append(nbf.new_raw_cell("# BEGIN TESTS"))
        cells.append(nbf.new_code_cell(f"assert {ref}.check({_var(ex)}).correct is True, "
                                       f"str({ref}.check({_var(ex)}))"))
        cells.append(nbf.new_raw_cell("# END TESTS"))
        cells.append(nbf.new_raw_cell("# END QUESTION"))
    nb = nbf.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def assign(outdir, chapters=None, *, allow_solutions: bool = False) -> dict:
    """Run ``otter assign`` for each chapter; return {chapter: {'student': path,
    'autograder': zip path}}. The student notebook has no solution lines."""
    import nbformat
    from otter.assign import main as otter_assign

    outdir = pathlib.Path(outdir)
    made = {}
    chapters = chapters or sorted({c for c, _ in all_exercises()})
    for c in chapters:
        c = f"{int(c):02d}"
        src = outdir / "source" / f"ch{c}"
        src.mkdir(parents=True, exist_ok=True)
        master = src / f"ch{c}.ipynb"
        nbformat.write(master_notebook(c, allow_solutions=allow_solutions), master)
        dist = outdir / f"ch{c}"
        otter_assign(str(master), str(dist), no_pdfs=True)
        zips = sorted((dist / "autograder").glob("*.zip"))
        made[c] = {"student": dist / "student" / f"ch{c}.ipynb", "autograder": zips[-1]}
    return made


def recorded_id(notebook) -> str | None:
    """The student id a submitted notebook seeds its exercises with: the argument of its
    ``kx.seed(...)`` call, or the string assigned to ``STUDENT_ID`` that the call uses.
    None when the notebook never seeds (or with something that is not a literal)."""
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), 4)
    names, used = {}, None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        names[t.id] = node.value.value
            elif (isinstance(node, ast.Call) and node.args
                  and getattr(node.func, "attr", getattr(node.func, "id", "")) == "seed"):
                arg = node.args[0]
                used = (arg.value if isinstance(arg, ast.Constant) else
                        names.get(arg.id) if isinstance(arg, ast.Name) else None)
    return None if used is None else str(used)


def file_matches_id(stem: str, student_id: str | None) -> bool:
    """Is ``stem`` (a submission's file name, without .ipynb) this student's? The name is
    the id, or ends with it after '_' or '-' (``ch04_s1234567``); case and characters a
    file name cannot hold (replaced by '_') do not count."""
    if not student_id:
        return False
    safe = re.sub(r"[^a-z0-9.@+-]+", "_", student_id.strip().lower())
    stem = stem.strip().lower()
    return stem == safe or stem.endswith(("_" + safe, "-" + safe))


def grade(autograder, submissions, *, refuse_mismatch: bool = False) -> list[dict]:
    """``otter run`` (no container) on every notebook in ``submissions``; one row per
    notebook: student (the file's stem), one column per question, total, possible, and
    id_check: 'ok', or why the file name and the id the notebook seeds with disagree
    (somebody else's notebook, or their answers under another id). With
    ``refuse_mismatch`` such a notebook is not graded: every score is 0."""
    import contextlib

    from otter.run import main as otter_run

    rows = []
    for nb in sorted(pathlib.Path(submissions).glob("*.ipynb")):
        sid = recorded_id(nb)
        ok = file_matches_id(nb.stem, sid)
        why = ("ok" if ok else "no student id in the notebook" if sid is None else
               f"mismatch: the notebook is seeded with {sid!r}")
        with contextlib.redirect_stdout(io.StringIO()):      # otter prints its own summary
            res = otter_run(str(nb), autograder=str(autograder), output_dir=None, no_logo=True)
        refused = refuse_mismatch and not ok
        row = {"student": nb.stem}
        for name, r in sorted(res.results.items()):
            row[name] = 0.0 if refused else float(r.score)
        row["total"] = 0.0 if refused else float(res.total)
        row["possible"] = float(res.possible)
        row["id_check"] = ("refused: " + why) if refused else why
        rows.append(row)
    return rows


def format_scores(rows: list[dict]) -> str:
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
