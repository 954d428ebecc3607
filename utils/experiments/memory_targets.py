"""Every function the course measures in a fresh process, by name: `measure_peak_memory("qlora_run", ...)`.

It lives with the experiments it runs: `utils.memory` and its worker name it as a string (the worker imports it
by name), so no shared module imports an experiment.

The import rule lives here, and only here: this module imports the heavy libraries (torch,
transformers, PEFT, TRL) and the experiments at its top, so that in a memory worker they land in
the baseline taken before the call, and the measured delta is the run's own memory (see
`utils.memory`). A target takes JSON-safe keyword arguments (they cross a process boundary) and
returns a JSON-safe dict; it runs the model at least once, since memory-mapped weights that were
only loaded have not been paged in. A target's `profile` is the notebook's own `P` (it crosses the process
boundary whole, so `P.with_(...)` changes arrive); a profile name is resolved here, for tests and scripts.
"""

from __future__ import annotations

import tempfile
import time

import peft  # noqa: F401  (the import rule above: baseline, not delta)
import torch
import transformers  # noqa: F401
import trl  # noqa: F401

from utils.experiments import lora_vs_dora, preference_comparison, qlora_run, stop_and_resume
from utils.profiles import Profile, get_profile
from utils.training import seconds_per_step


def lora_vs_dora_training(profile: Profile | str, use_dora: bool, seed: int = 0) -> dict:
    """Lab 3.1.2: load the model and train one arm for the lab's memory_steps steps, at the lab's batch size.

    Returns the steps trained and the profile trained with, so a caller can see that its `P` arrived.
    """
    started = time.perf_counter()
    P = get_profile(profile, lab="3.1.2")
    trainer = lora_vs_dora.train_adapter(P, use_dora, seed=seed, steps=P.memory_steps)
    return {"seconds_per_step": seconds_per_step(trainer), "seconds": time.perf_counter() - started,
            "steps": trainer.state.global_step, "profile": P.to_dict()}


def pipeline_training(profile: Profile | str, steps: int, lora: dict, seed: int = 0) -> dict:
    """Lab 3.1.4: load the model and train `steps` steps with the lab's LoRA settings."""
    started = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="lab314-memory-") as tmp:
        trainer = stop_and_resume.train_run(profile, steps, lora, tmp, seed=seed)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "seconds": time.perf_counter() - started,
        "steps": trainer.state.global_step,
        "trainable_params": trainable,
        "bf16": bool(trainer.args.bf16),
        "max_seq_length": trainer.args.max_length,
        # on a GPU the peak that matters is the CUDA allocator's (resident memory misses it)
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }


TARGETS = {
    "lora_vs_dora": lora_vs_dora_training,  # Lab 3.1.2
    "pipeline": pipeline_training,  # Lab 3.1.4
    "qlora_run": qlora_run.train_qlora,  # Lab 3.1.5
    "preference_training": preference_comparison.train_and_save,  # Labs 3.1.8, 3.1.9: one method's run, adapter saved
}
