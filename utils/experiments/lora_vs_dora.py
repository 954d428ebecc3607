"""Lab 3.1.2's unit of comparison: a fresh base model with one PEFT adapter (LoRA or DoRA), trained.

Both arms of the comparison come from here, at the lab's rank, steps and data (`get_profile(lab="3.1.2")`),
so they differ only in `use_dora`. The memory of each arm is measured by `utils.experiments.memory_targets`.
"""

from __future__ import annotations

import tempfile

from utils.adapters import adapter_config
from utils.course_data import load_split
from utils.models import load_base
from utils.profiles import Profile, get_profile
from utils.seeding import seed_everything
from utils.training import train_sft


def train_adapter(profile: str | Profile, use_dora: bool, seed: int = 0, steps: int | None = None, output_dir: str | None = None, **overrides):
    """Fresh base model + adapter, trained for the profile's max_steps (or `steps`); returns the finished trainer.

    `profile` may be a name (what a memory worker receives: arguments cross a process boundary as
    JSON), taken with Lab 3.1.2's sizes. Extra keyword arguments override SFTConfig fields.
    """
    P = get_profile(profile, lab="3.1.2") if isinstance(profile, str) else profile
    steps = P.max_steps if steps is None else steps
    P = P.with_(max_steps=steps, logging_steps=min(P.logging_steps, steps))
    seed_everything(seed)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory(prefix="adapter-run-") as tmp:
        return train_sft(
            model, tokenizer, load_split("train", P.train_examples), P, output_dir or tmp,
            peft_config=adapter_config(P, use_dora), seed=seed, **overrides,
        )
