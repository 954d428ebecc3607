"""Labs 3.1.7 to 3.1.9: one preference run with a TRL trainer on the course model, sized by the profile.

The three labs compare DPO, SimPO, ORPO and KTO on the same data, model, adapter and step budget,
so every run comes from here and differs only in the method and its own settings:

    method  TRL trainer                                   data (utils.preference_data)
    dpo     trl.DPOTrainer                                pairs: prompt / chosen / rejected
    cpo     trl.experimental.cpo.CPOTrainer (SimPO with   pairs
            loss_type="simpo", cpo_alpha=0)
    orpo    trl.experimental.orpo.ORPOTrainer             pairs
    kto     trl.KTOTrainer                                unpaired: prompt / completion / label

The policy is the course model with the profile's LoRA adapter (`utils.adapters.adapter_config`),
handed to the trainer as `peft_config`. DPO and KTO then need no second model: TRL computes the
reference log-probabilities with the adapter switched off (`ref_model=None`). Every config gets the
course's shared settings (`utils.training.trainer_settings`: sizes from the profile, the course
precision, checkpointing only on a GPU), so TRL's bf16 and gradient-checkpointing defaults never
apply by accident. What the trainer logs is read with `utils.training`'s readers (`metric_history`,
`loss_history`, `seconds_per_step`); held-out preference accuracy is `utils.evaluation.preference_accuracy`.
"""

from __future__ import annotations

import utils  # noqa: F401  (quiets a harmless bitsandbytes warning before TRL imports it)
# CPO (SimPO) and ORPO live in trl.experimental, whose import warns once per process that its API may change.
# Importing it here puts that warning in a lab's setup cell: in a graded cell nbgrader scores any stderr as a failure.
import trl.experimental  # noqa: F401,E402
from utils.preference_data import course_kto_rows, course_pairs
from utils.profiles import Profile
from utils.training import metric_history, restore_full_precision_forward, seconds_per_step, trainer_settings

METHODS = ("dpo", "cpo", "orpo", "kto")
PAIRED = ("dpo", "cpo", "orpo")

# What each trainer logs about the rewards, every logging step (TRL 1.16, read in its sources: "train" metrics
# averaged over the steps since the last log). KTO has no pairs, so no pair accuracy; ORPO adds its odds terms.
_PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")
REWARD_METRICS = {
    "dpo": _PAIR_METRICS,
    "cpo": _PAIR_METRICS + ("nll_loss",),
    "orpo": _PAIR_METRICS + ("nll_loss", "log_odds_ratio", "log_odds_chosen"),
    "kto": ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"),
}


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown preference method {method!r}; choose one of {METHODS}")
    return method


def trainer_classes(method: str):
    """(config class, trainer class) of TRL 1.16 for `method`."""
    _check_method(method)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if method == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer


def preference_config(method: str, profile: Profile, output_dir: str, seed: int = 0, **overrides):
    """The method's TRL config from the course's shared settings; keyword arguments override any field (beta, loss_type, ...)."""
    config_class, _ = trainer_classes(method)
    settings = trainer_settings(profile, output_dir, seed)
    if method in ("cpo", "orpo"):
        # Their collator needs the raw columns; the trainers set this themselves, with a warning on every run.
        settings["remove_unused_columns"] = False
    return config_class(**{**settings, **overrides})


def training_data(method: str, limit: int | None = None):
    """The course's training rows for `method` as a `datasets.Dataset` (course system turn in every prompt)."""
    _check_method(method)
    if method in PAIRED:
        return course_pairs("train", limit, as_dataset=True)
    return course_kto_rows("train", limit, as_dataset=True)


def train_preference(method: str, model, tokenizer, train_dataset, profile: Profile, output_dir: str, *, peft_config=None,
                     ref_model=None, seed: int = 0, callbacks=None, resume_from_checkpoint=None, **overrides):
    """Train `model` with `method`'s TRL trainer on `train_dataset`; return the finished trainer.

    peft_config: the adapter TRL wraps the model in (the policy); with it and ref_model=None, DPO and KTO
    use the same model with the adapter off as their reference. resume_from_checkpoint: as for
    `transformers.Trainer.train` (save checkpoints with save_strategy="steps", save_steps=... in overrides).
    Other keyword arguments override config fields.
    """
    _, trainer_class = trainer_classes(method)
    kwargs = dict(
        model=model,
        args=preference_config(method, profile, output_dir, seed=seed, **overrides),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if ref_model is not None:
        if method not in ("dpo", "kto"):
            raise ValueError(f"{method} is reference-free: it takes no ref_model")
        kwargs["ref_model"] = ref_model
    trainer = trainer_class(**kwargs)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    restore_full_precision_forward(trainer)
    return trainer


def reward_history(trainer, method: str = "dpo") -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values) for every reward metric the method's trainer logged (REWARD_METRICS)."""
    _check_method(method)
    out = {}
    for key in REWARD_METRICS[method]:
        try:
            out[key] = metric_history(trainer, key)
        except ValueError:
            continue
    if not out:
        raise ValueError(f"the trainer logged none of {REWARD_METRICS[method]} (did it train, with logging_steps <= max_steps?)")
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
    }
