"""Keep hidden tests out of the error messages that nbgrader's feedback shows.

nbgrader's ClearHiddenTests removes the hidden tests from a cell's source, but not from its outputs.
When a hidden test fails, IPython's traceback in the autograded notebook quotes the failing line and
the lines around it (often the `### BEGIN HIDDEN TESTS` marker and every line up to the failure), and
the AssertionError's message is the hidden test's own text. `RedactHiddenTestErrors` runs before
ClearHiddenTests in `GenerateFeedback.preprocessors` and replaces such tracebacks with the error's
name, the message only when it came from code outside the hidden tests, and a note.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_FRAME = re.compile(r"^Cell In\[(\d+)\], line (\d+)")
MIN_LINE = 12  # shorter hidden lines (`else:`, `pass`) say nothing about a test
NOTE = "(This check is one of the hidden tests of this cell; its code is not shown.)"


def hidden_lines(source: str, begin: str, end: str) -> set[int]:
    """1-based line numbers of `source` inside hidden-test regions, markers included."""
    inside, numbers = False, set()
    for number, line in enumerate(source.split("\n"), start=1):
        if begin in line:
            inside = True
        if inside:
            numbers.add(number)
        if end in line:
            inside = False
    return numbers


def _frames(traceback: list[str]) -> list[tuple[str, int]]:
    """(cell, line) for each frame header `Cell In[n], line m`; ('', 0) for a frame outside a cell."""
    frames = []
    for entry in traceback[2:-1]:  # IPython: a rule, the title, one entry per frame, then `Name: message`
        match = CELL_FRAME.match(ANSI.sub("", entry))
        frames.append((match.group(1), int(match.group(2))) if match else ("", 0))
    return frames


def _text(output) -> str:
    if output.output_type == "stream":
        return output.get("text", "")
    if output.output_type == "error":
        return ANSI.sub("", "\n".join([output.get("evalue", ""), *output.get("traceback", [])]))
    return "\n".join(str(v) for v in output.get("data", {}).values())


class RedactHiddenTestErrors(NbGraderPreprocessor):
    """Redact outputs of a cell with hidden tests that would quote them (put before ClearHiddenTests)."""

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS", help="Marks the start of a hidden-test region").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS", help="Marks the end of a hidden-test region").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or self.begin_test_delimeter not in cell.source:
            return cell, resources
        hidden = hidden_lines(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
        lines = cell.source.split("\n")
        visible = {line.strip() for n, line in enumerate(lines, 1) if n not in hidden}
        secrets = {s for n, line in enumerate(lines, 1) if n in hidden
                   for s in [line.strip()] if len(s) >= MIN_LINE and s not in visible}
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                frames = _frames(output.get("traceback", []))
                this_cell = frames[0][0] if frames else ""
                if this_cell and any(c == this_cell and line in hidden for c, line in frames):
                    # Raised by the hidden test itself: its message is hidden text too.
                    raised_here = frames[-1][0] == this_cell
                    output.evalue = "" if raised_here else output.get("evalue", "")
                    title = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    output.traceback = [title, NOTE]
            if any(secret in _text(output) for secret in secrets):  # e.g. a hidden test that printed its data
                self.log.warning("Feedback for cell %s: an output quoting a hidden test was replaced", index)
                self._replace(output)
        return cell, resources

    @staticmethod
    def _replace(output) -> None:
        if output.output_type == "stream":
            output.text = NOTE + "\n"
        elif output.output_type == "error":
            output.evalue, output.traceback = "", [output.ename, NOTE]
        else:
            output.data = {"text/plain": NOTE}
            output.pop("metadata", None)
            output.metadata = {}
