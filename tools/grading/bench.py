"""How long grading takes on this machine: one solution per lab graded alone, then `workers` at once,
through the same pool and engine as a class, with projections for a class of 30 and of 300."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor

from tools.grading.course import Course
from tools.grading.pool import grade_job, pool_context, warm
from tools.grading.sandbox import Limits


def bench(course: Course, labs: list[str], limits: Limits, workers: int, machines: int) -> list[dict]:
    from dataclasses import asdict

    root = str(course.root.resolve())
    rows = []
    jobs = {lab: {"course": root, "lab": lab, "student": "bench", "notebook": course.source(lab).read_bytes(),
                  "limits": asdict(limits), "notes": [], "facts": {"student": "bench", "lab": lab, "sha": "bench"}}
            for lab in labs}
    warm(list(jobs.values()))
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
        for lab, job in jobs.items():
            started = time.perf_counter()
            alone = pool.submit(grade_job, job).result()
            one = time.perf_counter() - started
            started = time.perf_counter()
            together = list(pool.map(grade_job, [dict(job, student=f"bench{i}") for i in range(workers)]))
            per = (time.perf_counter() - started) / workers  # machine throughput: seconds per submission, pool full
            ok = all(r["status"] == "ok" for r in [alone, *together])
            rows.append({"lab": lab, "alone_s": one, "per_submission_s": per, "ok": ok,
                         "class30_min": 30 * per / 60, "class300_min": 300 * per / 60,
                         "class300_cluster_min": 300 * per / machines / 60})
            print(f"{lab:<40} alone {one:5.1f} s   {workers} at once {per * workers:5.1f} s ({per:4.1f} s each)"
                  f"   class of 30: {30 * per / 60:5.1f} min   300: {300 * per / 60:6.1f} min"
                  f"   300 on {machines} such machines: {300 * per / machines / 60:5.1f} min"
                  + ("" if ok else f"   (NOT full marks: {alone['status']}: {alone['reason'][:200]})"), flush=True)
    total = sum(r["per_submission_s"] for r in rows)
    print(f"{'all ' + str(len(rows)) + ' labs':<40} class of 30: {30 * total / 60:.1f} min, of 300: {300 * total / 60:.1f} min "
          f"on one {os.cpu_count()}-core machine ({workers} workers, {limits.threads} torch thread each); "
          f"{300 * total / machines / 60:.1f} min for 300 on {machines} such machines", flush=True)
    return rows
