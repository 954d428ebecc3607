"""tools.paths: the repository's folders, and this interpreter's bin on PATH once (for nbgrader's subprocesses)."""

import os
import sys
from pathlib import Path

import tools.paths as paths


def test_the_named_folders_are_this_checkouts():
    assert (paths.REPO / "pyproject.toml").is_file() and (paths.REPO / "utils").is_dir()
    assert paths.SOLUTIONS == paths.REPO / "solutions" and paths.LABS == paths.REPO / "labs" and paths.RUNS == paths.REPO / "runs"
    assert any(paths.SOLUTIONS.glob("lab-3.1.1-*.ipynb")) and any(paths.LABS.glob("lab-3.1.1-*.ipynb"))


def test_venv_on_path_puts_this_interpreters_bin_first_once(monkeypatch):
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    paths.venv_on_path()
    paths.venv_on_path()
    assert os.environ["PATH"].split(os.pathsep) == [bin_dir, "/usr/bin", "/bin"]


def test_venv_on_path_leaves_a_path_that_has_it_alone(monkeypatch):
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", bin_dir]))
    paths.venv_on_path()
    assert os.environ["PATH"] == os.pathsep.join(["/usr/bin", bin_dir])
