"""nbgrader's own release path, as an instructor on JupyterHub runs it, with the stock CLI.

A course root from `tools.nbgrader_root` for Lab 3.1.6 (the quickest to autograde), an exchange folder,
and three students, each with their own working folder and HOME: one hands in the solution, one the
untouched release, one a half-done notebook that passes the visible tests of `to_messages` but not its
hidden ones. Every command is `nbgrader ...` run as a subprocess; return codes are checked, but the
scores come from the gradebook, because nbgrader's exit codes say nothing about failed tests.
The feedback students fetch must not contain a line of any hidden test, also not in the traceback of a
failed hidden test; without ClearHiddenTests, or without RedactHiddenTestErrors, the same check fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.nbgrader_root import config_text, make_course_root
from tools.notebook_cells import nbgrader_meta
from tools.paths import COURSE_ID, SOLUTIONS

LAB = "lab-3.1.6-dataset-preparation"
NBGRADER = Path(sys.executable).parent / "nbgrader"
BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
# The half-done answer: ShareGPT without the "system" role passes the visible checks, fails a hidden one.
HALF_DONE = ('SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}',
             'SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}')
GOOD_FEEDBACK = "[GetGrades, CSSHTMLHeaderPreprocessor, RedactHiddenTestErrors, ClearHiddenTests]"


def graded_cells(nb: dict) -> tuple[dict[str, float], list[str]]:
    """({grade_id: points} of autograded test cells, [grade_id of written answers graded by hand])."""
    auto, manual = {}, []
    for cell in nb["cells"]:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            if meta.get("solution") or cell["cell_type"] != "code":
                manual.append(meta["grade_id"])
            else:
                auto[meta["grade_id"]] = float(meta["points"])
    return auto, manual


def hidden_test_lines(nb: dict) -> set[str]:
    """Every non-trivial line between the hidden-test markers that appears nowhere else in the notebook."""
    hidden, elsewhere = set(), set()
    for cell in nb["cells"]:
        inside = False
        for line in "".join(cell["source"]).split("\n"):
            if BEGIN in line:
                inside = True
            elif END in line:
                inside = False
            elif len(line.strip()) >= 8:
                (hidden if inside else elsewhere).add(line.strip())
    return hidden - elsewhere


def leaks(page: str, secrets: set[str]) -> set[str]:
    """The secret lines found in an HTML page: as written, HTML-escaped, or split by syntax-highlighting tags."""
    text = html.unescape(re.sub(r"<[^>]*>", "", page))
    return {s for s in secrets if s in page or html.escape(s) in page or html.escape(s, quote=False) in page or s in text}


def run(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    from utils.models import cache_root

    env.update(HOME=str(home), PATH=f"{NBGRADER.parent}{os.pathsep}{env.get('PATH', '')}",
               COURSE_CACHE=str(cache_root()))  # the model prepared once, not again in each fresh HOME
    done = subprocess.run([str(NBGRADER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} (in {cwd}) exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def feedback_html(course: Path, student: str) -> str:
    return (course / "feedback" / student / LAB / f"{LAB}.html").read_text()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Run the whole path once; return what the tests look at."""
    from nbgrader.api import Gradebook

    tmp = tmp_path_factory.mktemp("nbgrader-release")
    exchange = tmp / "exchange"
    course = make_course_root(tmp / "course", ["3.1.6"], exchange)
    teacher = tmp / "home-instructor"
    teacher.mkdir()
    solution = json.loads((SOLUTIONS / f"{LAB}.ipynb").read_text())
    run(["generate_assignment", LAB], course, teacher)
    run(["release_assignment", LAB], course, teacher)

    student_args = ["--course", COURSE_ID, f"--Exchange.root={exchange}"]
    students = {"solution": None, "untouched": None, "halfdone": None}
    for student in students:
        work, home = tmp / student / "work", tmp / student / "home"
        work.mkdir(parents=True)
        home.mkdir()
        run(["fetch_assignment", LAB, *student_args], work, home)
        fetched = work / LAB / f"{LAB}.ipynb"
        if student == "solution":
            fetched.write_text(json.dumps(solution))
        elif student == "halfdone":
            text = (SOLUTIONS / f"{LAB}.ipynb").read_text()
            assert json.dumps(HALF_DONE[0])[1:-1] in text, f"{LAB}: the half-done edit no longer applies; update HALF_DONE"
            fetched.write_text(text.replace(json.dumps(HALF_DONE[0])[1:-1], json.dumps(HALF_DONE[1])[1:-1]))
        # One Unix user plays every student here, so the student id is given; on a hub it is the user's name.
        run(["submit", LAB, *student_args, "--student", student], work, home)
        students[student] = (work, home)

    run(["collect", LAB], course, teacher)
    run(["autograde", LAB], course, teacher)
    auto, manual = graded_cells(solution)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        grades = {s: {g.name: (g.auto_score, g.score, g.max_score, g.needs_manual_grade)
                      for g in gb.find_submission_notebook(LAB, LAB, s).grades} for s in students}
        # Formgrader's manual grading, as formgrader's own API does it: a score on each written answer.
        for grade_id in manual:
            grade = gb.find_grade(grade_id, LAB, LAB, "solution")
            grade.manual_score, grade.needs_manual_grade = grade.max_score, False
        gb.db.commit()
        manual_graded = gb.find_submission_notebook(LAB, LAB, "solution").score

    run(["generate_feedback", LAB], course, teacher)
    run(["release_feedback", LAB], course, teacher)
    work, home = students["halfdone"]  # one student fetches: the one whose feedback had a hidden test to hide
    run(["fetch_feedback", LAB, *student_args, "--student", "halfdone"], work, home)
    fetched_feedback = [p.read_text() for p in (work / LAB / "feedback").rglob("*.html")]
    written = {s: feedback_html(course, s) for s in students}

    # The same check on configs that leave one of the two feedback preprocessors out.
    config = course / "nbgrader_config.py"
    good = config.read_text()
    variants = {}
    for name, preprocessors, student in [
            ("no ClearHiddenTests", "[GetGrades, CSSHTMLHeaderPreprocessor, RedactHiddenTestErrors]", "solution"),
            ("no RedactHiddenTestErrors", "[GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests]", "halfdone")]:
        assert GOOD_FEEDBACK in good, f"{config}: feedback preprocessors changed; update GOOD_FEEDBACK"
        config.write_text(good.replace(GOOD_FEEDBACK, preprocessors))
        run(["generate_feedback", LAB, "--student", student, "--force"], course, teacher)
        variants[name] = feedback_html(course, student)
    config.write_text(good)
    return dict(course=course, solution=solution, auto=auto, manual=manual, grades=grades, written=written,
                fetched=fetched_feedback, variants=variants, manual_graded=manual_graded)


@pytest.mark.slow
def test_gradebook_scores_from_the_stock_cli(release):
    auto, manual, grades = release["auto"], release["manual"], release["grades"]
    assert auto, f"{LAB}: no autograded test cells found in the solution"
    for student in grades:
        assert set(grades[student]) == set(auto) | set(manual), f"{student}: gradebook cells {sorted(grades[student])}"
    wrong = {g: grades["solution"][g] for g, pts in auto.items() if grades["solution"][g][0] != pts}
    assert not wrong, f"the solution lost points on {wrong} (auto_score, score, max, needs_manual)"
    nonzero = {g: grades["untouched"][g] for g in auto if grades["untouched"][g][0] != 0}
    assert not nonzero, f"the untouched release earned points on {nonzero}"
    half = {g: grades["halfdone"][g][0] for g in auto}
    assert half["test_to_messages"] == 0 and all(half[g] == auto[g] for g in auto if g != "test_to_messages"), \
        f"the half-done notebook should fail only test_to_messages (a hidden test): {half}"
    for grade_id in manual:  # written answers: answered -> waits for a person; untouched -> 0, as nbgrader does
        assert grades["solution"][grade_id][3] and grades["solution"][grade_id][0] is None, (grade_id, grades["solution"][grade_id])
        assert grades["untouched"][grade_id][1] == 0, (grade_id, grades["untouched"][grade_id])
    assert release["manual_graded"] == sum(auto.values()) + sum(grades["solution"][g][2] for g in manual)


@pytest.mark.slow
def test_feedback_shows_no_hidden_test(release):
    secrets = hidden_test_lines(release["solution"])
    assert len(secrets) > 20, f"{LAB}: only {len(secrets)} hidden-test lines found; the markers changed?"
    for student, page in release["written"].items():
        assert not leaks(page, secrets), f"feedback for {student} shows hidden-test lines: {sorted(leaks(page, secrets))[:5]}"
        assert "visible checks passed" in page or student == "untouched", f"feedback for {student} lost its visible output"
    pages = release["fetched"]
    assert len(pages) == 1, f"the student fetched {len(pages)} feedback files"
    assert pages[0] == release["written"]["halfdone"], "the fetched feedback is not the one generated"
    assert "hidden tests of this cell" in release["written"]["halfdone"], "the failed hidden test is not marked as one"


@pytest.mark.slow
def test_the_feedback_check_catches_each_missing_preprocessor(release):
    secrets = hidden_test_lines(release["solution"])
    without_clear = release["variants"]["no ClearHiddenTests"]  # the solution's feedback
    assert leaks(without_clear, secrets) == secrets, "without ClearHiddenTests every hidden line shows"
    without_redact = release["variants"]["no RedactHiddenTestErrors"]  # the half-done notebook's feedback
    assert len(leaks(without_redact, secrets)) >= 3, "the traceback of a failed hidden test quotes it"


# --- fast: no nbgrader run -----------------------------------------------------------------------


def test_course_root_layout_and_config(tmp_path):
    root = make_course_root(tmp_path / "course", ["3.1.6", "lab-3.1.1"], tmp_path / "exchange")
    assert (root / "source" / LAB / f"{LAB}.ipynb").read_bytes() == (SOLUTIONS / f"{LAB}.ipynb").read_bytes()
    assert len(list((root / "source").iterdir())) == 2
    text = (root / "nbgrader_config.py").read_text()
    assert GOOD_FEEDBACK in text and f"c.Exchange.root = {str(tmp_path / 'exchange')!r}" in text
    assert (tmp_path / "exchange").is_dir() and (tmp_path / "exchange").stat().st_mode & 0o777 == 0o777
    from traitlets.config.loader import PyFileConfigLoader

    moved = tmp_path / "moved"
    root.rename(moved)  # the root is the folder holding the config, wherever it is
    config = PyFileConfigLoader("nbgrader_config.py", str(moved)).load_config()
    assert config.CourseDirectory.root == str(moved) and config.CourseDirectory.course_id == COURSE_ID
    assert [p.__name__ for p in config.GenerateFeedback.preprocessors][-2:] == ["RedactHiddenTestErrors", "ClearHiddenTests"]
    assert "Exchange.root" not in config_text()
    (moved / "nbgrader_config.py").write_text(text + "c.Execute.timeout = 5\n")
    with pytest.raises(FileExistsError, match="nbgrader_config.py"):
        make_course_root(moved, ["3.1.6"], tmp_path / "exchange")
    with pytest.raises(ValueError, match="no single lab"):
        make_course_root(tmp_path / "other", ["3.1.99"])


def test_cli_prints_the_next_commands(tmp_path, capsys):
    from tools.nbgrader_root import main

    assert main([str(tmp_path / "c"), "--labs", "3.1.6", "--exchange", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    for step in ["generate_assignment", "release_assignment", "collect", "autograde", "generate_feedback", "release_feedback"]:
        assert f"{step} {LAB}" in out, f"next steps lack {step}:\n{out}"
    assert main([str(tmp_path / "c"), "--labs", "3.1.6", "--timeout", "9"]) == 2  # a different config is not overwritten


def _cell_with_error(failing_line: int, frames_after: list[str], evalue: str = "the hidden message"):
    from nbformat.v4 import new_code_cell, new_output

    source = "x = visible()\nprint('visible checks passed')\n### BEGIN HIDDEN TESTS\nassert secret_check(x) == 42, 'the hidden message'\n### END HIDDEN TESTS"
    lines = source.split("\n")
    frame = f"\x1b[36mCell\x1b[39m \x1b[32mIn[7]\x1b[39m\x1b[32m, line {failing_line}\x1b[39m\n" + "\n".join(
        f"  {n} {line}" for n, line in enumerate(lines[:failing_line], 1))
    traceback = ["\x1b[31m-----\x1b[39m", "AssertionError   Traceback (most recent call last)", frame, *frames_after,
                 f"\x1b[31mAssertionError\x1b[39m: {evalue}"]
    return new_code_cell(source, outputs=[
        new_output("stream", name="stdout", text="visible checks passed\n"),
        new_output("error", ename="AssertionError", evalue=evalue, traceback=traceback)])


def test_redact_hidden_test_errors():
    from nbformat.v4 import new_notebook, new_output
    from tools.hidden_test_errors import NOTE, RedactHiddenTestErrors

    secret = "assert secret_check(x) == 42, 'the hidden message'"
    raised_there = _cell_with_error(4, [])
    raised_deeper = _cell_with_error(4, ["Cell In[3], line 2, in secret_check\n----> 2 raise ValueError('bad x')"], "bad x")
    visible_fail = _cell_with_error(1, ["Cell In[3], line 2, in visible\n----> 2 raise ValueError('no')"], "no")
    printed = _cell_with_error(1, [])
    printed.outputs = [new_output("stream", name="stdout", text=f"checking: {secret}\n")]
    nb = new_notebook(cells=[raised_there, raised_deeper, visible_fail, printed])
    before = json.dumps(visible_fail.outputs)
    RedactHiddenTestErrors().preprocess(nb, {})
    assert raised_there.outputs[1].traceback == ["AssertionError", NOTE] and raised_there.outputs[1].evalue == ""
    assert raised_deeper.outputs[1].traceback == ["AssertionError: bad x", NOTE]  # the student's own error message
    assert raised_there.outputs[0].text == "visible checks passed\n"
    assert json.dumps(visible_fail.outputs) == before, "a failure in the visible tests keeps its traceback"
    assert printed.outputs[0].text == NOTE + "\n"
    assert secret not in json.dumps([cell.outputs for cell in nb.cells]), "a hidden line is still in the outputs"
