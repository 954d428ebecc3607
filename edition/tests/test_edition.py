"""The student edition's test of itself (`make test`): what a student's first hour relies on is all here.

The course code imports, its data loads and matches the recipe it was built from, every lab notebook is
an intact nbgrader release (valid, with its grading metadata, no outputs, no answers), there is no
solutions/ folder, and (slow) the self-check of an untouched lab finds its failing visible tests.
"""

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("lab-*.ipynb"))
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STUBS = ("raise NotImplementedError", "YOUR ANSWER HERE")


def test_the_course_code_imports_from_this_folder():
    import utils

    assert Path(utils.__file__).resolve().parent == ROOT / "utils", f"utils comes from {utils.__file__}, not this folder"
    names = [m.name for m in pkgutil.walk_packages(utils.__path__, "utils.")]
    assert "utils.course_data" in names and "utils.profiles" in names, names
    for name in names:
        importlib.import_module(name)  # an ImportError names the module


def test_the_course_data_loads_and_matches_its_recipe():
    from utils.course_data import SPLITS, generate_split, load_split
    from utils.preference_data import course_kto_rows, course_pairs
    from utils.raw_formats import load_broken, load_broken_problems, load_samples

    questions = {}
    for split in SPLITS:
        shipped = load_split(split)
        assert shipped, f"utils/data/course_{split}.jsonl is empty"
        assert shipped == generate_split(split), f"utils/data/course_{split}.jsonl differs from utils.course_data's facts"
        questions[split] = {ex.question for ex in shipped}
    assert not questions["train"] & (questions["validation"] | questions["test"]), "a held-out question is in the training split"
    assert course_pairs("train") and course_pairs("test") and course_kto_rows("train")
    assert all(load_samples().values()) and load_broken()
    assert set(load_broken_problems()) <= set(range(len(load_broken())))


@pytest.mark.parametrize("path", LABS, ids=[p.stem for p in LABS])
def test_each_lab_is_an_intact_student_release(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded, f"{path.name}: no graded cell (nbgrader metadata missing?)"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate grade ids"
    assert sum(c.metadata["nbgrader"].get("points", 0) for c in graded) > 0, f"{path.name}: no points"
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        where = f"{path.name}, cell {meta.get('grade_id') or cell.get('id')}"
        if meta:
            assert meta.get("schema_version") == 3 and "grade_id" in meta, f"{where}: incomplete nbgrader metadata {meta}"
        if meta.get("solution"):
            assert any(stub in cell.source for stub in STUBS), f"{where}: a solution cell without its stub"
        for marker in MARKERS:
            assert marker not in cell.source, f"{where}: holds {marker!r}"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{where}: has outputs (the release has none)"


def test_there_are_no_solutions_here():
    assert LABS, "labs/ holds no notebook"
    assert not (ROOT / "solutions").exists(), "a student edition must not hold solutions/"
    skipped = {".venv", ".venv-gguf", "runs", "outputs"}
    found = [p for p in ROOT.rglob("*solution*") if not skipped & set(p.relative_to(ROOT).parts)]
    assert not found, f"files named like solutions: {found}"


def self_check(lab: str, notebook: Path) -> tuple[int, str]:
    """Run the edition's self-check as `make self-check` does; (exit status, output)."""
    run = subprocess.run([sys.executable, "-m", "tools.self_check", lab, str(notebook)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    return run.returncode, run.stdout + run.stderr


def total_score(output: str) -> tuple[float, float]:
    """The headline of the self-check's table, `lab-...: SCORE / MAX autograded points`."""
    match = re.search(r"^lab-[\w.-]+: (\d+(?:\.\d+)?) / (\d+(?:\.\d+)?) autograded", output, re.M)
    assert match, f"no 'lab-...: score / max autograded' headline in the self-check's output:\n{output}"
    return float(match.group(1)), float(match.group(2))


@pytest.mark.slow
def test_self_check_of_an_untouched_lab_reports_failing_visible_tests(tmp_path):
    untouched = next(p for p in LABS if p.name.startswith("lab-3.1.6-"))
    notebook = tmp_path / untouched.name
    shutil.copy(untouched, notebook)
    status, output = self_check("3.1.6", notebook)
    assert status == 1, f"exit status {status}, expected 1 (visible tests failed):\n{output}"
    score, top = total_score(output)
    assert score == 0 and top > 0, f"an untouched lab scored {score} / {top}:\n{output}"
    assert "FAILED" in output, f"no cell is reported as failed:\n{output}"
    assert "not your grade" in output.lower() or "not the grade" in output.lower(), f"the output never says this is not the grade:\n{output}"
    assert json.loads(notebook.read_text()) == json.loads(untouched.read_text()), "the self-check changed the student's notebook"
