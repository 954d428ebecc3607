"""KTO's reference point z0 is estimated from mismatched pairs, as the paper's is: checked on the course's KTO rows.

TRL 1.16's KTOTrainer reads the rows in order (sequential sampler) and builds the KL pairs by rotating the
replies by one within each batch of `per_device_train_batch_size` rows: row k's prompt with row k-1's reply,
the batch's first prompt with its last reply. `kl_pairs` restates that rule; one test checks it against the
KL sequences TRL itself builds and batches. The others apply it, at Lab 3.1.9's batch sizes (a KTO step takes
2 x P.batch_size rows, the TRL check one batch of all its rows), to the rows each profile trains on: no KL
pair may share its prompt, and the share of pairs with the same island and field must stay near chance.
Chance is that share for two different examples drawn at random from the same rows; the bound is the count
a binomial with that chance exceeds with probability below 1e-3 (the pairs are not independent draws, but
a layout that groups by island and field, as Lab 3.1.6 writes it, is far above it: see the last test).
"""

from __future__ import annotations

from math import comb

import pytest

from utils.preference_data import course_kto_rows, load_kto, load_preferences
from utils.profiles import get_profile

PROFILES = ("grade", "cpu", "spark")


def kl_pairs(rows: list[dict], batch_size: int) -> list[tuple[int, int]]:
    """(index of the row whose prompt, index of the row whose reply) for every KL pair TRL forms, in order."""
    pairs = []
    for start in range(0, len(rows), batch_size):
        batch = list(range(start, min(start + batch_size, len(rows))))
        pairs.extend(zip(batch, batch[-1:] + batch[:-1]))
    return pairs


def group(row: dict) -> str:
    """island/field of a row (its id is island/field/n)."""
    return str(row["id"]).rsplit("/", 1)[0]


def chance_same_group(rows: list[dict]) -> float:
    """P(same island and field) for two different examples drawn at random from the examples behind `rows`."""
    sizes: dict[str, int] = {}
    for example_id in {r["id"] for r in rows}:
        sizes[example_id.rsplit("/", 1)[0]] = sizes.get(example_id.rsplit("/", 1)[0], 0) + 1
    n = sum(sizes.values())
    return sum(s * (s - 1) for s in sizes.values()) / (n * (n - 1))


def binomial_bound(n: int, p: float, alpha: float = 1e-3) -> int:
    """The smallest k with P(X >= k) < alpha for X ~ Binomial(n, p)."""
    tail = 1.0
    for k in range(n + 1):
        if tail < alpha:
            return k
        tail -= comb(n, k) * p**k * (1 - p) ** (n - k)
    return n + 1


def pair_counts(rows: list[dict], batch_size: int) -> tuple[int, int, int]:
    """(KL pairs, pairs sharing their prompt's example, pairs with the same island and field)."""
    pairs = kl_pairs(rows, batch_size)
    same_prompt = sum(rows[i]["id"] == rows[j]["id"] for i, j in pairs)
    same_group = sum(group(rows[i]) == group(rows[j]) for i, j in pairs)
    return len(pairs), same_prompt, same_group


def lab_cases():
    """(name, rows, batch size) for every KTO batch layout Lab 3.1.9 trains or compares on, under each profile."""
    from utils.experiments.preference_comparison import imbalanced_kto_rows

    cases = []
    for profile in PROFILES:
        P = get_profile(profile, lab="3.1.9")
        rows = course_kto_rows("train", P.train_examples)
        cases.append((f"{profile}: KTO", rows, 2 * P.batch_size))
        cases.append((f"{profile}: KTO 1:{P.undesirable_per_desirable}", imbalanced_kto_rows(rows, P.undesirable_per_desirable),
                      2 * P.batch_size))
        compare = course_kto_rows("train", P.compare_examples)
        cases.append((f"{profile}: TRL check", compare, len(compare)))
    return cases


CASES = lab_cases()


@pytest.mark.parametrize("name, rows, batch_size", CASES, ids=[c[0] for c in CASES])
def test_no_kl_pair_shares_its_prompt(name, rows, batch_size):
    n, same_prompt, _ = pair_counts(rows, batch_size)
    shared = [(rows[i]["id"], i, j) for i, j in kl_pairs(rows, batch_size) if rows[i]["id"] == rows[j]["id"]]
    assert same_prompt == 0, f"{name}: {same_prompt} of {n} KL pairs at batch {batch_size} pair a prompt with its own other reply: {shared[:3]}"


@pytest.mark.parametrize("name, rows, batch_size", [c for c in CASES if len(c[1]) > 8], ids=[c[0] for c in CASES if len(c[1]) > 8])
def test_same_island_and_field_near_chance(name, rows, batch_size):
    n, _, same_group = pair_counts(rows, batch_size)
    chance = chance_same_group(rows)
    bound = binomial_bound(n, chance)
    print(f"{name}: {same_group}/{n} KL pairs at batch {batch_size} share island and field "
          f"({same_group / n:.1%}; chance {chance:.1%}, {n * chance:.1f} expected, bound {bound})")
    assert same_group < bound, (f"{name}: {same_group} of {n} KL pairs share island and field, chance would give "
                                f"{n * chance:.1f} (p = {chance:.3f}); fewer than {bound} expected")


def test_the_file_is_in_training_order():
    """Each example's two rows are exactly as many rows apart as there are examples (kto_training_order's layout)."""
    rows = load_kto("train")
    n = len(rows) // 2
    first = [r["id"] for r in rows[:n]]
    assert first == [r["id"] for r in rows[n:]], "utils/data/course_kto_train.jsonl: the second half must repeat the first half's examples in order"
    assert len(set(first)) == n, "utils/data/course_kto_train.jsonl: one row of each example in each half"
    assert {bool(a["label"]) != bool(b["label"]) for a, b in zip(rows[:n], rows[n:])} == {True}
    assert 0.4 < sum(r["label"] for r in rows[:n]) / n < 0.6, "the first half holds desirable and undesirable rows alike"


def test_the_grouped_order_of_lab_3_1_6_fails_these_checks():
    """The checks are not vacuous: the rows as Lab 3.1.6 writes them (by pair, desirable first) break both, at batch 8."""
    by_id = {}
    for row in load_kto("train"):
        by_id.setdefault(row["id"], []).append(row)
    grouped = [r for p in load_preferences("train") for r in sorted(by_id[p["id"]], key=lambda r: not r["label"])]
    n, same_prompt, same_group = pair_counts(grouped, 8)
    assert (n, same_prompt, same_group) == (480, 240, 440), (n, same_prompt, same_group)
    assert same_group >= binomial_bound(n, chance_same_group(grouped))


def test_kl_pairs_are_trl_kto_trainers_own(smollm2_tokenizer):
    """`kl_pairs` is what TRL 1.16 does: its KL sequences and its training batches, at the cpu profile's batch size."""
    import tempfile

    from trl_reference import tiny_llama
    from utils.adapters import adapter_config
    from utils.experiments.preference_methods import preference_method

    P = get_profile("cpu", lab="3.1.9")
    rows = course_kto_rows("train", 40)
    batch_size = 2 * P.batch_size
    with tempfile.TemporaryDirectory() as out:
        kto = preference_method("kto")
        config = kto.config(P, out, per_device_train_batch_size=batch_size)
        trainer = kto.trainer_class()(model=tiny_llama(len(smollm2_tokenizer)), args=config, train_dataset=rows_dataset(rows),
                                      processing_class=smollm2_tokenizer, peft_config=adapter_config(P))
    data = trainer.train_dataset
    assert len(data) == len(rows), "no row may be dropped (a dropped row would shift TRL's batches)"
    completions, kl = data["completion_ids"], data["KL_completion_ids"]
    for i, j in kl_pairs(rows, batch_size):
        assert kl[i] == completions[j], f"row {i}: TRL's KL reply is not row {j}'s reply"
    seen = 0
    for batch in trainer.get_train_dataloader():
        labels = batch["label"].tolist()
        assert labels == [bool(r["label"]) for r in rows[seen:seen + len(labels)]], "TRL's batches are not the rows in file order"
        seen += len(labels)
    assert seen == len(rows)


def rows_dataset(rows):
    from datasets import Dataset

    return Dataset.from_list(rows)
