"""The documents agree with the code: README's test command is CI's, the roadmap's points are the labs'."""

import re

import pytest

from tools.grading.course import Course
from tools.notebook_cells import load, nbgrader_meta
from tools.paths import REPO, SOLUTIONS

lab_names = Course().lab_names

ROADMAP = (REPO / "module-3.1" / "README.md").read_text()


def roadmap_row(lab: str) -> list[str]:
    for line in ROADMAP.splitlines():
        if line.startswith("|") and f"`{lab}.ipynb`" in line:
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"{lab} has no row in module-3.1/README.md")


@pytest.mark.parametrize("lab", lab_names())
def test_roadmap_lists_each_lab_with_its_points(lab):
    graded = [c for c in load(SOLUTIONS / f"{lab}.ipynb")["cells"] if nbgrader_meta(c).get("grade")]
    auto = sum(nbgrader_meta(c)["points"] for c in graded if c["cell_type"] == "code" and not nbgrader_meta(c).get("solution"))
    written = sum(nbgrader_meta(c)["points"] for c in graded) - auto
    row = roadmap_row(lab)
    assert row[4] == f"{auto:g} + {written:g}", f"module-3.1/README.md gives {lab} {row[4]!r} points; its test cells add up to {auto:g}, its written answers to {written:g}"
    assert "available" in row[5], f"{lab} exists but the roadmap says {row[5]!r}"


def test_roadmap_marks_missing_labs_as_planned():
    present = set(lab_names())
    for lab in re.findall(r"`(lab-3\.1\.\d+-[a-z0-9-]+)\.ipynb`", ROADMAP):
        if lab not in present:
            assert roadmap_row(lab)[5] == "planned", f"{lab} has no notebook but is not marked planned"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test " in readme or "make test\n" in readme
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M)
