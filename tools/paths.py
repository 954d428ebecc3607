"""Where things are in a checkout of the course: the one place repository paths are computed.

A student edition (tools.student_edition) has the same layout without `solutions/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"  # the nbgrader source (instructor repository only)
LABS = REPO / "labs"  # the student release, generated from solutions/
RUNS = REPO / "runs"  # executed copies and run reports (git-ignored)
COURSE_ID = "module-3.1"


def venv_on_path() -> None:
    """nbgrader and nbclient start `alembic` and Jupyter kernels as subprocesses found on PATH: use this interpreter's."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
