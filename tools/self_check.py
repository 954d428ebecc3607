"""Check one notebook the way the class grader grades it, and say per cell what passed, what failed and why.

    python -m tools.self_check 3.1.1 path/to/lab-3.1.1-lora-theory.ipynb            # make self-check: visible tests
    python -m tools.self_check 3.1.1 path/to/notebook.ipynb --hidden                 # make grade-lab: hidden ones too

Same engine, sandbox, cell timeout, memory limit and scoring as `make grade-class`
(tools.grading.engine). By default only the visible tests run, as a student sees them: the score it
prints is not the grade. In the instructor repository, --hidden runs the hidden tests too (a student
edition has no solutions/, so it cannot).
Exit status: 0 when every autograded cell passed, 1 when some did not, 2 when the grader itself failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tools.grading.course import Course
from tools.grading.engine import grade_notebook
from tools.grading.sandbox import Limits

VISIBLE_ONLY_NOTE = ("These are the VISIBLE tests only: passing them is not your grade. Your instructor's grader also "
                     "runs hidden tests, and written answers are graded by hand.")


def check(course: Course, lab: str, notebook: Path, limits: Limits, hidden: bool = False):
    """Grade one notebook as the class grader does (no feedback file: the table below is the feedback)."""
    return grade_notebook(course, lab, Path(notebook).read_bytes(), limits, hidden=hidden, feedback=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab", help="lab number or name, e.g. 3.1.1")
    parser.add_argument("notebook", type=Path, help="your notebook")
    parser.add_argument("--hidden", action="store_true", help="also run the hidden tests (instructor repository: needs solutions/)")
    d = Limits()
    parser.add_argument("--timeout", type=int, default=d.cell_timeout, help=f"seconds per cell (default {d.cell_timeout}, as the class grader)")
    parser.add_argument("--memory-mb", type=int, default=d.memory_mb, help=f"kernel memory limit (default {d.memory_mb}, as the class grader)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: every core; one notebook at a time)")
    parser.add_argument("--course", type=Path, help="course folder (default: this one)")
    args = parser.parse_args(argv)
    course = Course(args.course.resolve()) if args.course else Course()
    if not args.notebook.is_file():
        parser.error(f"{args.notebook}: no such notebook")
    try:
        lab = course.resolve_lab(args.lab)
    except ValueError as err:
        parser.error(str(err))
    hidden = args.hidden
    if hidden and not course.has_solutions:
        parser.error(f"{course.solutions}: no solutions here, so hidden tests cannot run (this is a student edition)")
    limits = Limits(cell_timeout=args.timeout, memory_mb=args.memory_mb, threads=args.threads)
    print(f"Checking {args.notebook} as {lab} with the {'visible and hidden' if hidden else 'visible'} tests "
          f"({limits.cell_timeout} s per cell, {limits.memory_mb} MiB)...", flush=True)
    result = check(course, lab, args.notebook, limits, hidden)
    print(result.table())
    if not hidden:
        print("\n" + VISIBLE_ONLY_NOTE)
    if result.status == "grader-error":
        return 2
    return 0 if all(c.score >= c.max_score for c in result.cells if not c.manual) else 1


if __name__ == "__main__":
    sys.exit(main())
