"""The student's path in a real browser: JupyterLab on a clone's labs/ and on the student edition.

Lab 3.1.6 (the fastest lab to validate): run the setup cell and an exercise with its test cell, see the
output; press nbgrader's Validate on the untouched lab (its failing visible tests are listed) and on a lab
whose last exercise the student types in (success). The edition is built by `make student-edition` and served
as its own `make lab` serves it (JupyterLab on its labs/), with the edition's utils first on the kernel's path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from course_files import copy_labs, solution_code, solved
from lab_page import add_cell_below, cell_index, close_dialog, open_notebook, run_cell, type_into_cell, validate
from lab_server import jupyterlab
from tools.paths import LABS, REPO, RUNS

LAB = "lab-3.1.6-dataset-preparation"
TYPED = "make_preference_pairs"  # the exercise the student types in the browser
LOG = RUNS / "browser"


def visible_tests(notebook) -> list[str]:
    """First line of each autograded test cell: what Validate's dialog should quote for an untouched lab."""
    nb = json.loads(open(notebook).read())
    return ["".join(c["source"]).splitlines()[0] for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A student's clone: labs/ as committed, and finished/ with Lab 3.1.6 done but for the exercise to type."""
    root = copy_labs(tmp_path_factory.mktemp("student"))
    (root / "finished").mkdir()
    answer = "My answer, from the numbers my run printed."  # Validate fails a written answer left empty
    nbformat.write(solved(LAB, leave_out=(TYPED,), answer=answer), root / "finished" / f"{LAB}.ipynb")
    with jupyterlab(root, LOG / "student-server.log") as server:
        yield server


def test_untouched_lab_runs_cells_and_validate_lists_failing_tests(clone, page, shots):
    notebook = LABS / f"{LAB}.ipynb"
    n_cells = len(json.loads(notebook.read_text())["cells"])
    open_notebook(page, clone.lab_url(f"labs/{LAB}.ipynb"), n_cells)
    shots(page, "student-01-lab-open")

    setup = run_cell(page, cell_index(notebook, "setup"))
    assert "profile: grade" in setup and "raw records" in setup, f"setup cell output: {setup!r}"
    run_cell(page, cell_index(notebook, "to-messages"))  # the untouched exercise: defines the stub
    test_out = run_cell(page, cell_index(notebook, "test-to-messages"))
    assert "NotImplementedError" in test_out, f"the visible test of an untouched exercise should fail: {test_out!r}"
    shots(page, "student-02-setup-and-exercise-run")

    kind, text = validate(page)
    shots(page, "student-03-validate-untouched")
    assert kind == "failed", f"Validate on the untouched lab: {kind}\n{text[:2000]}"
    missing = [first for first in visible_tests(notebook) if first not in text]
    assert not missing, f"Validate's dialog does not list these failing visible tests: {missing}\n{text[:3000]}"
    close_dialog(page)


def test_typed_answer_then_validate_succeeds(clone, page, shots):
    notebook = clone.root / "finished" / f"{LAB}.ipynb"
    n_cells = len(json.loads(notebook.read_text())["cells"])
    open_notebook(page, clone.lab_url(f"finished/{LAB}.ipynb"), n_cells)
    run_cell(page, cell_index(notebook, "setup"))
    exercise = cell_index(notebook, "make-preference-pairs")
    type_into_cell(page, exercise, solution_code(LAB, TYPED))
    shots(page, "student-04-answer-typed")
    run_cell(page, exercise)
    out = run_cell(page, cell_index(notebook, "test-make-preference-pairs"))
    assert "visible checks passed" in out, f"the typed answer's visible test: {out!r}"

    kind, text = validate(page)
    shots(page, "student-05-validate-success")
    assert kind == "success" and "Success" in text, f"Validate on the finished lab: {kind}\n{text[:3000]}"
    close_dialog(page)
    saved = nbformat.read(notebook, as_version=4)
    assert "raise NotImplementedError" not in saved.cells[exercise].source, "Validate should have saved the typed answer"


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """`make student-edition` into a scratch folder, or the edition already built at $COURSE_BROWSER_EDITION (to try
    the one you are about to hand out), served as its `make lab` serves it: JupyterLab on its labs/, from its folder.
    Its venv would have the edition's own utils installed; here the edition goes first on the kernel's path."""
    given = os.environ.get("COURSE_BROWSER_EDITION")
    out = tmp_path_factory.mktemp("edition") / "module-3.1-student"
    if given:
        assert (Path(given) / "labs").is_dir(), f"COURSE_BROWSER_EDITION={given}: no labs/ folder there"
        shutil.copytree(given, out)  # Validate saves the notebook: never into the edition to hand out
    else:
        build = subprocess.run(["make", "student-edition", f"OUT={out}"], cwd=REPO, capture_output=True, text=True)
        assert build.returncode == 0, f"make student-edition failed:\n{build.stdout[-2000:]}\n{build.stderr[-3000:]}"
    with jupyterlab(out / "labs", LOG / "edition-server.log", cwd=out, extra_env={"PYTHONPATH": str(out)}) as server:
        yield out, server


def test_student_edition_lab_runs_from_its_own_folder(edition, page, shots):
    out, server = edition
    notebook = out / "labs" / f"{LAB}.ipynb"
    assert not (out / "solutions").exists()
    cells = json.loads(notebook.read_text())["cells"]
    open_notebook(page, server.lab_url(f"{LAB}.ipynb"), len(cells))
    setup = run_cell(page, cell_index(notebook, "setup"))
    assert "profile: grade" in setup, f"setup cell output in the edition: {setup!r}"
    run_cell(page, cell_index(notebook, "to-messages"))
    assert "NotImplementedError" in run_cell(page, cell_index(notebook, "test-to-messages"))
    where = add_cell_below(page, len(cells) - 1, "import utils; print(utils.__file__)")  # a scratch cell at the end
    assert where.strip().startswith(str(out / "utils")), f"the kernel imported utils from {where!r}, not the edition"
    shots(page, "edition-01-setup-and-exercise-run")

    kind, text = validate(page)
    shots(page, "edition-02-validate-untouched")
    assert kind == "failed", f"Validate in the edition: {kind}\n{text[:2000]}"
    assert all(first in text for first in visible_tests(notebook)), text[:3000]
    close_dialog(page)
