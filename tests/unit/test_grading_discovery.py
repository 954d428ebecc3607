"""Finding submissions (tools.grading.discovery): every layout an instructor downloads, zipped or not, read
with the platforms' export names, within the zip limits for all zips together, and late work found end to end.
The name rules, safe extraction and due dates alone: test_grading_submission_names.py, test_grading_safe_zip.py,
test_grading_due_dates.py.

Fast: small notebooks written with nbformat, no kernel, no course files.
"""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tools.grading import discovery as d
from tools.grading import safe_zip
from tools.grading.due_dates import due_for, lateness, parse_due
from tools.grading.safe_zip import DiscoveryError

from two_labs import L1, L6, LABS, UTC, resolve


def nb(path: Path, text: str = "print(1)") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(text)]), path)
    return path


def zip_dir(src: Path, dest: Path, wrap: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*")):
            if p.is_file() or not any(p.iterdir()):  # empty folders too (an assignment folder without a notebook)
                z.write(p, wrap + p.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return dest


def found(subs):
    """(student, lab_hint, notebook file name or None) of each submission, sorted."""
    return sorted((s.student, s.lab_hint, s.path.name if s.path else None) for s in subs)


def by_student(subs):
    out = {s.student: s for s in subs}
    assert len(out) == len(subs), [s.student for s in subs]
    return out


# --- the layouts ----------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    """A course root: submitted/<student>/<assignment>/..., timestamps as nbgrader writes them."""
    sub = root / "submitted"
    nb(sub / "alice" / "3.1.1" / f"{L1}.ipynb")
    (sub / "alice" / "3.1.1" / "timestamp.txt").write_text("2026-12-02 00:29:30.000000 UTC")
    nb(sub / "bob" / L6 / "my copy.ipynb")
    nb(sub / "bob" / L6 / ".ipynb_checkpoints" / "my copy-checkpoint.ipynb")
    (sub / "dave" / L1).mkdir(parents=True)
    nb(sub / "erin" / "homework" / "work.ipynb")
    return root


def test_nbgrader_tree_from_course_root_or_submitted(tmp_path):
    root = make_tree(tmp_path / "course")
    expected = [("alice", L1, f"{L1}.ipynb"), ("bob", L6, "my copy.ipynb"), ("dave", L1, None),
                ("erin", None, "work.ipynb")]
    for given in (root, root / "submitted"):
        subs = d.discover(given, resolve)
        assert found(subs) == expected
        assert {s.layout for s in subs} == {"nbgrader tree"}
    subs = by_student(d.discover(root, resolve))
    assert subs["alice"].submitted_at == datetime(2026, 12, 2, 0, 29, 30, tzinfo=UTC)
    assert subs["alice"].notes == [] and subs["bob"].submitted_at is None
    assert subs["bob"].notes == [f"notebook named my copy.ipynb, not {L6}.ipynb"]
    assert subs["dave"].notes == [f"no notebook in {root / 'submitted' / 'dave' / L1}"]


def test_resolve_lab_may_raise_instead_of_returning_none(tmp_path):
    def strict(name):
        if resolve(name) is None:
            raise ValueError(f"no single lab matches {name!r}")
        return resolve(name)

    assert found(d.discover(make_tree(tmp_path), strict)) == found(d.discover(tmp_path, resolve))


def test_flat_export_today_rule_and_notes(tmp_path):
    nb(tmp_path / "alice_Lab 1 attempt (2).ipynb")
    nb(tmp_path / "notes.ipynb")
    nb(tmp_path / ".hidden_x.ipynb")
    (tmp_path / "readme.txt").write_text("not a notebook")
    subs = by_student(d.discover(tmp_path, resolve))
    assert set(subs) == {"alice", "notes"}
    assert {s.layout for s in subs.values()} == {"flat export"}
    assert subs["alice"].notes == ["id 'alice': the text before the first '_' of 'alice_Lab 1 attempt (2).ipynb' (no preset matched)"]
    assert subs["notes"].notes == ["file name notes.ipynb has no '<student>_' prefix: id 'notes' is the whole name"]


@pytest.mark.parametrize("name, student, when, late, preset", [
    ("doejane_12345_678_lab-3.1.1.ipynb", "doejane", None, False, "canvas"),
    ("doejane_late_12345_678_lab-3.1.1.ipynb", "doejane", None, True, "canvas"),
    ("smith-jonesmary_LATE_222_3334_Lab 3.1.6 (1).ipynb", "smith-jonesmary", None, True, "canvas"),
    ("Jane Doe_123456_assignsubmission_file_lab-3.1.1.ipynb", "Jane_Doe", None, False, "moodle"),
    ("Lab 3.1.1_jdoe42_attempt_2026-12-01-23-59-00_lab-3.1.1.ipynb", "jdoe42", datetime(2026, 12, 1, 23, 59), False, "blackboard"),
    ("88066-117374 - Mary-Ann Smith - Dec 1, 2026 105 PM - lab.ipynb", "Mary-Ann_Smith", datetime(2026, 12, 1, 13, 5), False, "brightspace"),
    ("88066-117374 - Li Wei - Dec 1, 2026 1159 PM - lab.ipynb", "Li_Wei", datetime(2026, 12, 1, 23, 59), False, "brightspace"),
    ("bitdiddle_attempt_2026-12-01_problem1.ipynb", "bitdiddle", datetime(2026, 12, 1), False, "nbgrader"),
])
def test_presets_read_platform_export_names(tmp_path, name, student, when, late, preset):
    nb(tmp_path / name)
    (sub,) = d.discover(tmp_path, resolve)
    assert (sub.student, sub.late_marker, sub.layout) == (student, late, "flat export")
    assert sub.submitted_at == (when.replace(tzinfo=UTC) if when else None)
    assert sub.notes == [f"id {student!r} from {name!r} by the {preset} preset"]


def test_canvas_late_name_keeps_the_late_mark_and_the_same_student(tmp_path):
    nb(tmp_path / "doejane_12345_678_lab-3.1.1.ipynb")
    nb(tmp_path / "doejane_late_12345_679_lab-3.1.6.ipynb")
    subs = d.discover(tmp_path, resolve)
    assert [(s.student, s.late_marker) for s in subs] == [("doejane", False), ("doejane", True)]


def test_id_pattern_groups_presets_and_misses(tmp_path):
    nb(tmp_path / "s1234-LATE-20261201T2359Z-lab.ipynb")
    nb(tmp_path / "s9999--20261130T1000+0100-lab.ipynb")
    nb(tmp_path / "doejane_late_1_2_lab.ipynb")  # the pattern misses: listed, with a fallback id and a note
    pattern = r"(?P<student>s\d+)-(?P<late>LATE)?-(?P<timestamp>[^-]+)-"
    subs = by_student(d.discover(tmp_path, resolve, id_pattern=pattern))
    assert (subs["s1234"].late_marker, subs["s1234"].submitted_at) == (True, datetime(2026, 12, 1, 23, 59, tzinfo=UTC))
    assert (subs["s9999"].late_marker, subs["s9999"].submitted_at) == (False, datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    assert subs["s1234"].notes == ["id 's1234' from 's1234-LATE-20261201T2359Z-lab.ipynb' by --id-pattern"]
    assert subs["doejane"].late_marker is True
    assert subs["doejane"].notes[0] == "--id-pattern did not match 'doejane_late_1_2_lab.ipynb': id from the automatic rules"
    # a preset by name, and a zip_collect named_regexp with nbgrader's group names
    subs = by_student(d.discover(tmp_path, resolve, id_pattern="canvas"))
    assert subs["doejane"].notes == ["id 'doejane' from 'doejane_late_1_2_lab.ipynb' by --id-pattern"]
    assert subs["s1234-LATE-20261201T2359Z-lab"].notes[0].startswith("--id-pattern did not match")
    zc = r"(?P<student_id>[a-z]+)_late_(?P<file_id>\d+)"
    assert d.discover(tmp_path, resolve, id_pattern=zc)[0].notes == ["id 'doejane' from 'doejane_late_1_2_lab.ipynb' by --id-pattern"]


def test_bad_id_patterns_are_refused_by_name(tmp_path):
    nb(tmp_path / "a_b.ipynb")
    with pytest.raises(ValueError, match=r"--id-pattern '\(\?P<who>\\w\+\)_' has no \(\?P<student>"):
        d.discover(tmp_path, resolve, id_pattern=r"(?P<who>\w+)_")
    with pytest.raises(ValueError, match=r"--id-pattern '\(unclosed' is not a valid regular expression"):
        d.discover(tmp_path, resolve, id_pattern="(unclosed")


def test_unreadable_timestamp_in_a_name_is_a_note(tmp_path):
    nb(tmp_path / "bob_attempt_2026-99-99_x.ipynb")
    (sub,) = d.discover(tmp_path, resolve)
    assert sub.student == "bob" and sub.submitted_at is None
    assert "timestamp '2026-99-99' not understood" in sub.notes[1]


def make_folders(root: Path) -> Path:
    nb(root / "alice" / "whatever I called it.ipynb")
    (root / "alice" / "timestamp.txt").write_text("2026-12-01 22:00:00.000000 UTC")
    nb(root / "bob" / "lab.ipynb")
    nb(root / "bob" / "data" / "scratch.ipynb")  # beside a direct notebook: one more notebook, no "missing"
    (root / "bob" / "empty").mkdir()
    nb(root / "Jane Doe_123456_assignsubmission_file_" / "lab-3.1.1.ipynb")  # Moodle "download in folders"
    nb(root / "397063-2557369 - Li Wei - Sep 24, 2026 926 PM" / "lab.ipynb")  # Brightspace
    (root / "carol").mkdir()
    (root / "carol" / "lab.pdf").write_bytes(b"%PDF")
    nb(root / "dan" / "3.1.6" / f"{L6}.ipynb")  # deeper: <student>/<assignment>/ as today
    return root


def test_folder_per_student(tmp_path):
    root = make_folders(tmp_path)
    subs = d.discover(root, resolve)
    assert found(subs) == [("Jane_Doe", None, "lab-3.1.1.ipynb"), ("Li_Wei", None, "lab.ipynb"),
                           ("alice", None, "whatever I called it.ipynb"), ("bob", None, "lab.ipynb"),
                           ("bob", None, "scratch.ipynb"), ("carol", None, None), ("dan", L6, f"{L6}.ipynb")]
    get = {(s.student, s.path.name if s.path else None): s for s in subs}
    assert get[("alice", "whatever I called it.ipynb")].submitted_at == datetime(2026, 12, 1, 22, tzinfo=UTC)
    assert get[("alice", "whatever I called it.ipynb")].layout == "folder per student"
    assert get[("Li_Wei", "lab.ipynb")].submitted_at == datetime(2026, 9, 24, 21, 26, tzinfo=UTC)
    assert get[("carol", None)].notes == [f"no notebook in {root / 'carol'} (found: lab.pdf)"]
    assert get[("dan", f"{L6}.ipynb")].layout == "nbgrader tree"
    assert get[("Jane_Doe", "lab-3.1.1.ipynb")].notes == [
        "id 'Jane_Doe' from 'Jane Doe_123456_assignsubmission_file_' by the moodle preset"]


def test_same_student_and_lab_twice_is_kept_twice(tmp_path):
    nb(tmp_path / "submitted" / "alice" / L1 / f"{L1}.ipynb")
    nb(tmp_path / "submitted" / "alice" / "3.1.1" / f"{L1}.ipynb")
    nb(tmp_path / "submitted" / "alice_second.ipynb")
    subs = d.discover(tmp_path, resolve)
    assert [(s.student, s.lab_hint) for s in subs] == [("alice", L1), ("alice", L1), ("alice", None)]


# --- zips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["tree", "flat", "folders"])
@pytest.mark.parametrize("wrap", ["", "class/"])
def test_a_zip_of_each_layout_finds_what_the_folder_does(tmp_path, layout, wrap):
    src = tmp_path / "src"
    if layout == "tree":
        make_tree(src)
    elif layout == "folders":
        make_folders(src)
    else:
        nb(src / "doejane_late_12345_678_lab.ipynb")
        nb(src / "roe_richard_1_2_lab.ipynb")
    junk = {f"{wrap}__MACOSX/._x.ipynb": b"junk", f"{wrap}.ipynb_checkpoints/y-checkpoint.ipynb": b"{}"}
    archive = zip_dir(src, tmp_path / "class.zip", wrap, junk)
    work = tmp_path / "work"
    direct = d.discover(src, resolve)
    zipped = d.discover(archive, resolve, workdir=work)
    assert found(zipped) == found(direct) and len(zipped) >= 2
    assert [s.layout for s in zipped] == [f"zip class.zip: {s.layout}" for s in direct]
    assert [(s.submitted_at, s.late_marker) for s in zipped] == [(s.submitted_at, s.late_marker) for s in direct]
    assert all(work in s.path.parents for s in zipped if s.path)
    assert not list(work.rglob("__MACOSX")) and not list(work.rglob("*checkpoint*"))
    # inside a folder, beside other files, the same; and a second run replaces the extraction
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "class.zip").write_bytes(archive.read_bytes())
    again = d.discover(tmp_path / "in", resolve, workdir=work)
    assert found(again) == found(direct) and found(d.discover(tmp_path / "in", resolve, workdir=work)) == found(direct)


def test_zipped_course_root_and_student_zips_in_a_canvas_export(tmp_path):
    archive = zip_dir(make_tree(tmp_path / "course"), tmp_path / "export.zip", "course/")
    assert found(d.discover(archive, resolve, workdir=tmp_path / "w1")) == found(d.discover(tmp_path / "course", resolve))
    export = tmp_path / "canvas"
    nb(export / "roerichard_11_22_lab.ipynb")
    nb(tmp_path / "hers" / "Lab 3.1.1" / "my lab.ipynb")
    zip_dir(tmp_path / "hers", export / "doejane_late_12345_678_labs.zip")
    subs = by_student(d.discover(export, resolve, workdir=tmp_path / "w2"))
    assert (subs["doejane"].path.name, subs["doejane"].late_marker) == ("my lab.ipynb", True)
    assert subs["doejane"].layout == "zip doejane_late_12345_678_labs.zip: folder per student"
    assert subs["roerichard"].layout == "flat export"


def test_the_limits_hold_for_all_zips_together(tmp_path, monkeypatch):
    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("s1_x.ipynb", b"{}")
            z.writestr("s2_x.ipynb", b"{}")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as z:
        z.write(tmp_path / "a.zip", "a.zip")
        z.write(tmp_path / "b.zip", "b.zip")
    assert len(d.discover(tmp_path / "outer.zip", resolve, workdir=tmp_path / "w")) == 4
    monkeypatch.setattr(safe_zip, "MAX_MEMBERS", 5)  # 2 + 2 + 2 members in all
    with pytest.raises(DiscoveryError, match=r"b\.zip: 2 members, more than the 1 allowed"):
        d.discover(tmp_path / "outer.zip", resolve, workdir=tmp_path / "w")


def test_zips_nested_too_deep_are_refused(tmp_path):
    inner = tmp_path / "z0.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a_x.ipynb", b"{}")
    for i in range(1, 4):
        outer = tmp_path / f"z{i}.zip"
        with zipfile.ZipFile(outer, "w") as z:
            z.write(inner, inner.name)
        inner = outer
    with pytest.raises(DiscoveryError, match=r"z0\.zip: zips nested more than 3 deep"):
        d.discover(inner, resolve, workdir=tmp_path / "w")


def test_clear_errors_for_missing_folders_and_broken_zips(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: no such submissions folder or .zip"):
        d.discover(tmp_path / "nope", resolve)
    (tmp_path / "broken.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DiscoveryError, match=r"broken\.zip: not a readable zip file"):
        d.discover(tmp_path / "broken.zip", resolve, workdir=tmp_path / "w")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DiscoveryError, match=r"folder/broken\.zip: not a readable zip file"):
        d.discover(tmp_path / "folder", resolve, workdir=tmp_path / "w")
    (tmp_path / "grades.csv").write_text("x")
    with pytest.raises(DiscoveryError, match=r"grades\.csv: not a folder or a \.zip"):
        d.discover(tmp_path / "grades.csv", resolve)


def test_no_zip_no_workdir_made(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(d.tempfile, "mkdtemp", lambda **k: made.append(k) or str(tmp_path / "t"))
    nb(tmp_path / "s" / "a_x.ipynb")
    d.discover(tmp_path / "s", resolve)
    assert made == []


# --- late work -------------------------------------------------------------------------------


def test_late_class_end_to_end(tmp_path):
    """timestamp.txt files and a due date: the late one is found, with its minutes."""
    root = make_tree(tmp_path)
    (root / "submitted" / "bob" / L6 / "timestamp.txt").write_text("2026-12-01 23:00:00.000000 UTC")
    due = parse_due(["2026-12-01T23:59"], LABS, resolve)
    report = {s.student: lateness(s.submitted_at, due_for(due, s.lab_hint)) for s in d.discover(root, resolve)}
    assert report == {"alice": (True, 30.5), "bob": (False, 0.0), "dave": (False, None), "erin": (False, None)}
