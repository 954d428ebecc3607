"""Autograde every lab through nbgrader's Python API, exactly as an instructor would.

For each lab, in one temporary course: the solution notebook must get full marks, and the
untouched student notebook must score zero on every autograded test cell. Executing the
notebooks here is also the check that every lab runs end to end under the grade profile.
"""

import tempfile
import time
from pathlib import Path

import pytest

from tools.nbgrader_course import LABS, SOLUTIONS, TempCourse, lab_names

# The goal is 60 s per lab under the grade profile (`make grade-budget` measures it). This bound only catches a lab
# that runs far beyond it, e.g. at the cpu profile's sizes (10x and more): the same code ran 2.5-4x slower on a
# 2-core AVX2-only EPYC than on the AVX512 EPYC the 60 s goal was measured on (module-3.1/README.md, Run times).
GRADE_PROFILE_BUDGET_S = 300


@pytest.mark.slow
@pytest.mark.parametrize("lab", lab_names())
def test_solution_full_marks_and_untouched_lab_zero(lab):
    with tempfile.TemporaryDirectory() as tmp:
        course = TempCourse(Path(tmp), lab, cell_timeout=300)
        course.generate()
        started = time.perf_counter()
        solution = course.autograde(SOLUTIONS / f"{lab}.ipynb", student="solution")
        seconds = time.perf_counter() - started
        untouched = course.autograde(LABS / f"{lab}.ipynb", student="untouched")
    print(solution.table(), untouched.table(), f"solution autograde took {seconds:.0f} s", sep="\n")
    assert solution.max_score > 0
    assert solution.score == solution.max_score, f"solution lost points:\n{solution.table()}\n{solution.log}"
    assert untouched.cells and all(c.score == 0 for c in untouched.cells), f"an untouched lab earned points:\n{untouched.table()}"
    assert untouched.max_score == solution.max_score
    assert seconds < GRADE_PROFILE_BUDGET_S, f"{lab} took {seconds:.0f} s to autograde under the grade profile"
