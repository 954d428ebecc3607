"""What the headless tests cannot see: Lab 3.1.1's plots, its evaluation progress widget and the training progress
bar, rendered in a real page (a finished lab from a student's clone, run cell by cell as a student does)."""

from __future__ import annotations

import json

import nbformat
import pytest
from playwright.sync_api import expect

from course_files import solved
from lab_page import cell_index, cells, finish_cell, open_notebook, run_cell, start_cell
from lab_server import jupyterlab
from tools.paths import RUNS

LAB = "lab-3.1.1-lora-theory"
# Records the class of every progress bar attached to the page (ipywidgets' or a plain <progress>), even one that
# is removed a moment later.
WATCH_PROGRESS = """() => {
  window.__progressSeen = [];
  const bars = '.widget-hprogress, .jupyter-widget-hprogress, progress';
  const note = e => { if (e instanceof Element && e.matches(bars)) window.__progressSeen.push(e.tagName + ' ' + e.className); };
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes') note(r.target);
      for (const n of r.addedNodes) if (n instanceof Element) [n, ...n.querySelectorAll(bars)].forEach(note);
    }
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ['class']});
}"""
BEFORE = ["setup", "lora-linear", "inject-lora", "count-parameters", "tiny-llama"]  # what the plotted cells use


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    nbformat.write(solved(LAB), root / f"{LAB}.ipynb")
    with jupyterlab(root, RUNS / "browser" / "plots-server.log") as server:
        yield root / f"{LAB}.ipynb", server


def rendered_images(page, index: int) -> list[dict]:
    """Width and height, as laid out and as decoded, of every image in a cell's outputs."""
    return cells(page).nth(index).locator(".jp-OutputArea-output img").evaluate_all(
        "imgs => imgs.map(i => ({w: i.getBoundingClientRect().width, h: i.getBoundingClientRect().height,"
        " nw: i.naturalWidth, nh: i.naturalHeight}))")


def assert_plot(page, index: int, what: str) -> None:
    images = rendered_images(page, index)
    assert images and all(min(i.values()) > 0 for i in images), f"{what}: no rendered image of non-zero size: {images}"


def test_plots_and_progress_render(finished, page, shots):
    notebook, server = finished
    n_cells = len(json.loads(notebook.read_text())["cells"])
    open_notebook(page, server.lab_url(notebook.name), n_cells)
    for cell_id in BEFORE:
        run_cell(page, cell_index(notebook, cell_id))

    rank = cell_index(notebook, "rank-plot")
    run_cell(page, rank)
    assert_plot(page, rank, "the LoRA cost-vs-rank plot")
    cells(page).nth(rank).scroll_into_view_if_needed()
    shots(page, "plots-01-rank-plot")

    # The evaluation's progress is a tqdm widget (ipywidgets) that is removed when it finishes: record every
    # progress element the page attaches while the cell runs.
    evaluation = cell_index(notebook, "base-eval")
    page.evaluate(WATCH_PROGRESS)
    start_cell(page, evaluation)
    out = finish_cell(page, evaluation)
    seen = page.evaluate("window.__progressSeen")
    shots(page, "plots-02-eval-done")
    assert "base model:" in out, out
    assert any("hprogress" in s for s in seen), f"the evaluation's tqdm widget never rendered; the page attached {seen}"
    assert not any(text in out for text in ("HBox(", "IntProgress(", "Error displaying widget")), out

    train = cell_index(notebook, "train")
    out = run_cell(page, train)
    bar = cells(page).nth(train).locator(".jp-OutputArea-output progress")
    expect(bar, "the trainer's progress bar is not in the page").to_have_count(1)
    value, maximum = bar.get_attribute("value"), bar.get_attribute("max")
    assert value == maximum and int(maximum) > 0, f"the training progress bar stopped at {value} of {maximum}: {out[:500]}"
    assert_plot(page, train, "the training loss curve")
    cells(page).nth(train).scroll_into_view_if_needed()
    shots(page, "plots-03-training-progress-and-loss")
