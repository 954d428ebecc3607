"""Grading, split by job (each module one job; nothing here holds which course is graded: a `Course` is passed).

    course.py            the course as a value: labs, release and source notebooks, recognising a notebook's lab
    integrity.py         what a submission changed that grading relies on (edited test cells, redefined checkers)
    sandbox.py           the kernel's operating-system limits and isolation, grading side (Limits, what the kernel may see)
    confine.py           the kernel side of the sandbox: a root of its own holding only what it needs, privileges dropped, exec
    engine.py            grade ONE notebook for one lab: `grade_notebook` -> GradeResult (every caller uses it)
    discovery.py         finding submissions: nbgrader tree, flat export, folder per student, zips within them
    submission_names.py  who and when from a name: platform presets, --id-pattern, timestamps, timestamp.txt
    safe_zip.py          extracting a zip of submissions: no escape, no links, limits against zip bombs
    due_dates.py         --due per lab or for all, and how late a submission is
    plan.py              what must be graded, keyed by a hash of the notebook and the grader (Rules: limits, due, penalty)
    pool.py              running jobs: a local process pool or Dask; a crashed worker is a grader error
    output.py            the output folder: results, nbgrader course root and gradebook, grades.csv
    report.py            summary.md, cells.csv and the score plot
    bench.py             grading time per lab on this machine

Commands: tools.self_check (one notebook: `make self-check`, `make grade-lab`), tools.grade_class (a class).
"""
