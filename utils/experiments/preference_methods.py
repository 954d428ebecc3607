"""Labs 3.1.7 to 3.1.9: one record per preference method, the only place the facts about a method live.

Why: the labs train DPO, SimPO, ORPO and KTO with TRL's trainers on the same data, model and adapter. What
differs between the methods (which TRL classes, paired or unpaired rows, whether a reference model is used,
the columns the trainer reads, what it logs, the config fields the method needs) is written here once, and
every user (`utils.experiments.preference`, `preference_comparison`, `on_policy`, the labs and their tests)
asks the record instead of branching on the method's name. A new method is a new record in `METHODS`.

    name   TRL 1.16 trainer                              rows                               reference
    dpo    trl.DPOTrainer                                pairs: prompt / chosen / rejected  yes (adapter off)
    simpo  trl.experimental.cpo.CPOTrainer,              pairs                              no
           loss_type="simpo", cpo_alpha=0
    orpo   trl.experimental.orpo.ORPOTrainer             pairs                              no
    kto    trl.KTOTrainer                                unpaired: prompt / completion /    yes (adapter off)
                                                         label

A record's config is the course's shared settings (`utils.training.trainer_settings`: sizes from the profile,
the course precision), then the method's own fixed settings, then the caller's overrides.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# CPO (SimPO) and ORPO live in trl.experimental, whose import warns once per process that its API may change.
# Importing it here puts that warning in a lab's setup cell: in a graded cell nbgrader scores any stderr as a failure.
import trl.experimental  # noqa: F401,E402
from utils.profiles import Profile

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", "label")

# What TRL 1.16's trainers log about the rewards at every logging step (read in their sources: "train" metrics
# averaged over the steps since the last log). KTO has no pairs, so no pair accuracy; ORPO adds its odds terms.
_PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


@dataclass(frozen=True)
class PreferenceMethod:
    """What the course needs to know about one preference method, and the TRL objects it builds from it.

    settings: config fields the method always sets (SimPO is CPO with these), before the caller's overrides.
    profile_settings: config field -> the profile settings that give its value in a lab, first one present
        (`lab_settings`): e.g. DPO's beta is `dpo_beta` where a lab compares methods, `beta` in Lab 3.1.7.
    """

    name: str
    title: str  # as the labs print it
    trl_config: str  # dotted path of the TRL 1.16 config class
    trl_trainer: str  # dotted path of the TRL 1.16 trainer class
    paired: bool  # pairs (prompt / chosen / rejected) or unpaired rows (prompt / completion / label)
    takes_reference: bool  # a reference model: a ref_model, or the PEFT policy with its adapter off
    columns: tuple[str, ...]  # the raw dataset columns the trainer reads
    metrics: tuple[str, ...]  # the reward metrics the trainer logs
    settings: tuple[tuple[str, Any], ...] = ()
    profile_settings: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def config_class(self):
        """TRL's config class for this method (imported on first use: CPO and ORPO live in trl.experimental)."""
        return _load(self.trl_config)

    def trainer_class(self):
        """TRL's trainer class for this method."""
        return _load(self.trl_trainer)

    def config(self, profile: Profile, output_dir: str, seed: int = 0, **overrides):
        """The method's TRL config: the course's shared settings, the method's own, then `overrides` (beta, ...)."""
        from utils.training import trainer_settings

        return self.config_class()(**{**trainer_settings(profile, output_dir, seed), **dict(self.settings), **overrides})

    def lab_settings(self, profile: Profile) -> dict[str, Any]:
        """The method's hyperparameters (beta, simpo_gamma, ...) as the lab's profile sets them."""
        out = {}
        for field, names in self.profile_settings:
            present = [name for name in names if _has_setting(profile, name)]
            if not present:
                raise ValueError(f"preference method {self.name!r}: profile {profile.name!r} (lab {profile.lab}) sets none of "
                                 f"{list(names)}, which give the config field {field!r}")
            out[field] = getattr(profile, present[0])
        return out

    def training_data(self, limit: int | None = None):
        """The course's training rows for this method as a `datasets.Dataset` (course system turn in every prompt)."""
        from utils.preference_data import course_kto_rows, course_pairs

        rows = course_pairs("train", limit, as_dataset=True) if self.paired else course_kto_rows("train", limit, as_dataset=True)
        self.check_columns(rows)
        return rows

    def check_columns(self, rows) -> None:
        """Raise if `rows` (a Dataset or a list of dicts) lacks a column this method's trainer reads."""
        present = set(rows.column_names) if hasattr(rows, "column_names") else set(rows[0]) if len(rows) else set()
        missing = [c for c in self.columns if c not in present]
        if missing:
            raise ValueError(f"preference method {self.name!r} ({self.title}) needs the columns {list(self.columns)}; "
                             f"the rows lack {missing} (they have {sorted(present)})")


def _load(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _has_setting(profile: Profile, name: str) -> bool:
    try:
        getattr(profile, name)
    except AttributeError:
        return False
    return True


METHODS: dict[str, PreferenceMethod] = {m.name: m for m in (
    PreferenceMethod("dpo", "DPO", "trl.DPOConfig", "trl.DPOTrainer", paired=True, takes_reference=True,
                     columns=PAIR_COLUMNS, metrics=_PAIR_METRICS, profile_settings=(("beta", ("dpo_beta", "beta")),)),
    PreferenceMethod("simpo", "SimPO", "trl.experimental.cpo.CPOConfig", "trl.experimental.cpo.CPOTrainer", paired=True,
                     takes_reference=False, columns=PAIR_COLUMNS, metrics=_PAIR_METRICS + ("nll_loss",),
                     # the collator needs the raw columns (the trainer sets this itself, with a warning on every run)
                     settings=(("loss_type", "simpo"), ("cpo_alpha", 0.0), ("remove_unused_columns", False)),
                     profile_settings=(("beta", ("simpo_beta",)), ("simpo_gamma", ("simpo_gamma",)))),
    PreferenceMethod("orpo", "ORPO", "trl.experimental.orpo.ORPOConfig", "trl.experimental.orpo.ORPOTrainer", paired=True,
                     takes_reference=False, columns=PAIR_COLUMNS,
                     metrics=_PAIR_METRICS + ("nll_loss", "log_odds_ratio", "log_odds_chosen"),
                     settings=(("remove_unused_columns", False),), profile_settings=(("beta", ("orpo_lambda",)),)),
    PreferenceMethod("kto", "KTO", "trl.KTOConfig", "trl.KTOTrainer", paired=False, takes_reference=True,
                     columns=UNPAIRED_COLUMNS,
                     metrics=("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"),
                     profile_settings=(("beta", ("kto_beta",)),)),
)}


def preference_method(name: str) -> PreferenceMethod:
    """The record of the method `name`; a clear error naming the known ones otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preference method {name!r}; choose one of {sorted(METHODS)} "
                         "(utils/experiments/preference_methods.py)") from None
