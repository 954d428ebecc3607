"""Grade a whole class: every submission autograded by nbgrader, in parallel, safe to re-run.

    python -m tools.grade_class SUBMISSIONS [--out DIR] [--due TIME | --due LAB=TIME ...] [--id-pattern RE|PRESET]
    python -m tools.grade_class --bench                    # seconds per lab, class projections

SUBMISSIONS is a folder or a .zip: nbgrader's `submitted/<student>/<assignment>/` tree (with its
timestamp.txt files), a flat export from a learning platform, or a folder per student. Which lab a
notebook is comes from its own cells, never from a file name. Writes into --out (default grading/):
grades.csv, summary.md (what needs you first: grader errors, submissions to review, written answers,
late work) with score-distribution.png and cells.csv, and course/, an nbgrader course root whose
gradebook.db is the record and where nbgrader's own tools (formgrader, generate_feedback) work.
The pieces live in tools/grading/ (the map: tools/grading/__init__.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from tools.grading.course import Course
from tools.grading.discovery import discover
from tools.grading.due_dates import parse_due
from tools.grading.engine import STATUSES
from tools.grading.output import Output
from tools.grading.plan import Rules, plan
from tools.grading.pool import default_workers, run_jobs
from tools.grading.report import write_summary
from tools.grading.sandbox import Limits, describe, probe
from tools.grading.submission_names import PRESETS

DEFAULT_OUT = Path("grading")


def grade_class(submissions: Path, out: Path, course: Course = Course(), rules: Rules = Rules(), workers: int | None = None,
                scheduler: str | None = None, quiet: bool = False, id_pattern: str | None = None) -> dict[str, dict]:
    """Grade what is new or changed in `submissions`; return every result in the output folder."""
    from tqdm import tqdm

    course = Course(Path(course.root).resolve())
    output = Output(out, course)
    with tempfile.TemporaryDirectory(prefix="grade-class-unzip-") as unzip:
        found = discover(Path(submissions), course.resolve_lab, id_pattern=id_pattern, workdir=Path(unzip))
        plans = plan(found, course, rules)
    labs = sorted({p.lab for p in plans if p.lab})
    output.prepare(labs, {lab: (rules.due_for(lab).isoformat() if rules.due_for(lab) else None) for lab in labs})
    done = output.load_results()
    todo = [p for p in plans if done.get(p.key, {}).get("sha") != p.sha]
    for p in todo:
        if p.result is not None:
            output.record(p.result, None)
    isolation = probe()
    hide = sorted({str(Path(submissions).resolve()), str(output.root)})
    jobs = [{"course": str(course.root), "lab": p.lab, "student": p.student, "notebook": p.notebook, "notes": p.notes,
             "limits": asdict(rules.limits), "hide": hide, "submitted_at": p.submitted_at,
             "due": rules.due_for(p.lab).isoformat() if rules.due_for(p.lab) else None,
             "late_penalty": rules.late_penalty, "facts": p.facts()}
            for p in todo if p.result is None]
    notebooks = {(j["student"], j["lab"]): j["notebook"] for j in jobs}
    workers = workers or default_workers(rules.limits)
    if not quiet:
        print(f"{len(plans)} submissions: {len(plans) - len(todo)} unchanged since the last run, "
              f"{len(todo) - len(jobs)} need no kernel, {len(jobs)} to autograde "
              f"({'scheduler ' + scheduler if scheduler else f'{workers} local workers'}); "
              f"kernels run under: {describe(isolation)}", file=sys.stderr)
    with tqdm(total=len(jobs), desc="autograding", unit="nb", disable=quiet or not jobs, file=sys.stderr) as progress:
        for result in run_jobs(jobs, workers, scheduler, progress):
            output.record(result, notebooks[(result["student"], result["lab"])])
    results = output.load_results()
    output.apply(list(results.values()))  # also repairs a gradebook row a kill cut short
    rows = sorted(results.values(), key=lambda r: (r["status"] != "grader-error", r["student"], r["lab"], r["file"]))
    output.write_csv(rows)
    write_summary(output.root, rows, describe(isolation))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", nargs="?", type=Path, help="folder or .zip of submissions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: grading/)")
    parser.add_argument("--workers", type=int, help="local parallel kernels (default: cores / --threads)")
    parser.add_argument("--scheduler", help="a Dask distributed scheduler address, e.g. tcp://head:8786, instead of the local pool")
    parser.add_argument("--due", action="append", default=[], metavar="[LAB=]TIME",
                        help="due date, ISO 8601 (naive = UTC), for every lab or one; repeatable")
    parser.add_argument("--late-penalty", choices=["none", "zero"], default="none",
                        help="nbgrader's late-submission penalty (default none: lateness is reported, not penalised)")
    parser.add_argument("--id-pattern", help=f"regular expression with named groups student, timestamp, late for flat exports, "
                                             f"or a preset: {', '.join(PRESETS)}")
    d = Limits()
    parser.add_argument("--threads", type=int, default=d.threads, help="torch/OpenMP threads per kernel")
    parser.add_argument("--timeout", type=int, default=d.cell_timeout, help="seconds per cell")
    parser.add_argument("--memory-mb", type=int, default=d.memory_mb, help="address-space limit of a kernel")
    parser.add_argument("--output-bytes", type=int, default=d.output_bytes, help="output a cell may print")
    parser.add_argument("--bench", action="store_true", help="time one submission per lab and project class times")
    parser.add_argument("--labs", nargs="*", help="with --bench: only these labs")
    parser.add_argument("--machines", type=int, default=10, help="with --bench: N machines like this one for the projection")
    parser.add_argument("--course", type=Path, help="a course folder with solutions/ and labs/ (default: this repository)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    course = Course(args.course.resolve()) if args.course else Course()
    limits = Limits(cell_timeout=args.timeout, memory_mb=args.memory_mb, output_bytes=args.output_bytes, threads=args.threads)
    if args.bench:
        from tools.grading.bench import bench

        labs = [course.resolve_lab(x) for x in args.labs] if args.labs else course.lab_names()
        bench(course, labs, limits, args.workers or default_workers(limits), args.machines)
        return 0
    if args.submissions is None:
        parser.error("give the submissions folder (or --bench)")
    if not args.submissions.exists():
        parser.error(f"{args.submissions}: no such folder or zip file")
    try:
        due = parse_due(args.due, course.lab_names(), course.resolve_lab)
    except ValueError as err:
        parser.error(str(err))
    rules = Rules(limits, tuple((lab, when.isoformat()) for lab, when in due.items()), args.late_penalty)
    results = grade_class(args.submissions, args.out, course, rules, args.workers, args.scheduler, args.quiet, args.id_pattern)
    counts = {s: sum(r["status"] == s for r in results.values()) for s in STATUSES}
    print(f"{len(results)} results in {args.out}/grades.csv ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"gradebook {args.out}/course/gradebook.db; summary {args.out}/summary.md")
    return 1 if counts["grader-error"] else 0


if __name__ == "__main__":
    sys.exit(main())
