"""Where things are in a checkout of the course: the one place the repository's folders are computed.

Found from this file (the repository is the folder holding `utils/`), so it holds for the instructor
repository, a student edition (the same layout without `solutions/`) and any working directory. It sits in
`utils` because `utils` may not import `tools`; `tools.paths` builds the tools' paths on it.
"""

from __future__ import annotations

from pathlib import Path

UTILS = Path(__file__).resolve().parent  # the `utils` package
REPO = UTILS.parent  # the checkout: utils/, tools/, labs/ (and solutions/ in the instructor repository)
SOLUTIONS = REPO / "solutions"  # the nbgrader source (instructor repository only)
LABS = REPO / "labs"  # the student release, generated from solutions/
RUNS = REPO / "runs"  # executed copies and run reports (git-ignored)
RESULTS = REPO / "module-3.1" / "results"  # the run reports kept in the repository, which the documents quote
DATA = UTILS / "data"  # the shipped data files (read through importlib.resources; written by tools.build_data)
CONFIGS = UTILS / "configs"  # architecture numbers of the models the course only describes (config.json files)
