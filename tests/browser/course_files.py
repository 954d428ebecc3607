"""Notebooks a student would have: a copy of labs/, and labs filled in from the solutions (without hidden tests)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat

from tools.notebook_cells import nbgrader_meta
from tools.paths import LABS, SOLUTIONS

MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def solved(lab: str, leave_out: tuple[str, ...] = (), answer: str = "") -> nbformat.NotebookNode:
    """The student release of `lab` with every exercise filled in from the solution (hidden tests not copied),
    except the cells named in `leave_out`; written answers get `answer` when given."""
    release = nbformat.read(LABS / f"{lab}.ipynb", as_version=4)
    solution = {nbgrader_meta(c).get("grade_id"): c.source for c in nbformat.read(SOLUTIONS / f"{lab}.ipynb", as_version=4).cells}
    for cell in release.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("solution") or meta["grade_id"] in leave_out:
            continue
        if cell.cell_type == "code":
            cell.source = MARKERS.sub("", solution[meta["grade_id"]])
        elif answer:
            cell.source = answer
    return release


def solution_code(lab: str, grade_id: str) -> str:
    """One exercise's answer as a student would type it: the solution cell without nbgrader's markers."""
    for cell in nbformat.read(SOLUTIONS / f"{lab}.ipynb", as_version=4).cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            return MARKERS.sub("", cell.source)
    raise KeyError(f"solutions/{lab}.ipynb has no cell {grade_id!r}")


def copy_labs(dest: Path) -> Path:
    """labs/ as a student's clone has it (the tests type into notebooks: never into the repository's own files)."""
    shutil.copytree(LABS, dest / "labs")
    return dest
