"""utils.staged_dir: the target is replaced whole on success and untouched on failure, with no staging left over."""

import pytest

from utils.staged_dir import staged_directory


def test_success_replaces_the_target_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_directory(target) as staging:
        assert staging.parent == tmp_path and staging != target
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").exists(), "the old directory stays until the new one is complete"
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_the_target_and_no_staging(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed halfway")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_missing_parent_is_created(tmp_path):
    target = tmp_path / "a" / "b"
    with staged_directory(target) as staging:
        (staging / "x").write_text("x")
    assert (target / "x").read_text() == "x"
