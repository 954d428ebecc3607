"""Execute a lab headless under a chosen profile (for instructors and CI).

    python -m tools.run_lab 3.1.1 --profile cpu              # the solution notebook
    python -m tools.run_lab 3.1.1 --profile grade --labs     # the student version
    python -m tools.run_lab all --profile grade --budget 60   # every lab, each within 60 s

The executed copy, with outputs, is written to runs/<profile>/ (never over the committed
notebook, which stays output-free).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tools.grading.course import Course
from tools.paths import REPO, RUNS, venv_on_path


def run(notebook: Path, profile: str, output: Path, cell_timeout: int) -> float:
    import nbformat
    from nbclient import NotebookClient

    venv_on_path()
    os.environ["COURSE_PROFILE"] = profile  # the kernel inherits this environment
    nb = nbformat.read(notebook, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute()
    finally:
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab", help="lab number or name, e.g. 3.1.1, or 'all'")
    parser.add_argument("--profile", default="cpu", choices=["grade", "cpu", "spark"])
    parser.add_argument("--labs", action="store_true", help="run the student version from labs/ (always, in a student edition)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--budget", type=float, help="fail (exit 1) if a lab takes longer than this many seconds, kernel start included")
    args = parser.parse_args(argv)
    course = Course()
    student = args.labs or not course.has_solutions
    labs = course.lab_names() if args.lab == "all" else [course.resolve_lab(args.lab)]
    over = []
    for lab in labs:
        notebook = (course.labs if student else course.solutions) / f"{lab}.ipynb"
        output = RUNS / args.profile / notebook.name
        seconds = run(notebook, args.profile, output, args.timeout)
        print(f"{notebook.relative_to(REPO)} ran under profile {args.profile!r} in {seconds:.0f} s; outputs in {output.relative_to(REPO)}", flush=True)
        if args.budget is not None and seconds > args.budget:
            over.append(f"{lab}: {seconds:.0f} s > {args.budget:g} s")
    if over:
        print("over budget:\n  " + "\n  ".join(over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
