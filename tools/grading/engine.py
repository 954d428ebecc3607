"""Grade one notebook for one lab: the one grading engine of the course.

`make self-check` / `make grade-lab` (tools.self_check), the class grader (tools.grade_class, one call
per submission in a worker) and the CI full-marks and zero-marks tests all call `grade_notebook`, with
one nbgrader configuration (`nbgrader_config`) and one set of defaults (`Limits`). Each call works in
its own throw-away nbgrader course (source, submission, gradebook), runs the kernel in the sandbox
(tools.grading.sandbox), and returns a `GradeResult`; it writes nothing else and never raises for
a student's notebook.

nbgrader's Python API is used, not its CLI: `nbgrader validate` exits 0 even when tests fail.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.grading.course import Course
from tools.grading.sandbox import Limits, execute_class, kill_uid, prepare_spec
from tools.notebook_cells import cells, nbgrader_meta, source_text
from tools.paths import COURSE_ID, venv_on_path

STATUSES = {
    "ok": "graded, no cell raised",
    "errors": "graded; some cells raised, timed out or hit a limit (see reason)",
    "failed": "nbgrader could not finish (e.g. the kernel died): every cell scored 0",
    "grader-error": "the grader, not the notebook, failed (a missing tool, model or disk space): no score; a re-run grades it again",
    "invalid": "not a readable notebook (empty, corrupt): scored 0",
    "missing": "no notebook in the assignment folder: scored 0",
    "unrecognised": "a notebook, but of no lab of this course: not graded",
}
OUTPUT_LIMIT_MARK = "[grader] OutputLimit"


@dataclass
class CellResult:
    grade_id: str
    score: float
    max_score: float
    manual: bool = False  # a written answer, scored by a person in formgrader (its score here is 0)
    needs_manual_grade: bool = False  # nbgrader's flag: an answer is there to grade (a blank one is not)
    error: str = ""  # why an autograded cell lost its points: its error, first line


@dataclass
class GradeResult:
    """What grading one notebook found. `score` counts autograded points; written answers wait for a person."""

    lab: str
    student: str
    status: str
    cells: list[CellResult] = field(default_factory=list)
    reason: str = ""
    autograded: str | None = None  # the autograded notebook, JSON text
    feedback: str | None = None  # HTML for the student, hidden tests cleared
    seconds: float = 0.0
    penalty: float = 0.0  # nbgrader's late-submission penalty, in points

    @property
    def score(self) -> float:
        return max(0.0, sum(c.score for c in self.cells if not c.manual) - self.penalty)

    @property
    def auto_max(self) -> float:
        return sum(c.max_score for c in self.cells if not c.manual)

    @property
    def manual_max(self) -> float:
        return sum(c.max_score for c in self.cells if c.manual)

    @property
    def max_score(self) -> float:
        return self.auto_max + self.manual_max

    def by_id(self) -> dict[str, CellResult]:
        return {c.grade_id: c for c in self.cells}

    def scores(self) -> dict[str, float | None]:
        """grade_id -> autograded score (None for a written answer): what two graders must agree on."""
        return {c.grade_id: None if c.manual else c.score for c in self.cells}

    def table(self) -> str:
        lines = [f"{self.lab}: {self.score:g} / {self.auto_max:g} autograded points"
                 + (f", {self.manual_max:g} points of written answers to grade by hand" if self.manual_max else "")
                 + f" [{self.status}]"]
        for c in self.cells:
            if c.manual:
                state = "graded by hand" if c.needs_manual_grade else "no answer written yet"
                lines.append(f"  {c.grade_id:<34} written answer, {c.max_score:g} points: {state}")
            else:
                verdict = "passed" if c.score >= c.max_score else "FAILED"
                lines.append(f"  {c.grade_id:<34} {c.score:g} / {c.max_score:g}  {verdict}" + (f"  {c.error}" if c.error and c.score < c.max_score else ""))
        if self.reason:
            lines.append(f"  note: {self.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(score=self.score, max_score=self.max_score, manual_max=self.manual_max)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GradeResult":
        keep = {k: d[k] for k in ("lab", "student", "status", "reason", "autograded", "feedback", "seconds", "penalty") if k in d}
        return cls(cells=[CellResult(**{k: c[k] for k in ("grade_id", "score", "max_score", "manual", "needs_manual_grade", "error") if k in c})
                          for c in d.get("cells", [])], **keep)


def zero_result(course: Course, lab: str, student: str, status: str, reason: str) -> GradeResult:
    """A result with every graded cell at 0 (or, for a grader error, at 0 and to be graded again)."""
    cells_ = [CellResult(gid, 0.0, pts, manual) for gid, pts, manual in course.graded_cells(lab)]
    return GradeResult(lab, student, status, cells_, reason)


# --- nbgrader: one configuration ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def nbgrader_ready() -> None:
    """PATH for nbgrader's subprocesses, and its `alembic heads` call (a new Python process, 1-3 s per new
    gradebook) asked once per process: its answer is fixed by the installed nbgrader."""
    venv_on_path()
    import warnings

    import nbgrader.api

    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warning on every new submission
    warnings.filterwarnings("ignore", message=".*not in session, add operation along.*")
    nbgrader.api.get_alembic_version = functools.lru_cache(maxsize=None)(nbgrader.api.get_alembic_version)


def feedback_preprocessors() -> list:
    """nbgrader's feedback pipeline without the hidden tests, in their cells or in the tracebacks they raised: feedback
    goes to the student (the course root handed to instructors gets the same list, tools.nbgrader_root.config_text)."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    from tools.hidden_test_errors import RedactHiddenTestErrors

    return [GetGrades, CSSHTMLHeaderPreprocessor, RedactHiddenTestErrors, ClearHiddenTests]


def nbgrader_config(root: Path, db: Path, limits: Limits | None = None, sandbox: dict | None = None):
    """The course's nbgrader configuration for a course root (one place; the handed-over course root gets the same
    feedback settings through tools.nbgrader_root)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.db_url = f"sqlite:///{Path(db).resolve()}"
    config.NbGraderAPI.log_level = "ERROR"
    config.Exchange.root = str(root)  # the exchange is unused; nbgrader only wants a writable folder
    config.GenerateFeedback.preprocessors = feedback_preprocessors()
    if limits is not None:
        config.Execute.timeout = limits.cell_timeout
        config.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and run
        config.Autograde.autograde_preprocessors = [execute_class(), IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                                    SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    for key, value in (sandbox or {}).items():
        cls, attr = key.split(".")
        config[cls][attr] = value
    return config


def api_for(config):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def generate(course: Course, lab: str, root: Path, hidden: bool = True) -> Path:
    """generate_assignment for `lab` in course root `root`; return the release notebook (the student version)."""
    nbgrader_ready()
    (root / "source" / lab).mkdir(parents=True, exist_ok=True)
    shutil.copy(course.source(lab, hidden), root / "source" / lab / f"{lab}.ipynb")
    made = api_for(nbgrader_config(root, root / "gradebook.db")).generate_assignment(lab, force=True)
    if not made["success"]:
        raise RuntimeError(f"generate_assignment failed for {lab}: {made.get('error')}\n{made.get('log')}")
    return root / "release" / lab / f"{lab}.ipynb"


@functools.lru_cache(maxsize=None)
def template(course_root: str, lab: str, hidden: bool) -> Path:
    """A generated course (source + gradebook) for one lab, made once per process and copied for every submission."""
    root = Path(tempfile.mkdtemp(prefix=f"grader-template-{lab}-"))
    generate(Course(Path(course_root)), lab, root, hidden)
    return root


@functools.lru_cache(maxsize=None)
def model_cache_for_sandbox() -> str:
    """A copy of the prepared model the sandbox uid can read (the cache is private to its owner); this machine's,
    also on a Dask worker.

    Made once per machine per cache state; not root, the kernel keeps our uid and reads the cache itself.
    """
    from utils.models import cache_root

    source = cache_root()
    if not source.is_dir():
        return ""
    if os.geteuid() != 0:
        return str(source)  # the kernel keeps our uid: it reads the cache itself, bound read-only into its root
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


# --- why a worker cannot grade a lab (the grader's fault, not the student's) -----------------

# Labs whose cells need more than the course install and its prepared model.
NEEDS_DEPLOY = ("lab-3.1.10",)


def preflight(lab: str) -> str:
    """'' if this machine can grade `lab`, else why not (reported as grader-error, never as the student's zero)."""
    problems = []
    if lab.startswith("lab-3.1."):
        from utils.models import smollm2_dir

        if not (smollm2_dir() / "config.json").is_file():
            problems.append(f"the prepared model is missing at {smollm2_dir()} (run `make prepare-model` on this worker)")
    if lab.startswith(NEEDS_DEPLOY):
        from utils.deploy_tools import DEPLOY_NEEDS, missing_deploy_tools

        if missing_deploy_tools():
            problems.append(f"{'; '.join(missing_deploy_tools())} (Lab 3.1.10 needs {DEPLOY_NEEDS})")
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < 512 * 2**20:
        problems.append(f"only {free / 2**20:.0f} MiB free in {tempfile.gettempdir()}")
    return "; ".join(problems)


# --- one notebook ---------------------------------------------------------------------------


def grade_notebook(course: Course, lab: str, notebook: bytes, limits: Limits = Limits(), *, student: str = "student",
                   hidden: bool = True, hide: tuple[str, ...] = (), env: dict[str, str] | None = None,
                   feedback: bool = True, notes: tuple[str, ...] = (), submitted_at: str | None = None,
                   due: str | None = None, late_penalty: str = "none") -> GradeResult:
    """Autograde `notebook` (its bytes) as `student`'s work on `lab`, in a throw-away course; never raises.

    hidden: run the instructor's hidden tests too (needs the course's solutions/); False runs the visible
    tests only, as a student's self-check does. `hide`: more folders the kernel must not see (the class's
    submissions and outputs). `env`: extra environment for the kernel (e.g. the model cache it can read).
    submitted_at / due (ISO times) and late_penalty (nbgrader's LateSubmissionPlugin: none | zero) let
    nbgrader itself record lateness and apply the penalty.
    """
    nbgrader_ready()
    started = time.perf_counter()
    job_dir = Path(tempfile.mkdtemp(prefix="grader-job-"))
    uid = None
    try:
        problem = preflight(lab)
        if problem:
            return zero_result(course, lab, student, "grader-error", "grader error: " + problem)
        base = template(str(Path(course.root).resolve()), lab, hidden)
        root, private = job_dir / "course", job_dir / "private"
        job_dir.chmod(0o711)  # the kernel's uid may pass through, not list or read
        root.mkdir(mode=0o711)
        private.mkdir(mode=0o700)
        shutil.copytree(base / "source", root / "source")
        (root / "source").chmod(0o700)
        shutil.copy(base / "gradebook.db", private / "gradebook.db")
        submitted = root / "submitted" / student / lab
        submitted.mkdir(parents=True)
        (root / "submitted").chmod(0o700)
        (submitted / f"{lab}.ipynb").write_bytes(notebook)
        if submitted_at:
            (submitted / "timestamp.txt").write_text(submitted_at)
        if due:
            from nbgrader.api import Gradebook

            with Gradebook(f"sqlite:///{private / 'gradebook.db'}", COURSE_ID) as gb:
                gb.update_or_create_assignment(lab, duedate=due)
        (root / "autograded").mkdir(mode=0o711)
        hidden_dirs = sorted({*hide, str(course.solutions)})
        cache = model_cache_for_sandbox()
        sandbox, _, uid = prepare_spec(job_dir, limits, hidden_dirs, {**({"COURSE_CACHE": cache} if cache else {}), **(env or {})})
        config = nbgrader_config(root, private / "gradebook.db", limits, sandbox)
        config.LateSubmissionPlugin.penalty_method = late_penalty
        api = api_for(config)
        graded = api.autograde(lab, student, force=True, create=True)
        if not graded["success"]:
            result = zero_result(course, lab, student, "failed", nbgrader_error(graded))
        else:
            written = {gid for gid, _, manual in course.graded_cells(lab) if manual}
            result = read_grades(config.CourseDirectory.db_url, lab, student, written)
            autograded = root / "autograded" / student / lab / f"{lab}.ipynb"
            result.autograded = autograded.read_text() if autograded.exists() else None
            errors = cell_errors(json.loads(result.autograded)) if result.autograded else {}
            for cell in result.cells:
                cell.error = errors.get(cell.grade_id, "")
            problems = [f"cell {name}: {text}" for name, text in errors.items()]
            result.status = "errors" if problems else "ok"
            result.reason = "; ".join(problems[:8] + ([f"and {len(problems) - 8} more cells"] if len(problems) > 8 else []))
            if feedback:
                made = api.generate_feedback(lab, student, force=True)
                html = root / "feedback" / student / lab / f"{lab}.html"
                result.feedback = html.read_text() if made["success"] and html.exists() else None
    except Exception as err:  # a grader bug must not lose the class: the row says so and is graded again next run
        result = zero_result(course, lab, student, "grader-error", f"grader error: {type(err).__name__}: {err}")
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(job_dir, ignore_errors=True)
    result.reason = "; ".join(filter(None, [*notes, result.reason]))
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def read_grades(db_url: str, lab: str, student: str, written: set[str]) -> GradeResult:
    """The gradebook's scores; `written` names the hand-graded answers (they score 0 here, whatever nbgrader says)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url, COURSE_ID) as gb:
        nb = gb.find_submission_notebook(lab, lab, student)
        found = [CellResult(g.name, 0.0 if g.name in written else float(g.auto_score or 0), float(g.max_score),
                            g.name in written, bool(g.needs_manual_grade)) for g in sorted(nb.grades, key=lambda g: g.name)]
        penalty = float(nb.late_submission_penalty or 0)
    return GradeResult(lab, student, "ok", found, penalty=penalty)


def nbgrader_error(graded: dict) -> str:
    text = (graded.get("error") or "") + "\n" + (graded.get("log") or "")
    if "CellTimeoutError" in text or "UnresponsiveKernelError" in text:
        return ("nbgrader could not grade it: a cell ran past the timeout and the kernel stopped answering "
                "(an endless loop that ignores interrupts, or a kernel stuck at its memory limit)")
    if "DeadKernelError" in text or "Kernel died" in text:
        return "nbgrader could not grade it: the kernel died (killed at a resource limit, or the notebook exited it)"
    for pattern in ("MemoryError", "RuntimeError", "Error"):
        for line in text.splitlines():
            if pattern in line:
                return "nbgrader could not grade it: " + line.strip()[:200]
    return "nbgrader could not grade it"


def cell_errors(nb: dict) -> dict[str, str]:
    """grade_id (or #index) -> one line for each cell that raised, timed out or hit the output limit."""
    found = {}
    for index, cell in enumerate(cells(nb)):
        name = nbgrader_meta(cell).get("grade_id") or f"#{index}"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                value = (out.get("evalue") or "").strip().splitlines()
                found[name] = f"{out.get('ename')}" + (f": {value[0][:160]}" if value else "")
                break
            if out.get("output_type") == "stream" and OUTPUT_LIMIT_MARK in source_text({"source": out.get("text", "")}):
                found[name] = "output limit reached"
                break
    return found
