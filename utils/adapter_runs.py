"""Train one PEFT adapter (LoRA or DoRA) on the course task: the unit of Lab 3.1.2's comparison.

The lab compares methods at equal rank, steps and data, so both arms must come from one place:
`adapter_config` builds the PEFT config and `train_adapter` loads a fresh base model and trains
it. `train_adapter` also serves as a `utils.memory.measure_peak_memory` target, so the peak
memory of each method is measured in a fresh process. The heavy libraries are imported at module
top for that reason: they belong to the worker's baseline, not to the measured training run.
"""

from __future__ import annotations

import contextlib
import tempfile
import time

import peft  # noqa: F401  (imported here so that it counts in a memory worker's baseline)
import torch  # noqa: F401
import transformers  # noqa: F401
import trl  # noqa: F401

import utils  # noqa: F401  (quiets a harmless bitsandbytes warning before TRL imports it)
from utils.course_data import load_split
from utils.models import load_base
from utils.profiles import Profile, get_profile
from utils.seeding import seed_everything
from utils.training import train_sft

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_config(profile: Profile, use_dora: bool):
    """LoRA (or DoRA) at the profile's rank and alpha on every linear projection, no dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(ALL_LINEAR),
        use_dora=use_dora,
        task_type="CAUSAL_LM",
    )


@contextlib.contextmanager
def merged_for_inference(peft_model):
    """Fold the adapter into the base weights for the duration of the block, then take it out again.

    Generation must run merged: an unmerged DoRA layer recomputes B @ A and the norm of a full
    d_out x d_in matrix for every generated token, which makes generation many times slower. Merged,
    LoRA and DoRA cost exactly what the base model costs.
    """
    peft_model.merge_adapter()
    try:
        yield peft_model
    finally:
        peft_model.unmerge_adapter()


def seconds_per_step(trainer) -> float:
    """Mean wall time of one optimizer step, from the trainer's own timing of the run."""
    summary = [e for e in trainer.state.log_history if "train_runtime" in e]
    if not summary or not trainer.state.global_step:
        raise ValueError("the trainer has not finished a training run")
    return summary[-1]["train_runtime"] / trainer.state.global_step


def train_adapter(profile: str | Profile, use_dora: bool, steps: int, seed: int = 0, output_dir: str | None = None, **overrides):
    """Fresh base model + adapter, trained for `steps` steps; returns the finished trainer.

    `profile` may be a name, which is what a memory worker receives (arguments cross a process
    boundary as JSON). Extra keyword arguments override SFTConfig fields.
    """
    P = get_profile(profile) if isinstance(profile, str) else profile
    P = P.with_(max_steps=steps, logging_steps=min(P.logging_steps, steps))
    seed_everything(seed)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory(prefix="adapter-run-") as tmp:
        return train_sft(
            model, tokenizer, load_split("train", P.train_examples), P, output_dir or tmp,
            peft_config=adapter_config(P, use_dora), seed=seed, **overrides,
        )


def measured_training(profile: str, use_dora: bool, steps: int, seed: int = 0, batch_size: int | None = None) -> dict:
    """Memory-worker target: train, then report the step time (the worker reports the peak)."""
    started = time.perf_counter()
    overrides = {"per_device_train_batch_size": batch_size} if batch_size else {}
    trainer = train_adapter(profile, use_dora, steps, seed, **overrides)
    return {"seconds_per_step": seconds_per_step(trainer), "seconds": time.perf_counter() - started}
