"""tools.generated_files: the `--check` every generator shares writes nothing and exits 1 when a file is stale, and
rewrites only the files that differ otherwise."""

from tools.generated_files import main_for, update


def test_update_writes_a_missing_or_different_file_and_reports_it(tmp_path, capsys):
    target = tmp_path / "sub" / "a.txt"
    assert update(target, "new\n", check=False) is True
    assert target.read_text() == "new\n" and "wrote" in capsys.readouterr().out
    assert update(target, "new\n", check=False) is False
    assert "up to date" in capsys.readouterr().out


def test_check_reports_a_stale_file_and_leaves_it_alone(tmp_path, capsys):
    target = tmp_path / "a.txt"
    target.write_text("old\n")
    assert update(target, "new\n", check=True) is True
    assert target.read_text() == "old\n"
    assert capsys.readouterr().out.startswith("OUT OF DATE")
    assert update(tmp_path / "missing.txt", "x", check=True) is True and not (tmp_path / "missing.txt").exists()


def test_the_callers_normalised_text_is_what_is_compared(tmp_path):
    target = tmp_path / "a.json"
    target.write_text('{"a":1}')
    assert update(target, '{"a": 1}', check=True, current='{"a": 1}') is False


def test_main_exits_1_under_check_only_when_something_is_stale(tmp_path):
    (tmp_path / "same.txt").write_text("same")
    (tmp_path / "stale.txt").write_text("old")
    files = lambda: {"same.txt": "same", "stale.txt": "new"}  # noqa: E731
    assert main_for("doc", files, tmp_path, ["--check"]) == 1
    assert (tmp_path / "stale.txt").read_text() == "old"
    assert main_for("doc", files, tmp_path, []) == 0
    assert (tmp_path / "stale.txt").read_text() == "new"
    assert main_for("doc", files, tmp_path, ["--check"]) == 0
