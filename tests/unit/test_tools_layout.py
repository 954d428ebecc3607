"""The grading code stays split by job: no module in tools/ grows past about 400 lines, and which course is
graded is a value passed along (tools.grading.course.Course), never module state rebound at run time."""

import ast

import pytest

from tools.paths import REPO

MAX_LINES = 420  # "about 400"

MODULES = sorted((REPO / "tools").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_over_about_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by job"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_global_state_rebound(path):
    tree = ast.parse(path.read_text())
    found = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Global)]
    assert not found, f"{path.relative_to(REPO)} rebinds module state with `global` at lines {found}"


def test_the_grading_commands_are_thin():
    for name in ("grade_class.py", "self_check.py"):
        lines = len((REPO / "tools" / name).read_text().splitlines())
        assert lines < 200, f"tools/{name} has {lines} lines: the work belongs in tools/grading/"
