"""What a student does in JupyterLab, as browser actions: open a notebook, run a cell, type into one, Validate.

Cells are found by their position in the notebook file (JupyterLab renders them in file order and, with the
tier's settings, keeps every cell in the page). Every wait names what it waited for, so a timeout says which
step of the student's path broke.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

KERNEL_START = 90_000  # ms: a first kernel on 2 busy cores imports IPython and matplotlib
CELL_RUN = 180_000  # ms: the setup cells import torch and transformers
VALIDATE = 300_000  # ms: Validate runs the whole notebook on the server


def cell_index(notebook: Path, cell_id: str) -> int:
    """Position of the cell with this id (JupyterLab's DOM order is the file's)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell.get("id") == cell_id:
            return i
    raise KeyError(f"{notebook}: no cell with id {cell_id!r}; ids are {[c.get('id') for c in cells]}")


def open_notebook(page: Page, url: str, n_cells: int) -> None:
    """Open a notebook and wait until its cells are on the page and its kernel is idle."""
    page.goto(url)
    panel = page.locator(".jp-NotebookPanel:visible")
    expect(panel, "the notebook panel did not open").to_have_count(1, timeout=KERNEL_START)
    expect(cells(page), f"the notebook should show {n_cells} cells").to_have_count(n_cells, timeout=KERNEL_START)
    wait_idle(page, "kernel start")


def cells(page: Page):
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook-cell")


def wait_idle(page: Page, what: str, timeout: int = KERNEL_START) -> None:
    indicator = page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")
    try:
        expect(indicator).to_have_attribute("data-status", "idle", timeout=timeout)
    except AssertionError as err:
        status = indicator.get_attribute("data-status") if indicator.count() else "no indicator"
        raise AssertionError(f"{what}: the kernel is not idle after {timeout / 1000:.0f} s (status {status!r})") from err


def run_cell(page: Page, index: int, timeout: int = CELL_RUN) -> str:
    """Run one cell (select it, Ctrl+Enter) and return the text of its outputs once it has finished."""
    start_cell(page, index)
    return finish_cell(page, index, timeout)


def start_cell(page: Page, index: int) -> None:
    """Focus the cell's editor and press Ctrl+Enter; press again if the cell was not queued (its prompt still `[ ]`)."""
    cell = cells(page).nth(index)
    prompt = cell.locator(".jp-InputArea-prompt")
    for attempt in range(2):
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").click()
        expect(page.locator(".jp-NotebookPanel:visible .jp-Notebook.jp-mod-editMode")).to_have_count(1)
        page.keyboard.press("Control+Enter")
        try:
            expect(prompt).not_to_have_text(re.compile(r"^\[ \]"), timeout=10_000)
            return
        except AssertionError:
            if attempt:
                raise AssertionError(f"cell {index} was not queued by Ctrl+Enter (prompt {prompt.inner_text()!r})") from None


def finish_cell(page: Page, index: int, timeout: int = CELL_RUN) -> str:
    """Wait for a started cell (run once in this session) to finish; return its outputs' text."""
    prompt = cells(page).nth(index).locator(".jp-InputArea-prompt")
    try:
        expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)
    except AssertionError as err:
        raise AssertionError(f"cell {index} did not finish within {timeout / 1000:.0f} s "
                             f"(prompt {prompt.inner_text()!r})") from err
    wait_idle(page, f"after cell {index}", timeout)
    return outputs(page, index)


def outputs(page: Page, index: int) -> str:
    return "\n".join(cells(page).nth(index).locator(".jp-OutputArea-output").all_inner_texts())


def type_into_cell(page: Page, index: int, text: str) -> None:
    """Replace a cell's source as a student pasting an answer would: focus its editor, select all, insert the text.

    The text is inserted, not typed key by key: the editor's auto-indent and bracket closing would otherwise
    change what lands in the cell.
    """
    editor = cells(page).nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)
    expect(editor, "the typed answer is not in the cell").to_contain_text(text.strip().splitlines()[0].strip())


def add_cell_below(page: Page, index: int, code: str) -> str:
    """Insert a code cell below cell `index` (command mode, `b`), type `code` into it, run it; return its output."""
    cells(page).nth(index).locator(".jp-Cell-inputWrapper").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    new = cells(page).nth(index + 1)
    expect(new, "no new cell below").to_have_class(re.compile(r"jp-mod-active"))
    new.locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Control+Enter")
    return finish_cell(page, index + 1)


def validate(page: Page) -> tuple[str, str]:
    """Press nbgrader's Validate button; return ("success" | "failed" | other, the dialog's text), dialog closed."""
    button = page.locator(".jp-NotebookPanel:visible .validate-button")
    try:
        expect(button, "no Validate button").to_have_count(1, timeout=30_000)
    except AssertionError as err:
        raise AssertionError("the notebook toolbar has no Validate button: nbgrader's JupyterLab extension "
                             "(@jupyter/nbgrader) is not enabled (`jupyter labextension list`)") from err
    button.click()
    dialog = page.locator(".jp-Dialog.nbgrader-ErrorDialog, .jp-Dialog.nbgrader-SuccessDialog")
    expect(dialog, "Validate showed no result").to_be_visible(timeout=VALIDATE)
    message = dialog.locator("#validation-message")
    classes = message.get_attribute("class") or ""
    kind = next((k for k in ("success", "failed", "changed", "type-changed") if f"validation-{k}" in classes), classes)
    return kind, dialog.inner_text()


def close_dialog(page: Page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button").last.click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)
