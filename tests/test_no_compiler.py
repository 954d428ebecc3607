"""Set-up, quickstart, the fast tests and a self-check need no C++ compiler; only Lab 3.1.10's deploy-setup does.

`make test` (CI, a clean clone) runs its first phase through tools/without_compiler.py: these tests check that
the wrapper really leaves no compiler reachable, and that the phase holds the steps the course promises.
"""

import re
import subprocess
import sys

from tools.paths import REPO

WRAPPER = [sys.executable, str(REPO / "tools" / "without_compiler.py"), "--"]


def test_the_wrapper_leaves_no_compiler_reachable():
    probe = "for c in cc c++ gcc g++ cpp clang cmake ninja x86_64-linux-gnu-gcc; do command -v $c; done; echo CC=$CC CXX=$CXX"
    done = subprocess.run([*WRAPPER, "sh", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "CC=/bin/false CXX=/bin/false", done.stdout
    # while python, make and git stay reachable
    done = subprocess.run([*WRAPPER, "sh", "-c", "for c in make python3 git; do command -v $c; done"], capture_output=True, text=True)
    assert len(done.stdout.split()) == 3, done.stdout


def test_a_build_fails_under_the_wrapper():
    """What it shows is real: compiling a C file fails there (and works outside, where a compiler exists)."""
    code = "import sysconfig, subprocess, sys; sys.exit(subprocess.call(['sh', '-c', 'echo \"int main(){return 0;}\" | ${CC:-cc} -x c - -o /dev/null']))"
    assert subprocess.run([*WRAPPER, sys.executable, "-c", code], capture_output=True).returncode != 0


def test_make_test_runs_setup_quickstart_fast_tests_and_a_self_check_without_a_compiler():
    recipe = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()
    wrapped = [line for line in recipe if "tools/without_compiler.py --" in line]
    steps = {"setup": r"make.* setup prepare-model", "quickstart": r"tools\.quickstart", "fast tests": r'pytest -m "not slow and not deploy"',
             "self-check": r"tools\.self_check 3\.1\.1"}
    for name, pattern in steps.items():
        assert any(re.search(pattern, line) for line in wrapped), f"`make test` runs no {name} without a compiler:\n" + "\n".join(recipe)
    deploy = next(i for i, line in enumerate(recipe) if "deploy-setup" in line)
    assert all(recipe.index(line) < deploy for line in wrapped), "deploy-setup (the C++ build) must come after the compiler-free phase"
