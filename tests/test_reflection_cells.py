"""Written reflection answers, graded by hand in nbgrader's formgrader (issue 24).

Every lab ends with one or two reflection questions, each followed by a manually graded markdown answer cell
(nbgrader: grade and solution, unlocked, points > 0). In the solution the cell holds a model answer and a rubric
whose points add up to the cell's; in the student release nbgrader's ClearSolutions replaces the whole cell with its
text stub, so neither the rubric nor the model answer reaches students. Fast: no kernel, no course directory.
"""

import re

import pytest
from nbgrader.preprocessors import ClearSolutions
from nbformat import from_dict

from tools.notebook_cells import LABS, SOLUTIONS, load, nbgrader_meta

LAB_NAMES = sorted(p.stem for p in SOLUTIONS.glob("lab-*.ipynb"))
RUBRIC_HEADER = re.compile(r"^\*\*Rubric\*\* \((\d+) points?\):$", re.M)
RUBRIC_ITEM = re.compile(r"^- (\d+) points? for \S", re.M)
MODEL_ANSWER = "**Model answer.**"
SECTION_HEADER = re.compile(r"^### Graded reflection \((\d+) points?\)$", re.M)
STUB = ClearSolutions().text_stub  # what nbgrader writes in place of a written solution ("YOUR ANSWER HERE")


def text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def is_manual_answer(cell: dict) -> bool:
    meta = nbgrader_meta(cell)
    return cell["cell_type"] == "markdown" and bool(meta.get("grade")) and bool(meta.get("solution"))


def manual_cells(cells: list[dict]) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(cells) if is_manual_answer(c)]


def rubric_points(source: str, where: str) -> tuple[int, list[int]]:
    """(points the rubric header states, points of each rubric item); fails naming `where` if malformed."""
    headers = RUBRIC_HEADER.findall(source)
    assert len(headers) == 1, f"{where}: needs exactly one line '**Rubric** (N points):', found {len(headers)}"
    items = [int(p) for p in RUBRIC_ITEM.findall(source.split("**Rubric**", 1)[1])]
    assert items, f"{where}: the rubric lists no '- N point(s) for ...' items"
    return int(headers[0]), items


def test_every_lab_has_a_solution():
    assert len(LAB_NAMES) == 10, LAB_NAMES


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_solution_ends_with_manually_graded_reflections(lab):
    cells = load(SOLUTIONS / f"{lab}.ipynb")["cells"]
    answers = manual_cells(cells)
    assert answers, f"solutions/{lab}.ipynb has no manually graded markdown answer cell (nbgrader grade + solution)"
    for i, cell in answers:
        meta = nbgrader_meta(cell)
        where = f"solutions/{lab}.ipynb, cell {cell.get('id')!r} ({meta.get('grade_id')})"
        assert meta["grade_id"].startswith("reflection_"), f"{where}: grade_id should start with 'reflection_'"
        assert not meta.get("locked") and not meta.get("task"), f"{where}: an answer cell must be unlocked and not a task"
        assert meta.get("points", 0) > 0, f"{where}: a graded answer must be worth points"
        source = text(cell)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "MARK SCHEME", "HIDDEN TESTS"):
            assert marker not in source, f"{where}: {marker!r} would make nbgrader keep part of the cell for students"
        assert source.lstrip().startswith(MODEL_ANSWER), f"{where}: must open with {MODEL_ANSWER!r}"
        model_answer = source.split(MODEL_ANSWER, 1)[1].split("**Rubric**", 1)[0]
        assert len(model_answer.split()) >= 40, f"{where}: the model answer has {len(model_answer.split())} words, too short to grade against"
        stated, items = rubric_points(source, where)
        assert stated == meta["points"], f"{where}: the rubric says {stated} points, the cell is worth {meta['points']}"
        assert sum(items) == stated, f"{where}: rubric items add up to {sum(items)} points, not {stated}"
        question = cells[i - 1]
        assert question["cell_type"] == "markdown" and not nbgrader_meta(question), \
            f"{where}: the cell before an answer must be the (ungraded) question"
        assert f"({meta['points']} points)" in text(question), f"{where}: the question above does not state its {meta['points']} points"
    last = answers[-1][0]
    assert all(c["cell_type"] == "markdown" and not nbgrader_meta(c) for c in cells[last + 1:]), \
        f"solutions/{lab}.ipynb: only plain markdown (a pointer to the next lab) may follow the reflection answers"
    totals = [int(t) for c in cells if c["cell_type"] == "markdown" for t in SECTION_HEADER.findall(text(c))]
    assert totals == [sum(nbgrader_meta(c)["points"] for _, c in answers)], \
        f"solutions/{lab}.ipynb: the '### Graded reflection (N points)' heading must state the answers' total once, found {totals}"


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_nbgrader_replaces_the_whole_answer_cell(lab):
    """nbgrader's own ClearSolutions, applied to each answer cell, leaves exactly its stub: no rubric, no model answer."""
    clear = ClearSolutions()
    resources = {"language": "python"}
    for _, cell in manual_cells(load(SOLUTIONS / f"{lab}.ipynb")["cells"]):
        cleared, _ = clear.preprocess_cell(from_dict({**cell, "source": text(cell)}), resources, 0)
        assert cleared.source == STUB, f"solutions/{lab}.ipynb {nbgrader_meta(cell)['grade_id']}: ClearSolutions left {cleared.source[:80]!r}"


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_student_lab_has_the_answer_cells_without_the_answers(lab):
    solution_cells = manual_cells(load(SOLUTIONS / f"{lab}.ipynb")["cells"])
    release = load(LABS / f"{lab}.ipynb")
    released = {nbgrader_meta(c)["grade_id"]: c for _, c in manual_cells(release["cells"])}
    expected = {nbgrader_meta(c)["grade_id"]: nbgrader_meta(c)["points"] for _, c in solution_cells}
    assert {gid: nbgrader_meta(c)["points"] for gid, c in released.items()} == expected, \
        f"labs/{lab}.ipynb: manually graded cells differ from the solution's (run `make labs`)"
    for gid, cell in released.items():
        assert text(cell).strip() == STUB, f"labs/{lab}.ipynb {gid}: expected only {STUB!r}, found {text(cell)[:80]!r}"
    whole = "\n".join(text(c) for c in release["cells"])
    for marker in ("**Rubric**", MODEL_ANSWER):
        assert marker not in whole, f"labs/{lab}.ipynb contains {marker!r}"
    for _, cell in solution_cells:
        for line in text(cell).splitlines():
            if len(line.strip()) >= 30:
                assert line.strip() not in whole, f"labs/{lab}.ipynb contains a line of the model answer or rubric: {line.strip()[:80]!r}"
