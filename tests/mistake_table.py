"""The one harness behind every lab's mistake table: a lab's test file only supplies its table.

A mistake is a plausible student bug, written as (old, new) replacements applied to the solution
cell's own source; the graded cell named with it must then fail, as nbgrader would run it. A
shortcut (`shortcut(...)`) is the same kind of entry: the exercise's solution replaced by a call to
what it is checked against (the library, a finished `utils` function, a shipped file), which must
lose the points as surely as a bug. The
harness makes two parametrized tests from a table: every graded cell passes on the unmodified
solution (so "caught" means something), and every mistake makes its graded cell raise.

    test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(
        NOTEBOOK, MISTAKES, prepare)

`prepare(graded, overrides)` returns the namespace the graded cell runs in, built from the
solution's cells with `overrides` (cell -> mutated source) in place; it must not raise for a
mistake, so that the graded cell itself is what catches it (use `run_cells_past_errors` for
cells that nbgrader would run past).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from tools.notebook_cells import cell_sources, mutate, run_cells


class Mistake(NamedTuple):
    name: str  # what the student got wrong, as the test id
    cell: str  # grade_id of the solution cell the mistake is planted in
    replacements: list[tuple[str, str]]  # (old, new) edits of that cell's source; each old must occur
    graded: str  # grade_id of the graded test cell that must catch it


def shortcut(notebook: Path, name: str, cell: str, code: str, graded: str, block: int = 0) -> Mistake:
    """The `block`-th solution region of `cell` replaced by `code` (re-indented to fit): a Mistake named "shortcut: ..."."""
    source = cell_sources(notebook)[cell]
    start = -1
    for _ in range(block + 1):
        start = source.index("### BEGIN SOLUTION\n", start + 1)
    body_start = start + len("### BEGIN SOLUTION\n")
    body_end = source.rindex("\n", body_start, source.index("### END SOLUTION", body_start)) + 1
    body = source[body_start:body_end]
    indent = body[: len(body) - len(body.lstrip(" "))]
    return Mistake(f"shortcut: {name}", cell, [(body, textwrap.indent(textwrap.dedent(code).strip("\n") + "\n", indent))], graded)


def mistake_table_tests(notebook: Path, mistakes: list, prepare: Callable[[str, dict | None], dict]):
    """The pass test and the caught test for one notebook's mistake table (see the module docstring)."""
    mistakes = [Mistake(*m) for m in mistakes]
    names = [m.name for m in mistakes]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{notebook.name}: mistake names must be unique test ids, repeated: {duplicated}")

    @pytest.mark.parametrize("graded", sorted({m.graded for m in mistakes}))
    def test_graded_cells_pass_on_the_solution(graded):
        run_cells(notebook, [graded], namespace=prepare(graded, None))

    @pytest.mark.parametrize("mistake", mistakes, ids=names)
    def test_graded_cell_catches_mistake(mistake):
        overrides = {mistake.cell: mutate(cell_sources(notebook)[mistake.cell], mistake.replacements)}
        namespace = prepare(mistake.graded, overrides)
        with pytest.raises(Exception):
            run_cells(notebook, [mistake.graded], namespace=namespace)

    return test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake
