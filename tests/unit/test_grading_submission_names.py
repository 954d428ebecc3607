"""Who and when from a name (tools.grading.submission_names): platform export names and --id-pattern, the
timestamps they carry, and nbgrader's timestamp.txt read as nbgrader reads it. Through whole folders:
test_grading_discovery.py.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from dateutil.tz import gettz

from tools.grading.submission_names import (PRESETS, as_utc, clean_id, compile_pattern, identify, lab_named, parse_time,
                                            read_timestamp)

UTC = timezone.utc


@pytest.mark.parametrize("text, when", [
    ("2026-12-01-23-59-00", datetime(2026, 12, 1, 23, 59)),             # Blackboard
    ("20261201235900", datetime(2026, 12, 1, 23, 59)),                  # digits only
    ("Dec 1, 2026 105 PM", datetime(2026, 12, 1, 13, 5)),               # Brightspace: 1:05, not 10:05
    ("Dec 1, 2026 1159 PM", datetime(2026, 12, 1, 23, 59)),
    ("2026-12-01T23:59:00+01:00", datetime(2026, 12, 1, 22, 59)),       # ISO 8601 with a zone
    ("2026-12-01 23:59:00.000000 UTC", datetime(2026, 12, 1, 23, 59)),  # nbgrader's own
])
def test_times_in_names_are_read_as_utc(text, when):
    assert parse_time(text) == when.replace(tzinfo=UTC)


def test_an_unreadable_time_names_itself():
    with pytest.raises(ValueError, match=r"timestamp '2026-99-99' not understood"):
        parse_time("2026-99-99")


def test_as_utc_takes_naive_times_as_utc():
    assert as_utc(datetime(2026, 12, 1, 12)) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2026, 12, 1, 13, tzinfo=gettz("Europe/Berlin"))) == datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_identify_files_folders_and_fallbacks():
    assert identify("doejane_late_1_2_lab.ipynb", None) == (
        "doejane", None, True, ["id 'doejane' from 'doejane_late_1_2_lab.ipynb' by the canvas preset"], True)
    assert identify("alice_lab.ipynb", None)[::4] == ("alice", False)  # only today's rule: not matched
    assert identify("Alice Smith", None, folder=True) == ("Alice_Smith", None, False, [], False)
    rx = compile_pattern(r"(?P<student>s\d+)-")
    assert identify("s12-x.ipynb", rx)[0] == "s12" and identify("s12-x.ipynb", rx)[3] == ["id 's12' from 's12-x.ipynb' by --id-pattern"]
    assert identify("x_y.ipynb", rx)[3][0] == "--id-pattern did not match 'x_y.ipynb': id from the automatic rules"


def test_patterns_presets_and_refusals():
    assert compile_pattern(None) is None
    assert compile_pattern("moodle").pattern == PRESETS["moodle"]
    assert compile_pattern(r"(?P<student_id>\w+)_").groupindex["student_id"] == 1  # nbgrader's zip_collect name works
    with pytest.raises(ValueError, match=r"has no \(\?P<student>\.\.\.\) group; presets: canvas, moodle"):
        compile_pattern(r"(?P<who>\w+)_")
    with pytest.raises(ValueError, match=r"--id-pattern '\(unclosed' is not a valid regular expression"):
        compile_pattern("(unclosed")


def test_clean_ids_and_lab_names():
    assert clean_id("Mary-Ann O'Brien/..") == "Mary-Ann_O_Brien" and clean_id("..") == "unnamed"

    def strict(name):
        if name != "3.1.1":
            raise ValueError(name)
        return "lab-3.1.1-lora-theory"

    assert lab_named(strict, "3.1.1") == "lab-3.1.1-lora-theory"
    assert lab_named(strict, "homework") is None and lab_named(lambda name: None, "3.1.1") is None


def test_timestamp_txt_as_nbgrader_writes_it(tmp_path):
    # nbgrader's exchange: datetime.now(gettz(timezone)).strftime(timestamp_format), default format below
    instant = datetime(2026, 12, 1, 22, 59, 30, 123456, tzinfo=UTC)
    for zone in ("UTC", "Europe/Berlin", "America/New_York"):
        (tmp_path / "timestamp.txt").write_text(instant.astimezone(gettz(zone)).strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
        assert read_timestamp(tmp_path) == (instant, [])
    (tmp_path / "timestamp.txt").write_text("2026-12-01 17:59:30.123456 -0500\n")  # parse_utc alone: 23:07:50
    assert read_timestamp(tmp_path) == (instant, [])
    (tmp_path / "timestamp.txt").write_text("2026-12-01T23:59:30.123456+01:00")
    assert read_timestamp(tmp_path) == (instant, [])
    (tmp_path / "timestamp.txt").write_text("2026-12-01 22:59:30.123456")  # no zone: UTC
    assert read_timestamp(tmp_path)[0].tzinfo == UTC
    (tmp_path / "timestamp.txt").write_text("   ")
    assert read_timestamp(tmp_path) == (None, [f"{tmp_path / 'timestamp.txt'}: empty timestamp file; no submission time"])
    (tmp_path / "timestamp.txt").write_text("yesterday-ish")
    when, notes = read_timestamp(tmp_path)
    assert when is None and notes[0].startswith(f"{tmp_path / 'timestamp.txt'}: timestamp 'yesterday-ish' not understood")
    os.remove(tmp_path / "timestamp.txt")
    assert read_timestamp(tmp_path) == (None, [])
