"""A throw-away nbgrader course built around one lab: generate, autograde, read the scores.

The repository keeps `solutions/lab-*.ipynb` (the nbgrader source) and `labs/lab-*.ipynb`
(the student release) side by side. nbgrader wants its own layout, so every operation here
builds a temporary course root (source/<lab>/<lab>.ipynb, a fresh gradebook) and drives it
through nbgrader's Python API. The CLI is not used: `nbgrader validate` exits 0 even when
tests fail, and only the API reports success and scores reliably.

Nothing here touches an instructor's own gradebook: each call gets its own course root.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO_ROOT / "solutions"
LABS = REPO_ROOT / "labs"
COURSE_ID = "module-3.1"
STUDENT = "student"
DEFAULT_CELL_TIMEOUT = 600  # seconds per cell; the grade profile keeps real cells far below it


def lab_names(solutions: Path | None = None) -> list[str]:
    """Every lab that has a solution notebook, e.g. 'lab-3.1.1-lora-theory' (in `solutions`, default the course's)."""
    return sorted(p.stem for p in (solutions or SOLUTIONS).glob("lab-*.ipynb"))


def resolve_lab(name_or_number: str, solutions: Path | None = None) -> str:
    """Accept '3.1.1', 'lab-3.1.1' or the full stem; return the full stem."""
    names = lab_names(solutions)
    if name_or_number in names:
        return name_or_number
    wanted = name_or_number if name_or_number.startswith("lab-") else f"lab-{name_or_number}"
    matches = [n for n in names if n.startswith(wanted + "-")]
    if len(matches) != 1:
        raise ValueError(f"no single lab matches {name_or_number!r}; labs are: {', '.join(names)}")
    return matches[0]


def _ensure_venv_on_path() -> None:
    """nbgrader starts `alembic` and the Jupyter kernel as subprocesses found on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@dataclass
class CellScore:
    grade_id: str
    score: float
    max_score: float


@dataclass
class GradeReport:
    lab: str
    score: float
    max_score: float
    cells: list[CellScore] = field(default_factory=list)
    log: str = ""

    def by_id(self) -> dict[str, CellScore]:
        return {c.grade_id: c for c in self.cells}

    def table(self) -> str:
        lines = [f"{self.lab}: {self.score:g} / {self.max_score:g}"]
        lines += [f"  {c.grade_id:<32} {c.score:g} / {c.max_score:g}" for c in self.cells]
        return "\n".join(lines)


class TempCourse:
    """One nbgrader course root holding one lab, created in `root`."""

    def __init__(self, root: Path, lab: str, cell_timeout: int = DEFAULT_CELL_TIMEOUT):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        _ensure_venv_on_path()
        self.root = Path(root)
        self.lab = lab
        source = self.root / "source" / lab
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy(SOLUTIONS / f"{lab}.ipynb", source / f"{lab}.ipynb")
        config = Config()
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.course_id = COURSE_ID
        config.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        config.Execute.timeout = cell_timeout
        config.NbGraderAPI.log_level = "WARN"
        self.api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        self.db_url = config.CourseDirectory.db_url

    def generate(self) -> Path:
        """Run generate_assignment; return the release notebook (the student version)."""
        result = self.api.generate_assignment(self.lab)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment failed for {self.lab}:\n{result.get('error')}\n{result.get('log')}")
        return self.root / "release" / self.lab / f"{self.lab}.ipynb"

    def autograde(self, notebook: Path, student: str = STUDENT) -> GradeReport:
        """Submit `notebook` as `student`'s work, autograde it, and read the gradebook."""
        from nbgrader.api import Gradebook

        if not (self.root / "release" / self.lab).exists():
            self.generate()
        submitted = self.root / "submitted" / student / self.lab
        if submitted.exists():
            shutil.rmtree(submitted)
        submitted.mkdir(parents=True)
        shutil.copy(notebook, submitted / f"{self.lab}.ipynb")
        result = self.api.autograde(self.lab, student)
        if not result["success"]:
            raise RuntimeError(f"autograde failed for {self.lab}:\n{result.get('error')}\n{result.get('log')}")
        with Gradebook(self.db_url) as gradebook:
            nb = gradebook.find_submission_notebook(self.lab, self.lab, student)
            cells = [
                CellScore(g.name, float(g.score), float(g.max_score))
                for g in sorted(nb.grades, key=lambda g: g.name)
                if g.cell_type == "code"
            ]
            return GradeReport(self.lab, float(nb.score), float(nb.max_score), cells, result.get("log", ""))
