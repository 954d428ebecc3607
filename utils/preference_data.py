"""The preference data of Labs 3.1.7 to 3.1.9: load it, and the recipe that built it.

Lab 3.1.6 builds, from the course task, preference pairs (prompt / chosen / rejected, for DPO,
SimPO, ORPO) and unpaired feedback (prompt / completion / label, for KTO). The chosen reply is
the reference answer in the house format; the rejected one is plausibly wrong: another island's
value for the same field, or the right value in the wrong format (the `kind` column says which).
The files in `utils/data/` were produced by running that lab's solution code through
`build_files` (`python -m tools.build_preference_data`); a test checks they still match it.

Pairs for training come from the training split only, so the held-out wordings of the test
split stay out of every training file; the test pairs serve to measure preference accuracy.

The KTO file's rows are in the order KTO trains on them (`kto_training_order`): TRL's KTOTrainer reads
them in file order and pairs each row's prompt with the previous row's reply in its batch to estimate
the reference point z0, so the order decides whether those pairs are mismatched, as the paper's are.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from utils.course_data import SYSTEM_PROMPT, load_split, read_jsonl, render_jsonl, spread_subset

PREFERENCE_SEED = 0
PREFERENCE_FILES = {"train": "course_preferences_train.jsonl", "test": "course_preferences_test.jsonl"}
KTO_FILES = {"train": "course_kto_train.jsonl"}
PAIR_KEYS = ("prompt", "chosen", "rejected")
KTO_KEYS = ("prompt", "completion", "label")
KTO_ORDER_SEED = 0


def build_files(make_preference_pairs: Callable, to_unpaired: Callable) -> dict[str, list[dict]]:
    """file name -> rows, from Lab 3.1.6's two functions: pairs for the train and test splits, KTO rows from the train
    pairs (in `kto_training_order`)."""
    train = make_preference_pairs(load_split("train"), seed=PREFERENCE_SEED)
    test = make_preference_pairs(load_split("test"), seed=PREFERENCE_SEED)
    return {PREFERENCE_FILES["train"]: train, PREFERENCE_FILES["test"]: test,
            KTO_FILES["train"]: kto_training_order(to_unpaired(train))}


def kto_training_order(rows: list[dict], seed: int = KTO_ORDER_SEED) -> list[dict]:
    """The KTO rows reordered so that TRL's KL pairs are mismatched, as the paper's are: (prompt, another example's reply).

    TRL 1.16's KTOTrainer reads the rows in order (sequential sampler) and builds the KL pairs by rotating the
    replies by one within each batch: row k's prompt with row k-1's reply, the batch's first prompt with its last
    reply. Lab 3.1.6 writes an example's desirable row next to its undesirable one, island by island, so most of
    those pairs would share a prompt or its island and field. Here: the examples in a seeded shuffled order, one
    row of each (which one, by a seeded coin) in that order, then the other rows in the same order. An example's
    two rows are then exactly n rows apart (n examples), in the whole file and in any subset of examples kept in
    file order, so no batch of at most n rows holds both; neighbours are examples in random order.
    """
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(str(row["id"]), []).append(row)
    for example_id, pair in by_id.items():
        if sorted(bool(r["label"]) for r in pair) != [False, True]:
            labels = [r["label"] for r in pair]
            raise ValueError(f"KTO rows of example {example_id}: expected one desirable and one undesirable row, got labels {labels}")
    rng = random.Random(seed)
    order = list(by_id)
    rng.shuffle(order)
    first, second = [], []
    for example_id in order:
        desirable, undesirable = sorted(by_id[example_id], key=lambda r: not r["label"])
        a, b = (desirable, undesirable) if rng.random() < 0.5 else (undesirable, desirable)
        first.append(a)
        second.append(b)
    return first + second


def write_files(files: dict[str, list[dict]], directory: Path) -> list[Path]:
    """Write each file's rows as JSONL into `directory`; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in files.items():
        path = directory / name
        path.write_text(render_jsonl(rows), encoding="utf-8")
        paths.append(path)
    return paths


def _check(rows: list, name: str, keys: tuple[str, ...]) -> list[dict]:
    for line_no, row in enumerate(rows, start=1):
        missing = [k for k in keys if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{name} line {line_no}: missing {', '.join(missing)} (expected the columns {', '.join(keys)})")
    return rows


def _maybe_dataset(rows: list[dict], as_dataset: bool):
    if not as_dataset:
        return rows
    from datasets import Dataset

    return Dataset.from_list(rows)


def _file(files: dict[str, str], split: str) -> str:
    if split not in files:
        raise ValueError(f"no {split!r} file; available splits: {sorted(files)}")
    return files[split]


def load_preferences(split: str = "train", as_dataset: bool = False):
    """Preference pairs (id, kind, prompt, chosen, rejected), as a list of dicts or a `datasets.Dataset`.

    prompt/chosen/rejected are in TRL's conversational form (lists of messages); the trainers
    drop the extra columns `id` and `kind` (remove_unused_columns).
    """
    name = _file(PREFERENCE_FILES, split)
    return _maybe_dataset(_check(read_jsonl(name), name, PAIR_KEYS), as_dataset)


def load_kto(split: str = "train", as_dataset: bool = False):
    """Unpaired feedback (id, kind, prompt, completion, label) for KTO, as a list of dicts or a Dataset."""
    name = _file(KTO_FILES, split)
    return _maybe_dataset(_check(read_jsonl(name), name, KTO_KEYS), as_dataset)


def with_course_system_turn(rows: list[dict]) -> list[dict]:
    """Copies of the rows whose prompt starts with the course's system turn, as every course conversation does.

    The shipped prompts hold the user turn only; without a system turn SmolLM2's chat template
    inserts its own default system prompt, so training and scoring would see other prompts than
    evaluation and SFT do (`utils.course_data.course_prompt`). A prompt that already starts with a
    system turn is kept.
    """
    out = []
    for row in rows:
        prompt = row["prompt"]
        if not (isinstance(prompt, list) and prompt and isinstance(prompt[0], dict)):
            raise ValueError(f"row {row.get('id', '?')}: the prompt must be a list of messages, got {prompt!r:.80}")
        if prompt[0].get("role") != "system":
            prompt = [{"role": "system", "content": SYSTEM_PROMPT}] + list(prompt)
        out.append({**row, "prompt": prompt})
    return out


def spread_by_kind(rows: list[dict], limit: int | None) -> list[dict]:
    """`limit` rows, in file order, spread over the islands and fields with both kinds equally often.

    Rows come island by island, field by field, and the kinds alternate row by row, so a plain even
    stride (every 2nd row) would keep one kind, or half the fields, only. Up to one row per
    (island, field) group: an even stride over the groups, the kinds taken in turn. Beyond that: an
    even stride through each kind's rows.
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    groups: dict[str, list[int]] = {}
    for n, r in enumerate(rows):
        groups.setdefault(str(r["id"]).rsplit("/", 1)[0], []).append(n)
    if limit <= len(groups):
        keep = []
        for j, group in enumerate(spread_subset(list(groups), limit)):
            wanted = kinds[j % len(kinds)]
            keep.append(next((n for n in groups[group] if rows[n]["kind"] == wanted), groups[group][0]))
    else:
        keep = []
        for i, kind in enumerate(kinds):
            positions = [n for n, r in enumerate(rows) if r["kind"] == kind]
            share = limit // len(kinds) + (1 if i < limit % len(kinds) else 0)
            keep.extend(spread_subset(positions, share) if share else [])
    return [rows[n] for n in sorted(set(keep))]


def course_pairs(split: str = "train", limit: int | None = None, as_dataset: bool = False):
    """Preference pairs as the course sends them to a model (course system turn first); `limit` of them spread
    evenly through each kind (`spread_by_kind`), so both kinds stay equally represented."""
    return _maybe_dataset(with_course_system_turn(spread_by_kind(load_preferences(split), limit)), as_dataset)


def course_kto_rows(split: str = "train", limit: int | None = None, as_dataset: bool = False):
    """KTO rows as the course sends them to a model (course system turn first), in the file's training order.

    `limit` counts examples, chosen as `course_pairs` chooses pairs (from the examples in the pairs file's
    order, island by island, which `spread_by_kind` needs), and keeps both rows of each (the desirable and
    the undesirable reply), so a limit never unbalances the labels or the kinds. The kept rows stay in file
    order, which keeps `kto_training_order`'s layout: an example's two rows are as many rows apart as
    there are examples.
    """
    rows = load_kto(split)
    examples = {r["id"]: {"id": r["id"], "kind": r["kind"]} for r in rows}
    if limit is not None:
        position = {p["id"]: n for n, p in enumerate(load_preferences(split))}
        unknown = sorted(set(examples) - set(position))
        if unknown:
            raise ValueError(f"{KTO_FILES[split]}: ids not in {PREFERENCE_FILES[split]} (needed to pick a spread subset): {unknown[:5]}")
        examples = dict(sorted(examples.items(), key=lambda item: position[item[0]]))
    keep = {e["id"] for e in spread_by_kind(list(examples.values()), limit)}
    return _maybe_dataset(with_course_system_turn([r for r in rows if r["id"] in keep]), as_dataset)
