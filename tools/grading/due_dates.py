"""Due dates and lateness: `--due` read per lab or for all labs, and how late a submission time is (UTC throughout)."""

from __future__ import annotations

import re
from datetime import datetime

from tools.grading.submission_names import as_utc, lab_named


def parse_due(values: list[str], lab_names: list[str], resolve_lab) -> dict[str | None, datetime]:
    """--due values: 'TIME' for every lab (key None) or 'LAB=TIME' for one; ISO 8601 with a time of day,
    e.g. 2026-12-01T23:59 or 2026-12-01T23:59+01:00 (no zone: UTC). ValueError names the bad value."""
    due: dict[str | None, datetime] = {}
    for value in values:
        lab_text, sep, when_text = (part.strip() for part in value.rpartition("="))
        key = lab_named(resolve_lab, lab_text) if sep else None
        if sep and key is None:
            raise ValueError(f"--due {value!r}: no lab {lab_text!r}; labs are: {', '.join(lab_names)}")
        if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", when_text):
            raise ValueError(f"--due {value!r}: {when_text!r} is not a date and time like 2026-12-01T23:59[+01:00]")
        try:
            when = as_utc(datetime.fromisoformat(when_text))
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
    minutes = (as_utc(sub_time) - as_utc(due)).total_seconds() / 60
    return minutes > 0, max(minutes, 0.0)
