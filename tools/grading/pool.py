"""Run grading jobs in parallel: a local process pool, or a Dask distributed scheduler.

A job is a plain dict (it crosses process and machine boundaries); `grade_job` turns it into one
`grade_notebook` call and returns a plain dict. A worker that crashes, or a job a Dask worker loses,
comes back as a `grader-error` result, never as the student's zero.
"""

from __future__ import annotations

import os
from pathlib import Path

from tools.grading.course import Course
from tools.grading.engine import grade_notebook, model_cache_for_sandbox, template, zero_result
from tools.grading.sandbox import Limits


def grade_job(job: dict) -> dict:
    """One submission, in a worker process. Reads only the job; the coordinator writes every output."""
    result = grade_notebook(Course(Path(job["course"])), job["lab"], job["notebook"], Limits(**job["limits"]),
                            student=job["student"], hide=tuple(job.get("hide", ())), notes=tuple(job.get("notes", ())),
                            submitted_at=job.get("submitted_at") or None, due=job.get("due"),
                            late_penalty=job.get("late_penalty", "none"))
    return finish(job, result.to_dict())


def finish(job: dict, result: dict) -> dict:
    out = {**result, **job["facts"]}
    if out["status"] == "grader-error":
        out["sha"] = "retry-" + job["facts"]["sha"]  # recorded, and graded again by the next run
    return out


def crashed(job: dict, err: BaseException) -> dict:
    """The result of a job whose worker died or was lost."""
    course = Course(Path(job["course"]))
    result = zero_result(course, job["lab"], job["student"], "grader-error", f"grader error: the worker failed ({type(err).__name__}: {err})")
    return finish(job, result.to_dict())


def default_workers(limits: Limits) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, limits.threads))


def pool_context():
    """fork where there is one: workers start with nbgrader imported (3-5 s each otherwise)."""
    import multiprocessing

    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def warm(jobs: list[dict]) -> None:
    """Make the shared pieces once in the coordinator, so forked workers inherit them."""
    model_cache_for_sandbox()
    for course, lab in sorted({(job["course"], job["lab"]) for job in jobs}):
        template(str(Path(course).resolve()), lab, True)


def run_jobs(jobs: list[dict], workers: int, scheduler: str | None, progress):
    """Yield results as they finish."""
    if not jobs:
        return
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler, timeout="60s") as client:
            futures = {client.submit(grade_job, job, pure=False, key=f"grade-{job['student']}-{job['lab']}-{job['facts']['sha'][:12]}"): job
                       for job in jobs}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as err:  # a lost or killed worker
                    yield crashed(futures[future], err)
                progress.update(1)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    warm(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
        futures = {pool.submit(grade_job, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:  # BrokenProcessPool: a worker died
                yield crashed(futures[future], err)
            progress.update(1)
