"""Who submitted and when, read from a file or folder name (a platform's export names) or nbgrader's timestamp.txt.

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
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

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


def clean_id(text: str) -> str:
    """A student id that is safe as a folder name and an nbgrader id."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", text).strip("._") or "unnamed"


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


def as_utc(when: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC already (the rule for every time the grader reads)."""
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def nbgrader_time(text: str) -> datetime:
    """A timestamp as nbgrader reads it (nbgrader.utils.parse_utc), as an aware UTC datetime.

    One repair: parse_utc hands a numeric third part ('... -0500') to dateutil as seconds (-500 s);
    joined to the time it is read as the hours offset it is."""
    from nbgrader.utils import parse_utc  # slow import, only when a timestamp is read

    parts = text.split(" ")
    if len(parts) == 3 and re.fullmatch(r"[+-]\d{4}", parts[2]):
        text = f"{parts[0]} {parts[1]}{parts[2]}"
    return as_utc(parse_utc(text))


def parse_time(text: str) -> datetime:
    """A timestamp from a file or folder name (formats in the module docstring); ValueError if unreadable."""
    text = text.strip()
    if re.fullmatch(r"\d{4}(-\d{2}){5}", text):
        return as_utc(datetime.strptime(text, "%Y-%m-%d-%H-%M-%S"))
    if re.fullmatch(r"\d{14}", text):
        return as_utc(datetime.strptime(text, "%Y%m%d%H%M%S"))
    bright = re.fullmatch(r"([A-Z][a-z]{2} \d{1,2}, \d{4}) (\d{1,2})(\d{2}) ([AP]M)", text)
    if bright:  # minutes always two digits: '105 PM' is 1:05, '1159 PM' 11:59
        return as_utc(datetime.strptime(f"{bright[1]} {bright[2]}:{bright[3]} {bright[4]}", "%b %d, %Y %I:%M %p"))
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


def lab_named(resolve_lab: Callable[[str], str | None], name: str) -> str | None:
    """The lab an assignment folder or a --due value names, else None (`resolve_lab` may return None or raise ValueError)."""
    try:
        return resolve_lab(name)
    except ValueError:
        return None


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
