"""The one reader of notebook JSON in tools/, and individual cells of a solution notebook run by nbgrader grade_id.

Reading (`load`, `cells`, `source_text`, `nbgrader_meta`) takes a notebook as it is, committed or submitted in any
shape a platform may hand over: a cell that is not an object is skipped, a missing or odd `metadata`, `nbgrader`
or `source` reads as empty, and a source stored as a list of lines is joined. The grader, the student edition and
its leak check, and the tests all read notebooks through it.

Running: tests that check an implementation against a library, or that check a hidden test catches a
mistake, execute the notebook's own solution code: no reference implementation lives in
`utils`, where students could import it. `tools.build_preference_data` uses it the same way to
rebuild Lab 3.1.6's shipped data from the solution.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.paths import LABS, SOLUTIONS  # noqa: F401 (the folders its callers read notebooks from)


def load(path: Path) -> dict:
    """A notebook file's JSON (no validation: `tools.grading.plan` validates what students submit)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def cells(nb: dict) -> list[dict]:
    """The notebook's cells that are objects (a damaged submission may hold anything)."""
    return [c for c in nb.get("cells", []) if isinstance(c, dict)]


def source_text(cell: dict) -> str:
    """A cell's source as one string, whether stored as a string or a list of lines."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def nbgrader_meta(cell: dict) -> dict:
    """The cell's nbgrader metadata (grade_id, points, solution, locked...), or {} when it has none or it is not an object."""
    meta = cell.get("metadata", {})
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbg if isinstance(nbg, dict) else {}


def cell_sources(path: Path) -> dict[str, str]:
    """grade_id -> source for every nbgrader cell, and cell id -> source for the other code cells."""
    out, others = {}, {}
    for cell in cells(load(path)):
        grade_id = nbgrader_meta(cell).get("grade_id")
        text = source_text(cell)
        if grade_id:
            out[grade_id] = text
        elif cell["cell_type"] == "code" and cell.get("id"):
            others[cell["id"]] = text
    return {**others, **out}


def mutate(source: str, replacements: list[tuple[str, str]]) -> str:
    """Apply (old, new) replacements; each `old` must occur, so a mutation can never silently vanish."""
    for old, new in replacements:
        if old not in source:
            raise AssertionError(f"mutation target not found in the solution source: {old!r}")
        source = source.replace(old, new)
    return source


def run_cells(path: Path, grade_ids: list[str], overrides: dict[str, str] | None = None, namespace: dict | None = None) -> dict:
    """Execute the named cells in order in one namespace; `overrides` replaces a cell's source."""
    sources = cell_sources(path)
    namespace = {} if namespace is None else namespace
    for grade_id in grade_ids:
        source = (overrides or {}).get(grade_id, sources[grade_id])
        exec(compile(source, f"{Path(path).name}:{grade_id}", "exec"), namespace)
    return namespace


def run_cells_past_errors(path: Path, grade_ids: list[str], namespace: dict, overrides: dict[str, str] | None = None) -> dict:
    """Execute cells as nbgrader's autograder does: a cell that raises does not stop the ones after it.

    Whatever a failing cell defined before it raised stays in the namespace, so the graded cell
    after it must fail on its own.
    """
    for grade_id in grade_ids:
        try:
            run_cells(path, [grade_id], overrides=overrides, namespace=namespace)
        except Exception:
            pass
    return namespace
