"""tools.notebook_cells: cells found by grade_id (else by cell id), run in one namespace, mutations that cannot
silently vanish, and nbgrader's keep-going execution."""

import json

import pytest

from tools.notebook_cells import cell_sources, mutate, nbgrader_meta, run_cells, run_cells_past_errors


@pytest.fixture
def notebook(tmp_path):
    def cell(source, grade_id=None, cell_id=None, kind="code"):
        meta = {"nbgrader": {"grade_id": grade_id}} if grade_id else {}
        return {"cell_type": kind, "id": cell_id, "metadata": meta, "source": source}

    path = tmp_path / "lab.ipynb"
    path.write_text(json.dumps({"cells": [
        cell("# Title", cell_id="md", kind="markdown"),
        cell(["x = 2\n", "y = x * 3"], grade_id="setup", cell_id="c1"),
        cell("z = y + 1", cell_id="plain"),
        cell("raise ValueError('bad')", grade_id="broken", cell_id="c3"),
        cell("w = z * 10", grade_id="after", cell_id="c4"),
    ]}))
    return path


def test_sources_by_grade_id_and_by_cell_id_for_other_code_cells(notebook):
    sources = cell_sources(notebook)
    assert sources == {"setup": "x = 2\ny = x * 3", "plain": "z = y + 1", "broken": "raise ValueError('bad')", "after": "w = z * 10"}
    assert nbgrader_meta({"metadata": {}}) == {}


def test_cells_run_in_order_in_one_namespace_with_overrides(notebook):
    assert run_cells(notebook, ["setup", "plain"])["z"] == 7
    assert run_cells(notebook, ["setup", "plain"], overrides={"setup": "y = 100"})["z"] == 101


def test_an_error_names_the_notebook_and_cell(notebook):
    with pytest.raises(ValueError) as caught:
        run_cells(notebook, ["broken"])
    assert str(caught.traceback[-1].frame.code.path) == "lab.ipynb:broken"


def test_past_errors_keeps_going_like_the_autograder(notebook):
    namespace = run_cells_past_errors(notebook, ["setup", "plain", "broken", "after"], {})
    assert namespace["w"] == 70


def test_a_mutation_that_matches_nothing_fails_instead_of_vanishing():
    assert mutate("a + b", [("+", "-"), ("b", "c")]) == "a - c"
    with pytest.raises(AssertionError, match="mutation target not found.*'a \\* b'"):
        mutate("a + b", [("a * b", "a")])
