"""The preference data of Labs 3.1.7 to 3.1.9: load it, and the recipe that built it.

Lab 3.1.6 builds, from the course task, preference pairs (prompt / chosen / rejected, for DPO,
SimPO, ORPO) and unpaired feedback (prompt / completion / label, for KTO). The chosen reply is
the reference answer in the house format; the rejected one is plausibly wrong: another island's
value for the same field, or the right value in the wrong format (the `kind` column says which).
The files in `utils/data/` were produced by running that lab's solution code through
`build_files` (`python -m tools.build_preference_data`); a test checks they still match it.

Pairs for training come from the training split only, so the held-out wordings of the test
split stay out of every training file; the test pairs serve to measure preference accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from utils.course_data import load_split, read_jsonl, render_jsonl

PREFERENCE_SEED = 0
PREFERENCE_FILES = {"train": "course_preferences_train.jsonl", "test": "course_preferences_test.jsonl"}
KTO_FILES = {"train": "course_kto_train.jsonl"}
PAIR_KEYS = ("prompt", "chosen", "rejected")
KTO_KEYS = ("prompt", "completion", "label")

def build_files(make_preference_pairs: Callable, to_unpaired: Callable) -> dict[str, list[dict]]:
    """file name -> rows, from Lab 3.1.6's two functions: pairs for the train and test splits, KTO rows from the train pairs."""
    train = make_preference_pairs(load_split("train"), seed=PREFERENCE_SEED)
    test = make_preference_pairs(load_split("test"), seed=PREFERENCE_SEED)
    return {PREFERENCE_FILES["train"]: train, PREFERENCE_FILES["test"]: test, KTO_FILES["train"]: to_unpaired(train)}


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
