"""The edition's own tests run from its folder with its .venv: put that venv's commands first on PATH,
because nbgrader starts `alembic` and Jupyter kernels as subprocesses found there."""

import os
import sys
from pathlib import Path

_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("MPLBACKEND", "Agg")
