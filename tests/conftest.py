import os
import sys
from pathlib import Path

import pytest

# nbgrader and nbclient start `alembic` and Jupyter kernels from PATH: use this interpreter's.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

import matplotlib

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _no_plot_windows(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    yield
    plt.close("all")
