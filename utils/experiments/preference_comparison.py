"""Labs 3.1.8 and 3.1.9: one preference run per method, trained where its memory can be measured, its adapter kept.

The labs compare DPO, SimPO, ORPO and KTO and report each run's peak memory, measured in a fresh
process (`utils.memory`, target "preference_training"). So the run itself happens there:
`train_and_save` trains with the shared preference code (`utils.experiments.preference`), writes the
adapter to `adapter_dir` and returns the run's numbers (JSON-safe); the notebook then loads the
adapter (`load_trained`) to evaluate it. When memory is not measured (the grade profile) the notebook
calls `train_run`, the same training in its own process, and keeps the trained model.
"""

from __future__ import annotations

import tempfile
import time

from utils.adapters import adapter_config
from utils.experiments.preference import run_summary, train_preference, training_data
from utils.models import load_base
from utils.profiles import get_profile
from utils.seeding import seed_everything


def imbalanced_kto_rows(rows, undesirable_per_desirable: int):
    """The KTO rows with only every `undesirable_per_desirable`-th desirable row kept (all undesirable rows stay)."""
    if undesirable_per_desirable < 1:
        raise ValueError(f"undesirable_per_desirable must be >= 1, got {undesirable_per_desirable}")
    desirable = [i for i, row in enumerate(rows) if row["label"]]
    keep = set(desirable[::undesirable_per_desirable]) | {i for i, row in enumerate(rows) if not row["label"]}
    return rows.select(sorted(keep)) if hasattr(rows, "select") else [rows[i] for i in sorted(keep)]


def train_run(profile: str, method: str, lab: str | None = None, seed: int = 0, steps: int | None = None,
              undesirable_per_desirable: int = 1, settings: dict | None = None):
    """Train `method` from a fresh course model with the profile's LoRA adapter, in this process: (trainer, training rows).

    profile is a name, taken with `lab`'s sizes. undesirable_per_desirable (KTO only) keeps one desirable
    row for that many undesirable ones. settings: config fields (beta, ...).
    """
    P = get_profile(profile, lab=lab)
    steps = P.max_steps if steps is None else steps
    P = P.with_(max_steps=steps, logging_steps=min(P.logging_steps, steps))
    data = training_data(method, P.train_examples)
    if undesirable_per_desirable != 1:
        if method != "kto":
            raise ValueError(f"undesirable_per_desirable applies to KTO's unpaired rows, not to {method}")
        data = imbalanced_kto_rows(data, undesirable_per_desirable)
    seed_everything(seed)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory(prefix=f"{method}-run-") as tmp:
        trainer = train_preference(method, model, tokenizer, data, P, tmp, peft_config=adapter_config(P), seed=seed,
                                   **(settings or {}))
    return trainer, data


def run_numbers(trainer, method: str, data, seconds: float | None = None) -> dict:
    """A finished run as JSON-safe numbers: `run_summary`'s, the wall time, and the rows (`data`) it trained on."""
    return {
        **run_summary(trainer, method),
        "seconds": seconds,
        "train_rows": len(data),
        "desirable_rows": int(sum(data["label"])) if method == "kto" else None,
    }


def train_and_save(profile: str, method: str, adapter_dir: str, lab: str | None = None, seed: int = 0, steps: int | None = None,
                   undesirable_per_desirable: int = 1, settings: dict | None = None) -> dict:
    """`train_run`, then the adapter saved to `adapter_dir`; returns `run_numbers` (the memory target of the labs)."""
    started = time.perf_counter()
    trainer, data = train_run(profile, method, lab=lab, seed=seed, steps=steps,
                              undesirable_per_desirable=undesirable_per_desirable, settings=settings)
    trainer.model.save_pretrained(adapter_dir)
    return run_numbers(trainer, method, data, time.perf_counter() - started)


def load_trained(profile, adapter_dir: str):
    """(PEFT model, tokenizer): the course model with the adapter `train_and_save` wrote."""
    from peft import PeftModel

    model, tokenizer = load_base(profile)
    return PeftModel.from_pretrained(model, adapter_dir), tokenizer
