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
    write_splits,
)


@pytest.fixture(scope="module")
def splits():
    return {split: load_split(split) for split in SPLITS}


@pytest.mark.parametrize("split", SPLITS)
def test_shipped_jsonl_equals_generator(split, tmp_path):
    assert load_split(split) == generate_split(split)
    # Byte for byte too: the shipped file is exactly what `python -m utils.course_data` writes.
    write_splits(tmp_path)
    shipped = resources.files(DATA_PACKAGE).joinpath(f"course_{split}.jsonl").read_text(encoding="utf-8")
    assert shipped == (tmp_path / f"course_{split}.jsonl").read_text(encoding="utf-8")


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
