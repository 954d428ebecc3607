"""The class's output folder, written only by the coordinating process: one JSON result per
(student, lab), the nbgrader course root with its gradebook, feedback and autograded notebooks, and the
CSV. Every file is written atomically and the result file is the commit point, so a run killed at any
moment and run again ends with the same gradebook and CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from tools.grading.course import Course
from tools.grading.engine import api_for, nbgrader_config, nbgrader_ready
from tools.grading.submission_names import clean_id
from tools.paths import COURSE_ID

CSV_FIELDS = ["student", "lab", "score", "max_score", "manual_points", "status", "late", "minutes_late",
              "submitted_at", "review", "reason", "file"]


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write then rename: a reader (or a re-run after a kill) sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def result_key(result: dict) -> str:
    return f"{result['student']}/{result['lab'] or 'unknown-' + clean_id(result['file'])}"


class Output:
    """The output folder: results/ (one JSON per key), course/ (nbgrader), grades.csv and the summary."""

    def __init__(self, root: Path, course: Course):
        self.root = Path(root).resolve()  # nbgrader works from other folders: never a relative path
        self.course_src = course
        self.course = self.root / "course"
        self.results_dir = self.root / "results"
        self.db_url = f"sqlite:///{self.course / 'gradebook.db'}"

    def load_results(self) -> dict[str, dict]:
        found = {}
        for path in sorted(self.results_dir.glob("*/*.json")):
            try:
                found[f"{path.parent.name}/{path.stem}"] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # cannot happen with atomic writes; a stray file is simply regraded
        return found

    def prepare(self, labs: list[str], due: dict[str, str | None]) -> None:
        """The course root and its gradebook: one assignment per lab, made by nbgrader itself, with a config
        that keeps hidden tests out of any feedback nbgrader's own CLI generates there."""
        from nbgrader.api import Gradebook, MissingEntry

        from tools.nbgrader_root import config_text

        nbgrader_ready()
        self.course.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(self.root, 0o700)  # grades and feedback are private
        atomic_write(self.course / "nbgrader_config.py", config_text())
        config = nbgrader_config(self.course, self.course / "gradebook.db")
        api = None
        for lab in labs:
            with Gradebook(self.db_url, COURSE_ID) as gb:
                try:
                    gb.find_assignment(lab)
                    known = True
                except MissingEntry:
                    known = False
            if not known:
                source = self.course / "source" / lab / f"{lab}.ipynb"
                source.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.course_src.source(lab), source)
                api = api or api_for(config)
                made = api.generate_assignment(lab, force=True)
                if not made["success"]:
                    raise RuntimeError(f"generate_assignment failed for {lab}: {made.get('error')}")
            with Gradebook(self.db_url, COURSE_ID) as gb:
                gb.update_or_create_assignment(lab, duedate=due.get(lab))

    def record(self, result: dict, notebook: bytes | None) -> None:
        """Files first, then the result (the commit point), then the gradebook row."""
        student, lab = result["student"], result["lab"]
        if lab:
            if notebook is not None:
                atomic_write(self.course / "submitted" / student / lab / f"{lab}.ipynb", notebook)
                if result.get("submitted_at"):
                    atomic_write(self.course / "submitted" / student / lab / "timestamp.txt", result["submitted_at"])
            for kind, ext, text in (("autograded", "ipynb", result.get("autograded")), ("feedback", "html", result.get("feedback"))):
                path = self.course / kind / student / lab / f"{lab}.{ext}"
                if text is not None:
                    atomic_write(path, text)
                elif path.exists():
                    path.unlink()  # a stale file from an earlier version of this submission
        kept = {k: v for k, v in result.items() if k not in ("autograded", "feedback")}
        atomic_write(self.results_dir / f"{result_key(result)}.json", json.dumps(kept, indent=1, sort_keys=True))
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
                    sub = gb.find_submission(lab, student)
                except MissingEntry:
                    sub = gb.add_submission(lab, student)
                if result.get("submitted_at"):
                    from nbgrader.utils import parse_utc

                    sub.timestamp = parse_utc(result["submitted_at"])
                nb = gb.find_submission_notebook(lab, lab, student)
                nb.late_submission_penalty = float(result.get("penalty") or 0) or None
                cells = {c["grade_id"]: c for c in result["cells"]}
                for grade in nb.grades:
                    cell = cells.get(grade.name, {})
                    if cell.get("manual", grade.cell_type != "code"):
                        waiting = bool(cell.get("needs_manual_grade"))  # a blank answer waits for nobody: nbgrader scores it 0
                        grade.auto_score = None if waiting else 0.0
                        grade.needs_manual_grade = waiting and (fresh or grade.manual_score is None)
                    else:
                        grade.auto_score = float(cell.get("score", 0.0))
                        grade.needs_manual_grade = False
                    if fresh:
                        grade.manual_score = None  # a new version of the work: old manual marks do not apply
                gb.db.commit()

    def write_csv(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r.get(k, "") for k in CSV_FIELDS}, "score": f"{r['score']:g}", "max_score": f"{r['max_score']:g}",
                             "manual_points": f"{r.get('manual_max', 0):g}", "late": "yes" if r.get("late") else "",
                             "minutes_late": "" if r.get("minutes_late") is None else f"{r['minutes_late']:.0f}",
                             "review": "; ".join(r.get("review", []))})
        atomic_write(self.root / "grades.csv", buf.getvalue())
