"""Structure of the committed notebooks: clean, well-formed for nbgrader, and labs/ in sync."""

import re
import tempfile
from pathlib import Path

import pytest

from tools.notebook_cells import LABS, SOLUTIONS, load, nbgrader_meta
from tools.generate_labs import generate_student_version, normalised
from tools.grading.course import Course

lab_names = Course().lab_names

SLUGS = {
    "3.1.1": "lora-theory", "3.1.2": "dora-comparison", "3.1.3": "neftune-magic",
    "3.1.4": "8b-lora-finetuning", "3.1.5": "70b-qlora-finetuning", "3.1.6": "dataset-preparation",
    "3.1.7": "dpo-training", "3.1.8": "simpo-vs-orpo", "3.1.9": "kto-binary-feedback",
    "3.1.10": "ollama-integration",
}
LABS_PRESENT = lab_names()
ALL_NOTEBOOKS = [SOLUTIONS / f"{n}.ipynb" for n in LABS_PRESENT] + [LABS / f"{n}.ipynb" for n in LABS_PRESENT]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_labs():
    assert "lab-3.1.1-lora-theory" in LABS_PRESENT


@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_lab_names_follow_the_course_plan(lab):
    match = re.fullmatch(r"lab-(3\.1\.\d+)-(.+)", lab)
    assert match and SLUGS.get(match.group(1)) == match.group(2), f"{lab}: expected lab-<number>-<slug> from the plan"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebooks_have_no_outputs(path):
    assert path.exists(), f"{path} is missing: run `make labs`"
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name}: clear outputs before committing"


@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_solution_cells_are_well_formed_for_nbgrader(lab):
    cells = load(SOLUTIONS / f"{lab}.ipynb")["cells"]
    graded = [c for c in cells if nbgrader_meta(c).get("grade")]
    solutions = [c for c in cells if nbgrader_meta(c).get("solution")]
    assert graded and solutions
    ids = [nbgrader_meta(c)["grade_id"] for c in cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in (c for c in solutions if c["cell_type"] == "code"):  # written answers: tests/test_reflection_cells.py
        text = source(cell)
        assert "### BEGIN SOLUTION" in text and "### END SOLUTION" in text, nbgrader_meta(cell)["grade_id"]
    for cell in (c for c in graded if c["cell_type"] == "code"):
        meta, text = nbgrader_meta(cell), source(cell)
        assert meta["locked"] and meta["points"] > 0, f"{meta['grade_id']}: graded cells are locked and worth points"
        visible, _, hidden = text.partition("### BEGIN HIDDEN TESTS")
        assert "assert" in visible, f"{meta['grade_id']}: needs a visible check students can run"
        assert "assert" in hidden and "### END HIDDEN TESTS" in hidden, f"{meta['grade_id']}: needs hidden tests"


@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_student_labs_hide_solutions_and_hidden_tests(lab):
    text = (LABS / f"{lab}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text, f"labs/{lab}.ipynb contains {marker!r}"
    assert "raise NotImplementedError" in text


@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_labs_are_in_sync_with_solutions(lab):
    with tempfile.TemporaryDirectory() as tmp:
        expected = generate_student_version(lab, Path(tmp))
    assert normalised(LABS / f"{lab}.ipynb") == expected, f"labs/{lab}.ipynb is stale: run `make labs`"
