"""The course being graded, as a value: which labs it has, their release and source notebooks, and
how a submitted notebook is recognised as one of them.

A `Course` is passed to everything that grades (never module state): the repository itself, a tiny
test course, or a student edition, which has `labs/` but no `solutions/` (then only the visible tests
can run).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tools.notebook_cells import cells, load, nbgrader_meta, source_text
from tools.paths import REPO


@dataclass(frozen=True)
class Course:
    root: Path = REPO

    @property
    def solutions(self) -> Path:
        return Path(self.root) / "solutions"

    @property
    def labs(self) -> Path:
        return Path(self.root) / "labs"

    @property
    def has_solutions(self) -> bool:
        """True in the instructor repository; False in a student edition (visible tests only)."""
        return self.solutions.is_dir() and any(self.solutions.glob("lab-*.ipynb"))

    def lab_names(self) -> list[str]:
        """Every lab of the course, e.g. 'lab-3.1.1-lora-theory' (from solutions/, else labs/)."""
        folder = self.solutions if self.has_solutions else self.labs
        return sorted(p.stem for p in folder.glob("lab-*.ipynb"))

    def resolve_lab(self, name_or_number: str) -> str:
        """Accept '3.1.1', 'lab-3.1.1' or the full stem; return the full stem."""
        names = self.lab_names()
        if name_or_number in names:
            return name_or_number
        wanted = name_or_number if name_or_number.startswith("lab-") else f"lab-{name_or_number}"
        matches = [n for n in names if n.startswith(wanted + "-")]
        if len(matches) != 1:
            raise ValueError(f"no single lab matches {name_or_number!r}; labs are: {', '.join(names)}")
        return matches[0]

    def source(self, lab: str, hidden: bool = True) -> Path:
        """The notebook nbgrader generates the assignment from: the solution (visible and hidden tests), or,
        with hidden=False or in a student edition, the student release (visible tests only)."""
        if hidden:
            if not self.has_solutions:
                raise FileNotFoundError(f"{self.solutions}: no solutions in this course folder, so hidden tests cannot run")
            return self.solutions / f"{lab}.ipynb"
        return self.labs / f"{lab}.ipynb"

    def release(self, lab: str) -> dict:
        return load(self.labs / f"{lab}.ipynb")

    def graded_cells(self, lab: str) -> list[tuple[str, float, bool]]:
        """(grade_id, points, manual) of the lab's graded cells, from its release notebook."""
        out = []
        for cell in cells(self.release(lab)):
            meta = nbgrader_meta(cell)
            if meta.get("grade"):
                manual = bool(meta.get("solution")) or cell.get("cell_type") != "code"
                out.append((meta["grade_id"], float(meta.get("points", 0)), manual))
        return out

    @cached_property
    def signatures(self) -> dict[str, "LabSignature"]:
        """Every lab with a student release (a solution still without one cannot be submitted)."""
        return {lab: signature(lab, self.release(lab)) for lab in self.lab_names() if (self.labs / f"{lab}.ipynb").is_file()}


# --- what a lab looks like, and which lab a notebook is --------------------------------------


@dataclass(frozen=True)
class LabSignature:
    """What identifies a lab's notebook and its graded cells (from the student release)."""

    lab: str
    grade_ids: frozenset[str]
    locked: tuple[tuple[str, str], ...]  # (grade_id, source) of cells students must not change
    texts: frozenset[str]  # hashes of the release's markdown and locked cells


def text_hash(source: str) -> str:
    return hashlib.sha256(" ".join(source.split()).encode()).hexdigest()[:16]


def signature(lab: str, release: dict) -> LabSignature:
    ids, locked, texts = set(), [], set()
    for cell in cells(release):
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if gid:
            ids.add(gid)
            if meta.get("locked") or (meta.get("grade") and not meta.get("solution")):
                locked.append((gid, source_text(cell)))
        if cell.get("cell_type") == "markdown" and not meta.get("solution") or meta.get("locked"):
            if source_text(cell).strip():
                texts.add(text_hash(source_text(cell)))
    return LabSignature(lab, frozenset(ids), tuple(locked), frozenset(texts))


def recognise(nb: dict, signatures: dict[str, LabSignature]) -> tuple[str | None, str]:
    """(lab, how): by nbgrader grade ids when the cells keep their metadata, else by cell text."""

    def best(scores: dict[str, float]) -> str | None:
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        if not ranked or ranked[0][1] <= 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
            return None
        return ranked[0][0]

    ids = {nbgrader_meta(c).get("grade_id") for c in cells(nb)} - {None}
    lab = best({s.lab: len(ids & s.grade_ids) / len(ids | s.grade_ids) for s in signatures.values()}) if ids else None
    if lab:
        return lab, "nbgrader grade ids"
    texts = {text_hash(source_text(c)) for c in cells(nb) if source_text(c).strip()}
    lab = best({s.lab: len(texts & s.texts) for s in signatures.values() if len(texts & s.texts) >= 3})
    return (lab, "text of the release's cells") if lab else (None, "")
