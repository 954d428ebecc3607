"""PEFT adapters on the course model: the one LoRA/DoRA recipe the labs share, and merged inference.

The labs compare methods at equal rank, targets and data, so every adapter comes from
`adapter_config`: the profile's rank and alpha on every linear layer of the blocks, no dropout. Which layers
those are, PEFT finds in the model ("all-linear": every linear layer but the output head); Lab 3.1.4 has
students find them by hand and checks their list against PEFT's.
"""

from __future__ import annotations

import contextlib

from utils.profiles import Profile

def adapter_config(profile: Profile, use_dora: bool = False):
    """LoRA (or DoRA) at the profile's rank and alpha on every linear layer of the blocks (PEFT finds them), no dropout."""
    from peft import LoraConfig, TaskType

    settings = {"r": profile.lora_r, "lora_alpha": profile.lora_alpha, "lora_dropout": 0.0, "use_dora": use_dora}
    return LoraConfig(target_modules="all-linear", task_type=TaskType.CAUSAL_LM, **settings)


@contextlib.contextmanager
def merged_for_inference(peft_model):
    """Fold the adapter into the base weights for the duration of the block, then take it out again.

    Generation should run merged: an unmerged DoRA layer recomputes B @ A and the norm of a full
    d_out x d_in matrix for every generated token, which makes generation many times slower, and
    even an unmerged LoRA pays two extra matrix products per layer and token. Merged, LoRA and
    DoRA cost exactly what the base model costs.
    """
    peft_model.merge_adapter()
    try:
        yield peft_model
    finally:
        peft_model.unmerge_adapter()
