"""Execute a lab headless under a chosen profile (for instructors and CI), and write its run report.

    python -m tools.run_lab 3.1.1 --profile cpu              # the solution notebook
    python -m tools.run_lab 3.1.1 --profile grade --labs     # the student version
    python -m tools.run_lab all --profile grade --budget 60   # every lab, each within 60 s

Without --profile the course's one rule picks it (utils.profiles.profile_name: COURSE_PROFILE, else
`spark` with CUDA and `cpu` without). The profile is resolved here, once, printed, and handed to the
kernel in its own environment (this process's os.environ is left as it was). The executed copy, with
outputs, is written to runs/<profile>/ (never over the committed notebook, which stays output-free),
and next to it <notebook>.report.json: the run report (utils.run_report), also when a cell fails.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from tools import headless
from tools.grading.course import Course
from tools.paths import REPO, RUNS
from utils import run_report
from utils.profiles import LAB_SIZES, PROFILE_ENV, PROFILES, get_profile, profile_name


def shown(path: Path) -> str:
    """A path as printed and reported: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def lab_id(notebook: Path) -> str | None:
    """'3.1.4' for lab-3.1.4-8b-lora-finetuning.ipynb."""
    match = re.match(r"lab-(\d+\.\d+\.\d+)", notebook.stem)
    return match.group(1) if match else None


def kernel_environment(profile: str, figures_file: Path, base: dict | None = None) -> dict[str, str]:
    """The kernel's environment: this one, the chosen profile, this interpreter's bin first on PATH, the figures file."""
    env = headless.kernel_environment({PROFILE_ENV: profile, run_report.REPORT_ENV: str(figures_file)}, base)
    chosen = profile_name(env, cuda_available=False)
    if chosen != profile:  # NBGRADER_EXECUTION set in this shell: the kernel would run `grade` whatever was asked
        raise SystemExit(f"run_lab: profile {profile!r} was asked for, but this environment makes labs run {chosen!r} "
                         f"(NBGRADER_EXECUTION is set); unset it")
    return env


def run(notebook: Path, env: dict[str, str], output: Path, cell_timeout: int) -> float:
    """Execute `notebook` beside itself in a kernel started with `env`; write the executed copy to `output`; return the seconds."""
    return headless.execute(notebook, output, env, notebook.parent, cell_timeout)


def run_with_report(notebook: Path, name: str, output: Path, report_path: Path, cell_timeout: int) -> tuple[float, dict]:
    """`run`, with the profile resolved and printed first and the run report written after (also on failure)."""
    lab = lab_id(notebook)
    profile = get_profile(name, lab=lab if lab in LAB_SIZES else None)
    print(f"{shown(notebook)}: profile {describe(profile)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="run-lab-") as tmp:
        figures = Path(tmp) / "figures.jsonl"
        figures.touch()
        env = kernel_environment(name, figures)
        started, clock = run_report.now(), time.perf_counter()
        status, error, seconds = "ok", None, 0.0
        try:
            seconds = run(notebook, env, output, cell_timeout)
        except BaseException as err:  # a failed cell still leaves its report
            status, error = "failed", f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            raise
        finally:
            seconds = seconds or time.perf_counter() - clock
            report = run_report.build("lab", notebook.stem, profile, figures, started, seconds, status=status, error=error,
                                      lab=lab, notebook=shown(notebook), executed_copy=shown(output))
            run_report.write(report, report_path)
    return seconds, report


def describe(profile) -> str:
    """One line with every field that differs from cpu's, and the lab's own sizes."""
    base = PROFILES["cpu"].to_dict()
    fields = profile.to_dict()
    changed = {k: v for k, v in fields.items() if k not in ("name", "lab", "lab_sizes") and v != base[k]}
    parts = [f"{profile.name!r}"] + [f"{k}={v}" for k, v in changed.items()] + [f"{k}={v}" for k, v in fields["lab_sizes"].items()]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab", help="lab number or name, e.g. 3.1.1, or 'all'")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="default: the course's rule (COURSE_PROFILE, else spark with CUDA, else cpu)")
    parser.add_argument("--labs", action="store_true", help="run the student version from labs/ (always, in a student edition)")
    parser.add_argument("--timeout", type=int, default=headless.LAB_CELL_TIMEOUT, help="seconds per cell")
    parser.add_argument("--budget", type=float, help="fail (exit 1) if a lab takes longer than this many seconds, kernel start included")
    parser.add_argument("--report", type=Path, help="where to write the run report (one lab only); default: next to the executed copy")
    args = parser.parse_args(argv)
    profile = args.profile or profile_name()  # resolved once, here
    source = "--profile" if args.profile else f"{PROFILE_ENV}" if os.environ.get(PROFILE_ENV, "").strip() else "the default rule"
    print(f"run_lab: profile {profile!r} (from {source})", flush=True)
    course = Course()
    student = args.labs or not course.has_solutions
    labs = course.lab_names() if args.lab == "all" else [course.resolve_lab(args.lab)]
    if args.report and len(labs) > 1:
        parser.error("--report names one file: give one lab")
    over = []
    for lab in labs:
        notebook = (course.labs if student else course.solutions) / f"{lab}.ipynb"
        output = RUNS / profile / notebook.name
        report_path = args.report or output.with_suffix(".report.json")
        seconds, report = run_with_report(notebook, profile, output, report_path, args.timeout)
        print(f"{shown(notebook)} ran under profile {profile!r} in {seconds:.0f} s; outputs in {shown(output)}; "
              f"report {shown(report_path)} ({len(report['figures'])} figures)", flush=True)
        if report["status"] != "ok":
            over.append(f"{lab}: {report['error']}")
        elif args.budget is not None and seconds > args.budget:
            over.append(f"{lab}: {seconds:.0f} s > {args.budget:g} s")
    if over:
        print("over budget or inconsistent:\n  " + "\n  ".join(over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
