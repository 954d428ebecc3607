"""Run individual cells of a solution notebook, found by nbgrader grade_id.

Tests that check an implementation against a library, or that check a hidden test catches a
mistake, execute the notebook's own solution code: no reference implementation lives in
`utils`, where students could import it. `tools.build_preference_data` uses it the same way to
rebuild Lab 3.1.6's shipped data from the solution.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def nbgrader_meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def cell_sources(path: Path) -> dict[str, str]:
    """grade_id -> source for every nbgrader cell, and cell id -> source for the other code cells."""
    out, others = {}, {}
    for cell in load(path)["cells"]:
        grade_id = nbgrader_meta(cell).get("grade_id")
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
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
