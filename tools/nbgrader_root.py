"""Lay out a stock nbgrader course root for this course, for instructors who run nbgrader's own CLI.

    python -m tools.nbgrader_root DIR [--labs 3.1.1 3.1.6 ...] [--exchange DIR] [--force]

DIR gets `source/<lab>/<lab>.ipynb` (copied from solutions/) and an `nbgrader_config.py`, then
`nbgrader generate_assignment`, `release_assignment`, `collect`, `autograde`, `generate_feedback`
and `release_feedback` work in it as nbgrader documents them (README.md, "Releasing and grading with nbgrader's own commands").
The config keeps hidden tests out of every feedback file nbgrader writes: nbgrader's own
GenerateFeedback renders the autograded notebook, which has the hidden tests put back, in its
cells and in the tracebacks of failed hidden tests (tools/hidden_test_errors.py). The config
imports this course, so run nbgrader from the environment the course is installed in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from tools.grading.course import Course
from tools.headless import GRADING_CELL_TIMEOUT
from tools.paths import COURSE_ID, REPO

DEFAULT_CELL_TIMEOUT = GRADING_CELL_TIMEOUT  # the class grader's (its Limits' default), so both grade alike

CONFIG_NAME = "nbgrader_config.py"


def config_text(exchange: Path | None = None, cell_timeout: int = DEFAULT_CELL_TIMEOUT) -> str:
    """The course root's nbgrader_config.py. The root is the folder holding the file, so it may be moved."""
    lines = [
        "# nbgrader configuration for course module-3.1, written by `python -m tools.nbgrader_root`.",
        "import os",
        "",
        "from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor",
        "from nbgrader.preprocessors import ClearHiddenTests, GetGrades",
        "from tools.hidden_test_errors import RedactHiddenTestErrors  # this course, installed in nbgrader's environment",
        "",
        "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {COURSE_ID!r}",
        "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))",
    ]
    if exchange is not None:
        lines.append(f"c.Exchange.root = {str(Path(exchange).resolve())!r}")
    lines += [
        f"c.Execute.timeout = {int(cell_timeout)}  # seconds per cell; the grade profile keeps every cell far below it",
        "# A test cell the student deleted is put back and run, so deleting it cannot avoid the test.",
        "c.OverwriteCells.add_missing_cells = True",
        "# Feedback goes to students. The autograded notebook it renders has the hidden tests put back: keep",
        "# nbgrader's default feedback preprocessors, then hide the tracebacks that quote a hidden test and the",
        "# hidden tests themselves (RedactHiddenTestErrors must come before ClearHiddenTests).",
        "c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, RedactHiddenTestErrors, ClearHiddenTests]",
        "",
    ]
    return "\n".join(lines)


def make_course_root(root: Path, labs: list[str], exchange: Path | None = None,
                     cell_timeout: int = DEFAULT_CELL_TIMEOUT, force: bool = False) -> Path:
    """Create (or refresh) the course root `root` with the given labs; return its absolute path.

    Source notebooks are always refreshed from solutions/. An existing nbgrader_config.py that differs
    from ours is kept unless `force`, so an instructor's own settings are never overwritten silently.
    """
    root = Path(root).resolve()
    course = Course(REPO)
    names = [course.resolve_lab(lab) for lab in labs]
    if not names:
        raise ValueError("no labs given; pass lab numbers such as 3.1.6")
    config = root / CONFIG_NAME
    text = config_text(exchange, cell_timeout)
    if config.exists() and config.read_text() != text and not force:
        raise FileExistsError(f"{config} exists with other settings; move it away or pass --force to replace it")
    for lab in names:
        source = root / "source" / lab
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy(course.source(lab), source / f"{lab}.ipynb")
    config.write_text(text)
    if exchange is not None:
        exchange = Path(exchange)
        if not exchange.is_dir():
            exchange.mkdir(parents=True)
            os.chmod(exchange, 0o777)  # every student writes their submission into it (nbgrader's docs)
    return root


def next_steps(root: Path, labs: list[str], exchange: Path | None) -> str:
    """The commands to run next, for the first lab; the same for the others."""
    names = [Course(REPO).resolve_lab(x) for x in labs]
    lab = names[0]
    nbgrader = Path(sys.executable).parent / "nbgrader"
    steps = [f"Course root {root} holds: {', '.join(names)}", "Next, as the instructor:",
             f"  cd {root}", f"  {nbgrader} generate_assignment {lab}"]
    if exchange is not None:
        steps += [f"  {nbgrader} release_assignment {lab}",
                  f"Students: nbgrader fetch_assignment {lab} --course {COURSE_ID} --Exchange.root={Path(exchange).resolve()}",
                  f"          (work on it), nbgrader submit {lab} --course {COURSE_ID} --Exchange.root={Path(exchange).resolve()}",
                  "Then, as the instructor:", f"  {nbgrader} collect {lab}"]
    else:
        steps.append(f"Put submissions in {root}/submitted/<student>/{lab}/{lab}.ipynb (no --exchange given), then:")
    steps += [f"  {nbgrader} autograde {lab}", "  grade the written answers in formgrader (Manual Grading)",
              f"  {nbgrader} generate_feedback {lab}"]
    if exchange is not None:
        steps.append(f"  {nbgrader} release_feedback {lab}")
    return "\n".join(steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the course root to create or refresh")
    parser.add_argument("--labs", nargs="+", default=None, help="lab numbers or names (default: every lab)")
    parser.add_argument("--exchange", type=Path, default=None, help="nbgrader's exchange folder (created if missing)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_CELL_TIMEOUT, help="seconds per cell when autograding")
    parser.add_argument("--force", action="store_true", help="replace an existing nbgrader_config.py")
    args = parser.parse_args(argv)
    labs = args.labs or Course(REPO).lab_names()
    try:
        root = make_course_root(args.root, labs, args.exchange, args.timeout, args.force)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(next_steps(root, labs, args.exchange))
    return 0


if __name__ == "__main__":
    sys.exit(main())
