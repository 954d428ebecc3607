"""Find the submissions in whatever an instructor downloaded: a folder or a .zip, in any of four layouts.

Layouts (`Submission.layout`), recognised per entry so one folder may mix them:
- "nbgrader tree": `submitted/<student>/<assignment>/<nb>.ipynb` (given `submitted/` or the course root
  above it; elsewhere too, for a student folder holding only sub-folders); the assignment folder names
  the lab (`lab_hint`), its `timestamp.txt` gives the submission time.
- "flat export": notebooks at the top level, the student id in the file name (`submission_names`).
- "folder per student": `<student>/<anything>.ipynb`; the folder name goes through the same name rules
  (Moodle's and Brightspace's folders), a `timestamp.txt` in it wins over a time in its name.
- "zip <name>: <layout>": the root itself, or any .zip at its top level, extracted safely into `workdir`
  (`safe_zip.extract_zip`, within limits for all the zips together) and read as above; a zip named like
  a student's export file holds that student's work.

The same (student, lab_hint) found twice is returned twice: the planner reports duplicates; nothing is
merged or dropped here.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from tools.grading import safe_zip
from tools.grading.safe_zip import SKIP_PARTS, DiscoveryError
from tools.grading.submission_names import clean_id, compile_pattern, identify, lab_named, read_timestamp


@dataclass
class Submission:
    student: str                 # clean id (safe as a folder name and nbgrader id)
    path: Path | None            # None: an assignment folder without a notebook
    lab_hint: str | None = None  # the lab the layout files it under (nbgrader tree), if any
    notes: list[str] = field(default_factory=list)
    submitted_at: datetime | None = None  # timezone-aware (UTC if the source has no zone)
    late_marker: bool = False             # the platform's own "late" mark in the file name
    layout: str = ""                      # "nbgrader tree" | "flat export" | "folder per student" | "zip <name>: ..."


@dataclass
class _Walk:
    pattern: re.Pattern | None
    resolve_lab: Callable[[str], str | None]
    workdir: Path | None
    members_left: int = 0
    bytes_left: int = 0

    def extract(self, path: Path, chain: list[str]) -> Path:
        """Extract the zip at the end of `chain` (outer zip first) within the budget left; workdir made on first use."""
        if len(chain) > safe_zip.MAX_ZIP_DEPTH:
            raise DiscoveryError(f"{path}: zips nested more than {safe_zip.MAX_ZIP_DEPTH} deep")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="grading-zips-"))
        dest = self.workdir / clean_id("+".join(chain))
        members, size = safe_zip.extract_zip(path, dest, self.members_left, self.bytes_left)
        self.members_left, self.bytes_left = self.members_left - members, self.bytes_left - size
        return dest


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in SKIP_PARTS


def _is_notebook(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".ipynb"


def _notebooks_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_notebook(p)
                  and not any(part.startswith(".") or part in SKIP_PARTS for part in p.relative_to(folder).parts))


def discover(root: Path, resolve_lab: Callable[[str], str | None], *, id_pattern: str | None = None,
             workdir: Path | None = None) -> list[Submission]:
    """Every submission under `root` (a folder or a .zip), in a stable order.

    `resolve_lab` maps an assignment folder name to a lab (None or ValueError: no lab). Zips are
    extracted into `workdir` (each into its own sub-folder, replaced on every call), which must outlive
    the returned paths; without one a new temporary folder is made and left for the caller."""
    root = Path(root)
    walk = _Walk(compile_pattern(id_pattern), resolve_lab, Path(workdir) if workdir else None,
                 safe_zip.MAX_MEMBERS, safe_zip.MAX_BYTES)
    if root.is_file() and root.suffix.lower() == ".zip":
        return _class_zip(root, walk, [])
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such submissions folder or .zip")
    if not root.is_dir():
        raise DiscoveryError(f"{root}: not a folder or a .zip of submissions")
    return _folder(root, walk, [])


def _folder(root: Path, walk: _Walk, chain: list[str]) -> list[Submission]:
    tree = root.name == "submitted"
    if (root / "submitted").is_dir():
        root, tree = root / "submitted", True
    prefix = "".join(f"zip {name}: " for name in chain)
    found = []
    for entry in sorted(p for p in root.iterdir() if _visible(p)):
        if _is_notebook(entry):
            student, when, late, notes, _ = identify(entry.name, walk.pattern)
            found.append(Submission(student, entry, None, notes, when, late, prefix + "flat export"))
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            found.extend(_zip_entry(entry, walk, chain))
        elif entry.is_dir():
            found.extend(_student_folder(entry, walk, prefix, tree))
    return found


def _student_folder(folder: Path, walk: _Walk, prefix: str, tree: bool) -> list[Submission]:
    if tree:
        student, when, late, notes = clean_id(folder.name), None, False, []
    else:
        student, when, late, notes, _ = identify(folder.name, walk.pattern, folder=True)
    children = sorted(p for p in folder.iterdir() if _visible(p))
    notebooks = [p for p in children if _is_notebook(p)]
    stamped, stamp_notes = read_timestamp(folder) if notebooks else (None, [])
    found = [Submission(student, nb, None, notes + stamp_notes, stamped or when, late, prefix + "folder per student")
             for nb in notebooks]
    for sub in (p for p in children if p.is_dir()):  # beside direct notebooks: more notebooks, never a "missing"
        found.extend(_assignment_folder(student, sub, walk, prefix, notes, late, when, missing_ok=not notebooks))
    if not found:
        others = ", ".join(p.name for p in children if p.is_file()) or "nothing"
        found.append(Submission(student, None, None, notes + [f"no notebook in {folder} (found: {others})"],
                                when, late, prefix + "folder per student"))
    return found


def _assignment_folder(student: str, folder: Path, walk: _Walk, prefix: str, id_notes: list[str], late: bool,
                       when: datetime | None, missing_ok: bool) -> list[Submission]:
    hint, notebooks = lab_named(walk.resolve_lab, folder.name), _notebooks_under(folder)
    stamped, stamp_notes = read_timestamp(folder)

    def sub(nb, more=()):
        return Submission(student, nb, hint, id_notes + stamp_notes + list(more), stamped or when, late, prefix + "nbgrader tree")

    if hint and (folder / f"{hint}.ipynb") in notebooks:
        return [sub(folder / f"{hint}.ipynb")]
    if not notebooks:
        return [sub(None, [f"no notebook in {folder}"])] if missing_ok else []
    return [sub(nb, [f"notebook named {nb.name}" + (f", not {hint}.ipynb" if hint else "")]) for nb in notebooks]


def _zip_entry(path: Path, walk: _Walk, chain: list[str]) -> list[Submission]:
    """A zip inside a folder: one student's (its name is an export name) or a class of its own."""
    student, when, late, notes, matched = identify(path.name, walk.pattern, folder=True)
    if not matched:
        return _class_zip(path, walk, chain)
    chain = chain + [path.name]
    notebooks = _notebooks_under(walk.extract(path, chain))
    layout = "".join(f"zip {name}: " for name in chain) + "folder per student"
    if not notebooks:
        return [Submission(student, None, None, notes + [f"no notebook in {path}"], when, late, layout)]
    return [Submission(student, nb, None, notes, when, late, layout) for nb in notebooks]


def _class_zip(path: Path, walk: _Walk, chain: list[str]) -> list[Submission]:
    chain = chain + [path.name]
    dest = walk.extract(path, chain)
    top = [p for p in dest.iterdir() if _visible(p)]
    # a zipped folder: `class.zip` holding `class/...`, or a course root holding `submitted/`
    if len(top) == 1 and top[0].is_dir() and (top[0].name == Path(path.name).stem or (top[0] / "submitted").is_dir()):
        dest = top[0]
    return _folder(dest, walk, chain)
