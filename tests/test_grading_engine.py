"""The one grading engine (tools.grading.engine) and its command (tools.self_check): what a grader error is,
what the result says, and that the README's commands work as written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import grade_class as gc
from tools.grading.course import Course
from tools.grading.engine import GradeResult, CellResult, grade_notebook, preflight
from tools.grading.plan import Rules
from tools.paths import LABS, REPO

LAB10 = "lab-3.1.10-ollama-integration"
LAB6 = "lab-3.1.6-dataset-preparation"


def test_a_worker_without_the_deploy_tools_reports_a_grader_error_not_a_score(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_GGUF_VENV", str(tmp_path / "no-such-venv"))  # a worker set up with `make prepare-model` only
    assert "GGUF converter" in preflight(LAB10)
    result = grade_notebook(Course(), LAB10, (LABS / f"{LAB10}.ipynb").read_bytes())
    assert result.status == "grader-error"
    assert "make deploy-setup" in result.reason and result.score == 0 and result.autograded is None
    # through the class grader: the row says grader-error, the summary lists it first, the run exits 1, a re-run retries it
    subs, out = tmp_path / "subs", tmp_path / "out"
    (subs / "alice" / LAB10).mkdir(parents=True)
    shutil.copy(LABS / f"{LAB10}.ipynb", subs / "alice" / LAB10 / f"{LAB10}.ipynb")
    results = gc.grade_class(subs, out, workers=1, quiet=True)
    (row,) = results.values()
    assert row["status"] == "grader-error" and row["sha"].startswith("retry-")
    summary = (out / "summary.md").read_text()
    assert summary.index("Grader errors") < summary.index("## Scores")
    assert "alice" in summary.split("## Scores")[0]
    assert gc.main([str(subs), "--out", str(out), "--quiet"]) == 1


def test_preflight_passes_where_the_tools_are():
    assert preflight(LAB6) == ""


def test_result_scores_autograded_cells_and_waits_for_written_answers():
    r = GradeResult("lab", "s", "ok", [CellResult("test_a", 2, 3, error="AssertionError: off by one"), CellResult("test_b", 1, 1),
                                        CellResult("reflection", 0, 2, manual=True, needs_manual_grade=True)])
    assert (r.score, r.auto_max, r.manual_max, r.max_score) == (3, 4, 2, 6)
    assert r.scores() == {"test_a": 2, "test_b": 1, "reflection": None}
    table = r.table()
    assert "FAILED  AssertionError: off by one" in table and "graded by hand" in table
    assert GradeResult.from_dict(json.loads(json.dumps(r.to_dict()))).scores() == r.scores()
    r.penalty = 10  # nbgrader's "zero" late penalty takes every autograded point, never below zero
    assert r.score == 0


def _repo_copy(dest: Path) -> Path:
    """The tracked and untracked-but-not-ignored files as they are now, mtimes kept (make must not re-run setup)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_readme_grade_class_command_works_as_written(tmp_path):
    """`make grade-class SUBMISSIONS=dir` with the default OUT=grading (a relative path), on a fresh copy of the course."""
    repo = _repo_copy(tmp_path / "course")
    subs = tmp_path / "subs"
    (subs / "frank" / LAB6).mkdir(parents=True)  # no notebook: graded without a kernel, through every output step
    (subs / "empty_lab6.ipynb").write_text("")
    venv, gguf = Path(sys.executable).parent.parent, REPO / ".venv-gguf"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    # The copy uses this checkout's venvs, taken as set up (-o): an install from the copy would point them at it.
    keep = [f"-o{venv}/.setup-done", f"-o{venv}/.deploy-done", f"-o{gguf}/.setup-done"]
    done = subprocess.run(["make", *keep, "grade-class", f"SUBMISSIONS={subs}", f"VENV={venv}", f"GGUF_VENV={gguf}"],
                          cwd=repo, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "pip install" not in done.stdout
    rows = (repo / "grading" / "grades.csv").read_text().splitlines()
    assert len(rows) == 3 and (repo / "grading" / "course" / "gradebook.db").is_file()
    # and the module command, as README writes it
    done = subprocess.run([sys.executable, "-m", "tools.grade_class", str(subs), "--out", "grading2", "--quiet"], cwd=repo,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (repo / "grading2" / "grades.csv").read_text() == (repo / "grading" / "grades.csv").read_text()
