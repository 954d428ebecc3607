"""Execute a notebook headless in a kernel whose environment is given: the one runner behind `tools.run_lab` and
`tools.spark_dry_run`, and the cell timeouts of every command that executes notebooks.

The environment is the kernel's own: what a command hands it (a profile, a hub cache, a figures file) reaches
the kernel and every process it starts, and never this process's `os.environ`, so nothing lingers after a run
(or leaks into the next lab of the same command). This interpreter's bin folder goes first on the kernel's
PATH (`tools.paths.venv_on_path`): nbclient starts the kernel it finds there.

Cell timeouts, seconds one cell may run before it is interrupted; they differ because the uses do:
- LAB_CELL_TIMEOUT (1 h, tools.run_lab): a full lab under the cpu or spark profile, where one training or
  evaluation cell legitimately takes many minutes; only a hung cell should hit it.
- DRY_RUN_CELL_TIMEOUT (10 min, tools.spark_dry_run): the spark code path on a toy model with CPU-sized steps;
  every cell is small, so a cell past 10 minutes is a hang, found sooner than in an hour.
- GRADING_CELL_TIMEOUT (5 min, the class grader's `Limits` and nbgrader's course root): students' notebooks
  under the grade profile, where every cell is far below it; a runaway cell costs one submission five
  minutes of a shared machine, not an hour.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from tools.paths import venv_on_path

LAB_CELL_TIMEOUT = 3600
DRY_RUN_CELL_TIMEOUT = 600
GRADING_CELL_TIMEOUT = 300


def kernel_environment(values: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default: this process's environment) with `values` set and this venv's bin first on PATH."""
    env = dict(os.environ if base is None else base)
    env.update(values)
    return dict(venv_on_path(env))


def execute(notebook: Path, output: Path, env: Mapping[str, str], cwd: Path, cell_timeout: int) -> float:
    """Run every cell of `notebook` in a kernel started with exactly `env`, in the folder `cwd`; return the seconds.

    The executed copy, with its outputs, is written to `output`, also when a cell fails (the error is raised
    after it is written). The notebook itself is only read."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(env=dict(env))
    finally:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
    return time.perf_counter() - started
