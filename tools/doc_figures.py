"""Tie every run-derived number in the course's documents to a run report committed under module-3.1/results/.

Why: numbers copied from runs nothing keeps cannot be checked, and they drift apart (issue 28). A measured number
either carries a marker, `26/40<!-- fig epyc-avx512/cpu-fp32/lab-3.1.7-dpo-training NAME -->` (the report below
module-3.1/results, `.report.json` implied unless it ends in `.json`; NAME a figure, `figure:field`, or
`report.<key>[.<key>]` such as `report.wall_seconds`), and must be that figure printed at the number's own precision
(`42.5%` of a fraction, `26/40` with the figure's n, `124 s`, `2 min 4 s`, `350 ms`, MiB/GiB/GB of bytes, `1.46x`,
`p = 0.016`, `1.5e-9`); or it sits in a block generated from the reports between `<!-- generated: NAME ARGS -->` and
`<!-- /generated -->`. A number quoted verbatim from another committed file (raw set-up measurements) carries
`<!-- in PATH -->`. `--check` also fails on a figure-looking number with no source in a results table (a Markdown
table whose heading or lead-in speaks of a measured run; `<!-- source: PATH -->` or `<!-- not-measured: why -->`
right above a table says otherwise), and on a date that is no committed report's.

    python -m tools.doc_figures --check     # exit 1 and one line per problem
    python -m tools.doc_figures --write     # regenerate the generated blocks
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.kept_reports import BLOCK, DATE, RESULTS, figure, is_bytes, load_report, regenerate, render_block, report_dates
from tools.paths import REPO

DOCUMENTS = ("README.md", "QUICKSTART.md", "LAB_PREP.md", "PREREQUISITES.md", "module-3.1/README.md")
NOTEBOOKS = "solutions/*.ipynb"  # their Markdown cells

MARKER = re.compile(r"<!--\s*fig\s+(\S+)\s+(\S+)\s*-->")
IN_FILE = re.compile(r"<!--\s*in\s+(\S+)\s*-->")  # a number quoted verbatim from another committed file
SOURCE = re.compile(r"<!--\s*source:\s*(\S+)\s*-->")
NOT_MEASURED = re.compile(r"<!--\s*not-measured:")
RESULTS_CONTEXT = re.compile(r"measur|\brun\b|\bruns\b|run time|took", re.I)

NUM = r"[-+\u2212]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?"
UNITS = r"%|x|s|ms|min|h|MiB|GiB|GB|MB|KB|kB|tokens/s|GFLOP/s|s/step"
# a number as a document prints it, at the end of the text before a marker
TAIL = re.compile(rf"(?:(?P<m>\d+) min (?P<ms>\d+) s|(?P<k>\d+)/(?P<n>\d+)|(?P<num>{NUM})\s?(?P<unit>{UNITS})?)$")
# a figure-looking number in a table cell: with a unit, a fraction k/n, or decimals
FIGURE_LIKE = re.compile(rf"(?<![\w.])(?<!Llama )(?<!Module )(?<!Lab )(?:\d+ min \d+ s|\d+/\d+|{NUM}(?:x\b|\s?(?:%|s\b|ms\b|min\b|MiB|GiB|GB|MB|tokens/s|GFLOP/s))|\d+\.\d+(?:e[-+]?\d+)?)(?![.\d])")


@dataclass
class Problem:
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"






def _decimals(text: str) -> tuple[float, float]:
    """(the number, half its last printed digit): what 'printed at its precision' allows."""
    text = text.replace(",", "").replace("\u2212", "-")
    mantissa, _, exponent = text.lower().partition("e")
    digits = len(mantissa.partition(".")[2])
    scale = 10 ** int(exponent) if exponent else 1
    return float(text), 0.5 * 10 ** -digits * scale


def _close(value: float, text: str) -> bool:
    number, half = _decimals(text)
    return abs(value - number) <= half * (1 + 1e-9) + 1e-12




SIZE = {"MiB": 2**20, "GiB": 2**30, "GB": 1e9, "MB": 1e6, "KB": 1e3, "kB": 1e3}


def compare(printed: str, value, name: str, details: dict) -> str | None:
    """None if `printed` (the number before a marker) is `value` at its precision, else what differs."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        return f"figure {name!r} is {value!r}, not a number"
    m = TAIL.search(printed)
    if not m:
        return f"no number right before the marker of {name!r}"
    if m["k"] is not None:
        n = details.get("n")
        if n != int(m["n"]) or details.get("repeats", 1) != 1:
            return f"{m['k']}/{m['n']} but figure {name!r} has n = {n}" + (f" per run, a mean over {details.get('repeats')}" if n == int(m["n"]) else "")
        k = details.get("k", value if isinstance(value, int) else value * n)  # an int is a count, a float a fraction
        return None if abs(k - int(m["k"])) < 1e-6 else f"{m['k']}/{m['n']} but figure {name!r} is {value!r} of {n} = {k:g}"
    if m["m"] is not None:
        seconds = int(m["m"]) * 60 + int(m["ms"])
        return None if abs(value - seconds) <= 0.5 + 1e-9 else f"{m.group(0)} but figure {name!r} is {value:.1f} s"
    unit, text = m["unit"], m["num"]
    shown = value
    if unit == "%" and details.get("unit") != "%":
        shown = value * 100
    elif unit in SIZE and is_bytes(name, details):
        shown = value / SIZE[unit]
    elif unit == "ms" and details.get("unit") in ("s", None):
        shown = value * 1000
    elif unit == "min" and details.get("unit") in ("s", None):
        shown = value / 60
    if _close(shown, text):
        return None
    return f"{m.group(0)} but figure {name!r} is {value!r} (printed {shown:.6g}{unit or ''})"






def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def check_markers(text: str, path: str, results: Path = RESULTS, cache: dict | None = None) -> list[Problem]:
    problems = []
    cache = {} if cache is None else cache
    for m in MARKER.finditer(text):
        ref, name = m.groups()
        try:
            value, details = figure(load_report(ref, results, cache), name)
        except (FileNotFoundError, KeyError) as err:
            problems.append(Problem(path, _line(text, m.start()), f"marker {ref} {name}: {str(err).strip(chr(34))}"))
            continue
        before = text[max(0, m.start() - 40): m.start()]
        wrong = compare(before, value, name, details)
        if wrong:
            problems.append(Problem(path, _line(text, m.start()), f"{wrong} (report {ref})"))
    return problems


def check_in_file(text: str, path: str, repo: Path = REPO) -> list[Problem]:
    """`2 min 4 s<!-- in FILE -->`: the number, as printed, occurs in the committed FILE (raw set-up measurements)."""
    problems = []
    for m in IN_FILE.finditer(text):
        source = repo / m[1]
        number = TAIL.search(text[max(0, m.start() - 40): m.start()])
        if not source.is_file():
            problems.append(Problem(path, _line(text, m.start()), f"marker in {m[1]}: no such file in the repository"))
        elif number is None:
            problems.append(Problem(path, _line(text, m.start()), f"marker in {m[1]}: no number right before it"))
        elif number[0] not in source.read_text(encoding="utf-8"):
            problems.append(Problem(path, _line(text, m.start()), f"{number[0]!r} does not occur in {m[1]}"))
    return problems


def check_blocks(text: str, path: str, results: Path = RESULTS) -> list[Problem]:
    problems = []
    for m in BLOCK.finditer(text):
        try:
            expected = render_block(m[2], results)
        except (FileNotFoundError, KeyError, TypeError) as err:
            problems.append(Problem(path, _line(text, m.start()), f"generated block {m[2]!r}: {err}"))
            continue
        if m[3] != expected:
            problems.append(Problem(path, _line(text, m.start()), f"generated block {m[2]!r} is not what the reports give: "
                                    "run `python -m tools.doc_figures --write`"))
    return problems


def _blank_blocks(text: str) -> str:
    """The text with generated blocks' bodies blanked (same line numbers)."""
    return BLOCK.sub(lambda m: m[1] + re.sub(r"[^\n]", " ", m[3]) + m[4], text)


def check_tables(text: str, path: str, repo: Path = REPO) -> list[Problem]:
    """A figure-looking number in a results table needs a marker (or the table a `source:`)."""
    problems, lines = [], _blank_blocks(text).split("\n")
    heading, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line
        if not line.startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        lead = []
        j = start - 1
        while j >= 0 and not lines[j].strip():  # the paragraph that leads into the table
            j -= 1
        while j >= 0 and lines[j].strip() and not lines[j].startswith("#"):
            lead.insert(0, lines[j])
            j -= 1
        lead_text = "\n".join(lead)
        if NOT_MEASURED.search(lead_text):
            continue
        source = SOURCE.search(lead_text)
        if source:
            if not (repo / source[1]).is_file():
                problems.append(Problem(path, start + 1, f"table source {source[1]} is not a file in the repository"))
            continue
        if not RESULTS_CONTEXT.search(heading + "\n" + lead_text):
            continue
        for number, row in enumerate(lines[start + 2: i], start + 3):
            bare = re.sub(rf"(?:\d+ min \d+ s|\d+/\d+|{NUM}\s?(?:{UNITS})?)<!--\s*(?:fig|in)\s[^>]*-->", "", row)
            bare = re.sub(r"`[^`]*`", "", bare)  # commands and names, not figures
            for found in FIGURE_LIKE.findall(bare):
                problems.append(Problem(path, number, f"{found.strip()!r} in a results table has no source "
                                        "(a `<!-- fig REPORT FIGURE -->` marker after it)"))
    return problems




def check_dates(text: str, path: str, dates: set[str]) -> list[Problem]:
    """A date in a document is a run's date: it must be the date of a committed report or results file."""
    return [Problem(path, _line(text, m.start()), f"date {m[0]} is the date of no committed report (a run nothing keeps?)")
            for m in DATE.finditer(text) if m[0] not in dates]


def check_text(text: str, path: str, results: Path = RESULTS, repo: Path = REPO, dates: set[str] | None = None) -> list[Problem]:
    dates = report_dates(results) if dates is None else dates
    return (check_markers(text, path, results) + check_in_file(text, path, repo) + check_blocks(text, path, results)
            + check_tables(text, path, repo)
            + check_dates(_blank_blocks(text), path, dates))


def markdown_cells(notebook: Path) -> list[tuple[int, str]]:
    """(cell number, text) of each Markdown cell: the notebooks' prose is held to the same rule as the documents."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]


def check(documents=DOCUMENTS, repo: Path = REPO, results: Path = RESULTS, notebooks: str = NOTEBOOKS) -> list[Problem]:
    """Every document, and the Markdown of every solution notebook (labs/ is generated from it), against the reports."""
    dates = report_dates(results)
    problems = [p for doc in documents for p in check_text((repo / doc).read_text(encoding="utf-8"), doc, results, repo, dates)]
    for notebook in sorted(repo.glob(notebooks)):
        where = notebook.relative_to(repo).as_posix()
        for i, text in markdown_cells(notebook):
            problems += check_text(text, f"{where} (Markdown cell {i})", results, repo, dates)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="compare every marker and generated block with the reports")
    action.add_argument("--write", action="store_true", help="regenerate the generated blocks in place")
    args = parser.parse_args(argv)
    if args.write:
        for doc in DOCUMENTS:
            path = REPO / doc
            old = path.read_text(encoding="utf-8")
            new = regenerate(old, RESULTS)
            if new != old:
                path.write_text(new, encoding="utf-8")
                print(f"rewrote the generated blocks of {doc}")
    problems = check(DOCUMENTS, REPO, RESULTS)  # read here, so a test can point them elsewhere
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s): each run-derived number needs its report (module-3.1/results/)", file=sys.stderr)
        return 1
    print(f"doc_figures: {len(DOCUMENTS)} documents agree with the committed reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
