"""The instructor's path in a real browser: formgrader on the course root that `tools.grade_class` hands over.

A class of two (Lab 3.1.6): ada finished the lab and wrote her answers, bob handed in the untouched release.
`python -m tools.grade_class` grades them; JupyterLab is started in grading/course as README says, formgrader
is opened from the Nbgrader menu, the class's submissions and scores are read off the page, ada's written answer
is graded by hand in the manual-grading view, and nbgrader's Gradebook API must then hold that grade.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time

import nbformat
import pytest
from playwright.sync_api import expect

from course_files import solved
from lab_server import jupyterlab
from tools.paths import LABS, REPO, RUNS

LAB = "lab-3.1.6-dataset-preparation"
ANSWER_ID = "reflection_data_loss_tokens"  # the first written answer (3 points)
ANSWER = "Ada's answer: most tokens are prompt tokens, masked from the loss but still computed in every layer."
MANUAL = 2


def number(x: float) -> str:
    """A score as formgrader prints it (JavaScript's number to string: 13, 13.5)."""
    return f"{round(x, 2):g}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("instructor")
    for student in ("ada", "bob"):
        (root / "class" / student).mkdir(parents=True)
    nbformat.write(solved(LAB, answer=ANSWER), root / "class" / "ada" / f"{LAB}.ipynb")
    (root / "class" / "bob" / f"{LAB}.ipynb").write_bytes((LABS / f"{LAB}.ipynb").read_bytes())
    out = root / "grading"
    run = subprocess.run([sys.executable, "-m", "tools.grade_class", str(root / "class"), "--out", str(out), "--quiet"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, f"tools.grade_class failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    with open(out / "grades.csv") as f:
        grades = {row["student"]: row for row in csv.DictReader(f)}
    assert set(grades) == {"ada", "bob"} and grades["ada"]["status"] == "ok", grades
    with jupyterlab(out / "course", RUNS / "browser" / "formgrader-server.log") as server:
        yield out / "course", grades, server


def gradebook_grade(course, student: str):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "module-3.1") as gb:
        grade = gb.find_grade(ANSWER_ID, LAB, LAB, student)
        return grade.manual_score, grade.auto_score, gb.find_submission_notebook(LAB, LAB, student).id


def test_formgrader_shows_the_class_and_records_a_manual_grade(graded, page, shots):
    course, grades, server = graded
    manual_before, _, ada_notebook = gradebook_grade(course, "ada")
    assert manual_before is None, "ada's written answer should be waiting for a manual grade"

    page.goto(server.lab_url())
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Formgrader$")).click()
    frame = page.frame_locator("#formgrader-iframe iframe")
    link = frame.locator(f"a[href$='/formgrader/manage_submissions/{LAB}']")
    expect(link, "formgrader does not list the lab with its submissions").to_have_text("2", timeout=60_000)
    shots(page, "instructor-01-formgrader-assignments")

    link.click()
    for student, row in grades.items():
        cells = frame.locator("tr", has=frame.locator("td.student-id", has_text=student))
        expected = f"{number(float(row['score']))} / {number(float(row['max_score']))}"
        expect(cells.locator("td.score"), f"{student}'s score in formgrader").to_have_text(expected, timeout=30_000)
    shots(page, "instructor-02-formgrader-submissions")

    frame.locator("a", has_text="Manual Grading").click()
    frame.locator(f"a[href$='/formgrader/gradebook/{LAB}']").first.click()
    frame.locator(f"a[href$='/formgrader/gradebook/{LAB}/{LAB}']").first.click()
    frame.locator(f"a.name-hidden[href$='/formgrader/submissions/{ada_notebook}']").click()
    score = frame.locator(f"input.score#{ANSWER_ID}")
    expect(score, "the manual-grading view has no score box for the written answer").to_be_visible(timeout=60_000)
    expect(frame.locator(".nbgrader_cell", has=score), "ada's written answer is not shown").to_contain_text(ANSWER[:40])
    score.scroll_into_view_if_needed()
    shots(page, "instructor-03-manual-grading-view")

    score.fill(str(MANUAL))
    score.press("Tab")  # formgrader saves a score when its box changes and loses focus
    deadline = time.monotonic() + 20
    while (manual := gradebook_grade(course, "ada")[0]) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    shots(page, "instructor-04-manual-grade-entered")
    assert manual == MANUAL, f"the gradebook holds {manual!r} for ada's {ANSWER_ID}, not the {MANUAL} entered in formgrader"
