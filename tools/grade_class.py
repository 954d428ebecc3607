"""Grade a whole class: every submission autograded by nbgrader, in parallel, safe to re-run.

    python -m tools.grade_class SUBMISSIONS [--out DIR] [--workers N] [--scheduler ADDRESS]
    python -m tools.grade_class --bench                    # seconds per lab, class projections

SUBMISSIONS is nbgrader's `submitted/<student>/<assignment>/<notebook>.ipynb` tree (the folder
holding the student folders, or its parent) or a flat export from a learning platform
(`<student>_<anything>.ipynb`). Which lab a notebook is comes from its own cells (nbgrader grade
ids, else the text of the release's cells), never from a file name.

Writes into --out (default grading/): grades.csv, summary.md with score-distribution.png and
cells.csv, and course/, an nbgrader course root whose gradebook.db is the record
(course/feedback/<student>/<lab>/<lab>.html is each student's feedback). Workers grade in
private temporary courses and return results; only this coordinating process writes the output
folder and the gradebook. Each result is written atomically (results/<student>/<lab>.json,
keyed by a hash of the submission and the grader), so a re-run grades only what is new or
changed, and a run killed at any moment, run again, ends with the same gradebook and CSV.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.grade_sandbox import Limits, describe, execute_class, kill_uid, prepare_spec, probe
from tools import nbgrader_course
from tools.nbgrader_course import COURSE_ID, _ensure_venv_on_path

GRADER_VERSION = "1"  # part of every submission's hash: bump when grading itself changes
DEFAULT_OUT = Path("grading")
CSV_FIELDS = ["student", "lab", "score", "max_score", "status", "reason", "file"]
STATUSES = {
    "ok": "graded, no cell raised",
    "errors": "graded; some cells raised, timed out or hit a limit (see reason)",
    "failed": "nbgrader could not finish (e.g. the kernel died): every cell scored 0",
    "invalid": "not a readable notebook (empty, corrupt): scored 0",
    "missing": "no notebook in the assignment folder: scored 0",
    "unrecognised": "a notebook, but of no lab of this course: not graded",
}


# --- the course being graded -----------------------------------------------------------------

SOLUTIONS, LABS = nbgrader_course.SOLUTIONS, nbgrader_course.LABS  # changed only by use_course()
_GRADED: dict[str, list] = {}  # lab -> its graded cells, read once
_TEMPLATES: dict[str, Path] = {}  # lab -> a generated course, made once per worker process


def use_course(folder: Path | str | None) -> None:
    """Grade against another course folder holding solutions/ and labs/ (tests use a tiny one)."""
    global SOLUTIONS, LABS
    wanted = (Path(folder) / "solutions", Path(folder) / "labs") if folder else (nbgrader_course.SOLUTIONS, nbgrader_course.LABS)
    if (SOLUTIONS, LABS) != wanted:
        SOLUTIONS, LABS = wanted
        _GRADED.clear()
        _TEMPLATES.clear()


def lab_names() -> list[str]:
    return nbgrader_course.lab_names(SOLUTIONS)


def resolve_lab(name_or_number: str) -> str:
    return nbgrader_course.resolve_lab(name_or_number, SOLUTIONS)


# --- what a lab looks like ------------------------------------------------------------------


@dataclass(frozen=True)
class LabSignature:
    """What identifies a lab's notebook and its graded cells (from the student release)."""

    lab: str
    grade_ids: frozenset[str]
    locked: tuple[tuple[str, str], ...]  # (grade_id, source) of cells students must not change
    texts: frozenset[str]  # hashes of the release's markdown and locked cells


def _text_hash(source: str) -> str:
    return hashlib.sha256(" ".join(source.split()).encode()).hexdigest()[:16]


def _cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if isinstance(c, dict)]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _grade_meta(cell: dict) -> dict:
    meta = cell.get("metadata", {})
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbg if isinstance(nbg, dict) else {}


def signature(lab: str, release: dict) -> LabSignature:
    ids, locked, texts = set(), [], set()
    for cell in _cells(release):
        meta = _grade_meta(cell)
        gid = meta.get("grade_id")
        if gid:
            ids.add(gid)
            if meta.get("locked") or meta.get("grade"):
                locked.append((gid, _source(cell)))
        if cell.get("cell_type") == "markdown" or meta.get("locked"):
            if _source(cell).strip():
                texts.add(_text_hash(_source(cell)))
    return LabSignature(lab, frozenset(ids), tuple(locked), frozenset(texts))


def course_signatures() -> dict[str, LabSignature]:
    """Every lab with a student release (a solution still without one cannot be submitted)."""
    return {lab: signature(lab, json.loads((LABS / f"{lab}.ipynb").read_text()))
            for lab in lab_names() if (LABS / f"{lab}.ipynb").is_file()}


def recognise(nb: dict, signatures: dict[str, LabSignature]) -> tuple[str | None, str]:
    """(lab, how): by nbgrader grade ids when the cells keep their metadata, else by cell text."""

    def best(scores: dict[str, float]) -> str | None:
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        if not ranked or ranked[0][1] <= 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
            return None
        return ranked[0][0]

    ids = {_grade_meta(c).get("grade_id") for c in _cells(nb)} - {None}
    lab = best({s.lab: len(ids & s.grade_ids) / len(ids | s.grade_ids) for s in signatures.values()}) if ids else None
    if lab:
        return lab, "nbgrader grade ids"
    texts = {_text_hash(_source(c)) for c in _cells(nb) if _source(c).strip()}
    lab = best({s.lab: len(texts & s.texts) for s in signatures.values() if len(texts & s.texts) >= 3})
    return (lab, "text of the release's cells") if lab else (None, "")


_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)


def tampering(nb: dict, sig: LabSignature) -> list[str]:
    """Test and locked cells a student changed or deleted (nbgrader restores changed ones)."""
    found = {}
    for cell in _cells(nb):
        gid = _grade_meta(cell).get("grade_id")
        if gid:
            found[gid] = _HIDDEN.sub("", _source(cell))  # the instructor's own copy carries them
    notes = []
    for gid, source in sig.locked:
        if gid not in found:
            notes.append(f"cell {gid} deleted (nbgrader put it back)")
        elif _text_hash(found[gid]) != _text_hash(_HIDDEN.sub("", source)):
            notes.append(f"cell {gid} edited (graded with the release's version)")
    return notes


# --- finding submissions --------------------------------------------------------------------


@dataclass
class Submission:
    student: str
    path: Path | None  # None: the assignment folder holds no notebook
    lab_hint: str | None = None  # nbgrader layout: the assignment folder's lab
    notes: list[str] = field(default_factory=list)


def clean_id(text: str) -> str:
    """A student id that is safe as a folder name and an nbgrader id."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", text).strip("._") or "unnamed"


def discover(root: Path) -> list[Submission]:
    """Both layouts: top-level files are a flat export, top-level folders nbgrader's tree."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such submissions folder")
    if (root / "submitted").is_dir():
        root = root / "submitted"
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            student = entry.stem.split("_", 1)[0]
            found.append(Submission(clean_id(student), entry, notes=[] if "_" in entry.stem else [f"file name {entry.name} has no '<student>_' prefix"]))
        elif entry.is_dir():
            for assignment in sorted(p for p in entry.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found.extend(_assignment_folder(clean_id(entry.name), assignment))
    return found


def _assignment_folder(student: str, folder: Path) -> list[Submission]:
    try:
        hint = resolve_lab(folder.name)
    except ValueError:
        hint = None
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if hint and (folder / f"{hint}.ipynb") in notebooks:
        return [Submission(student, folder / f"{hint}.ipynb", hint)]
    if not notebooks:
        return [Submission(student, None, hint, [f"no notebook in {folder}"])]
    return [Submission(student, nb, hint, [f"notebook named {nb.name}" + (f", not {hint}.ipynb" if hint else "")]) for nb in notebooks]


# --- jobs and results -----------------------------------------------------------------------


def grader_fingerprint(lab: str, limits: Limits) -> str:
    digest = hashlib.sha256(GRADER_VERSION.encode())
    digest.update((SOLUTIONS / f"{lab}.ipynb").read_bytes() if lab else b"")
    digest.update(json.dumps(asdict(limits), sort_keys=True).encode())
    return digest.hexdigest()


def content_hash(data: bytes, lab: str | None, limits: Limits) -> str:
    return hashlib.sha256(grader_fingerprint(lab or "", limits).encode() + data).hexdigest()


@dataclass
class Plan:
    """One (student, lab) to grade, or a result already known without running anything."""

    student: str
    lab: str | None
    file: str
    sha: str
    notebook: bytes | None = None  # set when a kernel must run it
    result: dict | None = None  # set when no kernel is needed (invalid, missing, unrecognised)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.student}/{self.lab or 'unknown-' + clean_id(self.file)}"


def _zero_cells(lab: str) -> list[dict]:
    return [{"grade_id": gid, "score": 0.0, "max_score": pts, "needs_manual_grade": False} for gid, pts in graded_cells(lab)]


def graded_cells(lab: str) -> list[tuple[str, float]]:
    """(grade_id, points) of the lab's graded cells, from its release notebook."""
    if lab not in _GRADED:
        release = json.loads((LABS / f"{lab}.ipynb").read_text())
        _GRADED[lab] = [(m["grade_id"], float(m.get("points", 0))) for m in map(_grade_meta, _cells(release)) if m.get("grade")]
    return _GRADED[lab]


def fixed_result(plan: Plan, status: str, reason: str) -> dict:
    cells = _zero_cells(plan.lab) if plan.lab else []
    return {"student": plan.student, "lab": plan.lab or "", "file": plan.file, "sha": plan.sha, "status": status,
            "reason": reason, "score": 0.0, "max_score": sum(c["max_score"] for c in cells), "cells": cells}


def plan(submissions: list[Submission], signatures: dict[str, LabSignature], limits: Limits) -> list[Plan]:
    """Read every submission, recognise its lab, and decide what must run; one plan per key."""
    plans: dict[str, Plan] = {}
    for sub in submissions:
        name = str(sub.path.name) if sub.path else ""
        if sub.path is None:
            p = Plan(sub.student, sub.lab_hint, "", content_hash(b"", sub.lab_hint, limits))
            p.result = fixed_result(p, "missing", "; ".join(sub.notes))
        else:
            data = sub.path.read_bytes()
            nb, problem = _parse(data)
            lab, how = recognise(nb, signatures) if nb is not None else (None, "")
            notes = list(sub.notes)
            if sub.lab_hint and lab and lab != sub.lab_hint:
                notes.append(f"its cells are {lab}, filed under {sub.lab_hint}")
            if not lab and sub.lab_hint and nb is not None:
                lab = sub.lab_hint
                notes.append("no cell of the lab recognised; graded as its assignment folder says")
            if not lab and sub.lab_hint and nb is None:
                lab = sub.lab_hint
            p = Plan(sub.student, lab, name, content_hash(data, lab, limits), notes=notes)
            if nb is None:
                p.result = fixed_result(p, "invalid", f"{name}: {problem}")
            elif not lab:
                p.result = fixed_result(p, "unrecognised", f"{name}: no nbgrader cell or release cell of any lab ({', '.join(signatures)})")
            else:
                p.notebook = data
                p.notes += tampering(nb, signatures[lab])
        if p.key in plans:  # the same student's lab twice: grade the last by file name, say so
            kept, other = sorted([plans[p.key], p], key=lambda x: x.file)[::-1]
            kept.notes.append(f"also submitted {other.file} (not graded)")
            if kept.result:
                kept.result["reason"] = "; ".join(filter(None, [kept.result["reason"], kept.notes[-1]]))
            kept.sha = hashlib.sha256((kept.sha + other.sha).encode()).hexdigest()
            if kept.result:
                kept.result["sha"] = kept.sha
            p = kept
        plans[p.key] = p
    return list(plans.values())


def _parse(data: bytes) -> tuple[dict | None, str]:
    if not data.strip():
        return None, "empty file"
    try:
        import nbformat

        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        return nb, ""
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at line {err.lineno})"
    except Exception as err:  # nbformat raises several kinds for a damaged notebook
        return None, f"not a valid notebook ({type(err).__name__}: {str(err).splitlines()[0][:120]})"


# --- the worker: one submission in a private course -----------------------------------------

@functools.lru_cache(maxsize=None)
def _nbgrader_ready() -> None:
    """PATH for nbgrader's subprocesses, and its `alembic heads` call (a new Python process, 1-3 s,
    made for every new gradebook) asked once per process: its answer is fixed by the installed nbgrader."""
    _ensure_venv_on_path()
    import warnings

    import nbgrader.api

    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warning on every new submission
    warnings.filterwarnings("ignore", message=".*not in session, add operation along.*")
    nbgrader.api.get_alembic_version = functools.lru_cache(maxsize=None)(nbgrader.api.get_alembic_version)


def _template(lab: str) -> Path:
    """A generated course for `lab` (source + gradebook), made once per process (the local pool's
    workers inherit the coordinator's, Dask workers make their own)."""
    if lab not in _TEMPLATES:
        _nbgrader_ready()
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        root = Path(tempfile.mkdtemp(prefix=f"grade-class-template-{lab}-"))
        (root / "source" / lab).mkdir(parents=True)
        shutil.copy(SOLUTIONS / f"{lab}.ipynb", root / "source" / lab / f"{lab}.ipynb")
        config = _config(root, root / "gradebook.db")
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        result = api.generate_assignment(lab)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment failed for {lab}: {result.get('error')}")
        _TEMPLATES[lab] = root
    return _TEMPLATES[lab]


def _config(root: Path, db: Path):
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.db_url = f"sqlite:///{db}"
    config.NbGraderAPI.log_level = "ERROR"
    config.Exchange.root = str(root)  # the exchange is unused; nbgrader only wants a writable folder
    return config


def grade_job(job: dict) -> dict:
    """Autograde one submission in a throw-away course; return its result (never raises).

    Runs in a worker process (local pool or Dask worker). It writes only inside its own
    temporary directory; the coordinator turns the returned dict into files and gradebook rows.
    """
    _nbgrader_ready()
    use_course(job.get("course"))
    started = time.perf_counter()
    lab, student = job["lab"], job["student"]
    limits = Limits(**job["limits"])
    result = {k: job[k] for k in ("student", "lab", "file", "sha")}
    job_dir = Path(tempfile.mkdtemp(prefix="grade-class-job-"))
    uid = None
    try:
        template = _template(lab)
        os.chmod(job_dir, 0o711)  # the kernel's uid may pass through, not list or read
        course, private = job_dir / "course", job_dir / "private"
        course.mkdir(mode=0o711)
        private.mkdir(mode=0o700)
        shutil.copytree(template / "source", course / "source")
        os.chmod(course / "source", 0o700)
        shutil.copy(template / "gradebook.db", private / "gradebook.db")
        submitted = course / "submitted" / student / lab
        submitted.mkdir(parents=True)
        os.chmod(course / "submitted", 0o700)
        (submitted / f"{lab}.ipynb").write_bytes(job["notebook"])
        (course / "autograded").mkdir(mode=0o711)

        from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
        from nbgrader.api import Gradebook
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades,
                                            IgnorePattern, LimitOutput, SaveAutoGrades)

        config = _config(course, private / "gradebook.db")
        model_cache = model_cache_for_sandbox()  # this machine's, also on a Dask worker
        hide = sorted({*job.get("hide", []), str(SOLUTIONS), str(nbgrader_course.SOLUTIONS)})
        sandbox, _, uid = prepare_spec(job_dir, limits, hide, {"COURSE_CACHE": model_cache} if model_cache else {})
        for key, value in sandbox.items():
            cls, attr = key.split(".")
            config[cls][attr] = value
        config.Execute.timeout = limits.cell_timeout
        config.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and run
        config.Autograde.autograde_preprocessors = [execute_class(), IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                                    SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        # Feedback goes to the student: the hidden tests stay hidden in it.
        config.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests]
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        graded = api.autograde(lab, student, force=True, create=True)
        autograded = course / "autograded" / student / lab / f"{lab}.ipynb"
        cells, score, max_score = [], 0.0, 0.0
        if graded["success"]:
            with Gradebook(config.CourseDirectory.db_url, COURSE_ID) as gb:
                nb = gb.find_submission_notebook(lab, lab, student)
                for g in sorted(nb.grades, key=lambda g: g.name):
                    cells.append({"grade_id": g.name, "score": float(g.auto_score or 0), "max_score": float(g.max_score),
                                  "needs_manual_grade": bool(g.needs_manual_grade)})
            score, max_score = sum(c["score"] for c in cells), sum(c["max_score"] for c in cells)
            feedback = api.generate_feedback(lab, student, force=True)
            html = course / "feedback" / student / lab / f"{lab}.html"
            result["feedback"] = html.read_text() if feedback["success"] and html.exists() else None
            result["autograded"] = autograded.read_text() if autograded.exists() else None
            problems = cell_problems(json.loads(result["autograded"])) if result["autograded"] else []
            status = "errors" if problems else "ok"
        else:
            cells = _zero_cells(lab)
            max_score = sum(c["max_score"] for c in cells)
            status = "failed"
            problems = [_nbgrader_error(graded)]
        result.update(status=status, reason="; ".join(job.get("notes", []) + problems), score=score,
                      max_score=max_score, cells=cells)
    except Exception as err:  # a grader bug must not lose the class: report it as this row's reason
        cells = _zero_cells(lab) if lab else []
        result.update(status="failed", reason=f"grader error: {type(err).__name__}: {err}", score=0.0,
                      max_score=sum(c["max_score"] for c in cells), cells=cells)
        result["sha"] = "retry-" + job["sha"]  # recorded, but graded again by the next run
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(job_dir, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _nbgrader_error(graded: dict) -> str:
    text = (graded.get("error") or "") + "\n" + (graded.get("log") or "")
    if "CellTimeoutError" in text or "UnresponsiveKernelError" in text:
        return ("nbgrader could not grade it: a cell ran past the timeout and the kernel stopped answering "
                "(an endless loop that ignores interrupts, or a kernel stuck at its memory limit)")
    if "DeadKernelError" in text or "Kernel died" in text:
        return "nbgrader could not grade it: the kernel died (killed at a resource limit, or the notebook exited it)"
    for pattern in ("DeadKernelError", "Kernel died", "MemoryError", "CellTimeoutError", "RuntimeError", "Error"):
        for line in text.splitlines():
            if pattern in line:
                return "nbgrader could not grade it: " + line.strip()[:200]
    return "nbgrader could not grade it"


def cell_problems(nb: dict) -> list[str]:
    """One line per cell that raised, timed out or hit the output limit (for the reason column)."""
    problems = []
    for index, cell in enumerate(_cells(nb)):
        name = _grade_meta(cell).get("grade_id") or f"#{index}"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                value = (out.get("evalue") or "").strip().splitlines()
                problems.append(f"cell {name}: {out.get('ename')}" + (f": {value[0][:100]}" if value else ""))
                break
            if out.get("output_type") == "stream" and "[grade-class] OutputLimit" in _source({"source": out.get("text", "")}):
                problems.append(f"cell {name}: output limit reached")
                break
    if len(problems) > 8:
        problems = problems[:8] + [f"and {len(problems) - 8} more cells"]
    return problems


# --- the coordinator: the only writer of the output folder ----------------------------------


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write then rename: a reader (or a re-run after a kill) sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Output:
    """The output folder: results/ (one JSON per key), course/ (nbgrader), CSV and summary."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.course = self.root / "course"
        self.results_dir = self.root / "results"
        self.db_url = f"sqlite:///{self.course / 'gradebook.db'}"

    def result_path(self, key: str) -> Path:
        return self.results_dir / f"{key}.json"

    def load_results(self) -> dict[str, dict]:
        found = {}
        for path in sorted(self.results_dir.glob("*/*.json")):
            try:
                found[f"{path.parent.name}/{path.stem}"] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # cannot happen with atomic writes; a stray file is simply regraded
        return found

    def prepare(self, labs: list[str]) -> None:
        """The course root and its gradebook: one assignment per lab, made by nbgrader itself."""
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        _nbgrader_ready()
        self.course.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(self.root, 0o700)  # grades and feedback are private
        atomic_write(self.course / "nbgrader_config.py", (  # so `cd course && nbgrader export` just works
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
            "c.CourseDirectory.root = __import__('os').path.dirname(__import__('os').path.abspath(__file__))\n"))
        config = _config(self.course, self.course / "gradebook.db")
        api = None
        for lab in labs:
            with Gradebook(self.db_url, COURSE_ID) as gb:
                try:
                    gb.find_assignment(lab)
                    continue
                except MissingEntry:
                    pass
            source = self.course / "source" / lab / f"{lab}.ipynb"
            source.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SOLUTIONS / f"{lab}.ipynb", source)
            api = api or NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
            made = api.generate_assignment(lab, force=True)
            if not made["success"]:
                raise RuntimeError(f"generate_assignment failed for {lab}: {made.get('error')}")

    def record(self, result: dict, notebook: bytes | None) -> None:
        """Files first, then the result (the commit point), then the gradebook row."""
        student, lab = result["student"], result["lab"]
        if lab:
            if notebook is not None:
                atomic_write(self.course / "submitted" / student / lab / f"{lab}.ipynb", notebook)
            for kind, ext, text in (("autograded", "ipynb", result.get("autograded")), ("feedback", "html", result.get("feedback"))):
                path = self.course / kind / student / lab / f"{lab}.{ext}"
                if text is not None:
                    atomic_write(path, text)
                elif path.exists():
                    path.unlink()  # a stale file from an earlier version of this submission
        kept = {k: v for k, v in result.items() if k not in ("autograded", "feedback")}
        key = f"{student}/{lab or 'unknown-' + clean_id(result['file'])}"
        atomic_write(self.result_path(key), json.dumps(kept, indent=1, sort_keys=True))
        if lab:
            self.apply([kept], fresh=True)

    def apply(self, results: list[dict], fresh: bool = False) -> None:
        """Make the gradebook say what the results say (idempotent; one transaction each)."""
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.db_url, COURSE_ID) as gb:
            for result in results:
                if not result["lab"]:
                    continue
                student, lab = result["student"], result["lab"]
                gb.update_or_create_student(student)
                try:
                    gb.find_submission(lab, student)
                except MissingEntry:
                    gb.add_submission(lab, student)
                nb = gb.find_submission_notebook(lab, lab, student)
                cells = {c["grade_id"]: c for c in result["cells"]}
                for grade in nb.grades:
                    cell = cells.get(grade.name, {})
                    grade.auto_score = float(cell.get("score", 0.0))
                    grade.needs_manual_grade = bool(cell.get("needs_manual_grade", False))
                    if fresh:
                        grade.manual_score = None  # a new version of the work: old manual marks do not apply
                gb.db.commit()

    def write_reports(self, results: dict[str, dict], isolation: str) -> None:
        rows = sorted(results.values(), key=lambda r: (r["student"], r["lab"], r["file"]))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r.get(k, "") for k in CSV_FIELDS}, "score": f"{r['score']:g}", "max_score": f"{r['max_score']:g}"})
        atomic_write(self.root / "grades.csv", buf.getvalue())
        write_summary(self.root, rows, isolation)


def cell_losses(rows: list[dict]) -> list[dict]:
    """Per lab and graded cell: how many students were graded and the share who lost its points."""
    stats: dict[tuple[str, str], list] = {}
    for r in rows:
        if not r["lab"] or r["status"] == "unrecognised":
            continue
        for c in r["cells"]:
            if c["max_score"] > 0:
                entry = stats.setdefault((r["lab"], c["grade_id"]), [c["max_score"], 0, 0])
                entry[1] += 1
                entry[2] += c["score"] < c["max_score"]
    return [{"lab": lab, "grade_id": gid, "points": f"{pts:g}", "students": n, "lost_share": f"{lost / n:.2f}"}
            for (lab, gid), (pts, n, lost) in sorted(stats.items())]


def write_summary(root: Path, rows: list[dict], isolation: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_lab: dict[str, list[dict]] = {}
    for r in rows:
        if r["lab"]:
            by_lab.setdefault(r["lab"], []).append(r)
    losses = cell_losses(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["lab", "grade_id", "points", "students", "lost_share"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(losses)
    atomic_write(root / "cells.csv", buf.getvalue())

    labs = sorted(by_lab)
    fig, axes = plt.subplots(1, max(1, len(labs)), figsize=(4 * max(1, len(labs)), 3), squeeze=False)
    for ax, lab in zip(axes[0], labs):
        scores = [r["score"] for r in by_lab[lab]]
        top = max(r["max_score"] for r in by_lab[lab]) or 1
        ax.hist(scores, bins=min(20, int(top) + 1), range=(0, top))
        ax.set_title(lab.split("-", 2)[1] if lab.count("-") >= 2 else lab)
        ax.set_xlabel(f"score (of {top:g})")
        ax.set_ylabel("students")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(root / "score-distribution.png", png.getvalue())

    lines = ["# Class grading summary", "", f"Kernels ran under: {isolation}.", "",
             "![score distribution per lab](score-distribution.png)", "",
             "| lab | submissions | mean score | max | statuses |", "|---|---|---|---|---|"]
    for lab in labs:
        rs = by_lab[lab]
        statuses = ", ".join(f"{s} {sum(r['status'] == s for r in rs)}" for s in STATUSES if any(r["status"] == s for r in rs))
        lines.append(f"| {lab} | {len(rs)} | {sum(r['score'] for r in rs) / len(rs):.1f} | {max(r['max_score'] for r in rs):g} | {statuses} |")
    unknown = [r for r in rows if not r["lab"]]
    if unknown:
        lines += ["", f"{len(unknown)} file(s) were not graded (see grades.csv): " + ", ".join(f"{r['student']}: {r['file']}" for r in unknown)]
    lines += ["", "## What the class did not get", "",
              "Share of graded students who lost the points of each graded cell (cells.csv):", "",
              "| lab | cell | points | students | lost their points |", "|---|---|---|---|---|"]
    lines += [f"| {c['lab']} | {c['grade_id']} | {c['points']} | {c['students']} | {float(c['lost_share']):.0%} |" for c in losses]
    atomic_write(root / "summary.md", "\n".join(lines) + "\n")


# --- running the jobs -----------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def model_cache_for_sandbox() -> str:
    """A copy of the prepared model the sandbox uid can read (the cache is private to its owner).

    Made once per machine per cache state; unneeded when not root (the kernel keeps our uid).
    """
    from utils.models import cache_root

    source = cache_root()
    if os.geteuid() != 0 or not source.is_dir():
        return ""
    stamp = hashlib.sha256("".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(source.rglob("*")) if p.is_file()).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"grade-class-model-{stamp}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".grade-class-model-", dir=target.parent))
        shutil.copytree(source, staging / "cache", dirs_exist_ok=True)
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        try:
            os.replace(staging / "cache", target)
        except OSError:
            pass  # another worker made it first
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def run_jobs(jobs: list[dict], workers: int, scheduler: str | None, progress):
    """Yield results as they finish: a local process pool, or a Dask distributed scheduler."""
    if not jobs:
        return
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler, timeout="60s") as client:
            futures = [client.submit(grade_job, job, pure=False, key=f"grade-{job['student']}-{job['lab']}-{job['sha'][:12]}") for job in jobs]
            for future in as_completed(futures):
                yield future.result()
                progress.update(1)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    model_cache_for_sandbox()
    for lab in sorted({job["lab"] for job in jobs}):
        _template(lab)  # made here once; forked workers inherit them and the imports
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        futures = [pool.submit(grade_job, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
            progress.update(1)


def _pool_context():
    """fork where there is one: workers start with nbgrader imported (3-5 s each otherwise)."""
    import multiprocessing

    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def default_workers(limits: Limits) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, limits.threads))


def grade_class(submissions: Path, out: Path, limits: Limits, workers: int | None = None,
                scheduler: str | None = None, quiet: bool = False, course: Path | None = None) -> dict[str, dict]:
    """Grade what is new or changed in `submissions`; return every result in the output folder."""
    from tqdm import tqdm

    course = Path(course).resolve() if course else None
    use_course(course)
    output = Output(out)
    signatures = course_signatures()
    plans = plan(discover(submissions), signatures, limits)
    output.prepare(sorted({p.lab for p in plans if p.lab}))
    done = output.load_results()
    todo = [p for p in plans if done.get(p.key, {}).get("sha") != p.sha]
    for p in todo:
        if p.result is not None:
            output.record(p.result, None)
    isolation = probe()
    hide = sorted({str(SOLUTIONS), str(nbgrader_course.SOLUTIONS), str(Path(submissions).resolve()), str(output.root.resolve())})
    jobs = [{"student": p.student, "lab": p.lab, "file": p.file, "sha": p.sha, "notebook": p.notebook,
             "notes": p.notes, "limits": asdict(limits), "hide": hide,
             "course": str(course) if course else None}
            for p in todo if p.result is None]
    notebooks = {(j["student"], j["lab"]): j["notebook"] for j in jobs}
    if not quiet:
        print(f"{len(plans)} submissions: {len(plans) - len(todo)} unchanged since the last run, "
              f"{len(todo) - len(jobs)} need no kernel, {len(jobs)} to autograde "
              f"({'scheduler ' + scheduler if scheduler else f'{workers or default_workers(limits)} local workers'}); "
              f"kernels run under: {describe(isolation)}", file=sys.stderr)
    with tqdm(total=len(jobs), desc="autograding", unit="nb", disable=quiet or not jobs, file=sys.stderr) as progress:
        for result in run_jobs(jobs, workers or default_workers(limits), scheduler, progress):
            output.record(result, notebooks[(result["student"], result["lab"])])
    results = output.load_results()
    output.apply(list(results.values()))  # also repairs a gradebook row a kill cut short
    output.write_reports(results, describe(isolation))
    return results


# --- benchmark ------------------------------------------------------------------------------


def bench(labs: list[str], limits: Limits, workers: int, machines: int, course: Path | None = None) -> list[dict]:
    """Seconds to autograde one solution alone, and `workers` at once, per lab; projections.

    `course`: the course folder the labs come from (None: this repository), passed on to every worker.
    """
    from concurrent.futures import ProcessPoolExecutor

    course = Path(course).resolve() if course else None  # as grade_class: workers get an absolute path
    use_course(course)
    rows = []
    model_cache_for_sandbox()
    for lab in labs:
        _template(lab)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        for lab in labs:
            job = {"student": "bench", "lab": lab, "file": f"{lab}.ipynb", "sha": "bench", "notes": [],
                   "notebook": (SOLUTIONS / f"{lab}.ipynb").read_bytes(), "limits": asdict(limits),
                   "hide": [], "course": str(course) if course else None}
            started = time.perf_counter()
            alone = pool.submit(grade_job, job).result()
            one = time.perf_counter() - started
            started = time.perf_counter()
            together = list(pool.map(grade_job, [dict(job, student=f"bench{i}") for i in range(workers)]))
            batch = time.perf_counter() - started
            per = batch / workers  # machine throughput: seconds per submission with the pool full
            ok = all(r["status"] == "ok" for r in [alone, *together])
            rows.append({"lab": lab, "alone_s": one, "per_submission_s": per, "ok": ok,
                         "class30_min": 30 * per / 60, "class300_min": 300 * per / 60,
                         "class300_cluster_min": 300 * per / machines / 60})
            print(f"{lab:<40} alone {one:5.1f} s   {workers} at once {batch:5.1f} s ({per:4.1f} s each)"
                  f"   class of 30: {30 * per / 60:5.1f} min   300: {300 * per / 60:6.1f} min"
                  f"   300 on {machines} such machines: {300 * per / machines / 60:5.1f} min"
                  + ("" if ok else "   (NOT full marks: see grade_job)"), flush=True)
    total = sum(r["per_submission_s"] for r in rows)
    print(f"{'all ' + str(len(rows)) + ' labs':<40} class of 30: {30 * total / 60:.1f} min, of 300: {300 * total / 60:.1f} min "
          f"on one {os.cpu_count()}-core machine ({workers} workers, {limits.threads} torch thread each); "
          f"{300 * total / machines / 60:.1f} min for 300 on {machines} such machines", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", nargs="?", type=Path, help="folder of submissions (nbgrader tree or flat export)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: grading/)")
    parser.add_argument("--workers", type=int, help="local parallel kernels (default: cores / --threads)")
    parser.add_argument("--scheduler", help="a Dask distributed scheduler address, e.g. tcp://head:8786, instead of the local pool")
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
    limits = Limits(cell_timeout=args.timeout, memory_mb=args.memory_mb, output_bytes=args.output_bytes, threads=args.threads)
    use_course(args.course)
    if args.bench:
        labs = [resolve_lab(x) for x in args.labs] if args.labs else lab_names()
        bench(labs, limits, args.workers or default_workers(limits), args.machines, args.course)
        return 0
    if args.submissions is None:
        parser.error("give the submissions folder (or --bench)")
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions}: no such folder")
    results = grade_class(args.submissions, args.out, limits, args.workers, args.scheduler, args.quiet, args.course)
    counts = {s: sum(r["status"] == s for r in results.values()) for s in STATUSES}
    print(f"{len(results)} results in {args.out}/grades.csv ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"gradebook {args.out}/course/gradebook.db; summary {args.out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
