"""Rebuild the preference data of Labs 3.1.7 to 3.1.9 from Lab 3.1.6's solution code.

    python -m tools.build_preference_data           # rewrite utils/data/course_{preferences,kto}_*.jsonl
    python -m tools.build_preference_data --check   # exit 1 if the shipped files differ (no writes)

The files are produced by the solution notebook's own `make_preference_pairs` and `to_unpaired`
(executed cell by cell, nothing copied into `utils`), through `utils.preference_data.build_files`,
the same call the notebook makes. Run it after changing that solution cell.
"""

from __future__ import annotations

import sys

from tools.generated_files import main_for
from tools.notebook_cells import run_cells
from tools.paths import DATA, SOLUTIONS
from utils.course_data import render_jsonl
from utils.preference_data import build_files

NOTEBOOK = SOLUTIONS / "lab-3.1.6-dataset-preparation.ipynb"


def solution_files() -> dict[str, str]:
    """file name -> JSONL text, as the solution code produces it now."""
    namespace = run_cells(NOTEBOOK, ["setup", "make_preference_pairs"])
    files = build_files(namespace["make_preference_pairs"], namespace["to_unpaired"])
    return {name: render_jsonl(rows) for name, rows in files.items()}


def main(argv: list[str] | None = None) -> int:
    return main_for(__doc__, solution_files, DATA, argv)


if __name__ == "__main__":
    sys.exit(main())
