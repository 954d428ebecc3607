"""Due dates (tools.grading.due_dates): --due for every lab or one, refused by name when unreadable, and lateness
in minutes as nbgrader counts it (strictly after the due time; naive times are UTC).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from dateutil.tz import gettz

from tools.grading.due_dates import due_for, lateness, parse_due

from two_labs import L1, L6, LABS, UTC, resolve


def test_parse_due_all_labs_one_lab_and_errors():
    due = parse_due(["2026-12-01T23:59", "3.1.1=2026-12-01T23:59+01:00"], LABS, resolve)
    assert due == {None: datetime(2026, 12, 1, 23, 59, tzinfo=UTC), L1: datetime(2026, 12, 1, 22, 59, tzinfo=UTC)}
    assert due_for(due, L1) == due[L1] and due_for(due, L6) == due[None] and due_for(due, None) == due[None]
    assert due_for({}, L1) is None
    assert parse_due([f"{L6}=2026-12-01 23:59:00Z"], LABS, resolve) == {L6: datetime(2026, 12, 1, 23, 59, tzinfo=UTC)}
    for value, message in [
        ("9.9.9=2026-12-01T23:59", f"--due '9.9.9=2026-12-01T23:59': no lab '9.9.9'; labs are: {', '.join(LABS)}"),
        ("2026-12-01", "--due '2026-12-01': '2026-12-01' is not a date and time like 2026-12-01T23:59[+01:00]"),
        ("tomorrow", "--due 'tomorrow': 'tomorrow' is not a date and time"),
        ("2026-13-01T23:59", "--due '2026-13-01T23:59': month must be in 1..12"),
    ]:
        with pytest.raises(ValueError) as err:
            parse_due([value], LABS, resolve)
        assert str(err.value).startswith(message)
    with pytest.raises(ValueError, match=r"--due '3.1.1=2026-12-02T10:00': lab-3.1.1-lora-theory already has a due date"):
        parse_due(["3.1.1=2026-12-01T23:59", "3.1.1=2026-12-02T10:00"], LABS, resolve)


def test_lateness_in_minutes():
    due = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)
    assert lateness(due + timedelta(minutes=30, seconds=30), due) == (True, 30.5)
    assert lateness(due, due) == (False, 0.0)
    assert lateness(due - timedelta(days=1), due) == (False, 0.0)
    berlin = datetime(2026, 12, 2, 1, 0, tzinfo=gettz("Europe/Berlin"))  # 00:00 UTC
    assert lateness(berlin, due) == (True, 1.0)
    assert lateness(datetime(2026, 12, 2, 0, 1), due) == (True, 2.0)  # naive: UTC
    assert lateness(None, due) == (False, None) and lateness(due, None) == (False, None)


def test_a_resolver_that_raises_is_no_lab():
    def strict(name):
        if resolve(name) is None:
            raise ValueError(f"no single lab matches {name!r}")
        return resolve(name)

    assert parse_due(["3.1.6=2026-12-01T23:59"], LABS, strict) == {L6: datetime(2026, 12, 1, 23, 59, tzinfo=UTC)}
    with pytest.raises(ValueError, match=r"--due '3\.1=2026-12-01T23:59': no lab '3\.1'"):
        parse_due(["3.1=2026-12-01T23:59"], LABS, strict)
