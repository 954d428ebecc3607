"""Lab 3.1.4's stop-and-resume experiment: one LoRA run stopped at a checkpoint, resumed, compared.

The same training run three ways: stopped at a checkpoint, resumed from it, and uninterrupted
(to check that resuming loses nothing); `utils.experiments.memory_targets` runs it once more in a fresh
process to measure its peak memory. `train_run` is that one run; the LoRA settings come in as a
plain dict (they cross a process boundary as JSON), so the lab's own LoraConfig is what gets trained.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import torch
import transformers

from utils.course_data import load_split
from utils.models import load_base
from utils.profiles import Profile, get_profile
from utils.seeding import seed_everything
from utils.training import step_learning_rates, step_losses, train_sft

LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type", "bias")


class StopAtStep(transformers.TrainerCallback):
    """Save a checkpoint at `step` and end the run there, as a crash right after saving would.

    Stopping by callback, rather than by a smaller max_steps, keeps everything the schedule
    depends on (max_steps, warmup, the cosine decay) identical to the uninterrupted run.
    Known issue: in Jupyter, transformers 5.23's NotebookProgressCallback raises a TypeError at
    the end of a run stopped at step 2 (its bar starts counting at step 2); other steps work.
    """

    def __init__(self, step: int):
        if step < 1:
            raise ValueError(f"stop step must be >= 1, got {step}")
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def lora_settings(config) -> dict:
    """A peft LoraConfig as a JSON-safe dict of the fields these runs use."""
    settings = {}
    for key in LORA_KEYS:
        value = getattr(config, key)
        if isinstance(value, (set, frozenset, tuple)):
            value = sorted(value)
        if hasattr(value, "value"):  # TaskType enum
            value = value.value
        settings[key] = value
    return settings


def _profile(profile: str | Profile) -> Profile:
    return get_profile(profile, lab="3.1.4") if isinstance(profile, str) else profile


def train_run(profile: str | Profile, steps: int, lora: dict, output_dir: str, *, seed: int = 0, stop_at: int | None = None, resume: bool = False, **overrides):
    """Fresh base model + LoRA (`lora`: LoraConfig keyword arguments), trained to `steps` steps.

    stop_at: save a checkpoint at that step and stop (see StopAtStep). resume: continue from the
    newest checkpoint in `output_dir` (the model, optimizer, scheduler, RNG and data position all
    come from it). Logs every step. Returns the finished trainer.
    """
    if stop_at is not None and not 1 <= stop_at < steps:
        raise ValueError(f"stop_at must be between 1 and steps - 1 = {steps - 1}, got {stop_at}")
    if resume and not list(Path(output_dir).glob("checkpoint-*")):
        raise FileNotFoundError(f"resume=True but {output_dir} holds no checkpoint-* directory to resume from")
    from peft import LoraConfig

    P = _profile(profile).with_(max_steps=steps, logging_steps=1)
    seed_everything(seed)
    model, tokenizer = load_base(P)
    return train_sft(
        model, tokenizer, load_split("train", P.train_examples), P, output_dir,
        peft_config=LoraConfig(**lora), seed=seed,
        callbacks=[StopAtStep(stop_at)] if stop_at is not None else None,
        resume_from_checkpoint=True if resume else None,
        **overrides,
    )


def adapter_weights(trainer) -> dict[str, torch.Tensor]:
    """The trained LoRA tensors (CPU copies), keyed by parameter name."""
    return {n: p.detach().float().cpu().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


def run_summary(trainer) -> dict:
    """What a comparison needs from a finished run, so its model can be freed (8B on a Spark)."""
    return {
        "global_step": trainer.state.global_step,
        "losses": step_losses(trainer),
        "learning_rates": step_learning_rates(trainer),
        "weights": adapter_weights(trainer),
    }


def compare_runs(a: dict, b: dict) -> dict:
    """How far apart two finished runs (run_summary) ended: last loss and adapter weights (max |difference|)."""
    wa, wb = a["weights"], b["weights"]
    if set(wa) != set(wb):
        raise ValueError(f"the runs trained different adapters: {sorted(set(wa) ^ set(wb))[:4]}")
    last = max(a["losses"])
    if last not in b["losses"]:
        raise ValueError(f"run b logged no loss at step {last} (its steps: {sorted(b['losses'])})")
    return {
        "final_step": (a["global_step"], b["global_step"]),
        "final_loss": (a["losses"][last], b["losses"][last]),
        "loss_diff": abs(a["losses"][last] - b["losses"][last]),
        "weight_diff": max((wa[k] - wb[k]).abs().max().item() for k in wa),
    }


def _free(trainer) -> None:
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resume_experiment(profile: str | Profile, steps: int, stop_at: int, lora: dict, workdir: str, seed: int = 0, **overrides) -> dict:
    """Run A uninterrupted; run B stopped at `stop_at`, then resumed by a new trainer on a fresh model.

    Returns the run_summary of each run ("uninterrupted", "stopped", "resumed"), the checkpoint
    directory, and compare_runs(uninterrupted, resumed). Each model is freed once summarised.
    """
    root = Path(workdir)
    for sub in ("uninterrupted", "interrupted"):
        shutil.rmtree(root / sub, ignore_errors=True)
    summaries = {}
    for name, kwargs in [
        ("uninterrupted", dict(output_dir=str(root / "uninterrupted"))),
        ("stopped", dict(output_dir=str(root / "interrupted"), stop_at=stop_at)),
        ("resumed", dict(output_dir=str(root / "interrupted"), resume=True)),
    ]:
        trainer = train_run(profile, steps, lora, seed=seed, **kwargs, **overrides)
        summaries[name] = run_summary(trainer)
        _free(trainer)
    summaries["checkpoint"] = str(root / "interrupted" / f"checkpoint-{stop_at}")
    summaries["comparison"] = compare_runs(summaries["uninterrupted"], summaries["resumed"])
    return summaries
