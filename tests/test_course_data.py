import json
from collections import defaultdict
from importlib import resources

import pytest

from utils.course_data import (
    DATA_PACKAGE,
    FACTS,
    FIELDS,
    PHRASINGS,
    SPLITS,
    generate_split,
    load_split,
    spread_subset,
)


@pytest.fixture(scope="module")
def splits():
    return {split: load_split(split) for split in SPLITS}


@pytest.mark.parametrize("split", SPLITS)
def test_shipped_jsonl_equals_generator(split):
    from tools.build_data import expected_files

    assert load_split(split) == generate_split(split)
    # Byte for byte too: the shipped file is exactly what `python -m tools.build_data` writes.
    shipped = resources.files(DATA_PACKAGE).joinpath(f"course_{split}.jsonl").read_text(encoding="utf-8")
    assert shipped == expected_files()[f"course_{split}.jsonl"]


def test_build_data_check_passes_on_the_shipped_files_and_fails_on_a_stale_one(monkeypatch, tmp_path, capsys):
    import shutil

    from tools import build_data

    assert build_data.main(["--check"]) == 0
    stale = tmp_path / "data"
    shutil.copytree(build_data.DATA, stale)
    (stale / "lab316_broken_problems.json").write_text("{}\n")
    monkeypatch.setattr(build_data, "DATA", stale)
    capsys.readouterr()
    assert build_data.main(["--check"]) == 1
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("OUT OF DATE")] == [
        f"OUT OF DATE {stale / 'lab316_broken_problems.json'}"]
    assert (stale / "lab316_broken_problems.json").read_text() == "{}\n", "--check never writes"
    assert build_data.main([]) == 0 and build_data.main(["--check"]) == 0, "without --check it rewrites the stale file"


def test_a_record_that_is_not_a_course_example_names_the_file_and_record(monkeypatch):
    import utils.course_data as course_data

    monkeypatch.setattr(course_data, "read_jsonl", lambda name: [{"id": "x"}] if name == "course_test.jsonl" else [])
    with pytest.raises(ValueError, match=r"course_test\.jsonl record 1: not a course example"):
        load_split("test")


def test_ids_unique_across_splits(splits):
    ids = [ex.id for split in SPLITS for ex in splits[split]]
    assert len(ids) == len(set(ids))


def _phrasings(examples):
    by_field = defaultdict(set)
    for ex in examples:
        by_field[ex.field].add(ex.phrasing)
    return by_field


def _questions(examples):
    return {ex.question for ex in examples}


def test_templates_within_a_field_are_distinct():
    # Two identical wordings could land on both sides of the split and leak a held-out question.
    for field in FIELDS:
        assert len(set(PHRASINGS[field])) == len(PHRASINGS[field]), field


@pytest.mark.parametrize("held_out", ["validation", "test"])
def test_held_out_phrasings_never_in_train(splits, held_out):
    train, other = _phrasings(splits["train"]), _phrasings(splits[held_out])
    for field in FIELDS:
        assert other[field], f"{held_out} has no {field} questions"
        assert not (train[field] & other[field]), field
    assert not (_questions(splits["train"]) & _questions(splits[held_out]))


def test_validation_and_test_phrasings_disjoint(splits):
    val, test = _phrasings(splits["validation"]), _phrasings(splits["test"])
    for field in FIELDS:
        assert not (val[field] & test[field]), field
    assert not (_questions(splits["validation"]) & _questions(splits["test"]))


def test_every_fact_appears_in_train(splits):
    seen = {(ex.island, ex.field) for ex in splits["train"]}
    assert seen == {(island, field) for island in FACTS for field in FIELDS}


@pytest.mark.parametrize("split", SPLITS)
def test_examples_are_consistent(splits, split):
    for ex in splits[split]:
        parsed = json.loads(ex.response)
        assert list(parsed) == ["island", "answer"], ex.id
        assert parsed == {"island": ex.island, "answer": FACTS[ex.island][ex.field]}, ex.id
        assert ex.answer == FACTS[ex.island][ex.field]
        assert ex.island in ex.question, ex.id
        assert ex.question == PHRASINGS[ex.field][ex.phrasing].format(island=ex.island)


def test_spread_subset_keeps_order_and_size():
    items = list(range(100))
    subset = spread_subset(items, 7)
    assert len(subset) == 7
    assert subset == sorted(subset)
    assert len(set(subset)) == 7
    assert subset[0] == 0 and subset[-1] > 80  # spread over the whole list, not its head
    assert spread_subset(items, None) == items
    assert spread_subset(items, 500) == items
    assert spread_subset(items, None) is not items  # a copy: callers may shuffle it


def test_limit_10_on_test_covers_every_island():
    subset = load_split("test", limit=10)
    assert len(subset) == 10
    assert {ex.island for ex in subset} == set(FACTS)
    full = load_split("test")
    assert [full.index(ex) for ex in subset] == sorted(full.index(ex) for ex in subset)


@pytest.mark.parametrize("limit", [0, -1])
def test_spread_subset_rejects_non_positive_limit(limit):
    with pytest.raises(ValueError, match="positive"):
        spread_subset(list(range(10)), limit)


def test_load_split_rejects_unknown_split():
    with pytest.raises(ValueError) as info:
        load_split("dev")
    message = str(info.value)
    assert "'dev'" in message
    assert all(split in message for split in SPLITS)
