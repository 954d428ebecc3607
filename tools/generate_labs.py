"""Regenerate the student labs in labs/ from the instructor solutions in solutions/.

    python -m tools.generate_labs            # every lab
    python -m tools.generate_labs 3.1.1      # one lab
    python -m tools.generate_labs --check    # exit 1 if labs/ is out of date (no writes)

Uses nbgrader's generate_assignment, so solution regions become stubs that raise
NotImplementedError and hidden tests are removed, exactly as students will receive them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tools.generated_files import argument_parser, update
from tools.grading.course import Course
from tools.grading.engine import generate
from tools.notebook_cells import load
from tools.paths import LABS


def normalised(path: Path) -> str:
    """Notebook JSON in a stable form, so 'in sync' compares content, not formatting."""
    return json.dumps(load(path), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def generate_student_version(lab: str, workdir: Path) -> str:
    return normalised(generate(Course(), lab, workdir / lab))


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("labs", nargs="*", help="lab numbers or names (default: all)")
    args = parser.parse_args(argv)
    course = Course()
    labs = [course.resolve_lab(x) for x in args.labs] or course.lab_names()
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for lab in labs:
            target = LABS / f"{lab}.ipynb"
            current = normalised(target) if target.exists() else None
            if update(target, generate_student_version(lab, Path(tmp)), args.check, current=current):
                stale.append(lab)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
