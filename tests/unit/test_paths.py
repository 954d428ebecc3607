"""tools.paths: the repository's folders, and this interpreter's bin on PATH once (for nbgrader's subprocesses and kernels)."""

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


def test_venv_on_path_of_a_copy_leaves_this_process_alone(monkeypatch):
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", "/usr/bin")
    env = {"PATH": "/bin", "OTHER": "x"}
    assert paths.venv_on_path(env) is env and env == {"PATH": os.pathsep.join([bin_dir, "/bin"]), "OTHER": "x"}
    assert os.environ["PATH"] == "/usr/bin"
    assert paths.venv_on_path({}) == {"PATH": bin_dir}  # no PATH at all: not bin_dir + ':' (an empty entry is the cwd)
