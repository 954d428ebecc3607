"""Autograde one submitted notebook against a lab's solution, in a private course root.

    python -m tools.grade 3.1.1 path/to/submission.ipynb

Prints the score per graded cell. Runs under the grade profile (nbgrader sets
NBGRADER_EXECUTION). Works in a temporary course directory, so no existing gradebook is
ever written, let alone overwritten when grading fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tools.nbgrader_course import TempCourse, resolve_lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab", help="lab number or name, e.g. 3.1.1")
    parser.add_argument("notebook", type=Path, help="the student's notebook")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"{args.notebook}: no such notebook")
    lab = resolve_lab(args.lab)
    with tempfile.TemporaryDirectory() as tmp:
        report = TempCourse(Path(tmp), lab, cell_timeout=args.timeout).autograde(args.notebook.resolve())
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
