"""PEFT adapters on the course model: the one LoRA/DoRA recipe the labs share, and merged inference.

The labs compare methods at equal rank, targets and data, so every adapter comes from
`adapter_config`: the profile's rank and alpha on every linear projection, no dropout.
"""

from __future__ import annotations

import contextlib

from utils.profiles import Profile

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_config(profile: Profile, use_dora: bool = False):
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
