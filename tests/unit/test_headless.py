"""tools.headless without a kernel: the kernel's environment is a copy (this process's is never changed), and the
cell timeouts are defined once and used by every command that executes notebooks. A real kernel: tests/test_headless_kernel.py."""

import os
import sys
from pathlib import Path

import tools.nbgrader_root as nbgrader_root
import tools.run_lab as run_lab
import tools.spark_dry_run as spark_dry_run
from tools import headless
from tools.grading.sandbox import Limits


def test_kernel_environment_is_a_copy_with_the_values_and_this_venv_first(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.delenv("COURSE_X", raising=False)
    before = dict(os.environ)
    env = headless.kernel_environment({"COURSE_X": "1"})
    assert env["COURSE_X"] == "1" and env["PATH"] == os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin"])
    assert dict(os.environ) == before, "the kernel's values leaked into this process"
    base = {"PATH": "/bin", "KEEP": "k", "COURSE_X": "old"}
    assert headless.kernel_environment({"COURSE_X": "new"}, base) == {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/bin"]), "KEEP": "k", "COURSE_X": "new"}
    assert base["COURSE_X"] == "old" and base["PATH"] == "/bin", "the base is copied, not changed"


def test_each_command_takes_its_cell_timeout_from_here(monkeypatch):
    assert headless.GRADING_CELL_TIMEOUT < headless.DRY_RUN_CELL_TIMEOUT < headless.LAB_CELL_TIMEOUT
    assert Limits().cell_timeout == nbgrader_root.DEFAULT_CELL_TIMEOUT == headless.GRADING_CELL_TIMEOUT
    assert spark_dry_run.run_lab.__defaults__ == (headless.DRY_RUN_CELL_TIMEOUT,)
    seen = []
    monkeypatch.setattr(run_lab, "run_with_report", lambda notebook, name, output, report, timeout: seen.append(timeout) or (1.0, {
        "status": "ok", "figures": {}}))
    assert run_lab.main(["3.1.6", "--profile", "grade"]) == 0
    assert seen == [headless.LAB_CELL_TIMEOUT]


def test_the_dry_run_hands_its_settings_to_the_kernel_only(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(headless, "execute", lambda notebook, output, env, cwd, cell_timeout: calls.append(
        (notebook.name, output, dict(env), cwd, cell_timeout)) or 1.0)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    assert spark_dry_run.run_lab("3.1.1", tmp_path / "cache", tmp_path / "out") == 1.0
    (name, output, env, cwd, timeout), = calls
    assert output == tmp_path / "out" / name and cwd == tmp_path / "out" and timeout == headless.DRY_RUN_CELL_TIMEOUT
    assert env["COURSE_PROFILE"] == "spark" and env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_CACHE"] == str(tmp_path / "cache")
    assert dict(os.environ) == before
