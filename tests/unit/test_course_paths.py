"""utils.course_paths: the folders of this checkout, found from the package's own file (not the working directory),
and the same objects everywhere they are used."""

import subprocess
import sys

import tools.paths
from utils import course_paths as cp


def test_the_folders_are_this_checkouts():
    assert (cp.REPO / "pyproject.toml").is_file() and cp.UTILS == cp.REPO / "utils"
    assert any(cp.SOLUTIONS.glob("lab-3.1.1-*.ipynb")) and any(cp.LABS.glob("lab-3.1.1-*.ipynb"))
    assert cp.RUNS == cp.REPO / "runs"
    assert (cp.DATA / "course_train.jsonl").is_file() and (cp.CONFIGS / "Llama-3.1-8B-Instruct.json").is_file()


def test_found_from_the_package_not_the_working_directory(tmp_path):
    code = "from utils.course_paths import REPO; print(REPO)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(cp.REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == str(cp.REPO)


def test_the_tools_use_the_same_paths():
    for name in ("REPO", "SOLUTIONS", "LABS", "RUNS", "DATA", "CONFIGS"):
        assert getattr(tools.paths, name) is getattr(cp, name), name
