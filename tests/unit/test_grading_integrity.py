"""tools.grading.integrity: what a submission changed that grading relies on is flagged for review."""

import json

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools.grading.integrity import review_flags
from tools.paths import LABS, SOLUTIONS

LAB = "lab-3.1.7-dpo-training"


def meta(**kw):
    return {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **kw}}


RELEASE = new_notebook(cells=[
    new_code_cell("import utils.shortcut_guard\nfrom utils.shortcut_guard import out_of_reach\ndef agree(a, b):\n    return abs(a - b) < 1e-6",
                  metadata=meta(grade_id="helpers", locked=True)),
    new_code_cell("def loss(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", metadata=meta(grade_id="loss", solution=True)),
    new_code_cell("numbers = [loss(1), loss(2)]"),
    new_code_cell("with out_of_reach('trl'):\n    assert agree(loss(1), 1.0)\nassert numbers", metadata=meta(grade_id="test_loss", grade=True, locked=True, points=2)),
    new_markdown_cell("The end."),
])
SOURCE = new_notebook(cells=[RELEASE.cells[0],
                             new_code_cell("def loss(x):\n    ### BEGIN SOLUTION\n    y = float(x)\n    return y\n    ### END SOLUTION",
                                           metadata=meta(grade_id="loss", solution=True)), *RELEASE.cells[2:]])


def with_cells(*cells, solution="def loss(x):\n    y = float(x)\n    return y"):
    nb = json.loads(json.dumps(RELEASE))
    nb["cells"][1]["source"] = solution
    for index, code in cells:
        nb["cells"].insert(index, new_code_cell(code))
    return nb


def test_an_honest_solution_is_not_flagged():
    assert review_flags(with_cells(), RELEASE, SOURCE) == []
    # a helper of the student's own, and names the exercise itself defines (y in the solution), are fine
    assert review_flags(with_cells((2, "def my_helper():\n    return 3\ny = 2")), RELEASE, SOURCE) == []
    # re-running a release cell unchanged is not an added cell
    assert review_flags(with_cells((3, "numbers = [loss(1), loss(2)]")), RELEASE, SOURCE) == []


def test_an_added_cell_that_redefines_a_checker_is_flagged():
    flags = review_flags(with_cells((3, "def agree(a, b):\n    return True")), RELEASE, SOURCE)
    assert flags == ["cell #3 (added) redefines agree, which graded cells use"]
    # also when the solution cell does it
    flags = review_flags(with_cells(solution="def loss(x):\n    return 1.0\ndef agree(a, b):\n    return True"), RELEASE, SOURCE)
    assert flags == ["loss redefines agree, which graded cells use"]
    # and a rebinding of the imported guard
    flags = review_flags(with_cells((3, "import contextlib\nout_of_reach = lambda *a: contextlib.nullcontext()")), RELEASE, SOURCE)
    assert flags and "redefines out_of_reach" in flags[0]


def test_patching_course_modules_builtins_or_sys_is_flagged():
    cases = {
        "import utils.shortcut_guard\nutils.shortcut_guard.out_of_reach = None": "utils.shortcut_guard.out_of_reach",
        "from utils import grading as g\ng.out_of_reach = None": "g.out_of_reach",
        "import builtins\nbuiltins.abs = lambda x: 0": "builtins.abs",
        "import sys\nsys.modules['trl'] = None": "sys.modules['trl']",
        "import utils.shortcut_guard as g\nsetattr(g, 'out_of_reach', None)": "setattr(g, ...)",
    }
    for code, target in cases.items():
        flags = review_flags(with_cells((3, code)), RELEASE, SOURCE)
        assert flags == [f"cell #3 (added) assigns to {target}"], (code, flags)
    # a student's own module attribute is not the course's
    assert review_flags(with_cells((3, "import types\nm = types.SimpleNamespace()\nm.x = 1")), RELEASE, SOURCE) == []


def test_the_real_labs_solutions_are_not_flagged():
    for path in sorted(SOLUTIONS.glob("lab-*.ipynb")):
        solution = json.loads(path.read_text())
        release = json.loads((LABS / path.name).read_text())
        assert review_flags(solution, release, solution) == [], path.name
