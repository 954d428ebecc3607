"""Labs 3.1.7 to 3.1.9: one preference run with a TRL trainer on the course model, sized by the profile.

The three labs compare DPO, SimPO, ORPO and KTO on the same data, model, adapter and step budget,
so every run comes from here and differs only in the method, whose facts (TRL classes, paired or
unpaired rows, reference or not, columns, logged metrics, own settings) are its record in
`utils.experiments.preference_methods`; nothing here branches on a method's name.

The policy is the course model with the profile's LoRA adapter (`utils.adapters.adapter_config`),
handed to the trainer as `peft_config`. DPO and KTO then need no second model: TRL computes the
reference log-probabilities with the adapter switched off (`ref_model=None`). Every config gets the
course's shared settings (`utils.training.trainer_settings`: sizes from the profile, the course
precision, checkpointing only on a GPU), so TRL's bf16 and gradient-checkpointing defaults never
apply by accident. What the trainer logs is read with `utils.training`'s readers (`metric_history`,
`loss_history`, `seconds_per_step`); held-out preference accuracy is `utils.evaluation.preference_accuracy`.
"""

from __future__ import annotations

from utils.experiments.preference_methods import preference_method
from utils.profiles import Profile
from utils.training import loss_history, metric_history, restore_full_precision_forward, seconds_per_step


def train_preference(method: str, model, tokenizer, train_dataset, profile: Profile, output_dir: str, *, peft_config=None,
                     ref_model=None, seed: int = 0, callbacks=None, resume_from_checkpoint=None, **overrides):
    """Train `model` with `method`'s TRL trainer on `train_dataset`; return the finished trainer.

    peft_config: the adapter TRL wraps the model in (the policy); with it and ref_model=None, DPO and KTO
    use the same model with the adapter off as their reference. resume_from_checkpoint: as for
    `transformers.Trainer.train` (save checkpoints with save_strategy="steps", save_steps=... in overrides).
    Other keyword arguments override config fields.
    """
    record = preference_method(method)
    record.check_columns(train_dataset)
    kwargs = dict(
        model=model,
        args=record.config(profile, output_dir, seed=seed, **overrides),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if ref_model is not None:
        if not record.takes_reference:
            raise ValueError(f"{method} ({record.title}) is reference-free: it takes no ref_model")
        kwargs["ref_model"] = ref_model
    trainer = record.trainer_class()(**kwargs)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    restore_full_precision_forward(trainer)
    return trainer


def reward_history(trainer, method: str = "dpo") -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values) for every reward metric the method's trainer logged (its record's `metrics`)."""
    metrics = preference_method(method).metrics
    out = {}
    for key in metrics:
        try:
            out[key] = metric_history(trainer, key)
        except ValueError:
            continue
    if not out:
        raise ValueError(f"the trainer logged none of {metrics} (did it train, with logging_steps <= max_steps?)")
    return out


def run_summary(trainer, method: str = "dpo") -> dict:
    """A finished run as JSON-safe numbers (what a fresh-process memory target returns, or a table row)."""
    return {
        "method": method,
        "steps": trainer.state.global_step,
        "seconds_per_step": seconds_per_step(trainer),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "has_ref_model": getattr(trainer, "ref_model", None) is not None,
        "history": {k: list(map(list, zip(*v))) for k, v in reward_history(trainer, method).items()},
        "losses": list(map(list, zip(*loss_history(trainer)))),  # [step, training loss] as logged
    }
