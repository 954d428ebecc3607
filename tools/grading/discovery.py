"""Find the submissions in whatever an instructor downloaded: a folder or a .zip, in any of four layouts.

Layouts (`Submission.layout`), recognised per entry so one folder may mix them:
- "nbgrader tree": `submitted/<student>/<assignment>/<nb>.ipynb` (given `submitted/` or the course root
  above it; elsewhere too, for a student folder holding only sub-folders); the assignment folder names
  the lab (`lab_hint`), its `timestamp.txt` gives the submission time.
- "flat export": notebooks at the top level, the student id in the file name (see below).
- "folder per student": `<student>/<anything>.ipynb`; the folder name goes through the same name rules
  (Moodle's and Brightspace's folders), a `timestamp.txt` in it wins over a time in its name.
- "zip <name>: <layout>": the root itself, or any .zip at its top level, extracted safely into `workdir`
  (`extract_zip`) and read as above; a zip named like a student's export file holds that student's work.

Ids from names: `--id-pattern` is a regular expression applied with `re.match` to the file name (with
its extension) or the folder name; named groups: `student` (required; nbgrader's `student_id` works too,
so a zip_collect `named_regexp` can be reused), `timestamp` (optional) and `late` (optional; matched and
non-empty means the platform marked it late). A preset name (`PRESETS`) may be given instead of a
regular expression. Without a pattern the presets are tried in `PRESETS` order, then today's rule (the
text before the first `_`); a file the pattern does not match falls back the same way, with a note.
Every flat-export submission's `notes` say which rule gave its id.

Timestamps in names: `YYYY-MM-DD-HH-MM-SS` (Blackboard), `Mon D, YYYY HMM AM` (Brightspace),
`YYYYMMDDHHMMSS`, else ISO 8601 or nbgrader's own `YYYY-MM-DD HH:MM:SS.ffffff ZONE`. Without a zone
they are taken as UTC (a platform that writes its server's local time needs --due in that same time).

The same (student, lab_hint) found twice is returned twice: the planner reports duplicates; nothing is
merged or dropped here.
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable

# limits for all the zips of one discover() together (nested ones included); error messages give what was left
MAX_MEMBERS = 10_000  # a class of 500 students x a few files is far below
MAX_BYTES = 2 << 30  # 2 GiB uncompressed: notebooks are small, a zip bomb is not
MAX_ZIP_DEPTH = 3  # zips inside zips inside zips, no deeper
SKIP_PARTS = {"__MACOSX", ".ipynb_checkpoints"}

PRESETS: dict[str, str] = {
    # lastnamefirstname[_late]_<user id>_<attachment id>_<original name>
    "canvas": r"^(?P<student>(?:[^\W_]|-)+)_(?:(?P<late>(?i:late))_)?(?P<user_id>\d+)_(?P<attachment_id>\d+)_(?P<file>.+)$",
    # Full Name_<participant id>_assignsubmission_file_<original name> (also the folder of "download in folders")
    "moodle": r"^(?P<student>.+?)_(?P<participant>\d+)_assignsubmission_file(?:_(?P<file>.*))?$",
    # <assignment>_<username>_attempt_YYYY-MM-DD-HH-MM-SS[_<original name>]
    "blackboard": r"^(?P<assignment>.+)_(?P<student>[^_]+)_attempt_(?P<timestamp>\d{4}(?:-\d{2}){5})(?:_(?P<file>.*))?",
    # <submission id>-<file id> - First Last - Mon D, YYYY HMM AM[ - <original name>] (file or folder)
    "brightspace": r"^(?P<submission>\d+-\d+) - (?P<student>.+?) - (?P<timestamp>[A-Z][a-z]{2} \d{1,2}, \d{4} \d{3,4} [AP]M)(?: - (?P<file>.*))?$",
    # nbgrader 0.9.6 has no default named_regexp; this is its documented example: <x>_<student_id>_attempt_<time>_<file_id>
    "nbgrader": r"^(?:.*_)?(?P<student_id>\w+?)_attempt_(?P<timestamp>[0-9-]+)_(?P<file_id>.+)",
}
_COMPILED = {name: re.compile(rx) for name, rx in PRESETS.items()}


class DiscoveryError(ValueError):
    """A submissions folder or zip that cannot be read safely; the message names the file and member."""


@dataclass
class Submission:
    student: str                 # clean id (safe as a folder name and nbgrader id)
    path: Path | None            # None: an assignment folder without a notebook
    lab_hint: str | None = None  # the lab the layout files it under (nbgrader tree), if any
    notes: list[str] = field(default_factory=list)
    submitted_at: datetime | None = None  # timezone-aware (UTC if the source has no zone)
    late_marker: bool = False             # the platform's own "late" mark in the file name
    layout: str = ""                      # "nbgrader tree" | "flat export" | "folder per student" | "zip <name>: ..."


def clean_id(text: str) -> str:
    """A student id that is safe as a folder name and an nbgrader id."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", text).strip("._") or "unnamed"


# --- ids and times from names ----------------------------------------------------------------


def compile_pattern(pattern: str | None) -> re.Pattern | None:
    """A preset name or a regular expression with a `student` (or nbgrader's `student_id`) group."""
    if pattern is None:
        return None
    text = PRESETS.get(pattern, pattern)
    try:
        rx = re.compile(text)
    except re.error as e:
        raise ValueError(f"--id-pattern '{pattern}' is not a valid regular expression: {e}") from None
    if not {"student", "student_id"} & set(rx.groupindex):
        raise ValueError(f"--id-pattern '{pattern}' has no (?P<student>...) group; presets: {', '.join(PRESETS)}")
    return rx


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def nbgrader_time(text: str) -> datetime:
    """A timestamp as nbgrader reads it (nbgrader.utils.parse_utc), as an aware UTC datetime.

    One repair: parse_utc hands a numeric third part ('... -0500') to dateutil as seconds (-500 s);
    joined to the time it is read as the hours offset it is."""
    from nbgrader.utils import parse_utc  # slow import, only when a timestamp is read

    parts = text.split(" ")
    if len(parts) == 3 and re.fullmatch(r"[+-]\d{4}", parts[2]):
        text = f"{parts[0]} {parts[1]}{parts[2]}"
    return _utc(parse_utc(text))


def parse_time(text: str) -> datetime:
    """A timestamp from a file or folder name (formats in the module docstring); ValueError if unreadable."""
    text = text.strip()
    if re.fullmatch(r"\d{4}(-\d{2}){5}", text):
        return _utc(datetime.strptime(text, "%Y-%m-%d-%H-%M-%S"))
    if re.fullmatch(r"\d{14}", text):
        return _utc(datetime.strptime(text, "%Y%m%d%H%M%S"))
    bright = re.fullmatch(r"([A-Z][a-z]{2} \d{1,2}, \d{4}) (\d{1,2})(\d{2}) ([AP]M)", text)
    if bright:  # minutes always two digits: '105 PM' is 1:05, '1159 PM' 11:59
        return _utc(datetime.strptime(f"{bright[1]} {bright[2]}:{bright[3]} {bright[4]}", "%b %d, %Y %I:%M %p"))
    try:
        return nbgrader_time(text)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"timestamp {text!r} not understood ({e})") from None


def _from_match(m: re.Match, name: str, rule: str) -> tuple[str, datetime | None, bool, list[str]] | None:
    groups = m.groupdict()
    raw = groups.get("student") or groups.get("student_id")
    if not raw:
        return None
    notes, when = [f"id {clean_id(raw)!r} from {name!r} by {rule}"], None
    try:
        when = parse_time(groups["timestamp"]) if groups.get("timestamp") else None
    except ValueError as e:
        notes.append(f"{name}: {e}; no submission time")
    return clean_id(raw), when, bool(groups.get("late")), notes


def identify(name: str, pattern: re.Pattern | None, *, folder: bool = False) -> tuple[str, datetime | None, bool, list[str], bool]:
    """(student, time, late mark, notes, matched) for a file or folder name.

    `matched` is False when only the fallback applied: the text before the first `_` for a file,
    the whole name for a folder (a folder's fallback gets no note unless a given pattern missed)."""
    notes = []
    if pattern is not None:
        found = (m := pattern.match(name)) and _from_match(m, name, "--id-pattern")
        if found:
            return (*found, True)
        notes.append(f"--id-pattern did not match {name!r}: id from the automatic rules")
    for preset, rx in _COMPILED.items():
        found = (m := rx.match(name)) and _from_match(m, name, f"the {preset} preset")
        if found:
            return found[0], found[1], found[2], notes + found[3], True
    if folder:
        return clean_id(name), None, False, notes, False
    stem = name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name
    student = clean_id(stem.split("_", 1)[0])
    notes.append(f"id {student!r}: the text before the first '_' of {name!r} (no preset matched)" if "_" in stem
                 else f"file name {name} has no '<student>_' prefix: id {student!r} is the whole name")
    return student, None, False, notes, False


def read_timestamp(folder: Path) -> tuple[datetime | None, list[str]]:
    """nbgrader's `timestamp.txt` in `folder`, read as nbgrader reads it; a bad one is a note, not a stop."""
    path, text = folder / "timestamp.txt", ""
    if not path.is_file():
        return None, []
    try:
        text = path.read_text(errors="replace").strip()
        return (nbgrader_time(text), []) if text else (None, [f"{path}: empty timestamp file; no submission time"])
    except (OSError, ValueError, OverflowError) as e:
        return None, [f"{path}: timestamp {text!r} not understood ({e}); no submission time"]


# --- due dates -------------------------------------------------------------------------------


def _lab(resolve_lab: Callable[[str], str | None], name: str) -> str | None:
    try:
        return resolve_lab(name)
    except ValueError:
        return None


def parse_due(values: list[str], lab_names: list[str], resolve_lab) -> dict[str | None, datetime]:
    """--due values: 'TIME' for every lab (key None) or 'LAB=TIME' for one; ISO 8601 with a time of day,
    e.g. 2026-12-01T23:59 or 2026-12-01T23:59+01:00 (no zone: UTC). ValueError names the bad value."""
    due: dict[str | None, datetime] = {}
    for value in values:
        lab_text, sep, when_text = (part.strip() for part in value.rpartition("="))
        key = _lab(resolve_lab, lab_text) if sep else None
        if sep and key is None:
            raise ValueError(f"--due {value!r}: no lab {lab_text!r}; labs are: {', '.join(lab_names)}")
        if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", when_text):
            raise ValueError(f"--due {value!r}: {when_text!r} is not a date and time like 2026-12-01T23:59[+01:00]")
        try:
            when = _utc(datetime.fromisoformat(when_text))
        except ValueError as e:
            raise ValueError(f"--due {value!r}: {e}") from None
        if key in due:
            raise ValueError(f"--due {value!r}: {key or 'all labs'} already has a due date")
        due[key] = when
    return due


def due_for(due: dict[str | None, datetime], lab: str | None) -> datetime | None:
    """The lab's own due date, else the one for all labs."""
    return due.get(lab, due.get(None))


def lateness(sub_time: datetime | None, due: datetime | None) -> tuple[bool, float | None]:
    """(late, minutes late; 0.0 when on time, None when either time is unknown). Naive times are UTC.
    Late means strictly after the due time, as nbgrader counts it. The platform's own late mark
    (`Submission.late_marker`) is separate: the caller reports either."""
    if sub_time is None or due is None:
        return False, None
    minutes = (_utc(sub_time) - _utc(due)).total_seconds() / 60
    return minutes > 0, max(minutes, 0.0)


# --- zips ------------------------------------------------------------------------------------


def extract_zip(path: Path, dest: Path, max_members: int | None = None, max_bytes: int | None = None) -> tuple[int, int]:
    """Extract `path` into a fresh `dest` and return (members, bytes) written; or raise DiscoveryError
    naming the zip and the member, leaving nothing.

    Refused: absolute paths, drive letters and `..` members, symbolic links, encrypted or corrupt members,
    more than MAX_MEMBERS members or MAX_BYTES uncompressed. The declared sizes bound what is written:
    zipfile stops a member at its declared size and a member that lies then fails its CRC check.
    `__MACOSX/` and `.ipynb_checkpoints` members are skipped."""
    max_members = MAX_MEMBERS if max_members is None else max_members
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DiscoveryError(f"{path}: not a readable zip file ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise DiscoveryError(f"{path}: {len(infos)} members, more than the {max_members} allowed")
        wanted, seen = [], set()
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
                raise DiscoveryError(f"{path}: member {info.filename!r} points outside the extraction folder (absolute or '..')")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DiscoveryError(f"{path}: member {info.filename!r} is a symbolic link")
            if any(p in SKIP_PARTS for p in parts) or not parts:
                continue
            if "/".join(parts) in seen:
                raise DiscoveryError(f"{path}: member {info.filename!r} appears twice")
            seen.add("/".join(parts))
            wanted.append((info, parts))
        size = sum(info.file_size for info, _ in wanted)
        if size > max_bytes:
            raise DiscoveryError(f"{path}: {size} bytes uncompressed, more than the {max_bytes} allowed")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            for info, parts in wanted:
                target = dest.joinpath(*parts)
                try:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, RuntimeError, OSError, NotImplementedError, EOFError) as e:
                    raise DiscoveryError(f"{path}: member {info.filename!r} cannot be extracted ({e})") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return len(infos), size


# --- walking the layouts ---------------------------------------------------------------------


@dataclass
class _Walk:
    pattern: re.Pattern | None
    resolve_lab: Callable[[str], str | None]
    workdir: Path | None
    members_left: int = 0
    bytes_left: int = 0

    def extract(self, path: Path, chain: list[str]) -> Path:
        """Extract the zip at the end of `chain` (outer zip first) within the budget left; workdir made on first use."""
        if len(chain) > MAX_ZIP_DEPTH:
            raise DiscoveryError(f"{path}: zips nested more than {MAX_ZIP_DEPTH} deep")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="grading-zips-"))
        dest = self.workdir / clean_id("+".join(chain))
        members, size = extract_zip(path, dest, self.members_left, self.bytes_left)
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
    walk = _Walk(compile_pattern(id_pattern), resolve_lab, Path(workdir) if workdir else None, MAX_MEMBERS, MAX_BYTES)
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
    hint, notebooks = _lab(walk.resolve_lab, folder.name), _notebooks_under(folder)
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
