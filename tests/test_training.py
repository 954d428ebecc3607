"""utils.training: the course trainer computes TRL's loss, only cheaper, and every course conversation has the same shape."""

import tempfile

import pytest
import torch

from utils.course_data import SYSTEM_PROMPT, load_split


def _tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))


def test_course_trainer_loss_and_gradients_equal_trl_default(smollm2_tokenizer):
    """Same batch, same weights: the plain loss equals TRL's fused-head loss, and so do the gradients."""
    from trl import SFTTrainer

    from utils.profiles import get_profile
    from utils.training import course_dataset, course_sft_trainer_class, sft_config

    P = get_profile("grade").with_(batch_size=4)
    examples = load_split("train", 4)
    results = []
    for trainer_class in (SFTTrainer, course_sft_trainer_class()):
        model = _tiny_llama(len(smollm2_tokenizer))
        with tempfile.TemporaryDirectory() as out:
            trainer = trainer_class(model=model, args=sft_config(P, out, bf16=False), train_dataset=course_dataset(examples),
                                    processing_class=smollm2_tokenizer)
            batch = next(iter(trainer.get_train_dataloader()))
            model.train()
            # as under gradient accumulation over two micro-batches: the loss divides by the tokens of both
            n_items = 2 * (batch["labels"][:, 1:] != -100).sum()
            loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n_items)
            loss.backward()
            results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None],
                            trainer._metrics["train"]["mean_token_accuracy"][-1]))
    (trl_loss, trl_grads, trl_acc), (course_loss, course_grads, course_acc) = results
    assert course_loss == pytest.approx(trl_loss, rel=1e-5)
    assert len(course_grads) == len(trl_grads)
    for a, b in zip(course_grads, trl_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert course_acc == pytest.approx(trl_acc)


def test_every_course_conversation_carries_the_course_system_turn(smollm2_tokenizer):
    ex = load_split("test", 1)[0]
    assert ex.prompt() == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ex.question}]
    assert ex.to_messages()[:2] == ex.prompt() and ex.to_prompt_completion()["prompt"] == ex.prompt()
    text = smollm2_tokenizer.apply_chat_template(ex.to_messages(), tokenize=False)
    assert "SmolLM" not in text, "the template's default system prompt must not reach the model"
    assert text.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")


@pytest.mark.parametrize("precision, bf16", [("fp32", False), ("bf16", True)])
def test_trainer_config_follows_the_precision_switch(monkeypatch, tmp_path, precision, bf16):
    """TRL's configs default to bf16=True; the course's choice must reach every trainer config."""
    from utils.profiles import get_profile
    from utils.training import sft_config

    monkeypatch.setenv("COURSE_PRECISION", precision)
    assert sft_config(get_profile("grade"), str(tmp_path)).bf16 is bf16
