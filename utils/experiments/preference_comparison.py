"""Labs 3.1.8 and 3.1.9: one preference run per method, trained where its memory can be measured, its adapter kept.

The labs compare DPO, SimPO, ORPO and KTO and report each run's peak memory, measured in a fresh
process (`utils.memory`, target "preference_training"). So the run itself happens there:
`train_and_save` trains with the shared preference code (`utils.experiments.preference`), writes the
adapter to `adapter_dir` and returns the run's numbers (JSON-safe); the notebook then loads the
adapter (`load_trained`) to evaluate it. When memory is not measured (the grade profile) the notebook
calls `train_run`, the same training in its own process, and keeps the trained model.

Lab 3.1.8 also needs what a single mean step time and a preference trainer cannot give: every step's own
wall time (`StepTimer`); step times of the methods taken in turn on one batch (`interleaved_step_seconds`),
so that a speed ratio does not also time the machine's changes of speed between runs; and a control for
ORPO's NLL term, supervised fine-tuning on the same pairs' chosen replies at the same budget
(`sft_on_chosen_run`): without it, a format gain of ORPO cannot be told from plain SFT.
"""

from __future__ import annotations

import tempfile
import time

from transformers import TrainerCallback

from utils.adapters import adapter_config
from utils.experiments.preference import run_summary, train_preference
from utils.experiments.preference_methods import preference_method
from utils.models import load_base
from utils.preference_data import course_pairs
from utils.profiles import get_profile
from utils.seeding import seed_everything
from utils.training import course_sft_trainer_class, loss_history, restore_full_precision_forward, seconds_per_step, sft_config


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (the trainer's own summary keeps only their mean)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._started = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._started is not None:
            self.seconds.append(time.perf_counter() - self._started)
            self._started = None


def step_seconds(trainer) -> list[float] | None:
    """The per-step wall times a `StepTimer` on `trainer` recorded, or None if it had none."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, StepTimer):
            return list(callback.seconds)
    return None


def imbalanced_kto_rows(rows, undesirable_per_desirable: int):
    """The KTO rows with only every `undesirable_per_desirable`-th desirable row kept (all undesirable rows stay)."""
    if undesirable_per_desirable < 1:
        raise ValueError(f"undesirable_per_desirable must be >= 1, got {undesirable_per_desirable}")
    desirable = [i for i, row in enumerate(rows) if row["label"]]
    keep = set(desirable[::undesirable_per_desirable]) | {i for i, row in enumerate(rows) if not row["label"]}
    return rows.select(sorted(keep)) if hasattr(rows, "select") else [rows[i] for i in sorted(keep)]


def train_run(profile, method: str, lab: str | None = None, seed: int = 0, steps: int | None = None,
              undesirable_per_desirable: int = 1, settings: dict | None = None):
    """Train `method` from a fresh course model with the profile's LoRA adapter, in this process: (trainer, training rows).

    profile: the notebook's Profile (or a name, taken with `lab`'s sizes). undesirable_per_desirable (KTO only)
    keeps one desirable row for that many undesirable ones. settings: config fields (beta, ...).
    """
    P = get_profile(profile, lab=lab)
    steps = P.max_steps if steps is None else steps
    P = P.with_(max_steps=steps, logging_steps=min(P.logging_steps, steps))
    record = preference_method(method)
    data = record.training_data(P.train_examples)
    if undesirable_per_desirable != 1:
        if record.paired:
            raise ValueError(f"undesirable_per_desirable applies to unpaired rows (KTO's), not to {record.title}'s pairs")
        data = imbalanced_kto_rows(data, undesirable_per_desirable)
    seed_everything(seed)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory(prefix=f"{method}-run-") as tmp:
        trainer = train_preference(method, model, tokenizer, data, P, tmp, peft_config=adapter_config(P), seed=seed,
                                   callbacks=[StepTimer()], **(settings or {}))
    return trainer, data


def run_numbers(trainer, method: str, data, seconds: float | None = None) -> dict:
    """A finished run as JSON-safe numbers: `run_summary`'s, the wall time, and the rows (`data`) it trained on."""
    return {
        **run_summary(trainer, method),
        "seconds": seconds,
        "step_seconds": step_seconds(trainer),
        "train_rows": len(data),
        "desirable_rows": None if preference_method(method).paired else int(sum(data["label"])),
    }


def train_and_save(profile, method: str, adapter_dir: str, lab: str | None = None, seed: int = 0, steps: int | None = None,
                   undesirable_per_desirable: int = 1, settings: dict | None = None) -> dict:
    """`train_run`, then the adapter saved to `adapter_dir`; returns `run_numbers` (the memory target of the labs)."""
    started = time.perf_counter()
    trainer, data = train_run(profile, method, lab=lab, seed=seed, steps=steps,
                              undesirable_per_desirable=undesirable_per_desirable, settings=settings)
    trainer.model.save_pretrained(adapter_dir)
    return run_numbers(trainer, method, data, time.perf_counter() - started)


def chosen_as_sft_rows(pairs):
    """The pairs as TRL's conversational prompt/completion rows: each prompt with its chosen reply, nothing else."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": pair["prompt"], "completion": pair["chosen"]} for pair in pairs])


def sft_on_chosen_run(profile, lab: str | None = None, seed: int = 0, steps: int | None = None):
    """The control for ORPO's NLL term: SFT on the chosen replies of `train_run`'s pairs, at its budget: (trainer, rows).

    Same model, adapter, seed (so the same shuffled order of the same pairs), steps, batch size and learning
    rate as a preference run; the loss is TRL SFTTrainer's NLL of the chosen reply alone (ORPO's, in TRL,
    also covers the prompt).
    """
    P = get_profile(profile, lab=lab)
    steps = P.max_steps if steps is None else steps
    P = P.with_(max_steps=steps, logging_steps=min(P.logging_steps, steps))
    data = chosen_as_sft_rows(course_pairs("train", P.train_examples, as_dataset=True))  # the preference runs' pairs
    seed_everything(seed)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory(prefix="sft-on-chosen-") as tmp:
        trainer = course_sft_trainer_class()(model=model, args=sft_config(P, tmp, seed=seed), train_dataset=data,
                                             processing_class=tokenizer, peft_config=adapter_config(P), callbacks=[StepTimer()])
        trainer.train()
    restore_full_precision_forward(trainer)
    return trainer, data


def control_numbers(trainer, data) -> dict:
    """The SFT control's run as JSON-safe numbers, with the keys of `run_numbers` that apply to it."""
    steps, losses = loss_history(trainer)
    return {"method": "sft", "steps": trainer.state.global_step, "seconds_per_step": seconds_per_step(trainer),
            "step_seconds": step_seconds(trainer), "train_rows": len(data), "history": {"loss": [steps, losses]},
            "losses": list(map(list, zip(steps, losses)))}


def interleaved_step_seconds(profile, runs: dict, rounds: int, lab: str | None = None, seed: int = 0) -> dict[str, list[float]]:
    """Forward and backward of one batch per method, the methods taken in turn, `rounds` times: name -> seconds.

    runs: name -> (method, settings), as a lab's run table. Whole runs timed one after another also time any
    change in the machine's speed between them; taken in turn, on the same pairs, such a change falls on every
    method alike. A warm-up round is run first and not counted. The optimizer step, the same for every method
    (the same adapter), is left out.
    """
    P = get_profile(profile, lab=lab)
    data = course_pairs("train", P.batch_size, as_dataset=True)  # one batch of pairs, the same for every method
    trainers, batches = {}, {}
    with tempfile.TemporaryDirectory(prefix="step-timing-") as tmp:
        for name, (method, settings) in runs.items():
            seed_everything(seed)
            model, tokenizer = load_base(P)
            record = preference_method(method)
            trainers[name] = record.trainer_class()(model=model, args=record.config(P, tmp, seed=seed, **settings), train_dataset=data,
                                                    processing_class=tokenizer, peft_config=adapter_config(P))
            trainers[name].current_gradient_accumulation_steps = 1  # set by the training loop, which does not run here
            batches[name] = next(iter(trainers[name].get_train_dataloader()))
    seconds = {name: [] for name in runs}
    for round_ in range(rounds + 1):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.training_step(trainer.model, batches[name])
            if round_:
                seconds[name].append(time.perf_counter() - started)
            trainer.model.zero_grad(set_to_none=True)
    return seconds


def load_trained(profile, adapter_dir: str):
    """(PEFT model, tokenizer): the course model with the adapter `train_and_save` wrote."""
    from peft import PeftModel

    model, tokenizer = load_base(profile)
    return PeftModel.from_pretrained(model, adapter_dir), tokenizer
