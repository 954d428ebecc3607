"""utils.experiments.lora_vs_dora: both arms of Lab 3.1.2 get the same model, data, rank, steps and seed, and differ
only in `use_dora`. The model loading, the adapter config and the training are replaced by recorders (no torch
here: utils.adapters' own config is tested with PEFT in tests/test_lab_3_1_2.py)."""

import pytest

from utils.experiments import lora_vs_dora
from utils.profiles import get_profile


@pytest.fixture
def calls(monkeypatch):
    """Record what train_adapter hands to the model loader, the seeding and the trainer."""
    seen = {}
    monkeypatch.setattr(lora_vs_dora, "load_base", lambda P: seen.update(loaded=P) or ("model", "tokenizer"))
    monkeypatch.setattr(lora_vs_dora, "seed_everything", lambda seed: seen.update(seed=seed))
    monkeypatch.setattr(lora_vs_dora, "adapter_config", lambda P, use_dora=False: {"r": P.lora_r, "alpha": P.lora_alpha, "use_dora": use_dora})

    def train_sft(model, tokenizer, data, P, output_dir, peft_config=None, seed=None, **overrides):
        assert (model, tokenizer) == ("model", "tokenizer")
        seen.update(data=data, P=P, output_dir=output_dir, peft_config=peft_config, train_seed=seed, overrides=overrides)
        return "trainer"

    monkeypatch.setattr(lora_vs_dora, "train_sft", train_sft)
    return seen


@pytest.mark.parametrize("use_dora", [False, True])
def test_an_arm_trains_the_labs_sizes_with_dora_on_or_off(calls, use_dora):
    assert lora_vs_dora.train_adapter("grade", use_dora, seed=3) == "trainer"
    lab = get_profile("grade", lab="3.1.2")
    P, config = calls["P"], calls["peft_config"]
    assert (P.lab, P.max_steps, P.train_examples) == ("3.1.2", lab.max_steps, lab.train_examples)
    assert config == {"r": lab.lora_r, "alpha": lab.lora_alpha, "use_dora": use_dora}
    assert len(calls["data"]) == lab.train_examples
    assert calls["seed"] == calls["train_seed"] == 3 and calls["loaded"].model_id == lab.model_id


def test_steps_override_the_profile_and_logging_never_exceeds_them(calls):
    lora_vs_dora.train_adapter("cpu", False, steps=2)
    assert calls["P"].max_steps == 2 and calls["P"].logging_steps == 2  # cpu logs every 5 steps: clamped
    lora_vs_dora.train_adapter("cpu", False, steps=50)
    assert calls["P"].logging_steps == get_profile("cpu", lab="3.1.2").logging_steps


def test_the_two_arms_differ_only_in_use_dora(calls):
    lora_vs_dora.train_adapter("grade", False)
    lora = (calls["P"], calls["peft_config"], calls["data"])
    lora_vs_dora.train_adapter("grade", True)
    dora = (calls["P"], calls["peft_config"], calls["data"])
    assert lora[0] == dora[0] and lora[2] == dora[2]
    assert {k for k in lora[1] if lora[1][k] != dora[1][k]} == {"use_dora"}


def test_a_given_profile_object_and_sft_overrides_pass_through(calls, tmp_path):
    P = get_profile("grade", lab="3.1.2").with_(lora_r=4)
    lora_vs_dora.train_adapter(P, True, output_dir=str(tmp_path), learning_rate=1e-4)
    assert calls["P"].lora_r == 4 and calls["peft_config"]["r"] == 4
    assert calls["output_dir"] == str(tmp_path) and calls["overrides"] == {"learning_rate": 1e-4}
