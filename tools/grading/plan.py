"""Read every submission once, decide what must be graded, and key each result by what it depends on.

A plan's `sha` hashes the notebook, the grader (its version, the lab's source notebook, the limits, the
due date and penalty), so a re-run grades only what is new or changed; a result recorded as a grader error
carries a sha that never matches and is graded again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from tools.grading.course import Course, recognise
from tools.grading.discovery import Submission
from tools.grading.due_dates import lateness
from tools.grading.integrity import edited_cells, review_flags
from tools.grading.sandbox import Limits
from tools.grading.submission_names import clean_id
from tools.notebook_cells import load

GRADER_VERSION = "2"  # part of every submission's hash: bump when grading itself changes


@dataclass(frozen=True)
class Rules:
    """How a class is graded, besides the course: resource limits, due dates, the late penalty."""

    limits: Limits = Limits()
    due: tuple[tuple[str | None, str], ...] = ()  # (lab or None for all, ISO time)
    late_penalty: str = "none"  # nbgrader's LateSubmissionPlugin.penalty_method: none | zero

    def due_for(self, lab: str | None) -> datetime | None:
        found = dict(self.due)
        value = found.get(lab, found.get(None))
        return datetime.fromisoformat(value) if value else None


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
    review: list[str] = field(default_factory=list)
    submitted_at: str | None = None
    late: bool = False
    minutes_late: float | None = None

    @property
    def key(self) -> str:
        return f"{self.student}/{self.lab or 'unknown-' + clean_id(self.file)}"

    def facts(self) -> dict:
        """What the coordinator adds to the kernel's result (never computed by the worker)."""
        return {"student": self.student, "lab": self.lab or "", "file": self.file, "sha": self.sha,
                "submitted_at": self.submitted_at or "", "late": self.late, "minutes_late": self.minutes_late,
                "review": self.review}


def content_hash(data: bytes, lab: str | None, course: Course, rules: Rules) -> str:
    digest = hashlib.sha256(GRADER_VERSION.encode())
    if lab:
        digest.update(course.source(lab, course.has_solutions).read_bytes())
    digest.update(json.dumps([asdict(rules.limits), rules.due_for(lab) and rules.due_for(lab).isoformat(), rules.late_penalty]).encode())
    digest.update(data)
    return digest.hexdigest()


def fixed_result(course: Course, p: Plan, status: str, reason: str) -> dict:
    cells = [{"grade_id": gid, "score": 0.0, "max_score": pts, "manual": manual, "needs_manual_grade": False, "error": ""}
             for gid, pts, manual in (course.graded_cells(p.lab) if p.lab else [])]
    return {**p.facts(), "status": status, "reason": reason, "score": 0.0, "cells": cells,
            "max_score": sum(c["max_score"] for c in cells), "manual_max": sum(c["max_score"] for c in cells if c["manual"])}


def parse_notebook(data: bytes) -> tuple[dict | None, str]:
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


def plan(submissions: list[Submission], course: Course, rules: Rules) -> list[Plan]:
    """Recognise every submission's lab and decide what must run; one plan per (student, lab)."""
    plans: dict[str, Plan] = {}
    sources: dict[str, dict] = {}
    for sub in submissions:
        name = sub.path.name if sub.path else ""
        notes = list(sub.notes)
        if sub.path is None:
            p = Plan(sub.student, sub.lab_hint, "", content_hash(b"", sub.lab_hint, course, rules), notes=notes)
            p.result = fixed_result(course, p, "missing", "; ".join(notes))
        else:
            data = sub.path.read_bytes()
            nb, problem = parse_notebook(data)
            lab, how = recognise(nb, course.signatures) if nb is not None else (None, "")
            if sub.lab_hint and lab and lab != sub.lab_hint:
                notes.append(f"its cells are {lab}, filed under {sub.lab_hint}")
            if not lab and sub.lab_hint:
                lab = sub.lab_hint
                if nb is not None:
                    notes.append("no cell of the lab recognised; graded as its assignment folder says")
            p = Plan(sub.student, lab, name, content_hash(data, lab, course, rules), notes=notes)
            if nb is None:
                p.result = fixed_result(course, p, "invalid", f"{name}: {problem}")
            elif not lab:
                p.result = fixed_result(course, p, "unrecognised", f"{name}: no nbgrader cell or release cell of any lab ({', '.join(course.signatures)})")
            else:
                p.notebook = data
                p.notes += edited_cells(nb, course.signatures[lab])
                if course.has_solutions and lab not in sources:
                    sources[lab] = load(course.source(lab))
                p.review = review_flags(nb, course.release(lab), sources.get(lab))
        when = sub.submitted_at
        p.submitted_at = when.isoformat() if when else None
        p.late, p.minutes_late = lateness(when, rules.due_for(p.lab))
        if sub.late_marker and not p.late:
            p.late = True
            p.notes.append("the platform marked it late")
        if p.result is not None:
            p.result.update(p.facts(), reason="; ".join(filter(None, [p.result["reason"], *p.notes])) if p.notes and p.result["status"] != "missing" else p.result["reason"])
        if p.key in plans:  # the same student's lab twice: grade the last by file name, report the other
            kept, other = sorted([plans[p.key], p], key=lambda x: x.file)[::-1]
            kept.notes.append(f"also submitted {other.file or 'an empty folder'} for the same lab (not graded: check which is meant)")
            kept.review.append(f"two submissions for {kept.lab}: {kept.file}, {other.file}")
            kept.sha = hashlib.sha256((kept.sha + other.sha).encode()).hexdigest()
            if kept.result:
                kept.result.update(kept.facts(), reason="; ".join(filter(None, [kept.result["reason"], kept.notes[-1]])))
            p = kept
        plans[p.key] = p
    return list(plans.values())
