"""Search a folder for the answers: each lab's hidden tests and solution lines, in every file.

The student edition (tools/student_edition.py) must not contain what `solutions/` holds back from
students. This module lists those secrets, line by line, and finds them in any file, text or binary.

    python -m tools.edition_leaks OUT OUT.zip      # search an edition (or any folder or file); exit 1 on a hit
    python -m tools.edition_leaks --overlaps       # solution lines of one lab that another lab's release shows

What counts as a secret line, per lab (solutions/<lab>.ipynb against its release labs/<lab>.ipynb):
- every line between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` (kind "hidden test");
- every line between `### BEGIN SOLUTION` and `### END SOLUTION` in a code cell, or the whole of a
  solution code cell without those markers, which nbgrader replaces whole (kind "solution code");
- every line of a markdown solution cell: a written answer and its rubric (kind "written answer").
A line is searched only if it is NON-TRIVIAL: stripped, at least MIN_LENGTH (16) characters, not found
anywhere in the text of the course's release notebooks, and not in COMMON_LINES. Shorter lines (`return x`,
`else:`) are too common to mean anything; a line the lab's own release shows (a question repeated in the
answer, a call the given code also makes) gives nothing away; nor does a line another lab's release shows,
because the edition hands out every release anyway (`python -m tools.edition_leaks --overlaps` lists those
cross-lab lines, for the notebooks' authors); COMMON_LINES are plain idioms that the course's own code
also uses, reviewed one by one. Lines are compared stripped, as substrings.

Where a file is searched: its bytes decoded leniently as UTF-8; if it is JSON or JSON Lines (a
notebook, a data file), also the text of its strings, so an escaped quote or \\n cannot hide a line;
inside a zip or gzip file, every member, recursively. The markers themselves are found where they
would act as markers: on a line of their own (a tool may name them inside a longer line, e.g. in a
regular expression that strips them).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tools.notebook_cells import cells, load, nbgrader_meta, source_text

MIN_LENGTH = 16
# Generic lines that also occur in shipped course code, judged to give no answer away. Keep this short: each
# entry hides that line everywhere, and a test fails on an entry that no longer matches a secret line.
COMMON_LINES = {
    "except ValueError as err:": "Python's exception idiom (Lab 3.1.6's record checks; the self-check's argument errors)",
    "if not isinstance(record, dict):": "a type check any JSONL reader makes (Lab 3.1.6; utils.served_model_client reads question files)",
    "model.train(was_training)": "restoring a model's mode, which every evaluation helper does (Lab 3.1.4; utils.evaluation)",
    "def __init__(self):": "any class's constructor (a helper class in a Lab 3.1.3 hidden test; utils.experiments)",
    "return LoraConfig(": "building PEFT's config object, as the course's shared recipe does (Lab 3.1.4; utils.adapters): "
                          "the answer is in its arguments",
}
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
MARKERS = HIDDEN + SOLUTION
# A marker on a line of its own: at a line start (or right after a JSON string's opening quote or an
# escaped newline), followed only by blanks up to the end of the line.
_MARKER_LINE = re.compile(
    r'(?:^|(?<=")|(?<=\\n))[ \t]*(' + "|".join(re.escape(m) for m in MARKERS) + r')[ \t]*(?=$|\r|"|\\n)',
    re.M,
)


@dataclass(frozen=True)
class Secret:
    lab: str
    kind: str  # "hidden test", "solution code" or "written answer"
    cell: str  # the nbgrader grade_id (or cell id) it comes from
    line: str  # stripped


@dataclass(frozen=True)
class Leak:
    file: str  # relative to the searched root; "a.zip!b/c.py" for a member of a zip
    lab: str
    kind: str
    cell: str
    line: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind} of {self.lab} (cell {self.cell}): {self.line!r}"


def _regions(text: str, begin: str, end: str) -> list[str]:
    """Lines strictly between a line containing `begin` and the next line containing `end` (nbgrader's rule)."""
    lines, inside = [], False
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def release_text(release: Path) -> str:
    """Every cell's source of a release notebook, joined: what that notebook shows a student."""
    return "\n".join(source_text(c) for c in cells(load(release)))


def lab_secrets(solution: Path, release: Path, shown_elsewhere: str = "", common: dict | None = None) -> list[Secret]:
    """The non-trivial secret lines of one lab (see the module docstring); `shown_elsewhere`: the other releases."""
    lab = solution.stem
    solution_nb = load(solution)
    shown = release_text(release) + "\n" + shown_elsewhere
    common = COMMON_LINES if common is None else common
    found: dict[tuple[str, str], Secret] = {}
    for cell in cells(solution_nb):
        meta = nbgrader_meta(cell)
        name = meta.get("grade_id") or cell.get("id", "?")
        text = source_text(cell)
        candidates = [("hidden test", line) for line in _regions(text, *HIDDEN)]
        if cell["cell_type"] == "markdown" and meta.get("solution"):
            candidates += [("written answer", line) for line in text.splitlines()]
        elif cell["cell_type"] == "code":
            code = _regions(text, *SOLUTION)
            if not code and meta.get("solution") and SOLUTION[0] not in text:
                code = text.splitlines()
            candidates += [("solution code", line) for line in code]
        for kind, line in candidates:
            line = line.strip()
            if len(line) >= MIN_LENGTH and line not in shown and line not in common and not any(m in line for m in MARKERS):
                found.setdefault((kind, line), Secret(lab, kind, name, line))
    return list(found.values())


def course_secrets(solutions: Path, labs: Path, across_labs: bool = True) -> list[Secret]:
    """Every lab's secrets; each solution notebook must have its release in `labs`.

    With across_labs=False a line shown by another lab's release still counts (see `overlaps`).
    """
    solutions_found = sorted(Path(solutions).glob("lab-*.ipynb"))
    for solution in solutions_found:
        if not (Path(labs) / solution.name).is_file():
            raise FileNotFoundError(f"{solution} has no student release at {Path(labs) / solution.name}: run `make labs`")
    texts_by_lab = {s.name: release_text(Path(labs) / s.name) for s in solutions_found}
    secrets = []
    for solution in solutions_found:
        elsewhere = "\n".join(t for name, t in texts_by_lab.items() if name != solution.name) if across_labs else ""
        secrets += lab_secrets(solution, Path(labs) / solution.name, elsewhere)
    return secrets


def overlaps(solutions: Path, labs: Path) -> list[Leak]:
    """Secret lines of one lab that another lab's release shows (not searched for: every release ships)."""
    own_rule = course_secrets(solutions, labs, across_labs=False)
    return search(sorted(Path(labs).glob("lab-*.ipynb")), own_rule, Path(labs))


def _json_strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.append(key)
            _json_strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _json_strings(item, out)


def _json_view(text: str) -> str | None:
    """The strings of a JSON document, or of a JSON Lines file, one per line; None if it is neither."""
    strings: list[str] = []
    try:
        _json_strings(json.loads(text), strings)
    except ValueError:
        try:
            for line in text.splitlines():
                if line.strip():
                    _json_strings(json.loads(line), strings)
        except ValueError:
            return None
    return "\n".join(strings)


def texts(name: str, data: bytes):
    """(label, text) for every way a file can carry text: decoded bytes, JSON strings, archive members."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist():
                    if not member.is_dir():
                        yield from texts(f"{name}!{member.filename}", archive.read(member))
            return
        except zipfile.BadZipFile:
            pass
    if data[:2] == b"\x1f\x8b":
        try:
            yield from texts(f"{name}!gunzip", gzip.decompress(data))
            return
        except (OSError, EOFError):
            pass
    text = data.decode("utf-8", errors="replace")
    yield name, text
    view = _json_view(text)
    if view is not None:
        yield name, view


def files_under(root: Path) -> list[Path]:
    """Every file under `root`, hidden ones and caches included (symlinks are read through)."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def search(paths: list[Path], secrets: list[Secret], root: Path | None = None) -> list[Leak]:
    """Every secret line and every marker line found in `paths` (labels relative to `root`)."""
    leaks: dict[tuple, Leak] = {}
    for path in paths:
        label = str(path.relative_to(root)) if root else str(path)
        for where, text in texts(label, Path(path).read_bytes()):
            for match in _MARKER_LINE.finditer(text):
                leaks.setdefault((where, "marker", match.group(1)), Leak(where, "any lab", "nbgrader marker", "-", match.group(1)))
            for s in secrets:
                if s.line in text:
                    leaks.setdefault((where, s.lab, s.line), Leak(where, s.lab, s.kind, s.cell, s.line))
    return sorted(leaks.values(), key=lambda leak: (leak.file, leak.lab, leak.line))


def report(leaks: list[Leak], limit: int = 40) -> str:
    """One line per leak (at most `limit`), for an error message."""
    lines = [str(leak) for leak in leaks[:limit]]
    if len(leaks) > limit:
        lines.append(f"... and {len(leaks) - limit} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tools.paths import LABS, SOLUTIONS

    parser = argparse.ArgumentParser(description="Search folders or files (zips too) for any lab's hidden tests and solution lines.")
    parser.add_argument("paths", nargs="*", type=Path, help="folders or files to search")
    parser.add_argument("--overlaps", action="store_true", help="list solution lines that another lab's release shows")
    args = parser.parse_args(argv)
    if args.overlaps:
        print(report(overlaps(SOLUTIONS, LABS), limit=1000) or "no solution line of one lab is shown by another lab's release")
        return 0
    secrets = course_secrets(SOLUTIONS, LABS)
    leaks = []
    for path in args.paths:
        leaks += search(files_under(path) if path.is_dir() else [path], secrets, path.parent)
    print(report(leaks, limit=1000) or f"no hidden test or solution line in {len(args.paths)} path(s) ({len(secrets)} lines searched)")
    return 1 if leaks else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
