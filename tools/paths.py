"""The tools' view of a checkout: the repository's folders (computed once, in utils.course_paths), the nbgrader
course id, and this interpreter's bin folder on a PATH (the one place that is done).

A student edition (tools.student_edition) has the same layout without `solutions/`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from utils.course_paths import CONFIGS, DATA, LABS, REPO, RESULTS, RUNS, SOLUTIONS

__all__ = ["CONFIGS", "COURSE_ID", "DATA", "LABS", "REPO", "RESULTS", "RUNS", "SOLUTIONS", "venv_on_path"]

COURSE_ID = "module-3.1"


def venv_on_path(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Put this interpreter's bin folder first on `env`'s PATH (default: this process's environment), once; return `env`.

    nbgrader and nbclient start `alembic` and Jupyter kernels as subprocesses found on PATH: they must be this
    venv's, also when the command was started as `.venv/bin/python -m ...` without activating the venv. A kernel's
    own environment (tools.headless) gets it in its copy; the grading engine and the test suite in their process's.
    """
    env = os.environ if env is None else env
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "") if env.get("PATH") else bin_dir
    return env
