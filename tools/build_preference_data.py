"""Rebuild the preference data of Labs 3.1.7 to 3.1.9 from Lab 3.1.6's solution code.

    python -m tools.build_preference_data           # rewrite utils/data/course_{preferences,kto}_*.jsonl
    python -m tools.build_preference_data --check   # exit 1 if the shipped files differ (no writes)

The files are produced by the solution notebook's own `make_preference_pairs` and `to_unpaired`
(executed cell by cell, nothing copied into `utils`), through `utils.preference_data.build_files`,
the same call the notebook makes. Run it after changing that solution cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.notebook_cells import SOLUTIONS, run_cells
from utils.preference_data import build_files
from utils.raw_formats import render_jsonl

NOTEBOOK = SOLUTIONS / "lab-3.1.6-dataset-preparation.ipynb"
DATA_DIR = Path(__file__).resolve().parent.parent / "utils" / "data"


def solution_files() -> dict[str, str]:
    """file name -> JSONL text, as the solution code produces it now."""
    namespace = run_cells(NOTEBOOK, ["setup", "make_preference_pairs"])
    files = build_files(namespace["make_preference_pairs"], namespace["to_unpaired"])
    return {name: render_jsonl(rows) for name, rows in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in solution_files().items():
        path = DATA_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            print(f"up to date  utils/data/{name}")
            continue
        stale.append(name)
        if args.check:
            print(f"OUT OF DATE utils/data/{name}")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote       utils/data/{name} ({text.count(chr(10))} rows)")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
